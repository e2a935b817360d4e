"""Triage accuracy against per-trace labels made by reading the traces, rules only.

    .venv/bin/python benchmarks/triage_accuracy.py                      # the helpdesk example
    .venv/bin/python benchmarks/triage_accuracy.py --source tau_bench   # tau-bench airline trajectories

For each labelled failure (`{"trace_id", "category", "visible", "why"}`, labels written by a person
reading the trace, independently of the rules) it compares triage's primary category with the label
and prints:

- detection: how many labelled failures triage found failed at all;
- agreement on the failures whose cause is visible in the spans (primary category == label), and on
  the invisible ones how many triage left ``unclassified`` (the right answer) and how many it guessed;
- per-category precision and recall (over the labelled failures) and the confusion matrix
  (rows: label, columns: triage);
- for the helpdesk, also the rank of each planted defect's best cluster of its category (the gold
  file ``data/traces_gold.jsonl`` links traces to defects; autofix never reads it).

Nothing is written to the target's state folder. ``--llm`` adds the LLM classifier (``model.judge``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from autofix.config import load_config  # noqa: E402
from autofix.traces import ingest  # noqa: E402
from autofix.triage import DetectionSettings, TriageReport, triage_traces  # noqa: E402
from autofix.triage.pipeline import default_classifier, run_triage  # noqa: E402

SOURCES = {
    "helpdesk": {"config": ROOT / "examples/helpdesk/autofix.yaml",
                 "labels": ROOT / "examples/helpdesk/data/triage_labels.jsonl",
                 "gold": ROOT / "examples/helpdesk/data/traces_gold.jsonl"},
    "tau_bench": {"traces": ROOT / "benchmarks/data/tau_bench/traces.jsonl",
                  "labels": ROOT / "benchmarks/data/tau_bench/labels.jsonl"},
}
DEFECT_CATEGORY = {
    "retrieval_split": "retrieval",
    "routing_time_relative": "routing",
    "tool_date_format": "tool_arguments",
    "data_freshness": "data_freshness",
    "missing_capability": "missing_capability",
    "prompt_no_sources": "prompt",
}
UNCLASSIFIED = "unclassified"
NOT_DETECTED = "(not detected)"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def triage(source: dict, use_llm: bool) -> TriageReport:
    if "config" in source:
        cfg = load_config(source["config"])
        return run_triage(cfg, classifier=default_classifier(cfg) if use_llm else None, write=False)
    return triage_traces(ingest([source["traces"]]), DetectionSettings())


def agreement(report: TriageReport, labels: list[dict]) -> None:
    diag = {f.trace_id: d for f, d, _ in report.failure_list()}
    pred = {lb["trace_id"]: (diag[lb["trace_id"]].category.value if lb["trace_id"] in diag else NOT_DETECTED)
            for lb in labels}
    visible = [lb for lb in labels if lb.get("visible", True) and lb["category"] != UNCLASSIFIED]
    hidden = [lb for lb in labels if lb not in visible]
    detected = sum(1 for lb in labels if pred[lb["trace_id"]] != NOT_DETECTED)
    agree = sum(1 for lb in visible if pred[lb["trace_id"]] == lb["category"])
    said_unclassified = sum(1 for lb in visible if pred[lb["trace_id"]] == UNCLASSIFIED)
    wrong = len(visible) - agree - said_unclassified - sum(1 for lb in visible if pred[lb["trace_id"]] == NOT_DETECTED)
    print(f"labelled failures: {len(labels)} (cause visible in the spans: {len(visible)}, not visible: {len(hidden)}); "
          f"detected by triage: {detected}")
    if visible:
        seen = sum(1 for lb in visible if pred[lb["trace_id"]] != NOT_DETECTED)
        print(f"visible causes: agreement {agree}/{len(visible)} = {agree / len(visible):.2f} "
              f"({agree}/{seen} = {agree / max(1, seen):.2f} of those triage detected); "
              f"left unclassified {said_unclassified}; a wrong category {wrong}")
    if hidden:
        honest = sum(1 for lb in hidden if pred[lb["trace_id"]] in (UNCLASSIFIED, NOT_DETECTED))
        print(f"invisible causes: left unclassified {honest}/{len(hidden)}, guessed a category {len(hidden) - honest}")

    cats = sorted({lb["category"] for lb in labels} | {p for p in pred.values()})
    print(f"\n{'category':<20}{'labels':>7}{'triage':>7}{'precision':>10}{'recall':>8}")
    for c in cats:
        if c == NOT_DETECTED:
            continue
        n_label = sum(1 for lb in labels if lb["category"] == c)
        n_pred = sum(1 for p in pred.values() if p == c)
        tp = sum(1 for lb in labels if lb["category"] == c and pred[lb["trace_id"]] == c)
        prec = f"{tp / n_pred:.2f}" if n_pred else "-"
        rec = f"{tp / n_label:.2f}" if n_label else "-"
        print(f"{c:<20}{n_label:>7}{n_pred:>7}{prec:>10}{rec:>8}")

    cols = [c for c in cats if any(p == c for p in pred.values())]
    short = {c: c[:8] for c in cols}
    print("\nconfusion (rows: label, columns: triage)")
    print(f"{'':<20}" + "".join(f"{short[c]:>9}" for c in cols))
    for r in sorted({lb["category"] for lb in labels}):
        row = Counter(pred[lb["trace_id"]] for lb in labels if lb["category"] == r)
        print(f"{r:<20}" + "".join(f"{row.get(c, 0) or '.':>9}" for c in cols))

    misses = Counter((lb["category"], pred[lb["trace_id"]], diag[lb["trace_id"]].rule if lb["trace_id"] in diag else None)
                     for lb in visible if pred[lb["trace_id"]] not in (lb["category"],))
    if misses:
        print("\ndisagreements on visible causes (label -> triage, rule):")
        for (lab, got, rule), n in misses.most_common(15):
            print(f"  {n:>4}  {lab} -> {got} ({rule})")


def defect_ranks(report: TriageReport, gold_path: Path, top: int) -> None:
    gold = {g["trace_id"]: g for g in read_jsonl(gold_path)}
    diag = {f.trace_id: (d, cluster) for f, d, cluster in report.failure_list()}
    print(f"\n{'defect':<24}{'category':<20}{'traces':>7}{'failed':>8}{'detected':>10}{'right':>7}   best cluster of the category")
    worst = 0
    for defect, category in DEFECT_CATEGORY.items():
        tids = [t for t, g in gold.items() if defect in (g.get("defects") or [g.get("defect")])]
        failed = [t for t in tids if not gold[t].get("correct", False)]
        detected = [t for t in tids if t in diag]
        right = [t for t in detected if diag[t][0].category.value == category]
        ranked = sorted((c for c in report.clusters if c.category.value == category and set(c.trace_ids) & set(tids)),
                        key=lambda c: c.rank)
        if ranked:
            best = ranked[0]
            where = f"#{best.rank} {best.id} (size {best.size}, {len(set(best.trace_ids) & set(tids))} of the defect)"
            worst = max(worst, best.rank)
        else:
            where, worst = "none", 10**6
        print(f"{defect:<24}{category:<20}{len(tids):>7}{len(failed):>8}{len(detected):>10}{len(right):>7}   {where}")
    defects_in: dict[str, Counter] = defaultdict(Counter)
    for tid, g in gold.items():
        if tid in diag and diag[tid][1]:
            defects_in[diag[tid][1]][g.get("defect") or "none"] += 1
    print(f"\ntop {top} clusters:")
    for c in report.clusters[:top]:
        mix = ", ".join(f"{d} {n}" for d, n in defects_in[c.id].most_common())
        print(f"  #{c.rank:<3} {c.category.value:<19} size {c.size:>3}  score {c.score:6.2f}  {c.id}  [{mix}]")
        print(f"       {c.rationale[:150]}")
    print(f"\nthe worst of the planted defects' best cluster ranks: #{worst}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=sorted(SOURCES), default="helpdesk")
    parser.add_argument("--llm", action="store_true", help="ask the LLM classifier about what no rule explains")
    parser.add_argument("--top", type=int, default=10, help="how many top clusters to list")
    args = parser.parse_args()
    source = SOURCES[args.source]
    report = triage(source, args.llm)
    print(f"{args.source}: {report.traces} traces, {report.failures} failures, {report.quarantined} quarantined, "
          f"{len(report.clusters)} clusters; by category {report.by_category}")
    for f in report.findings:
        print(f"finding: {f.title} ({f.traces} traces)")
    for w in report.warnings:
        print(f"warning: {w}")
    labels = read_jsonl(source["labels"]) if source["labels"].exists() else []
    if labels:
        print()
        agreement(report, labels)
    else:
        print(f"no labels at {source['labels']}")
    if "gold" in source and source["gold"].exists():
        defect_ranks(report, source["gold"], args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
