"""The approval queue: only passing verdicts enter, once per commit; the audit log is append-only; rejected changes
are recognised again."""

from __future__ import annotations

import sqlite3

import pytest

from autofix.approval import (
    ApprovalStore,
    Lineage,
    PreviouslyRejected,
    ProposalNotFound,
    diff_sha256,
    normalized_diff,
    open_store,
)


def test_a_verdict_that_did_not_pass_is_refused(tiny) -> None:
    commit, diff = tiny.candidate(1, lambda t: t.replace("Line 3", "Line three"))
    verdict = tiny.verdict(commit, passed=False)
    with tiny.store() as store:
        with pytest.raises(ValueError, match="only gate-passing candidates.*the slice score did not rise"):
            store.enqueue(verdict, diff, {"cluster": "prompt-tone-1"})
        assert store.proposals() == []
        assert store.audit_log() == []


def test_enqueue_is_idempotent_for_the_same_commit(tiny) -> None:
    pid, diff, verdict = tiny.enqueue(1)
    assert pid == "p-0001"
    with tiny.store() as store:
        assert store.enqueue(verdict, diff, Lineage(cluster="prompt-tone-1")) == "p-0001"  # a resumed run
        assert [p.id for p in store.proposals()] == ["p-0001"]
        assert [e.action for e in store.audit_log()] == ["enqueue"]
    second, _, _ = tiny.enqueue(2, lambda t: t.replace("Line 5", "Line five"))
    assert second == "p-0002"


def test_a_queued_proposal_holds_diff_verdict_and_lineage(tiny) -> None:
    pid, diff, verdict = tiny.enqueue(1)
    with tiny.store() as store:
        record = store.get(pid)
    assert record.status == "pending"
    assert (record.commit, record.tree) == (verdict.candidate_commit, verdict.candidate_tree)
    assert (record.base_commit, record.base_tree) == (verdict.base_commit, verdict.base_tree)
    assert record.branch == "autofix/run-1/prompt-tone-1/1"
    assert record.cluster == "prompt-tone-1" and record.optimizer == "scripted"
    assert record.diff == diff and "+Line three (v1) of the system prompt." in record.diff
    assert record.verdict == verdict
    assert record.lineage.trace_ids == ["t001", "t002", "t003", "t004"]
    assert record.lineage.models["optimizer"] == "scripted/optimizer"
    assert (record.lineage.cost_usd, record.lineage.metric_calls) == (0.0123, 42)


def test_the_store_lives_in_the_state_folder_or_at_any_url(tiny, tmp_path) -> None:
    _, diff, verdict = tiny.enqueue(1)
    assert (tiny.root / "runs" / "approval.sqlite3").is_file()
    other = f"sqlite:///{tmp_path / 'shared' / 'queue.db'}"
    with open_store(tiny.config, url=other) as store:
        assert store.proposals() == []
        assert store.enqueue(verdict, diff, {}) == "p-0001"
    with ApprovalStore(other) as again:
        assert again.get("p-0001").commit == verdict.candidate_commit


def test_an_unknown_proposal_names_the_ones_there_are(tiny) -> None:
    tiny.enqueue(1)
    with tiny.store() as store, pytest.raises(ProposalNotFound, match="no proposal 'p-0009'.*p-0001"):
        store.get("p-0009")
    with tiny.store() as store, pytest.raises(ValueError, match="unknown status 'done'"):
        store.proposals("done")


def test_the_audit_log_cannot_be_edited(tiny) -> None:
    pid, _, _ = tiny.enqueue(1)
    with tiny.store() as store:
        store.record("auditor", "note", pid, {"text": "looked at it"})
        public = [name for name in dir(store) if not name.startswith("_")]
        assert not [n for n in public if any(w in n for w in ("delete", "remove", "edit", "truncate", "clear"))]
        assert "update" not in " ".join(n for n in public if "audit" in n)
    db = sqlite3.connect(tiny.root / "runs" / "approval.sqlite3")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit SET actor = 'mallory'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit")
    finally:
        db.close()
    with tiny.store() as store:
        assert [(e.actor, e.action) for e in store.audit_log(pid)] == [("autofix", "enqueue"), ("auditor", "note")]


