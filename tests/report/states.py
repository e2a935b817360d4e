"""Hand-built run states for the report's tests: what the nightly run's nodes leave, with every section
filled (a passed retrieval candidate, a refused and a passed GEPA candidate, owned findings, trends,
resolved clusters, a candidate not queued, work not reached, an error), and user text with HTML in it."""

from __future__ import annotations

import copy
from typing import Any

SCRIPT = "<script>alert('x')</script>"
RETRIEVAL = "retrieval-faq-misses-request"
PROMPT = "prompt-faq-ignores-policy&co"
"""An id with a character SVG and HTML must escape."""
OWNED = "missing-capability-unknown-book"
GEPA = "autofix-gepa/gepa"
SEARCH = "autofix-retrieval-search/retrieval_search"

_DIFF = ("diff --git a/config/retrieval.yaml b/config/retrieval.yaml\n--- a/config/retrieval.yaml\n"
         "+++ b/config/retrieval.yaml\n@@ -1,2 +1,2 @@\n # chunks\n-top_k: 2\n+top_k: 3\n")
_PROMPT_DIFF = ("diff --git a/prompts/system.txt b/prompts/system.txt\n--- a/prompts/system.txt\n"
                "+++ b/prompts/system.txt\n@@ -1 +1 @@\n-Answer briefly.\n+Answer from the policy; never emit "
                + SCRIPT + "\n")


def _gepa_candidate(n: int, idx: int, ancestry: list[int], parents: list[int], score: float,
                    gate: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{PROMPT}/{n}", "cluster": PROMPT, "optimizer": GEPA, "branch": f"autofix/run-1/{PROMPT}/{n}",
        "commit": f"{n:040d}", "diff": _PROMPT_DIFF, "train": {"base_score": 0.4, "score": score, "verified": True},
        "cost_usd": 0.12, "metric_calls": 40,
        "lineage": {"cluster": PROMPT, "optimizer": GEPA, "metric_calls": 40, "gepa_metric_calls": 44,
                    "lineage": {"candidate": idx, "parents": parents, "ancestry": ancestry, "iteration": 3,
                                "minibatch": ["c1", "c2"], "pareto_front": idx == 7, "gepa_val_score": score},
                    "trace_ids": ["t1"], "run_id": "run-1", "cost_usd": 0.12},
        "gate": gate,
    }


