"""Approving a proposal: merge exactly the commit the gate validated into the target branch, then feed its
failure cases back into the regression set.

    result = approve(config, "p-0001", by="alice", note="checked the wording")
    result.merged_commit == store.get("p-0001").commit and result.merged_tree == verdict.candidate_tree

The target branch is the one checked out in the repository's main worktree (where the base came from). If
its head is still the verdict's base commit it is fast-forwarded to the validated commit, so what lands is
the very tree that was validated. If the branch moved since, approving is refused, unless `revalidate`:
then the change is cherry-picked onto the new head in a temporary worktree (a conflict refuses), that new
commit goes through the gate with the new head as base, and only a passing verdict is fast-forwarded to
(both verdicts are kept). The main worktree must have no uncommitted change to the target folder's tracked
files. Every decision, refusal and merge is written to the audit log with the actor.

A crash between the decision and the merge leaves the proposal `approved`; approving it again finishes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from pydantic import BaseModel

from autofix.approval.branch import GitError, TargetBranch, autofix_identity, git
from autofix.approval.feedback import FeedbackResult, feed_back
from autofix.approval.records import ApprovalError, DecisionRefused, ProposalRecord
from autofix.approval.store import ApprovalStore, open_store
from autofix.gate.records import GateVerdict

EventCallback = Callable[[str], None]


class ApprovalResult(BaseModel):
    """What `approve` did."""

    proposal_id: str
    status: str
    approved_by: str
    target_branch: str
    validated_commit: str
    merged_commit: str
    merged_tree: str
    revalidated: bool = False
    revalidated_verdict_id: str | None = None
    feedback: FeedbackResult | None = None
    feedback_error: str | None = None


def _actor(by: str) -> str:
    by = (by or "").strip()
    if not by:
        raise ValueError("say who decides: --by NAME (it goes to the audit log)")
    return by


def approve(config: object, proposal_id: str, by: str, note: str | None = None, revalidate: bool = False, *,
            store: ApprovalStore | None = None, sandbox_kind: str | None = None, feedback: bool = True,
            on_event: EventCallback = lambda message: None) -> ApprovalResult:
    """Approve and merge a proposal (see the module doc).

    Raises ValueError (no approver named), ProposalNotFound, DecisionRefused (with the reason and what to
    do; the refusal is audited and the proposal stays as it was) or ApprovalError. A failure to feed the
    cases back does not undo the merge: it is audited and returned as `feedback_error`.
    """
    by = _actor(by)
    own = store is None
    store = store or open_store(config)
    try:
        record = store.get(proposal_id)
        try:
            return _approve(config, store, record, by, note, revalidate, sandbox_kind, feedback, on_event)
        except DecisionRefused as exc:
            store.record(by, "approve_refused", record.id, {"reason": str(exc), "revalidate": revalidate})
            raise
    finally:
        if own:
            store.close()


def _approve(config: object, store: ApprovalStore, record: ProposalRecord, by: str, note: str | None,
             revalidate: bool, sandbox_kind: str | None, feedback: bool, on_event: EventCallback) -> ApprovalResult:
    if record.status == "rejected":
        raise DecisionRefused(f"{record.id} was rejected by {record.decided_by} at {record.decided_at} "
                              f"({record.reason}); a rejected proposal is not merged")
    if record.status == "merged":
        raise DecisionRefused(f"{record.id} was merged already into {record.target_branch} as "
                              f"{(record.merged_commit or '')[:12]} (approved by {record.decided_by})")
    target = TargetBranch.of(config)
    target.refuse_if_dirty("Approving")
    verdict = record.verdict
    if record.status == "approved" and record.revalidated_verdict is not None:
        verdict = record.revalidated_verdict  # a crashed approval of a re-validated commit: finish that one
    _check_validated(target, record, verdict)
    head = target.head()
    revalidated: GateVerdict | None = None
    if head not in (verdict.candidate_commit, verdict.base_commit):
        if not target.is_ancestor(verdict.base_commit, head):
            raise DecisionRefused(
                f"branch {target.branch} (checked out in {target.root}) does not contain the base {verdict.base_commit[:12]} "
                f"{record.id} was validated on; check out the branch the proposal was made from and approve again")
        moved = target.commits_between(verdict.base_commit, head)
        if not revalidate:
            raise DecisionRefused(
                f"branch {target.branch} moved since {record.id} was validated: its head is {head[:12]}, "
                f"{moved} commit{'s' if moved != 1 else ''} after the validated base {verdict.base_commit[:12]}. "
                f"Merging now would land a change validated on another base. Re-validate it on the new head "
                f"(`autofix approve {record.id} --by {by} --revalidate`) or reject it")
        revalidated = _revalidate(config, store, target, record, head, by, sandbox_kind, on_event)
        verdict = revalidated
    if head != verdict.candidate_commit:
        in_the_way = target.untracked_in_the_way(head, verdict.candidate_commit)
        if in_the_way:
            raise DecisionRefused(f"untracked files in {target.root} would be overwritten by the merge: "
                                  f"{', '.join(in_the_way[:10])}; move them away and approve again")
    if record.status == "pending" and not store.mark_approved(record.id, by=by, note=note,
                                                              target_branch=target.branch):
        now_ = store.get(record.id)
        raise DecisionRefused(f"{record.id} was decided meanwhile: {now_.status} by {now_.decided_by}")
    if revalidated is not None:
        store.set_revalidated(record.id, revalidated)
    if head != verdict.candidate_commit:
        on_event(f"fast-forwarding {target.branch} to {verdict.candidate_commit[:12]}")
        target.fast_forward(verdict.candidate_commit, expected_head=head)
    merged = target.head()
    merged_tree = target.tree(merged)
    if merged != verdict.candidate_commit or merged_tree != verdict.candidate_tree:
        raise ApprovalError(f"after the merge {target.branch} is {merged[:12]} (tree {merged_tree[:12]}), not the "
                            f"validated {verdict.candidate_commit[:12]} (tree {verdict.candidate_tree[:12]}); "
                            f"inspect the branch: `git -C {target.root} log -3`")
    store.mark_merged(record.id, by=by, commit=merged, tree=merged_tree, target_branch=target.branch,
                      detail={"validated_commit": record.commit, "verdict_id": record.verdict.verdict_id,
                              "revalidated_verdict_id": revalidated.verdict_id if revalidated else None})
    result = ApprovalResult(proposal_id=record.id, status="merged", approved_by=by, target_branch=target.branch,
                            validated_commit=record.commit, merged_commit=merged, merged_tree=merged_tree,
                            revalidated=revalidated is not None,
                            revalidated_verdict_id=revalidated.verdict_id if revalidated else None)
    if feedback:
        merged_record = store.get(record.id)
        try:
            result.feedback = feed_back(config, merged_record, by=by, target=target)
        except (ApprovalError, OSError, ValueError) as exc:
            result.feedback_error = str(exc)
            store.record(by, "feedback_failed", record.id, {"error": str(exc)})
        else:
            fb = result.feedback
            if fb.commit:
                store.set_feedback_commit(record.id, fb.commit)
            store.record(by, "feedback", record.id, {
                "added": fb.added, "already_present": fb.already_present, "commit": fb.commit,
                "sha256": fb.version.sha256 if fb.version else None,
                "version": fb.version.version if fb.version else None, "note": fb.note})
    return result


def _check_validated(target: TargetBranch, record: ProposalRecord, verdict: GateVerdict) -> None:
    """The validated commit is in the repository and still has the validated tree."""
    if target.resolve(verdict.candidate_commit) is None:
        raise DecisionRefused(f"the validated commit {verdict.candidate_commit[:12]} of {record.id} is not in "
                              f"{target.root} (was its branch {record.branch} deleted and garbage-collected?); "
                              f"reject it and let a new run propose the change again")
    tree = target.tree(verdict.candidate_commit)
    if tree != verdict.candidate_tree:
        raise DecisionRefused(f"commit {verdict.candidate_commit[:12]} has tree {tree[:12]}, not the validated "
                              f"{verdict.candidate_tree[:12]}; the verdict does not describe it: reject {record.id}")


def _revalidate(config: object, store: ApprovalStore, target: TargetBranch, record: ProposalRecord, head: str,
                by: str, sandbox_kind: str | None, on_event: EventCallback) -> GateVerdict:
    """The change re-applied on `head` as a new commit (branch `autofix/approve-<id>/<cluster>/<n>`), gated
    with `head` as base; its passing verdict, else DecisionRefused."""
    from autofix.worktrees import (
        EmptyChangeError,
        SurfaceViolationError,
        WorktreeError,
        WorktreeManager,
    )

    try:
        from autofix.gate.runner import run_gate
    except ImportError as exc:
        raise DecisionRefused(f"cannot re-validate: the gate is not available ({exc})") from None
    on_event(f"re-applying {record.id} ({record.commit[:12]}) on {target.branch} at {head[:12]}")
    manager = WorktreeManager.from_config(config, f"approve-{record.id}", base_commit=head)  # type: ignore[arg-type]
    cluster = record.cluster or "proposal"
    n = 1
    while target.resolve(f"refs/heads/autofix/approve-{record.id}/{cluster}/{n}") is not None:
        n += 1
    try:
        candidate = manager.create(cluster, n)
    except WorktreeError as exc:
        raise DecisionRefused(f"cannot re-validate: {exc}") from None
    committed = False
    try:
        try:
            git(candidate.path, "cherry-pick", "--no-commit", f"{record.base_commit}..{record.commit}",
                env=autofix_identity())
        except GitError as exc:  # a conflict, or a history cherry-pick cannot take (a merge)
            conflicted = ""
            with contextlib.suppress(GitError):
                conflicted = git(candidate.path, "diff", "--name-only", "--diff-filter=U")
            raise DecisionRefused(
                f"{record.id}'s change does not apply to {target.branch} at {head[:12]}"
                + (f": conflicts in {', '.join(conflicted.split())}" if conflicted else f" ({exc})")
                + "; reject it and let a new run propose a fix on the new base") from None
        description = (f"{record.title}\n\nRe-applied on {head[:12]} to approve {record.id} "
                       f"(validated on {record.base_commit[:12]} as {record.commit[:12]}).")
        try:
            commit = manager.commit(candidate, optimizer=record.optimizer or "autofix", description=description,
                                    allowed_globs=config.surface_globs())  # type: ignore[attr-defined]
        except EmptyChangeError:
            raise DecisionRefused(f"{target.branch} at {head[:12]} has {record.id}'s change already; "
                                  f"nothing to merge: reject it as already done") from None
        except SurfaceViolationError as exc:
            raise DecisionRefused(f"re-applied on {head[:12]}, {record.id}'s change is outside the surfaces: "
                                  f"{exc}") from None
        committed = True
    finally:
        manager.remove(candidate, delete_branch=not committed)
    on_event(f"re-validating {commit.sha[:12]} on {candidate.branch} against {head[:12]}")
    try:
        verdict = run_gate(config, commit.sha, base=head, cluster=record.cluster, sandbox_kind=sandbox_kind,
                           on_event=on_event)
    except Exception as exc:  # noqa: BLE001 - the gate could not run (GateError, a sandbox, a dataset): refuse
        store.record(by, "revalidate", record.id, {"commit": commit.sha, "branch": candidate.branch,
                                                   "base_commit": head, "passed": False, "error": str(exc)})
        raise DecisionRefused(f"re-validation of {record.id} on {target.branch} at {head[:12]} could not run: "
                              f"{type(exc).__name__}: {exc}") from None
    store.record(by, "revalidate", record.id, {
        "commit": commit.sha, "branch": candidate.branch, "base_commit": head, "passed": verdict.passed,
        "verdict_id": verdict.verdict_id, "reasons": verdict.reasons, "verdict": verdict.model_dump(mode="json")})
    if not verdict.passed:
        raise DecisionRefused(f"re-validation of {record.id} on {target.branch} at {head[:12]} was refused by the "
                              f"gate: {'; '.join(verdict.reasons) or 'no reason given'}")
    if verdict.candidate_commit != commit.sha or verdict.base_commit != head:
        raise DecisionRefused(f"the gate validated {verdict.candidate_commit[:12]} on {verdict.base_commit[:12]}, "
                              f"not {commit.sha[:12]} on {head[:12]}; nothing was merged")
    return verdict
