"""The approval queue with the real gate (real git, real replays in the local sandbox, no model): a validated fix is
queued, the branch moves, approving is refused, and `--revalidate` gates the re-applied change and merges it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from autofix.approval import Lineage, open_store
from autofix.cli import app
from autofix.config import load_config
from autofix.gate.runner import run_gate
from autofix.worktrees import WorktreeManager

CONFIG = """\
project: gatetoy
replay:
  command: python replay.py --cases {cases} --out {out}
  sandbox: local
  timeout_s: 60
surfaces:
  code: [behaviour.json]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
policy: gate.yaml
"""

POLICY = """\
target: {metric: slice, min_improvement: 0.10, max_p_value: 0.05, min_cases: 5}
regression: {margin: 0.05, confidence: 0.95, metrics: [answer_correct]}
guardrails: {latency_p95_ratio: 1.25, cost_ratio: 1.25, tokens_ratio: 1.25, tool_calls_ratio: 1.5}
"""

# The assistant searches (a routing failure's measure) only where behaviour.json says so.
REPLAY = """\
import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("--cases"); parser.add_argument("--out")
args = parser.parse_args()
b = json.load(open("behaviour.json"))
with open(args.out, "w") as out:
    for line in open(args.cases):
        case = json.loads(line)
        spans = [{"kind": "retrieval", "name": "search", "input": case["input"], "output": [{"doc_id": "d1", "score": 1}]}]
        out.write(json.dumps({"case_id": case["case_id"], "output": "ok-" + case["input"],
                              "spans": spans if b["search_all"] else [], "error": None, "latency_ms": 10.0}) + "\\n")
"""

TRACES = [f"t{i:02d}" for i in range(24)]


def build(root: Path, git) -> None:
    (root / "data").mkdir(parents=True)
    files = {"autofix.yaml": CONFIG, "gate.yaml": POLICY, "replay.py": REPLAY, ".gitignore": "runs/\n",
             "behaviour.json": json.dumps({"search_all": False}) + "\n"}
    for rel, text in files.items():
        (root / rel).write_text(text)
    (root / "data" / "traces.jsonl").write_text("".join(
        json.dumps({"trace_id": t, "timestamp": "2026-11-20T10:00:00Z", "input": f"q-{t}", "output": "from memory",
                    "feedback": [{"kind": "thumb_down"}]}) + "\n" for t in TRACES))
    (root / "data" / "regression.jsonl").write_text("".join(
        json.dumps({"case_id": f"r{i:02d}", "input": f"r{i:02d}", "expected": {"must_include": [f"ok-r{i:02d}"]}})
        + "\n" for i in range(20)))
    (root / "runs" / "triage").mkdir(parents=True)
    (root / "runs" / "triage" / "latest.json").write_text(json.dumps({
        "clusters": [{"id": "routing-1", "category": "routing", "trace_ids": TRACES}],
        "sources": ["data/traces.jsonl"]}))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "toy assistant")


def test_a_gated_fix_is_refused_on_a_moved_branch_and_merged_after_revalidation(tmp_path) -> None:
    root = tmp_path / "toy"
    build(root, git)
    config = load_config(root / "autofix.yaml")
    manager = WorktreeManager.from_config(config, "run-1")
    base = manager.pin_base("HEAD")
    cand = manager.create("routing-1", 1)
    (cand.target_path / "behaviour.json").write_text(json.dumps({"search_all": True}) + "\n")
    commit = manager.commit(cand, optimizer="scripted", description="search before answering",
                            allowed_globs=config.surface_globs()).sha
    diff = manager.diff(cand).patch
    manager.remove(cand, delete_branch=False)

    verdict = run_gate(config, cand.branch, base=base, cluster="routing-1", sandbox_kind="local")
    assert verdict.passed, verdict.reasons
    with open_store(config) as store:
        pid = store.enqueue(verdict, diff, Lineage(trace_ids=TRACES, cluster="routing-1", optimizer="scripted",
                                                   branch=cand.branch, run_id="run-1"))

    (root / "README.md").write_text("a colleague's change\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "main moves on")
    moved = git(root, "rev-parse", "HEAD")
    c = ["-c", str(root / "autofix.yaml")]
    refused = runner.invoke(app, ["approve", pid, "--by", "alice", *c])
    assert refused.exit_code == 1 and "branch main moved since p-0001 was validated" in refused.stderr

    approved = runner.invoke(app, ["approve", pid, "--by", "alice", "--revalidate", "--sandbox", "local", "--json", *c])
    assert approved.exit_code == 0, approved.output
    result = json.loads(approved.stdout)
    assert result["revalidated"] and result["merged_commit"] != commit
    with open_store(config) as store:
        record = store.get(pid)
    again = record.revalidated_verdict
    assert again.passed and again.base_commit == moved and again.candidate_commit == result["merged_commit"]
    assert again.candidate_tree == result["merged_tree"]
    assert git(root, "rev-parse", f"{result['merged_commit']}^") == moved
    assert json.loads(git(root, "show", f"{result['merged_commit']}:behaviour.json")) == {"search_all": True}
    # The cluster's 24 failures now guard the fix in the regression set.
    assert result["feedback"]["added"] == 24 and git(root, "rev-parse", "HEAD") == result["feedback"]["commit"]
    assert len((root / "data" / "regression.jsonl").read_text().splitlines()) == 44
    assert [e.action for e in store_log(config, pid)] == [
        "enqueue", "approve_refused", "revalidate", "approve", "merge", "feedback"]


runner = CliRunner()


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def store_log(config, pid: str) -> list:
    with open_store(config) as store:
        return store.audit_log(pid)
