"""The launch-gate policy (`policies/*.yaml`): what a candidate must improve, what may not regress, the guardrails.

The target metric is the slice score (what the cluster's diagnosis, its reviewers' labels and its
calibrated judges measure; see `autofix.slices.measure`) on the cluster's held-out cases, which no
optimizer saw. A judge name may replace it where a team trusts one judge for that slice.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from autofix.config.fields import _fail, _Strict

SLICE_METRIC = "slice"
"""The target metric that means the slice score."""


def _judge_names(info: ValidationInfo) -> list[str] | None:
    ctx = info.context
    if isinstance(ctx, dict) and ctx.get("judges") is not None:
        return list(ctx["judges"])
    return None


class TargetGate(_Strict):
    """The candidate must improve the cluster's held-out cases, significantly."""

    metric: str = Field(
        default=SLICE_METRIC,
        description="`slice` (the slice score: the cluster's implied checks, labels and calibrated judges) or the "
        "name of a judge of autofix.yaml.",
    )
    min_improvement: float = Field(
        default=0.10,
        ge=0,
        description="Minimum absolute improvement of the mean score on the held-out cases (0.10 = ten points).",
    )
    max_p_value: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Maximum one-sided p-value of the paired test on the held-out cases: exact McNemar when every "
        "score is pass/fail, a paired bootstrap otherwise.",
    )
    min_cases: int = Field(
        default=5, ge=1, description="Held-out cases (measured in both base and candidate) needed; fewer is refused."
    )

    @field_validator("metric")
    @classmethod
    def _metric_is_a_judge(cls, value: str, info: ValidationInfo) -> str:
        names = _judge_names(info)
        if value != SLICE_METRIC and names is not None and value not in names:
            raise _fail(
                f"metric {value!r} is not a judge of this target",
                f"use `slice` (the cluster's slice score) or one of: {', '.join(names) or '(no judges declared)'}",
            )
        return value


class RegressionGate(_Strict):
    """Non-inferiority on the regression set, per metric."""

    margin: float = Field(
        default=0.05,
        ge=0,
        description="Largest drop of a metric's pass rate allowed: the upper confidence bound of the paired drop "
        "(candidate vs. base, same cases) must stay within it.",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="One-sided confidence level of that upper bound."
    )
    metrics: Literal["all"] | list[str] = Field(
        default="all",
        description="`all` (every non-safety judge) or a list of judge names checked on the regression set.",
    )

    @field_validator("metrics")
    @classmethod
    def _metrics_are_judges(cls, value: Any, info: ValidationInfo) -> Any:
        names = _judge_names(info)
        if names is not None and isinstance(value, list):
            for i, metric in enumerate(value):
                if metric not in names:
                    raise _fail(
                        f"metric {metric!r} is not a judge of this target",
                        f"use `all` or names from: {', '.join(names) or '(no judges declared)'}",
                        at=(i,),
                    )
        return value


class GuardrailsGate(_Strict):
    """Limits on cost, latency, tool use and safety, measured against the baseline."""

    latency_p95_ratio: float = Field(default=1.25, gt=0, description="Max candidate/baseline ratio of p95 latency.")
    cost_ratio: float = Field(default=1.25, gt=0, description="Max candidate/baseline ratio of model cost (gateway records).")
    tokens_ratio: float = Field(
        default=1.25, gt=0,
        description="Max candidate/baseline ratio of model tokens per case (gateway records); the cost guardrail "
        "of a model priced at $0, such as the embedded one.",
    )
    tool_calls_ratio: float = Field(default=1.5, gt=0, description="Max candidate/baseline ratio of tool calls per case.")
    safety_failures: int = Field(
        default=0, ge=0,
        description="Max number of cases failing any safety judge or safety check; no other score compensates.",
    )


class GatePolicy(_Strict):
    """A launch-gate policy: what a candidate must show before a human sees it."""

    description: str | None = Field(default=None, description="Free text: what this policy is for.")
    target: TargetGate = Field(default_factory=TargetGate, description="Improvement required on the held-out cases.")
    regression: RegressionGate = Field(default_factory=RegressionGate, description="Margins on the regression set.")
    guardrails: GuardrailsGate = Field(default_factory=GuardrailsGate, description="Cost, latency, tool-use and safety limits.")
    safety_checks: list[str] = Field(
        default_factory=list,
        description="Check judges of autofix.yaml that count as safety checks (besides rubric judges with "
        "`safety: true`), e.g. a `no_leaked_fields` check.",
    )
    judges: dict[str, str] = Field(
        default_factory=dict,
        description="The judge versions the thresholds were set with (`autofix gate --confirm-judges` writes them); "
        "a judge whose version changed refuses every gate until re-confirmed. Empty: not pinned.",
    )

    @field_validator("safety_checks")
    @classmethod
    def _safety_checks_are_judges(cls, value: list[str], info: ValidationInfo) -> list[str]:
        names = _judge_names(info)
        if names is not None:
            for i, metric in enumerate(value):
                if metric not in names:
                    raise _fail(f"{metric!r} is not a judge of this target",
                                f"use names from: {', '.join(names) or '(no judges declared)'}", at=(i,))
        return value