def test_the_same_change_is_recognised_at_other_lines(tiny) -> None:
    diff = ("diff --git a/prompts/system.md b/prompts/system.md\nindex 1111111..2222222 100644\n"
            "--- a/prompts/system.md\n+++ b/prompts/system.md\n@@ -2,3 +2,3 @@ Intro\n Line 2\n-Line 3\n+Line three\n"
            " Line 4\n")
    moved = ("diff --git a/prompts/system.md b/prompts/system.md\nindex 3333333..4444444 100644\n"
             "--- a/prompts/system.md\n+++ b/prompts/system.md\n@@ -12,3 +12,3 @@\n Other context   \n-Line 3\n"
             "+Line three  \n Still other\n")
    assert normalized_diff(diff) == "prompts/system.md\n-Line 3\n+Line three\n"
    assert diff_sha256(diff) == diff_sha256(moved)
    assert diff_sha256(diff) != diff_sha256(diff.replace("+Line three", "+Line 3b"))
    assert diff_sha256(diff) != diff_sha256(diff.replace("system.md", "other.md"))


def test_a_rejected_change_is_not_queued_again(tiny) -> None:
    pid, _, _ = tiny.enqueue(1)
    with tiny.store() as store:
        assert store.mark_rejected(pid, by="rita", reason="the tone is too casual")
    # A later run proposes the very same edit (another commit, another branch).
    tiny.run_id, tiny._manager = "run-2", None
    commit, again = tiny.candidate(1, lambda t: t.replace("Line 3 of", "Line three (v1) of"))
    with tiny.store() as store:
        assert store.was_rejected(again, "prompt-tone-1")
        assert not store.was_rejected(again, "another-cluster")
        with pytest.raises(PreviouslyRejected, match="rejected before \\(p-0001, by rita.*too casual"):
            store.enqueue(tiny.verdict(commit), again, {"cluster": "prompt-tone-1"})
        assert [p.id for p in store.proposals()] == [pid]


def test_targets_can_share_one_database(tiny, tmp_path) -> None:
    commit, diff = tiny.candidate(1, lambda t: t.replace("Line 3", "Line three"))
    verdict = tiny.verdict(commit)
    shared = f"sqlite:///{tmp_path / 'team.db'}"
    with ApprovalStore(shared, project="helpdesk") as helpdesk, ApprovalStore(shared, project="billing") as billing:
        assert helpdesk.enqueue(verdict, diff, {}) == "p-0001"
        assert billing.proposals() == []
        with pytest.raises(ProposalNotFound):
            billing.get("p-0001")
        assert billing.enqueue(verdict, diff, {}) == "p-0002"  # its own entry, its own id
        assert helpdesk.mark_rejected("p-0001", by="rita", reason="no")
        assert helpdesk.was_rejected(diff, "prompt-tone-1") and not billing.was_rejected(diff, "prompt-tone-1")
    with ApprovalStore(shared) as everything:
        assert [(p.id, p.project) for p in everything.proposals()] == [("p-0001", "helpdesk"), ("p-0002", "billing")]


def test_the_lineage_of_an_optimizer_candidate() -> None:
    from autofix.optimize.engine import CandidateRecord, TrainScore

    record = CandidateRecord(
        id="prompt-tone-1/1", optimizer="gepa", branch="autofix/opt-1/prompt-tone-1/1", commit="c" * 40,
        base_commit="b" * 40, diff="", files=["prompts/system.md"], description="kinder wording",
        rationale="users asked twice", train=TrainScore(base_score=0.0, score=0.8, verified=True), cost_usd=0.5,
        metric_calls=30, lineage={"cluster": "prompt-tone-1", "optimizer": "gepa", "iterations": 4})
    lineage = Lineage.from_candidate(record, run_id="opt-1", trace_ids=["t001"], models={"optimizer": "m"})
    assert (lineage.cluster, lineage.optimizer, lineage.branch, lineage.run_id) == (
        "prompt-tone-1", "gepa", "autofix/opt-1/prompt-tone-1/1", "opt-1")
    assert (lineage.cost_usd, lineage.metric_calls, lineage.trace_ids) == (0.5, 30, ["t001"])
    assert lineage.model_extra == {"iterations": 4}
