"""`autofix review list|show`, `autofix approve`, `autofix reject`: what a user sees, exit codes and --json."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autofix.cli import app

runner = CliRunner()


def run(tiny, *args: str):
    return runner.invoke(app, [*args, "-c", str(tiny.root / "autofix.yaml")], env={"COLUMNS": "200"})


def test_review_list_and_show(tiny) -> None:
    pid, diff, verdict = tiny.enqueue(1)
    tiny.enqueue(2, lambda t: t.replace("Line 9", "Line nine"))

    listed = run(tiny, "review", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["status"], r["cluster"], r["fixed"]) for r in rows] == [
        ("p-0001", "pending", "prompt-tone-1", 1), ("p-0002", "pending", "prompt-tone-1", 1)]
    text = run(tiny, "review", "list")
    assert text.exit_code == 0 and "p-0002" in text.stdout and "kinder wording 2" in text.stdout
    assert json.loads(run(tiny, "review", "list", "--status", "merged", "--json").stdout) == []

    shown = run(tiny, "review", "show", pid, "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["diff"] == diff and data["verdict"]["candidate_tree"] == verdict.candidate_tree
    assert data["lineage"]["trace_ids"] == ["t001", "t002", "t003", "t004"]
    assert [e["action"] for e in data["audit"]] == ["enqueue"]

    page = run(tiny, "review", "show", pid)
    assert page.exit_code == 0, page.output
    out = page.stdout
    for expected in ("proposal p-0001", "+Line three (v1) of the system prompt.", "-Line 3 of the system prompt.",
                     "held-out slice", "the slice score rose from 0.00 to 0.67", "1 fixed", "t002",
                     "Use HelpPoint to reset it.", "I don't know.", "How do I reset password 2?",
                     "scripted/optimizer", "users asked twice", "enqueue"):
        assert expected in out, expected
    for header in ("section", "check", "value", "threshold", "margin", "passed", "reason"):
        assert header in out


def test_approve_and_reject_exit_codes_and_json(tiny) -> None:
    first, _, verdict = tiny.enqueue(1)
    second, _, _ = tiny.enqueue(2, lambda t: t.replace("Line 9", "Line nine"))

    approved = run(tiny, "approve", first, "--by", "alice", "--note", "good", "--json")
    assert approved.exit_code == 0, approved.output
    result = json.loads(approved.stdout)
    assert result["ok"] and result["merged_commit"] == verdict.candidate_commit
    assert result["merged_tree"] == verdict.candidate_tree and result["feedback"]["added"] == 3

    # p-0002 was validated on the old base: the branch moved (the merge and its cases).
    refused = run(tiny, "approve", second, "--by", "alice")
    assert refused.exit_code == 1
    assert "refused:" in refused.stderr and "branch main moved since p-0002 was validated" in refused.stderr
    refused_json = run(tiny, "approve", second, "--by", "alice", "--json")
    assert refused_json.exit_code == 1
    assert json.loads(refused_json.stdout)["error"].startswith("branch main moved since p-0002")

    rejected = run(tiny, "reject", second, "--by", "bob", "--reason", "stale", "--json")
    assert rejected.exit_code == 0, rejected.output
    assert json.loads(rejected.stdout)["status"] == "rejected"
    again = run(tiny, "reject", second, "--by", "bob", "--reason", "stale")
    assert again.exit_code == 1 and "only a pending proposal can be rejected" in again.stderr

    shown = json.loads(run(tiny, "review", "show", second, "--json").stdout)
    assert [(e["action"], e["actor"]) for e in shown["audit"]] == [
        ("enqueue", "autofix"), ("approve_refused", "alice"), ("approve_refused", "alice"), ("reject", "bob"),
        ("reject_refused", "bob")]


def test_bad_input_exits_2(tiny, tmp_path) -> None:
    pid, _, _ = tiny.enqueue(1)
    unknown = run(tiny, "approve", "p-0042", "--by", "alice")
    assert unknown.exit_code == 2 and "no proposal 'p-0042'" in unknown.stderr
    assert run(tiny, "review", "show", "p-0042").exit_code == 2
    assert run(tiny, "approve", pid, "--by", " ").exit_code == 2
    assert run(tiny, "reject", pid, "--by", "bob").exit_code == 2  # no --reason
    assert run(tiny, "reject", pid, "--by", "bob", "--reason", "").exit_code == 2
    assert run(tiny, "review", "list", "--status", "done").exit_code == 2
    missing = runner.invoke(app, ["review", "list", "-c", str(tmp_path / "nowhere" / "autofix.yaml")])
    assert missing.exit_code == 2
    with tiny.store() as store:
        assert store.get(pid).status == "pending"
