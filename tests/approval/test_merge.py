"""Approving merges exactly the validated commit; a moved branch is refused or re-validated; every decision is audited."""

from __future__ import annotations

import pytest

from autofix.approval import DecisionRefused, approve, reject


def test_approve_fast_forwards_to_the_validated_commit(any_tiny) -> None:
    tiny = any_tiny
    pid, _, verdict = tiny.enqueue(1)
    result = approve(tiny.config, pid, "alice", note="reads well", feedback=False)
    assert result.merged_commit == verdict.candidate_commit
    assert result.merged_tree == verdict.candidate_tree == tiny.tree("main")
    assert tiny.head() == verdict.candidate_commit  # the very commit, not a copy of it
    assert "Line three (v1) of the system prompt." in (tiny.root / "prompts" / "system.md").read_text()
    with tiny.store() as store:
        record = store.get(pid)
        log = store.audit_log(pid)
    assert (record.status, record.decided_by, record.note) == ("merged", "alice", "reads well")
    assert (record.merged_commit, record.merged_tree, record.target_branch) == (
        verdict.candidate_commit, verdict.candidate_tree, "main")
    assert [(e.action, e.actor) for e in log] == [("enqueue", "autofix"), ("approve", "alice"), ("merge", "alice")]
    assert log[2].detail["tree"] == verdict.candidate_tree


def test_a_dirty_target_folder_is_refused_and_other_folders_do_not_matter(any_tiny) -> None:
    tiny = any_tiny
    pid, _, verdict = tiny.enqueue(1)
    base = tiny.head()
    (tiny.root / "replay.py").write_text("print('edited, not committed')\n")
    with pytest.raises(DecisionRefused, match=r"uncommitted changes to tracked files: .*replay\.py.*git -C .* stash"):
        approve(tiny.config, pid, "alice")
    assert tiny.head() == base
    with tiny.store() as store:
        assert store.get(pid).status == "pending"
        refused = store.audit_log(pid)[-1]
    assert (refused.action, refused.actor) == ("approve_refused", "alice")
    assert "uncommitted" in refused.detail["reason"]
    (tiny.root / "replay.py").write_text("print('replay')\n")
    if tiny.root != tiny.repo:  # a monorepo: another service's edits are not the target's
        (tiny.repo / "services" / "billing" / "main.py").write_text("print('work in progress')\n")
    assert approve(tiny.config, pid, "alice", feedback=False).merged_commit == verdict.candidate_commit


def test_approve_after_the_branch_moved_is_refused(tiny) -> None:
    pid, _, verdict = tiny.enqueue(1)
    moved = tiny.commit_on_main("replay.py", "print('replay v2')\n")
    with pytest.raises(DecisionRefused, match=r"branch main moved since p-0001 was validated: its head is "
                                              rf"{moved[:12]}, 1 commit after the validated base "
                                              rf"{verdict.base_commit[:12]}.*--revalidate"):
        approve(tiny.config, pid, "alice")
    assert tiny.head() == moved
    assert tiny.audit_actions(pid) == ["enqueue", "approve_refused"]


def test_revalidate_merges_the_change_revalidated_on_the_new_head(tiny, fake_gate) -> None:
    calls = fake_gate(True)
    pid, _, verdict = tiny.enqueue(1)
    moved = tiny.commit_on_main("replay.py", "print('replay v2')\n")
    events: list[str] = []
    result = approve(tiny.config, pid, "alice", revalidate=True, feedback=False, on_event=events.append)
    assert len(calls) == 1 and calls[0]["base"] == moved and calls[0]["cluster"] == "prompt-tone-1"
    new_commit = calls[0]["candidate"]
    assert new_commit not in (verdict.candidate_commit, moved)
    assert result.revalidated and result.merged_commit == new_commit == tiny.head()
    assert tiny.show(f"{new_commit}^", "replay.py") == "print('replay v2')"  # on top of the colleague's change
    assert tiny.show(new_commit, "prompts/system.md") == tiny.show(verdict.candidate_commit, "prompts/system.md")
    with tiny.store() as store:
        record = store.get(pid)
    assert record.status == "merged" and record.verdict == verdict  # the first verdict is kept
    assert record.revalidated_verdict is not None
    assert (record.revalidated_verdict.candidate_commit, record.revalidated_verdict.base_commit) == (new_commit, moved)
    assert record.merged_tree == record.revalidated_verdict.candidate_tree == tiny.tree("main")
    assert tiny.audit_actions(pid) == ["enqueue", "revalidate", "approve", "merge"]
    assert any("fake gate" in e for e in events)


def test_a_failing_revalidation_is_refused(tiny, fake_gate) -> None:
    fake_gate(False)
    pid, _, _ = tiny.enqueue(1)
    moved = tiny.commit_on_main("replay.py", "print('replay v2')\n")
    with pytest.raises(DecisionRefused, match="re-validation of p-0001 on main .* refused by the gate: held-out "
                                              "slice: the slice score did not rise"):
        approve(tiny.config, pid, "alice", revalidate=True)
    assert tiny.head() == moved
    with tiny.store() as store:
        assert store.get(pid).status == "pending"
        log = store.audit_log(pid)
    assert [e.action for e in log] == ["enqueue", "revalidate", "approve_refused"]
    assert log[1].detail["passed"] is False and log[1].detail["base_commit"] == moved


