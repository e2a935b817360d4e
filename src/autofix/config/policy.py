"""The launch-gate policy (`policies/*.yaml`): what a candidate must improve, what may not regress, the guardrails."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from autofix.config.fields import _fail, _Strict


def _judge_names(info: ValidationInfo) -> list[str] | None:
    ctx = info.context
    if isinstance(ctx, dict) and ctx.get("judges") is not None:
        return list(ctx["judges"])
    return None


class TargetGate(_Strict):
    """The candidate must improve the target slice (the failing cluster's cases)."""

    metric: str = Field(
        default="answer_correct",
        description="Name of the judge (from autofix.yaml `judges`) whose score is compared on the target slice.",
    )
    min_improvement: float = Field(
        default=0.10,
        ge=0,
        description="Minimum absolute improvement of the mean metric on the target slice (0.10 = ten points).",
    )
    max_p_value: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Maximum p-value of the paired test (candidate vs. baseline, same cases) on the target slice.",
    )

    @field_validator("metric")
    @classmethod
    def _metric_is_a_judge(cls, value: str, info: ValidationInfo) -> str:
        names = _judge_names(info)
        if names is not None and value not in names:
            raise _fail(
                f"metric {value!r} is not a judge of this target",
                f"use one of: {', '.join(names) or '(no judges declared)'}",
            )
        return value


class HoldoutGate(_Strict):
    """The candidate must not get worse on held-out cases of the same cluster."""

    min_improvement: float = Field(
        default=0.0,
        description="Minimum improvement of the target metric on the holdout slice; 0 = no worse.",
    )


class RegressionGate(_Strict):
    """The candidate must not regress the regression set."""

    max_drop: float = Field(
        default=0.02,
        ge=0,
        description="Largest allowed drop of each metric's mean on the regression set (0.02 = two points).",
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
    safety_failures: int = Field(default=0, ge=0, description="Max number of cases failing any safety judge.")


class GatePolicy(_Strict):
    """A launch-gate policy: what a candidate must show before a human sees it."""

    description: str | None = Field(default=None, description="Free text: what this policy is for.")
    target: TargetGate = Field(default_factory=TargetGate, description="Improvement required on the target slice.")
    holdout: HoldoutGate = Field(default_factory=HoldoutGate, description="Requirement on the holdout slice.")
    regression: RegressionGate = Field(default_factory=RegressionGate, description="Margins on the regression set.")
    guardrails: GuardrailsGate = Field(default_factory=GuardrailsGate, description="Cost, latency, tool-use and safety limits.")
