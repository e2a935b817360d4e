"""Reviewers' expectations for failed traces (`datasets.labels`): what a case's answer must show.

A production trace has no gold answer. A reviewer reads one and writes what a right answer holds:
`{"case_id", "expected": {"answer"?, "must_include"?, "must_not_include"?, "doc_ids"?, "format"?},
"labeled_by", "labeled_at", "note"?}`, one JSON object per line. The file is append-only: a later
line for the same case replaces an earlier one, so a correction never rewrites history. A case's
`expected` is what the deterministic checks read (see `autofix.judges.checks`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autofix.replay.records import Case

EXPECTATION_FIELDS = ("answer", "must_include", "must_not_include", "doc_ids", "pattern", "format")
"""The `expected` fields a label may carry, each read by a check."""


class LabelError(ValueError):
    """A labels file cannot be read; the message names the file and the line."""


class Label(BaseModel):
    """One reviewer's expectation for one case (a failed trace, by its trace id)."""

    model_config = ConfigDict(extra="ignore")

    case_id: str = Field(min_length=1)
    expected: dict[str, Any]
    labeled_by: str = Field(default="unknown", min_length=1)
    labeled_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    note: str | None = None
    source: str | None = Field(default=None, description="Where it came from when imported, e.g. an export file.")

    @field_validator("expected")
    @classmethod
    def _something_to_check(cls, value: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in value.items() if k in EXPECTATION_FIELDS and v not in (None, "", [])}
        if not kept:
            raise ValueError(f"expected has nothing a check reads: give one of {', '.join(EXPECTATION_FIELDS)}")
        return kept


def load_labels(path: Path | None) -> dict[str, Label]:
    """Labels by case id (the last line for a case wins); an absent file or path is no labels."""
    if path is None or not path.is_file():
        return {}
    labels: dict[str, Label] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            label = Label.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            raise LabelError(f"{path}:{n}: not a label ({str(exc).splitlines()[0]}); fix or delete the line") from None
        labels[label.case_id] = label
    return labels


def append_labels(path: Path, labels: Iterable[Label]) -> int:
    """Append labels to the file (created if missing); returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("a", encoding="utf-8") as handle:
        for label in labels:
            handle.write(json.dumps(label.model_dump(exclude_none=True), ensure_ascii=False) + "\n")
            written += 1
    return written


def with_labels(cases: list[Case], labels: dict[str, Label]) -> list[Case]:
    """The cases, each labelled one carrying its label's expectation (merged over any it had)."""
    out = []
    for case in cases:
        label = labels.get(case.case_id)
        if label is None:
            out.append(case)
        else:
            out.append(case.model_copy(update={"expected": {**(case.expected or {}), **label.expected}}))
    return out
