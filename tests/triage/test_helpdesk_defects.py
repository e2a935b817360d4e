"""`autofix triage` on the bundled helpdesk's production traces: every planted defect of DEFECTS.md comes out
as a cluster of its category among the top six, with a rationale that names a span of the defect's traces.

Which traces exercise which defect comes from the example's gold file, data/traces_gold.jsonl (its `defects`:
every planted defect a trace exercises, found from the question asked and what the assistant did), which only
this test reads: nothing that triage reads (comments, metadata, spans) decides what a defect's traces are.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HELPDESK = Path(__file__).resolve().parents[2] / "examples" / "helpdesk"
TOP = 6
# The planted defects of DEFECTS.md and their root-cause categories.
DEFECT_CATEGORY = {
    "retrieval_split": "retrieval",
    "routing_time_relative": "routing",
    "tool_date_format": "tool_arguments",
    "prompt_no_sources": "prompt",
    "data_freshness": "data_freshness",
    "missing_capability": "missing_capability",
}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def traces_of(defect: str) -> set[str]:
    """The trace ids that exercise a planted defect, from the gold file."""
    return {g["trace_id"] for g in read_jsonl(HELPDESK / "data" / "traces_gold.jsonl") if defect in g.get("defects", [])}


@pytest.fixture(scope="module")
def triaged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    target = tmp_path_factory.mktemp("triage") / "helpdesk"
    shutil.copytree(HELPDESK, target, ignore=shutil.ignore_patterns("runs", "__pycache__", ".pytest_cache"))
    done = subprocess.run([sys.executable, "-m", "autofix", "triage", "-c", str(target / "autofix.yaml"), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_gold_file_names_every_planted_defect() -> None:
    for defect in DEFECT_CATEGORY:
        assert traces_of(defect), f"no trace of the example exercises {defect}"


@pytest.mark.parametrize("defect", list(DEFECT_CATEGORY))
def test_each_planted_defect_is_a_top_cluster_of_its_category(triaged: dict, defect: str) -> None:
    category, mine = DEFECT_CATEGORY[defect], traces_of(defect)
    clusters = sorted(triaged["clusters"], key=lambda c: c.get("rank", 0))  # best first
    ranked = [c for c in clusters if c["category"] == category and set(c["trace_ids"]) & mine]
    shown = ", ".join(f"{c['id']} ({c['category']}, {len(set(c['trace_ids']) & mine)} of {c['size']} of the defect)"
                      for c in clusters[:TOP])
    assert ranked, f"no {category} cluster holds a trace of {defect} ({len(mine)} traces); the top {TOP}: {shown}"
    best = ranked[0]
    position = clusters.index(best) + 1
    assert position <= TOP, f"the best {category} cluster of {defect} is #{position} ({best['id']}); the top {TOP}: {shown}"
    # The rationale a reviewer reads points at a span (<trace id>:<n>) of one of the defect's traces in the cluster.
    spans = {tid for tid in set(best["trace_ids"]) & mine if re.search(rf"{re.escape(tid)}:\d+", best["rationale"])}
    assert spans, f"the rationale of {best['id']} names no span of a {defect} trace: {best['rationale'][:500]}"


def test_the_report_counts_what_it_read(triaged: dict) -> None:
    traces = read_jsonl(HELPDESK / "data" / "traces.jsonl")
    assert triaged["traces"] == len(traces) and triaged["quarantined"] == 0
    assert sum(c["size"] for c in triaged["clusters"]) == triaged["failures"]
    assert all(c["owner"].startswith(("optimizer:", "team:")) for c in triaged["clusters"])