STATE: dict[str, Any] = {
    "run_id": "run-1", "config": "/srv/target/autofix.yaml", "run_dir": "/srv/target/runs/run-1",
    "started_at": "2026-12-05T02:00:00+00:00",
    "budget": {"started": 1.0, "budget_usd": 2.5, "max_metric_calls": None, "wall_s": 3600, "max_jobs": 2},
    "triage": {
        "traces": 120, "failures": 47, "quarantined": 2, "by_category": {"retrieval": 24}, "warnings": ["3 records had no spans"],
        "changes": {
            "previous": {"report": "/srv/target/runs/triage/x/report.json", "generated_at": "2026-12-04T02:00:00",
                         "traces": 100, "clusters": 3},
            "counts": {"kept": 2, "new": 1, "growing": 1, "shrinking": 1, "steady": 0, "resolved": 1},
            "clusters": [{"id": RETRIEVAL, "trend": "growing", "size": 24, "previous_size": 12, "matched_by": "members"}],
            "resolved": [{"id": "routing-faq-wrong-route", "category": "routing", "task_type": "faq",
                          "mechanism": "wrong_route", "name": "faq: wrong route", "previous_size": 9, "size": 0}],
        },
    },
    "clusters": [
        {"id": RETRIEVAL, "rank": 1, "name": "faq: policy, parking [retrieval misses request]", "category": "retrieval",
         "size": 24, "fixable": True, "owner": "optimizer:retrieval", "trend": "growing", "previous_size": 12,
         "rationale": "the retrieved text holds none of the request's words", "trace_ids": ["t1", "t2"]},
        {"id": PROMPT, "rank": 2, "name": "faq: ignores policy", "category": "prompt", "size": 15, "fixable": True,
         "owner": "optimizer:gepa", "trend": "shrinking", "previous_size": 20, "rationale": "answers ignore the policy"},
        {"id": OWNED, "rank": 3, "name": f"unknown: book a room {SCRIPT}", "category": "missing_capability", "size": 8,
         "fixable": False, "owner": "team:product", "trend": "new", "previous_size": None,
         "rationale": f"the user asks the assistant to act ('Please book room 3 {SCRIPT}'), no tool does that"},
        {"id": "tool-arguments-x", "rank": 4, "name": "tickets: bad date", "category": "tool_arguments", "size": 6,
         "fixable": True, "owner": "optimizer:code_patch", "trend": "new", "previous_size": None,
         "rationale": "the date argument breaks the tool's schema"},
    ],
    "findings": [{"category": "evaluation", "rule": "broken_scorer", "subject": "score:faithfulness",
                  "title": "the faithfulness scorer returns 0 for every trace", "rationale": "constant scores",
                  "traces": 120, "examples": ["t1"]}],
    "jobs": [
        {"index": 0, "cluster": RETRIEVAL, "category": "retrieval", "optimizer": SEARCH, "priority": 24.0},
        {"index": 1, "cluster": PROMPT, "category": "prompt", "optimizer": GEPA, "priority": 15.0},
    ],
    "candidates": [],
    "gated": [
        {"id": f"{RETRIEVAL}/1", "cluster": RETRIEVAL, "optimizer": SEARCH, "branch": f"autofix/run-1/{RETRIEVAL}/1",
         "commit": "a" * 40, "diff": _DIFF, "train": {"base_score": 0.25, "score": 0.9, "verified": True},
         "cost_usd": 0.05, "metric_calls": 90,
         "lineage": {"cluster": RETRIEVAL, "optimizer": SEARCH, "trials": 6, "pruned": 1, "infeasible": 2,
                     "duplicates": 0, "trial": 3, "study": "s1", "params": {"top_k": 3}, "changed": {"top_k": [2, 3]},
                     "ratios": {"tokens": 1.4}, "tokens_per_case": 420.0, "base_tokens_per_case": 300.0,
                     "tradeoff": [[0.25, 300.0, True], [0.6, 380.0, True], [0.9, 420.0, True], [0.95, 900.0, False],
                                  [0.97, 1200.0, False]]},
         "gate": {"passed": True, "reasons": [], "verdict_id": "gate-1", "verdict_path": "/srv/v1/verdict.json",
                  "target": {"section": "target", "name": "held-out slice", "passed": True, "value": 0.55,
                             "threshold": 0.1, "reason": "0.30 -> 0.85 on 20 held-out cases (11 better, 0 worse)",
                             "detail": {"base": 0.3, "candidate": 0.85, "n": 20, "p_value": 0.001,
                                        "test": "exact McNemar"}}}},
        _gepa_candidate(101, 5, [0, 2, 5], [2], 0.7, {
            "passed": False, "verdict_id": "gate-2", "verdict_path": "/srv/v2/verdict.json",
            "reasons": ["held-out answer_correct: 0.40 -> 0.45 on 12 held-out cases: not significant (p > 0.05)",
                        f"regression answer_correct fell on case r7 whose input was {SCRIPT}"],
            "target": {"section": "target", "name": "held-out answer_correct", "passed": False, "value": 0.05,
                       "reason": "0.40 -> 0.45 on 12 held-out cases: not significant",
                       "detail": {"base": 0.4, "candidate": 0.45, "n": 12, "p_value": 0.5}}}),
        _gepa_candidate(102, 7, [0, 2, 7], [2, 5], 0.8, {
            "passed": True, "reasons": [], "verdict_id": "gate-3", "verdict_path": "/srv/v3/verdict.json",
            "target": {"section": "target", "name": "held-out answer_correct", "passed": True, "value": 0.4,
                       "reason": "0.40 -> 0.80", "detail": {"base": 0.4, "candidate": 0.8, "n": 15, "p_value": 0.01}}}),
    ],
    "proposals": [
        {"candidate": f"{RETRIEVAL}/1", "proposal": "p-0007", "branch": f"autofix/run-1/{RETRIEVAL}/1"},
        {"candidate": f"{PROMPT}/102", "proposal": None, "reason": "the same change was rejected before (p-0003)"},
    ],
    "skipped": [
        {"cluster": "tool-arguments-x", "optimizer": "autofix-code-patch/code_patch",
         "reason": "not reached: the run optimizes at most 2 (cluster, optimizer) pairs, highest priority first"},
        {"cluster": "context-y", "optimizer": SEARCH, "reason": "not optimized: nothing measures the cases",
         "finding": {"category": "evaluation", "rule": "no_measure", "subject": "cluster:context-y",
                     "title": "nothing measures cluster context-y", "rationale": "label the expected documents first",
                     "traces": 5, "examples": []}},
    ],
    "errors": ["optimize tool-arguments-z / autofix-code-patch/code_patch: RuntimeError: the model went away"],
    "timings": {"triage": 4.2, f"optimize {RETRIEVAL} / {SEARCH}": 61.5, f"optimize {PROMPT} / {GEPA}": 140.3,
                f"gate {RETRIEVAL}/1": 12.0, f"gate {PROMPT}/101": 9.5, f"gate {PROMPT}/102": 10.1},
    "cost_usd": 0.17,
}


def state(**changes: Any) -> dict[str, Any]:
    """A deep copy of `STATE`, with top-level keys replaced (None removes one)."""
    out = copy.deepcopy(STATE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out
