"""`autofix triage` on the bundled helpdesk's production traces: every planted defect of DEFECTS.md comes out
as a cluster of its category holding the defect's traces, with a rationale that names a span of a member, among
the top six for the optimizer-fixable ones (the owned data_freshness and missing_capability are not there yet: NOT_YET_TOP).

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


def best_cluster(triaged: dict, defect: str) -> tuple[int, dict | None, str]:
    """(rank, cluster) of the best cluster of the defect's category holding its traces, and the top clusters shown."""
    category, mine = DEFECT_CATEGORY[defect], traces_of(defect)
    clusters = sorted(triaged["clusters"], key=lambda c: c.get("rank", 0))  # best first
    ranked = [c for c in clusters if c["category"] == category and set(c["trace_ids"]) & mine]
    shown = ", ".join(f"{c['id']} ({c['category']}, {len(set(c['trace_ids']) & mine)} of {c['size']} of the defect)"
                      for c in clusters[:TOP])
    if not ranked:
        return 0, None, shown
    return clusters.index(ranked[0]) + 1, ranked[0], shown


@pytest.mark.parametrize("defect", list(DEFECT_CATEGORY))
def test_each_planted_defect_is_a_cluster_of_its_category_whose_rationale_names_its_span(triaged: dict, defect: str) -> None:
    _, best, shown = best_cluster(triaged, defect)
    mine = traces_of(defect)
    assert best is not None, f"no {DEFECT_CATEGORY[defect]} cluster holds a trace of {defect} ({len(mine)} traces); top: {shown}"
    # The rationale a reviewer reads points at a span (<trace id>:<n>) of a member of the cluster (its most telling
    # member, which may be a failure of the same mechanism that the gold file does not tag with this defect).
    spans = {tid for tid in best["trace_ids"] if re.search(rf"{re.escape(tid)}:\d+", best["rationale"])}
    assert spans, f"the rationale of {best['id']} names no span of its members: {best['rationale'][:500]}"


# Not met yet (issue 8's target: every defect among the top six). Measured on the regenerated traces, rules only:
# the data_freshness cluster ranks #8 and the missing_capability one #11: only 24 of 73 and 12 of 39 of their
# traces carry a failure signal at all (users react to a quarter of the wrong answers), owned categories rank with
# fixability 0.3 and 0.2, and bare commands ("Book meeting room X") are not action requests by the neutral
# vocabulary. strict: the day they pass, this marker must go.
NOT_YET_TOP = {"data_freshness", "missing_capability"}


@pytest.mark.parametrize("defect", [
    pytest.param(d, marks=pytest.mark.xfail(strict=True, reason="ranks below the top six; see NOT_YET_TOP"))
    if d in NOT_YET_TOP else d
    for d in DEFECT_CATEGORY
])
def test_each_planted_defect_is_a_top_cluster_of_its_category(triaged: dict, defect: str) -> None:
    position, best, shown = best_cluster(triaged, defect)
    assert best is not None and position <= TOP, (
        f"the best {DEFECT_CATEGORY[defect]} cluster of {defect} is #{position}; the top {TOP}: {shown}")


def test_the_report_counts_what_it_read(triaged: dict) -> None:
    traces = read_jsonl(HELPDESK / "data" / "traces.jsonl")
    assert triaged["traces"] == len(traces) and triaged["quarantined"] == 0
    assert sum(c["size"] for c in triaged["clusters"]) == triaged["failures"]
    assert all(c["owner"].startswith(("optimizer:", "team:")) for c in triaged["clusters"])
