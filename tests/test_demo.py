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
def test_demo_runs_the_loop_on_a_fresh_copy_of_the_example_and_reports_it(tmp_path):
    """A small demo (one optimizer job): the example is copied into a repository of its own, the loop runs
    through triage, an optimizer, the gate and the queue, and the report names the owned findings."""
    done = subprocess.run([sys.executable, "-m", "autofix", "demo", "--into", str(tmp_path), "--max-jobs", "1",
                           "--max-metric-calls", "21", "--sandbox", "local", "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    target = Path(data["target"])
    assert target.parent.parent == tmp_path and (target / ".git").is_dir()
    assert not (bundled_example().parent / "runs" / data["run_id"]).exists()  # the bundled example is untouched
    categories = {c["category"] for c in data["clusters"]}
    assert {"retrieval", "routing", "prompt", "tool_arguments"} <= categories
    owned = [c for c in data["clusters"] if not c["fixable"]]
    assert owned and all(c["owner"].startswith("team:") for c in owned)
    assert any("not reached" in x["reason"] for x in data["skipped"])  # --max-jobs 1 leaves the others, said so
    for candidate in data["candidates"]:
        assert candidate["gate"]["passed"] or candidate["gate"]["reasons"]
    run_dir = target / "runs" / data["run_id"]
    assert (run_dir / "checkpoint.sqlite3").is_file() and (run_dir / "triage" / "report.json").is_file()
    report = Path(data["report"]["html"]).read_text()
    assert report.startswith("<!doctype html>") and "Owned findings" in report and "knowledge-base" in report
