"""Scoring a replay: deterministic checks per case, then the figures a user compares across commits."""

from __future__ import annotations

import statistics
from collections import defaultdict

from pydantic import BaseModel, Field

from autofix.config import AutofixConfig
from autofix.judges.checks import CheckOutcome
from autofix.replay.records import Case, CaseResult


class CaseScore(BaseModel):
    case_id: str
    checks: dict[str, CheckOutcome]


class MetricSummary(BaseModel):
    passed: int
    applicable: int

    @property
    def rate(self) -> float | None:
        return self.passed / self.applicable if self.applicable else None


class ReplaySummary(BaseModel):
    cases: int
    failed_cases: int
    metrics: dict[str, MetricSummary]
    by_task_type: dict[str, dict[str, MetricSummary]] = Field(default_factory=dict)
    latency_ms: dict[str, float]
    cost_usd: float
    tokens: int
    tool_calls: int
    unavailable_checks: list[str] = Field(default_factory=list)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def score_cases(cases: list[Case], results: list[CaseResult], config: AutofixConfig, *,
                use_rubrics: bool = False) -> tuple[list[CaseScore], list[str]]:
    """Run every configured check judge (and, with `use_rubrics`, the rubric judges); also return the
    configured judges that could not run or gave no verdict."""
    # --- judges hook: the judges room runs the judges (check args, rubric judges, versions, caches) ---
    from autofix.judges.run import judge_cases

    judged, unavailable = judge_cases(cases, results, config, use_rubrics=use_rubrics)
    return [CaseScore(case_id=j.case_id, checks=j.outcomes) for j in judged], unavailable


def summarize(cases: list[Case], results: list[CaseResult], scores: list[CaseScore], unavailable: list[str]) -> ReplaySummary:
    by_task: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    task_of = {c.case_id: str(c.metadata.get("task_type") or (c.expected or {}).get("task_type") or "unknown") for c in cases}
    per_metric: dict[str, list[bool]] = defaultdict(list)
    for score in scores:
        for name, outcome in score.checks.items():
            if outcome.passed is not None:
                per_metric[name].append(outcome.passed)
                by_task[task_of[score.case_id]][name].append(outcome.passed)
    metrics = {name: MetricSummary(passed=sum(v), applicable=len(v)) for name, v in per_metric.items()}
    latencies = [r.latency_ms for r in results if not r.failed]
    return ReplaySummary(
        cases=len(results),
        failed_cases=sum(r.failed for r in results),
        metrics=metrics,
        by_task_type={task: {n: MetricSummary(passed=sum(v), applicable=len(v)) for n, v in m.items()}
                      for task, m in sorted(by_task.items())},
        latency_ms={"p50": round(_percentile(latencies, 50), 1), "p95": round(_percentile(latencies, 95), 1)},
        cost_usd=round(sum(r.usage.cost_usd for r in results), 6),
        tokens=sum(r.usage.tokens for r in results),
        tool_calls=sum(1 for r in results for s in r.spans if s.get("kind") == "tool"),
        unavailable_checks=unavailable,
    )
