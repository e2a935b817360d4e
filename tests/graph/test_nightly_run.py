"""The nightly run end to end on a model-free target: the loop's result, a kill at every node boundary
then `autofix resume` (same proposals, nothing left twice), the lock, and a second run on the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autofix.config import load_config

from .toy import git, make_target

NODES = ["triage", "plan", "optimize", "gate_dispatch", "gate", "enqueue", "report"]


def autofix(*args: str, fault: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("AUTOFIX_FAULT_AT", None)
    if fault:
        env["AUTOFIX_FAULT_AT"] = fault
    return subprocess.run([sys.executable, "-m", "autofix", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def outcome(data: dict) -> dict:
    """What must be the same however the run got there: run-id-free candidate names, diffs' effect, verdicts."""
    return {"candidates": sorted((c["id"], c["gate"]["passed"]) for c in data["candidates"]),
            "proposals": len(data["proposals"]),
            "clusters": sorted(c["id"] for c in data["clusters"])}


def leftovers(root: Path, run_id: str) -> dict:
    worktrees = [l for l in git(root, "worktree", "list", "--porcelain").splitlines() if l.startswith("worktree ")]
    branches = sorted(b.strip("* ") for b in git(root, "branch", "--list", f"autofix/{run_id}/*").splitlines())
    import sqlite3

    db = root / "runs" / "approval.sqlite3"
    with sqlite3.connect(db) as conn:
        queued = conn.execute('SELECT "commit" FROM proposals').fetchall() if db.exists() else []
    return {"worktrees": len(worktrees), "branches": branches, "queued": len(queued),
            "distinct_queued": len(set(queued))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One uninterrupted run."""
    root = make_target(tmp_path_factory.mktemp("ref"))
    done = autofix("run", "-c", str(root / "autofix.yaml"), "--sandbox", "local", "--run-id", "run-ref", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_loop_finds_fixes_gates_them_and_queues_the_passing_ones(reference) -> None:
    assert sorted(c["category"] for c in reference["clusters"]) == ["missing_capability", "retrieval"]
    assert reference["candidates"] and all(c["gate"]["passed"] for c in reference["candidates"])
    assert all(c["optimizer"].endswith("retrieval_search") for c in reference["candidates"])
    assert len(reference["proposals"]) == len(reference["candidates"])
    report = Path(reference["report"]["html"]).read_text()
    assert "missing_capability" in report and "product" in report  # the owned finding, with its owner
    assert "PASSED" in report and "top_k" in report  # the verdict and the diff


@pytest.mark.parametrize("node", NODES)
def test_a_run_killed_at_any_node_resumes_to_the_same_proposals_without_leftovers(node, reference, tmp_path) -> None:
    root = make_target(tmp_path)
    config = str(root / "autofix.yaml")
    killed = autofix("run", "-c", config, "--sandbox", "local", "--run-id", "run-ref", "--json", fault=node)
    assert killed.returncode == -9, (node, killed.returncode, killed.stderr[-2000:])
    resumed = autofix("resume", "run-ref", "-c", config, "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    data = json.loads(resumed.stdout)
    assert outcome(data) == outcome(reference)
    left = leftovers(root, "run-ref")
    assert left["worktrees"] == 1  # the main checkout only
    assert left["branches"] == sorted(c["branch"] for c in data["candidates"])
    assert left["queued"] == left["distinct_queued"] == len(data["proposals"])


def test_a_second_run_on_the_same_target_waits_or_says_who_holds_it(tmp_path) -> None:
    from autofix.graph import RunLock, RunLocked

    root = make_target(tmp_path)
    config = load_config(root / "autofix.yaml")
    with RunLock(config, "run-first"):
        busy = autofix("run", "-c", str(root / "autofix.yaml"), "--sandbox", "local")
        assert busy.returncode == 75
        assert "run run-first" in busy.stderr and "is running on this target" in busy.stderr
        with pytest.raises(RunLocked):
            RunLock(config, "run-second").acquire(wait_s=1.5)


def test_resume_of_an_unknown_run_is_an_input_error(tmp_path) -> None:
    root = make_target(tmp_path)
    out = autofix("resume", "run-nope", "-c", str(root / "autofix.yaml"))
    assert out.returncode == 2 and "no run 'run-nope'" in out.stderr


def test_two_nights_keep_the_mechanisms_cluster_ids_and_the_report_shows_the_change(tmp_path) -> None:
    from autofix.graph import RunOptions, start_run

    from .toy import TOPICS, write_traces

    root = make_target(tmp_path, topics=TOPICS[:16], actions=3)
    config = load_config(root / "autofix.yaml")
    first = start_run(config, RunOptions(sandbox_kind="local")).to_json()
    write_traces(root, TOPICS[16:], 3, day=21, start=100)  # the next day's traces: more of the same failures
    git(root, "commit", "-q", "-am", "traces of the next day")
    second = start_run(config, RunOptions(sandbox_kind="local")).to_json()
    ids = lambda run: {c["category"]: (c["id"], c["size"], c["trend"]) for c in run["clusters"]}  # noqa: E731
    one, two = ids(first), ids(second)
    assert one["retrieval"][0] == two["retrieval"][0] and one["missing_capability"][0] == two["missing_capability"][0]
    assert (one["retrieval"][1], two["retrieval"][1]) == (16, 24) and two["retrieval"][2] == "growing"
    assert one["retrieval"][2] == "new"
    report = Path(second["report"]["md"]).read_text()
    assert "growing" in report and "16" in report and "24" in report


def test_a_resumed_run_counts_the_time_it_worked_not_the_hours_it_lay_killed(tmp_path, monkeypatch) -> None:
    import time

    from autofix.graph import nodes, resume_run, run

    root = make_target(tmp_path)
    config = str(root / "autofix.yaml")
    killed = autofix("run", "-c", config, "--sandbox", "local", "--run-id", "run-night", "--max-wall-s", "3600",
                     "--json", fault="gate")
    assert killed.returncode == -9, killed.stderr[-2000:]
    later = lambda: time.time() + 2 * 3600  # noqa: E731 - resumed the next morning, two hours past the budget
    monkeypatch.setattr(nodes, "wall_clock", later)
    monkeypatch.setattr(run, "wall_clock", later)
    data = resume_run(load_config(root / "autofix.yaml"), "run-night").to_json()
    assert data["candidates"]
    assert all(c["gate"]["passed"] for c in data["candidates"]), [c["gate"]["reasons"] for c in data["candidates"]]


def test_parallel_gates_find_their_base_replayed_once_in_the_cache(tmp_path) -> None:
    from autofix.graph import RunOptions, start_run

    root = make_target(tmp_path)
    config = load_config(root / "autofix.yaml")
    data = start_run(config, RunOptions(sandbox_kind="local")).to_json()
    assert len(data["candidates"]) >= 2  # gated in parallel
    base = git(root, "rev-parse", "HEAD")
    replays = [json.loads(p.read_text()) for p in (root / "runs" / "replays").glob("*/replay.json")]
    for dataset in ("regression", "slice:retrieval-unknown-misses-request:holdout"):
        of_base = [r for r in replays if r["commit"] == base and r["dataset"] == dataset]
        # the base replayed once ahead of the gates; each gate then found every case in the cache
        assert sorted(r["cache_hits"] == r["cases"] for r in of_base) == [False] + [True] * len(data["candidates"])