def test_a_gate_that_cannot_run_refuses(tiny, monkeypatch) -> None:
    import autofix.gate.runner as runner

    def broken(config, candidate, **kwargs):
        raise runner.GateError("unknown ref: nothing")

    monkeypatch.setattr(runner, "run_gate", broken)
    pid, _, _ = tiny.enqueue(1)
    moved = tiny.commit_on_main("replay.py", "print('replay v2')\n")
    with pytest.raises(DecisionRefused, match="could not run: GateError: unknown ref: nothing"):
        approve(tiny.config, pid, "alice", revalidate=True)
    assert tiny.head() == moved
    assert tiny.audit_actions(pid) == ["enqueue", "revalidate", "approve_refused"]


def test_a_change_that_conflicts_with_the_new_head_is_refused(tiny, fake_gate) -> None:
    calls = fake_gate(True)
    pid, _, _ = tiny.enqueue(1)
    prompt = (tiny.root / "prompts" / "system.md").read_text()
    moved = tiny.commit_on_main("prompts/system.md", prompt.replace("Line 3 of", "Line 3 (edited) of"))
    with pytest.raises(DecisionRefused, match=r"does not apply to main .*conflicts in prompts/system\.md"):
        approve(tiny.config, pid, "alice", revalidate=True)
    assert calls == [] and tiny.head() == moved
    assert not [b for b in tiny.branches() if b.startswith("autofix/approve-")]  # the failed attempt left nothing


def test_a_decided_proposal_is_not_decided_again(tiny) -> None:
    pid, _, _ = tiny.enqueue(1)
    approve(tiny.config, pid, "alice", feedback=False)
    with pytest.raises(DecisionRefused, match="p-0001 was merged already into main"):
        approve(tiny.config, pid, "bob")
    with pytest.raises(DecisionRefused, match="only a pending proposal can be rejected: to undo the merge, revert"):
        reject(tiny.config, pid, "bob", "too late")
    other, _, _ = tiny.enqueue(2, lambda t: t.replace("Line 9", "Line nine"))
    reject(tiny.config, other, "bob", "no")
    with pytest.raises(DecisionRefused, match="p-0002 was rejected by bob"):
        approve(tiny.config, other, "alice")
    assert tiny.audit_actions() == ["enqueue", "approve", "merge", "approve_refused", "reject_refused",
                                    "enqueue", "reject", "approve_refused"]


def test_an_approver_must_be_named(tiny) -> None:
    pid, _, _ = tiny.enqueue(1)
    with pytest.raises(ValueError, match="--by NAME"):
        approve(tiny.config, pid, "  ")



def test_an_approval_interrupted_before_the_merge_is_finished_by_approving_again(tiny, monkeypatch) -> None:
    from autofix.approval.branch import TargetBranch

    pid, _, verdict = tiny.enqueue(1)
    base = tiny.head()

    def crash(self, commit, *, expected_head):
        raise KeyboardInterrupt  # the approver's terminal closed between the decision and the merge

    with monkeypatch.context() as patch:
        patch.setattr(TargetBranch, "fast_forward", crash)
        with pytest.raises(KeyboardInterrupt):
            approve(tiny.config, pid, "alice", feedback=False)
    assert tiny.head() == base
    with tiny.store() as store:
        assert store.get(pid).status == "approved"
    result = approve(tiny.config, pid, "alice", feedback=False)
    assert result.merged_commit == verdict.candidate_commit == tiny.head()
    assert tiny.audit_actions(pid) == ["enqueue", "approve", "merge"]



def test_untracked_files_in_the_way_refuse_before_deciding(tiny) -> None:
    manager = tiny.manager()
    cand = manager.create("prompt-tone-1", 1)
    (cand.target_path / "prompts" / "extra.md").write_text("Be brief.\n")
    commit = manager.commit(cand, optimizer="scripted", description="an extra prompt",
                            allowed_globs=tiny.config.surface_globs()).sha
    diff = manager.diff(cand).patch
    manager.remove(cand, delete_branch=False)
    with tiny.store() as store:
        pid = store.enqueue(tiny.verdict(commit), diff, {"cluster": "prompt-tone-1"})
    (tiny.root / "prompts" / "extra.md").write_text("my own notes\n")
    with pytest.raises(DecisionRefused, match=r"untracked files .* would be overwritten by the merge: prompts/extra\.md"):
        approve(tiny.config, pid, "alice")
    with tiny.store() as store:
        assert store.get(pid).status == "pending"  # refused before the decision
    (tiny.root / "prompts" / "extra.md").unlink()
    assert approve(tiny.config, pid, "alice", feedback=False).merged_commit == commit
    assert (tiny.root / "prompts" / "extra.md").read_text() == "Be brief.\n"
