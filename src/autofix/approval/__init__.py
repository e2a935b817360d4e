"""Human approval: the queue of gate-passing proposals, the append-only audit log, and the changes rejected.

Modules: `records` (what the room hands out, its errors), `diffhash` (recognising the same change),
`store` (the queue, the audit log, the rejected changes: SQLAlchemy Core).
"""

from autofix.approval.diffhash import diff_sha256, normalized_diff
from autofix.approval.records import (
    STATUSES,
    ApprovalError,
    AuditEntry,
    DecisionRefused,
    Lineage,
    ProposalNotFound,
    ProposalRecord,
    RejectedChange,
)
from autofix.approval.store import ApprovalStore, PreviouslyRejected, open_store

__all__ = [
    "STATUSES",
    "ApprovalError",
    "ApprovalStore",
    "AuditEntry",
    "DecisionRefused",
    "Lineage",
    "PreviouslyRejected",
    "ProposalNotFound",
    "ProposalRecord",
    "RejectedChange",
    "diff_sha256",
    "normalized_diff",
    "open_store",
]
