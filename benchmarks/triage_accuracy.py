"""Triage accuracy on the helpdesk example: does every planted defect come out as a cluster of its category?

    .venv/bin/python benchmarks/triage_accuracy.py [--config examples/helpdesk/autofix.yaml] [--llm]

Runs `run_triage` on the target's production traces (rules only unless --llm; nothing is written
to the target's state folder), then reads ``data/traces_gold.jsonl``, which links each trace to
its base question and planted defect (autofix itself never reads it), and prints per defect of
DEFECTS.md:

- traces: the traces that exercise the defect; failed: those whose answer was wrong (gold);
- detected: of those, how many triage found failed;
- right: how many of the detected were diagnosed with the defect's category;
- best cluster: the rank (1 = top) of the best-ranked cluster of that category holding
  traces of the defect, with its size and how many of its members are of the defect.

Defects and how their traces are known: ``retrieval_split`` -> retrieval, ``routing_time_relative``
-> routing, ``tool_date_format`` -> tool_arguments, ``data_freshness`` -> data_freshness (the gold
``defect`` label); the questions of task type ``missing_capability`` -> missing_capability; and the
prompt defect (answers never name their source), which has no per-question label: the traces whose
user asked where the answer comes from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from autofix.config import load_config  # noqa: E402
from autofix.triage.pipeline import default_classifier, run_triage  # noqa: E402

DEFECT_CATEGORY = {
    "retrieval_split": "retrieval",
    "routing_time_relative": "routing",
    "tool_date_format": "tool_arguments",
    "data_freshness": "data_freshness",
    "missing_capability": "missing_capability",
    "prompt_no_sources": "prompt",
}
SOURCE_COMPLAINT = re.compile(r"where is this from|cite the source|which document says", re.I)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", type=Path, default=ROOT / "examples" / "helpdesk" / "autofix.yaml")
    parser.add_argument("--llm", action="store_true", help="ask the LLM classifier about what no rule explains")
    parser.add_argument("--top", type=int, default=15, help="how many top clusters to list")
    args = parser.parse_args()

    cfg = load_config(args.config)
    data = cfg.root / "data"
    gold = {g["trace_id"]: g for g in read_jsonl(data / "traces_gold.jsonl")}
    questions = {q["qid"]: q for p in sorted(data.glob("questions_*.jsonl")) for q in read_jsonl(p)}
    traces = {t["trace_id"]: t for t in read_jsonl(cfg.dataset_path("traces"))}

    defect_of: dict[str, str] = {}
    for tid, g in gold.items():
        q = questions.get(g["qid"], {})
        comments = " ".join(f.get("comment") or "" for f in traces.get(tid, {}).get("feedback", []))
        if g.get("defect") in DEFECT_CATEGORY:
            defect_of[tid] = g["defect"]
        elif q.get("task_type") == "missing_capability":
            defect_of[tid] = "missing_capability"
        elif SOURCE_COMPLAINT.search(comments):
            defect_of[tid] = "prompt_no_sources"

    classifier = default_classifier(cfg) if args.llm else None
    report = run_triage(cfg, classifier=classifier, write=False)
    diag = {f.trace_id: (d, cluster) for f, d, cluster in report.failure_list()}
    clusters = {c.id: c for c in report.clusters}

    print(f"{report.traces} traces, {report.failures} failures, {report.quarantined} quarantined, {len(report.clusters)} clusters")
    print(f"gold: {sum(not g['correct'] for g in gold.values())} wrong answers; by category: {report.by_category}")
    print()
    print(f"{'defect':<24}{'category':<20}{'traces':>7}{'failed':>8}{'detected':>10}{'right':>7}   best cluster of the category")
    worst_rank = 0
    for defect, category in DEFECT_CATEGORY.items():
        tids = [t for t, d in defect_of.items() if d == defect]
        failed = [t for t in tids if not gold[t]["correct"]] if defect != "prompt_no_sources" else tids
        detected = [t for t in tids if t in diag]
        right = [t for t in detected if diag[t][0].category.value == category]
        ranked = sorted(
            (c for c in report.clusters if c.category.value == category and set(c.trace_ids) & set(tids)),
            key=lambda c: c.rank,
        )
        if ranked:
            best = ranked[0]
            mine = len(set(best.trace_ids) & set(tids))
            where = f"#{best.rank} {best.id} (size {best.size}, {mine} of the defect, score {best.score:.2f})"
            worst_rank = max(worst_rank, best.rank)
        else:
            where = "none"
            worst_rank = 10**6
        print(f"{defect:<24}{category:<20}{len(tids):>7}{len(failed):>8}{len(detected):>10}{len(right):>7}   {where}")

    wrong = Counter()
    for tid, defect in defect_of.items():
        if tid in diag and diag[tid][0].category.value != DEFECT_CATEGORY[defect]:
            wrong[(defect, diag[tid][0].category.value, diag[tid][0].rule or diag[tid][0].method)] += 1
    if wrong:
        print("\nmisdiagnosed (defect -> category, rule):")
        for (defect, cat, rule), n in wrong.most_common():
            print(f"  {n:>4}  {defect} -> {cat} ({rule})")
    other = Counter(
        (diag[t][0].category.value, diag[t][0].rule or diag[t][0].method) for t in diag if t not in defect_of
    )
    if other:
        print("\nfailures of traces with no planted defect (category, rule):")
        for (cat, rule), n in other.most_common():
            print(f"  {n:>4}  {cat} ({rule})")

    print(f"\ntop {args.top} clusters:")
    defects_in = defaultdict(Counter)
    for tid, defect in defect_of.items():
        if tid in diag and diag[tid][1]:
            defects_in[diag[tid][1]][defect] += 1
    for c in report.clusters[: args.top]:
        mix = ", ".join(f"{d} {n}" for d, n in defects_in[c.id].most_common()) or "no planted defect"
        print(f"  #{c.rank:<3} {c.category.value:<19} size {c.size:>3}  prio {c.priority:.2f}  score {c.score:6.2f}  "
              f"{c.owner:<22} {c.id}  [{mix}]")
        print(f"       {c.rationale[:150]}")
    print(f"\nevery planted defect has a cluster of its category; the worst of their best ranks: #{worst_rank}")
    _ = clusters
    return 0


if __name__ == "__main__":
    sys.exit(main())
