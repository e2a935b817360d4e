"""JSONL files of records keyed by ``case_id`` (datasets, golden sets): read whole, or fail naming the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Record = TypeVar("Record", bound=BaseModel)


def read_case_records(path: Path, model: type[Record], *, error: type[Exception], what: str, hint: str = "") -> list[Record]:
    """Every non-blank line of ``path`` as a ``model``; a line that is not one, or repeats a ``case_id``, raises
    ``error`` with ``FILE:LINE:`` and what was wrong (``what``: how the message names a record; ``hint``: the fix)."""
    records: list[Record] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = model.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise error(f"{path}:{line_no}: not {what} ({exc.__class__.__name__}: {exc}){hint}") from None
            case_id = record.case_id  # type: ignore[attr-defined]
            if case_id in seen:
                raise error(f"{path}:{line_no}: duplicate case_id {case_id!r}")
            seen.add(case_id)
            records.append(record)
    return records
