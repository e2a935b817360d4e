"""What the approval queue holds and hands out: a proposal, its lineage, an audit entry, a rejected change,
and the errors that refuse a decision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autofix.gate.records import GateVerdict

if TYPE_CHECKING:
    from autofix.optimize.engine import CandidateRecord

Status = Literal["pending", "approved", "rejected", "merged"]
STATUSES: tuple[str, ...] = ("pending", "approved", "rejected", "merged")
"""`pending`: waits for a human; `approved`: decided, the merge under way (a crash leaves it here, and
approving again finishes it); `merged`: the validated commit is on the target branch; `rejected`."""


class Lineage(BaseModel):
    """Where a proposal came from: the traces that motivated it, the cluster, the optimizer, the models,
    what it cost. Extra keys (an optimizer's own metadata) are kept."""

    model_config = ConfigDict(extra="allow")

    trace_ids: list[str] = Field(default_factory=list, description="the failed production traces of its cluster")
    cluster: str | None = None
    optimizer: str | None = None
    run_id: str | None = None
    branch: str | None = Field(default=None, description="the candidate branch `autofix/<run>/<cluster>/<n>`")
    description: str = ""
    rationale: str = ""
    models: dict[str, str] = Field(default_factory=dict, description="role -> litellm model, e.g. target, optimizer")
    cost_usd: float = 0.0
    metric_calls: int = 0

    @classmethod
    def from_candidate(cls, record: CandidateRecord, *, run_id: str | None = None,
                       trace_ids: list[str] | None = None, models: dict[str, str] | None = None) -> Lineage:
        """The lineage of an optimizer's committed candidate (`autofix.optimize.engine.CandidateRecord`)."""
        extra = {k: v for k, v in record.lineage.items() if k not in ("cluster", "optimizer")}
        return cls(
            trace_ids=list(trace_ids or []), cluster=record.lineage.get("cluster"), optimizer=record.optimizer,
            run_id=run_id, branch=record.branch, description=record.description, rationale=record.rationale,
            models=dict(models or {}), cost_usd=record.cost_usd, metric_calls=record.metric_calls, **extra,
        )


class ProposalRecord(BaseModel):
    """One entry of the approval queue: a gate-passing candidate, its diff, verdict, lineage and decision."""

    id: str = Field(description="`p-0001`")
    project: str = Field(default="", description="autofix.yaml's `project` (the store may be shared)")
    status: Status
    branch: str | None = Field(description="the candidate branch")
    commit: str = Field(description="the validated commit")
    tree: str = Field(description="its tree: what approving puts on the target branch")
    base_commit: str
    base_tree: str
    cluster: str | None = None
    optimizer: str | None = None
    diff: str
    diff_sha256: str = Field(description="hash of the normalized diff (see `normalized_diff`)")
    verdict: GateVerdict
    lineage: Lineage
    created_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    reason: str | None = Field(default=None, description="why it was rejected")
    target_branch: str | None = None
    merged_commit: str | None = None
    merged_tree: str | None = None
    revalidated_verdict: GateVerdict | None = Field(
        default=None, description="the gate's verdict on the change re-applied to a moved branch, when approved so")
    feedback_commit: str | None = Field(default=None, description="the commit adding its cases to the regression set")

    @property
    def title(self) -> str:
        first = (self.lineage.description or "").strip().splitlines()
        return first[0] if first else f"fix for cluster {self.cluster or '?'}"

    def decision_rows(self) -> list[tuple[str, str]]:
        """What was decided and done, as (label, text) lines: the terminal view and the review page show them."""
        rows = []
        if self.decided_by:
            verb = "rejected" if self.status == "rejected" else "approved"
            rows.append(("decided", f"{verb} by {self.decided_by} at {self.decided_at}"))
        if self.note:
            rows.append(("note", self.note))
        if self.reason:
            rows.append(("reason", self.reason))
        if self.merged_commit:
            rows.append(("merged", f"{self.merged_commit} on {self.target_branch} (tree {(self.merged_tree or '')[:12]})"))
        if self.feedback_commit:
            rows.append(("regression set", f"its cases added in {self.feedback_commit}"))
        return rows

    def summary(self) -> dict[str, Any]:
        """The short form `autofix review list --json` prints."""
        return {"id": self.id, "status": self.status, "cluster": self.cluster, "optimizer": self.optimizer,
                "title": self.title, "branch": self.branch, "commit": self.commit, "base_commit": self.base_commit,
                "created_at": self.created_at, "decided_by": self.decided_by, "decided_at": self.decided_at,
                "merged_commit": self.merged_commit, "fixed": len(self.verdict.fixed),
                "regressed": len(self.verdict.regressed)}


class AuditEntry(BaseModel):
    """One line of the append-only audit log."""

    id: int
    at: str
    actor: str
    action: str = Field(description="enqueue, approve, approve_refused, revalidate, merge, feedback, "
                                    "feedback_failed, reject, reject_refused")
    proposal_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class RejectedChange(BaseModel):
    """A change a human rejected: later runs ask `was_rejected(diff, cluster)` before proposing it again."""

    diff_sha256: str
    cluster: str
    proposal_id: str
    reason: str
    rejected_by: str
    rejected_at: str


class ApprovalError(Exception):
    """A decision could not be made; the message says why and what to do."""


class ProposalNotFound(ApprovalError, LookupError):
    """No proposal with that id (bad input)."""


class DecisionRefused(ApprovalError):
    """The decision was refused (the branch moved, the worktree is dirty, the proposal was decided already,
    a re-validation failed, ...); the proposal stays as it was."""
