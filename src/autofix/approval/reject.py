"""Rejecting a proposal: the reason is recorded, and the change is remembered as rejected for its cluster
(`ApprovalStore.was_rejected`), so later runs do not put the same diff in front of a human again."""

from __future__ import annotations

from autofix.approval.records import DecisionRefused, ProposalRecord
from autofix.approval.store import ApprovalStore, open_store


def reject(config: object, proposal_id: str, by: str, reason: str, *,
           store: ApprovalStore | None = None) -> ProposalRecord:
    """Reject a pending proposal (or an approved one whose merge never happened); the updated record.

    Raises ValueError (no approver or no reason given), ProposalNotFound, or DecisionRefused when it is not
    pending any more (the refusal is audited). The candidate branch is left as it is."""
    by, reason = (by or "").strip(), (reason or "").strip()
    if not by:
        raise ValueError("say who decides: --by NAME (it goes to the audit log)")
    if not reason:
        raise ValueError("say why: --reason TEXT (later runs and the optimizer's authors read it)")
    own = store is None
    store = store or open_store(config)
    try:
        record = store.get(proposal_id)
        if record.status not in ("pending", "approved") or not store.mark_rejected(record.id, by=by, reason=reason):
            record = store.get(proposal_id)
            why = (f"{record.id} is {record.status} (decided by {record.decided_by} at {record.decided_at}); "
                   f"only a pending proposal can be rejected")
            if record.status == "merged":
                why += f": to undo the merge, revert {(record.merged_commit or '')[:12]} on {record.target_branch}"
            store.record(by, "reject_refused", record.id, {"reason": why, "asked_reason": reason})
            raise DecisionRefused(why)
        return store.get(record.id)
    finally:
        if own:
            store.close()
