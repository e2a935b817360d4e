"""`autofix demo` as a user runs it: a real process, the bundled example, the embedded model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autofix.demo import bundled_example


def test_bundled_example_config_is_valid():
    done = subprocess.run([sys.executable, "-m", "autofix", "config", "validate", "-c", str(bundled_example())],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "is valid" in done.stdout + done.stderr


@pytest.mark.model
def test_demo_triages_the_traces_then_replays_and_scores_the_regression_set():
    done = subprocess.run([sys.executable, "-m", "autofix", "demo", "--limit", "4", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["cases"] == 4 and summary["failed_cases"] == 0
    assert {"answer_correct", "retrieval_recall"} <= set(summary["metrics"])
    assert summary["tokens"] > 0 and summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"] > 0
    run_dir = Path(summary["run_dir"])
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("answer_correct" in row["checks"] for row in rows)
    traces = (bundled_example().parent / "data" / "traces.jsonl").read_text().splitlines()
    triage = summary["triage"]
    assert triage["traces"] == len(traces) and triage["failures"] > 0 and triage["quarantined"] == 0
    assert len(triage["clusters"]) == 10  # the top ten in the JSON
    assert {"retrieval", "routing", "prompt", "tool_arguments"} <= {c["category"] for c in triage["clusters"]}
    assert all(c["owner"].startswith(("optimizer:", "team:")) and c["rationale"] for c in triage["clusters"])
    assert Path(triage["report"]).is_file()


@pytest.mark.model
def test_demo_on_a_terminal_shows_the_clusters_and_the_scores():
    done = subprocess.run([sys.executable, "-m", "autofix", "demo", "--limit", "4"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    n = len((bundled_example().parent / "data" / "traces.jsonl").read_text().splitlines())
    assert f"{n} traces" in out and "clusters" in out and "optimizer:" in out
    assert "(4 cases)" in out and "answer_correct" in out
    assert "more clusters (autofix triage -c" in out
