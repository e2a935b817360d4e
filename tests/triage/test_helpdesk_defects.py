"""`autofix triage` on the bundled helpdesk's production traces: every planted defect of DEFECTS.md is a
cluster of its category among the top ten, with a rationale that points at spans of its traces.

Which trace shows which defect comes from the example's measuring files (data/traces_gold.jsonl, the
questions' task types, the users' questions about sources); autofix itself never reads them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HELPDESK = Path(__file__).resolve().parents[2] / "examples" / "helpdesk"
SOURCE_QUESTIONS = ("where is this from", "cite the source", "which document says")
TOP = 10


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def planted(data: Path) -> dict[str, set[str]]:
    """Trace ids per root-cause category of a planted defect."""
    questions = {q["qid"]: q for p in data.glob("questions_*.jsonl") for q in read_jsonl(p)}
    traces = {t["trace_id"]: t for t in read_jsonl(data / "traces.jsonl")}
    category = {"retrieval_split": "retrieval", "routing_time_relative": "routing",
                "tool_date_format": "tool_arguments", "data_freshness": "data_freshness"}
    by_category: dict[str, set[str]] = {c: set() for c in [*category.values(), "missing_capability", "prompt"]}
    for gold in read_jsonl(data / "traces_gold.jsonl"):
        tid = gold["trace_id"]
        comments = " ".join((f.get("comment") or "").lower() for f in traces[tid]["feedback"])
        if gold.get("defect") in category:
            by_category[category[gold["defect"]]].add(tid)
        elif questions.get(gold["qid"], {}).get("task_type") == "missing_capability":
            by_category["missing_capability"].add(tid)
        elif any(s in comments for s in SOURCE_QUESTIONS):
            by_category["prompt"].add(tid)
    return by_category


@pytest.fixture(scope="module")
def triaged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    target = tmp_path_factory.mktemp("triage") / "helpdesk"
    shutil.copytree(HELPDESK, target, ignore=shutil.ignore_patterns("runs", "__pycache__", ".pytest_cache"))
    done = subprocess.run([sys.executable, "-m", "autofix", "triage", "-c", str(target / "autofix.yaml"), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("category", ["retrieval", "routing", "tool_arguments", "data_freshness",
                                      "missing_capability", "prompt"])
def test_each_planted_defect_is_a_top_cluster_of_its_category(triaged: dict, category: str) -> None:
    defect_traces = planted(HELPDESK / "data")[category]
    assert defect_traces, f"the example has no trace of the {category} defect"
    top = triaged["clusters"][:TOP]
    mine = [c for c in top if c["category"] == category and set(c["trace_ids"]) & defect_traces]
    assert mine, f"no {category} cluster of the defect's traces among the top {TOP}: " + \
        ", ".join(f"{c['id']} ({c['category']})" for c in top)
    best = mine[0]
    # The rationale a reviewer reads names a span of one of the cluster's traces.
    assert any(f"{tid}:" in best["rationale"] for tid in best["trace_ids"]) or category == "missing_capability"


def test_the_report_counts_what_it_read(triaged: dict) -> None:
    traces = read_jsonl(HELPDESK / "data" / "traces.jsonl")
    assert triaged["traces"] == len(traces) and triaged["quarantined"] == 0
    assert sum(c["size"] for c in triaged["clusters"]) == triaged["failures"]
    assert all(c["owner"].startswith(("optimizer:", "team:")) for c in triaged["clusters"])
