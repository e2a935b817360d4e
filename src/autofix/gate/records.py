"""The gate's verdict: every check with its value, threshold and outcome, and the cases it moved."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Section = Literal["integrity", "target", "regression", "guardrail", "safety"]


class GateCheck(BaseModel):
    """One line of the verdict table."""

    section: Section
    name: str = Field(description="e.g. `held-out slice`, `regression answer_correct`, `tokens per case`")
    passed: bool
    value: float | None = None
    threshold: float | None = None
    margin: float | None = Field(default=None, description="how far inside (+) or outside (-) the threshold")
    reason: str = Field(description="one sentence an approver can read")
    detail: dict[str, Any] = Field(default_factory=dict)


class CaseChange(BaseModel):
    """A case whose verdict changed between base and candidate."""

    dataset: str = Field(description="`slice:<cluster>:holdout` or `regression`")
    case_id: str
    trace_id: str | None = Field(default=None, description="the production trace it came from (slice cases)")
    metric: str
    base: float | None
    candidate: float | None
    input: str = ""
    base_output: str | None = None
    candidate_output: str | None = None
    base_result: str | None = Field(default=None, description="results.jsonl of the base replay")
    candidate_result: str | None = Field(default=None, description="results.jsonl of the candidate replay")


class GateVerdict(BaseModel):
    """What `autofix gate` decided, and everything it decided on."""

    verdict_id: str
    passed: bool
    candidate_ref: str
    candidate_commit: str
    candidate_tree: str
    base_commit: str
    base_tree: str
    cluster: str | None = None
    policy: str = Field(description="the policy file")
    policy_sha256: str
    judges: dict[str, str] = Field(default_factory=dict, description="judge name -> version used")
    checks: list[GateCheck] = Field(default_factory=list)
    fixed: list[CaseChange] = Field(default_factory=list)
    regressed: list[CaseChange] = Field(default_factory=list)
    unchanged: int = 0
    notes: list[str] = Field(default_factory=list, description="what was not used and why (e.g. an uncalibrated judge)")
    created_at: str
    wall_s: float = 0.0

    @property
    def reasons(self) -> list[str]:
        """Why it was refused (empty when it passed)."""
        return [f"{c.name}: {c.reason}" for c in self.checks if not c.passed]
