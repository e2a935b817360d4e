"""Records of the replay protocol: the cases autofix sends, the results it reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Case(BaseModel):
    """One input to replay: `{"case_id", "input", "expected"?, "metadata"?}`."""

    model_config = ConfigDict(extra="ignore")

    case_id: str = Field(min_length=1)
    input: str
    expected: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CaseUsage(BaseModel):
    """What the case cost at the model gateway."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    model_latency_ms: float = 0.0
    errors: int = 0


class CaseResult(BaseModel):
    """One result: the target's answer, spans and error, plus the gateway's usage for the case.

    A case that crashed, timed out or came back empty is a result with `error` set, never a missing row.
    `infrastructure` marks a failure autofix saw rather than one the target reported (the sandbox
    crashed or timed out, the command wrote nothing for the case, the model gateway failed): such a
    result says nothing about the target at that commit, so it is never cached.
    """

    model_config = ConfigDict(extra="ignore")

    case_id: str
    output: str | None = None
    spans: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    latency_ms: float = 0.0
    usage: CaseUsage = Field(default_factory=CaseUsage)
    infrastructure: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None


class DatasetError(ValueError):
    """A dataset file cannot be read; the message names the file and the line."""


def load_cases(path: Path) -> list[Case]:
    """Read a JSONL dataset of cases; a bad line is an error naming the file and the line."""
    cases: list[Case] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                case = Case.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise DatasetError(f"{path}:{line_no}: not a valid case ({exc.__class__.__name__}: {exc})") from None
            if case.case_id in seen:
                raise DatasetError(f"{path}:{line_no}: duplicate case_id {case.case_id!r}")
            seen.add(case.case_id)
            cases.append(case)
    return cases
