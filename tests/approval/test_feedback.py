"""Feeding back: approving adds the cluster's failure cases, with their labels, to the regression set as a new
version; rejecting records the reason and remembers the change."""

from __future__ import annotations

import hashlib
import json

import pytest

from autofix.approval import approve, read_versions, reject
from autofix.replay.records import load_cases


def test_approving_adds_the_slice_cases_to_the_regression_set(any_tiny) -> None:
    tiny = any_tiny
    pid, _, verdict = tiny.enqueue(1)
    regression = tiny.root / "data" / "regression.jsonl"
    before = regression.read_bytes()
    result = approve(tiny.config, pid, "alice")

    fb = result.feedback
    assert result.feedback_error is None and fb is not None
    assert (fb.added, fb.already_present) == (3, 1)  # t004 was in the regression set already
    cases = {c.case_id: c for c in load_cases(regression)}
    assert list(cases) == ["reg-001", "t004", "t001", "t002", "t003"]
    assert cases["t001"].expected == {"must_include": ["HelpPoint"]}  # the reviewer's label came along
    assert cases["t002"].expected is None and cases["t002"].input == "How do I reset password 2?"
    assert cases["t004"].expected == {"must_include": ["reset"]}  # what was there stays as it was
    assert regression.read_bytes().startswith(before)

    # A commit of its own on the target branch, after the validated one.
    assert tiny.head() == fb.commit
    assert tiny.show(f"{fb.commit}^", "prompts/system.md") == tiny.show(verdict.candidate_commit, "prompts/system.md")
    assert tiny.git("rev-parse", f"{fb.commit}^") == verdict.candidate_commit
    message = tiny.git("log", "-1", "--format=%s%n%b%n%an")
    assert message.startswith("autofix: 3 cases of cluster prompt-tone-1 join the regression set (proposal p-0001)")
    assert "Approved-by: alice" in message and "2 cases have none: they serve the checks that need no reference" in message
    assert tiny.git("status", "--porcelain", "--untracked-files=no") == ""

    [version] = read_versions(tiny.config)
    assert version.sha256 == hashlib.sha256(regression.read_bytes()).hexdigest()
    assert version.previous_sha256 == hashlib.sha256(before).hexdigest()
    assert (version.version, version.path, version.commit) == (1, "data/regression.jsonl", fb.commit)
    assert version.case_ids == ["t001", "t002", "t003"] and version.without_expected == 2
    assert version.provenance.model_dump() == {"proposal_id": "p-0001", "cluster": "prompt-tone-1",
                                               "trace_ids": ["t001", "t002", "t003", "t004"], "approved_by": "alice"}
    assert "1 case carries a reviewer's expected answer; 2 cases have none" in version.note
    versions_file = tiny.root / "runs" / "datasets" / "regression.versions.jsonl"
    assert json.loads(versions_file.read_text().splitlines()[0])["provenance"]["proposal_id"] == "p-0001"
    with tiny.store() as store:
        record = store.get(pid)
        log = store.audit_log(pid)
    assert record.feedback_commit == fb.commit and record.merged_commit == verdict.candidate_commit
    assert [e.action for e in log] == ["enqueue", "approve", "merge", "feedback"]
    assert log[-1].detail["sha256"] == version.sha256


def test_cases_already_present_make_no_new_version(tiny, fake_gate) -> None:
    fake_gate(True)
    first, _, _ = tiny.enqueue(1)
    second, _, _ = tiny.enqueue(2, lambda t: t.replace("Line 9", "Line nine"))
    approve(tiny.config, first, "alice")
    head = tiny.head()
    result = approve(tiny.config, second, "alice", revalidate=True)  # main moved: the first merge and its cases
    assert result.revalidated
    assert result.feedback.added == 0 and "all 4 cases of cluster prompt-tone-1 are in data/regression.jsonl" in \
        result.feedback.note
    assert tiny.head() == result.merged_commit and tiny.show(f"{result.merged_commit}^", "prompts/system.md") == \
        tiny.show(head, "prompts/system.md")
    assert len(read_versions(tiny.config)) == 1


def test_a_failed_feedback_leaves_the_merge_standing(tiny) -> None:
    pid, _, verdict = tiny.enqueue(1)
    (tiny.root / "runs" / "triage" / "latest.json").unlink()
    result = approve(tiny.config, pid, "alice")
    assert tiny.head() == result.merged_commit == verdict.candidate_commit
    assert result.feedback is None and "no triage result" in result.feedback_error
    assert tiny.audit_actions(pid) == ["enqueue", "approve", "merge", "feedback_failed"]
    assert read_versions(tiny.config) == []


def test_reject_records_the_reason_and_remembers_the_change(tiny) -> None:
    pid, diff, _ = tiny.enqueue(1)
    head = tiny.head()
    record = reject(tiny.config, pid, "rita", "the tone is too casual")
    assert (record.status, record.decided_by, record.reason) == ("rejected", "rita", "the tone is too casual")
    assert tiny.head() == head  # nothing merged
    with tiny.store() as store:
        assert store.was_rejected(diff, "prompt-tone-1")
        rejection = store.rejection(diff, "prompt-tone-1")
        [entry] = [e for e in store.audit_log(pid) if e.action == "reject"]
    assert (rejection.proposal_id, rejection.reason, rejection.rejected_by) == (pid, "the tone is too casual", "rita")
    assert (entry.actor, entry.detail["reason"]) == ("rita", "the tone is too casual")
    with pytest.raises(ValueError, match="--reason"):
        reject(tiny.config, pid, "rita", " ")
