"""Records of the replay protocol: the cases autofix sends, the results it reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from autofix.jsonl import read_case_records


class Turn(BaseModel):
    """One earlier turn of a conversation: who spoke and what they said."""

    model_config = ConfigDict(extra="ignore")

    role: str = Field(min_length=1, description="`user` or `assistant` (as in OpenAI chat messages).")
    content: str


class Case(BaseModel):
    """One input to replay: `{"case_id", "input", "messages"?, "expected"?, "metadata"?}`.

    `messages` is the conversation before `input`, oldest first, as `[{"role", "content"}]` (`user` and
    `assistant` turns): a multi-turn case replays its last user message (`input`) with that history,
    which the replay command passes to the assistant as its earlier turns. A case without history has
    no `messages` key at all (not `null`), so single-turn case files and their cache keys are as before.
    """

    model_config = ConfigDict(extra="ignore")

    case_id: str = Field(min_length=1)
    input: str
    messages: list[Turn] | None = None
    expected: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _no_empty_history(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if isinstance(data, dict) and data.get("messages") is None:
            data.pop("messages", None)
        return data


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
    return read_case_records(path, Case, error=DatasetError, what="a valid case")


def reproducible_part(result: CaseResult) -> dict[str, Any]:
    """What two replays of one commit must agree on: the output, error, spans (without their timings),
    tokens and model calls. Latencies differ from run to run and are left out."""
    spans = [{k: v for k, v in span.items() if k not in ("start_ms", "end_ms")} for span in result.spans]
    for span in spans:
        span["attributes"] = {k: v for k, v in (span.get("attributes") or {}).items() if "latency" not in k}
    return {"output": result.output, "error": result.error, "spans": spans, "tokens": result.usage.tokens,
            "calls": result.usage.calls}
