"""Records of triage: the failure signals of a trace, the failure, its diagnosis, and clusters of them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field


class Category(str, Enum):
    """Root-cause categories (DESIGN.md); the owner of the fix follows from the category."""

    prompt = "prompt"
    retrieval = "retrieval"
    routing = "routing"
    tool_arguments = "tool_arguments"
    missing_capability = "missing_capability"
    context = "context"
    memory = "memory"
    data_freshness = "data_freshness"
    model_limitation = "model_limitation"
    infrastructure = "infrastructure"
    evaluation = "evaluation"
    unclassified = "unclassified"


SignalKind = Literal["explicit", "behavioural", "judged", "operational"]


class Signal(BaseModel):
    """One piece of evidence that a trace failed, e.g. a thumb down, a rephrase, a low judge score, a tool error."""

    kind: SignalKind
    name: str = Field(description="e.g. thumb_down, negative_comment, rephrase, abandon, escalation, low_score, tool_error")
    detail: str = ""
    span_id: str | None = None
    strength: float = Field(default=1.0, ge=0.0, le=1.0, description="how strongly it says the trace failed, in [0, 1]")


class Failure(BaseModel):
    """A trace judged failed by its signals, with a triage priority (used to rank, never as a quality verdict)."""

    trace_id: str
    session_id: str | None = None
    timestamp: datetime | None = None  # None: the trace has none
    task_type: str = "unknown"
    input: str
    output: str = ""
    signals: list[Signal]
    priority: float


class Cause(BaseModel):
    """A cause one or more rules found evidence for, beside the primary one."""

    category: Category
    confidence: float = Field(ge=0.0, le=1.0)
    rule: str
    rationale: str


class Diagnosis(BaseModel):
    """The root cause of one failure, with a rationale a reviewer can check against the evidence spans."""

    trace_id: str
    category: Category
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str
    evidence: list[str] = Field(default_factory=list, description="span ids the rationale rests on")
    method: Literal["rule", "llm", "none"]
    rule: str | None = Field(default=None, description="the deterministic rule that fired, for method=rule")
    alternatives: list[Cause] = Field(
        default_factory=list,
        description="the other causes the rules found evidence for, strongest first (the primary is the strongest)",
    )


class Finding(BaseModel):
    """A run-level finding: one mechanism seen across the run (a broken scorer, a tool failing since a
    version), reported once for the team that owns it instead of as many per-trace failures."""

    category: Category
    rule: str = Field(description="what found it")
    subject: str = Field(description="what it is about, e.g. score:faithfulness or tool:list_tickets")
    title: str
    rationale: str
    traces: int = Field(ge=0, description="how many traces it concerns")
    examples: list[str] = Field(default_factory=list, description="a few of their trace ids")
