"""Human approval: the queue of gate-passing proposals, approving (a fast-forward merge of exactly the
validated commit), rejecting (remembered, so the same change is not proposed again), the append-only audit
log, and feeding approved failures back into the regression set.

Modules: `records` (what the room hands out, its errors), `diffhash` (recognising the same change),
`store` (the queue, the audit log, the rejected changes: SQLAlchemy Core), `branch` (the target branch
and its fast-forwards), `merge` (`approve`), `reject`, `feedback` (the regression set's new versions).
"""

from autofix.approval.diffhash import diff_sha256, normalized_diff
from autofix.approval.feedback import (
    DatasetVersion,
    FeedbackError,
    FeedbackResult,
    feed_back,
    read_versions,
)
from autofix.approval.merge import ApprovalResult, approve
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
from autofix.approval.reject import reject
from autofix.approval.store import ApprovalStore, PreviouslyRejected, open_store

__all__ = [
    "STATUSES",
    "ApprovalError",
    "ApprovalResult",
    "ApprovalStore",
    "AuditEntry",
    "DatasetVersion",
    "DecisionRefused",
    "FeedbackError",
    "FeedbackResult",
    "Lineage",
    "PreviouslyRejected",
    "ProposalNotFound",
    "ProposalRecord",
    "RejectedChange",
    "approve",
    "diff_sha256",
    "feed_back",
    "normalized_diff",
    "open_store",
    "read_versions",
    "reject",
]
