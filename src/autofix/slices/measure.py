"""What a failure cluster's cases are scored by, and the per-case scores an optimizer and the gate read.

Production failures have no gold answer, so a slice (`slice:<cluster>`) is measured by, in order:

1. the reference-free checks its diagnosis implies (`IMPLIED_CHECKS`, one place; a target overrides a
   category with `slices.checks.<category>` in autofix.yaml);
2. the expectations reviewers attached to its cases (`datasets.labels`): must-include facts,
   document ids, patterns;
3. the rubric judges of the target that are calibrated (`autofix judges calibrate`).

A cluster with none of these is not optimized: `plan_measurement` returns a `MeasurementGap`, which
becomes an `evaluation` finding naming the measurement to build first.

A case's score is the share of the measures that apply to it that pass (a check returning None
does not apply); a case no measure applies to is unmeasured (`score=None`) unless its replay failed,
which scores 0. A case the infrastructure failed (sandbox, gateway, a model call timing out under
load) is unmeasured: it says nothing about the target. The slice score is the mean over measured cases.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from autofix.config import AutofixConfig, CheckJudge, RubricJudge
from autofix.judges.checks import CHECKS, CheckOutcome
from autofix.replay.records import Case, CaseResult
from autofix.triage.records import Category, Finding

IMPLIED_CHECKS: dict[Category, tuple[str, ...]] = {
    # skipped the search a request needed: did it search now?
    Category.routing: ("searched",),
    # a tool call broke its schema or the tool refused it
    Category.tool_arguments: ("tool_args_valid", "no_tool_error"),
    # the answer lacks a form the user asked for (sources, a list, JSON, a table, a length)
    Category.prompt: ("format_kept", "cites_sources"),
    # retrieval and context construction: only the documents an answer needs say whether they
    # were found, and those come from labels (`doc_ids`)
    Category.retrieval: (),
    Category.context: (),
}
"""The reference-free checks each fixable category's failures are scored by (see the module doc)."""

LABEL_CHECKS: dict[str, tuple[str, ...]] = {
    "contains_expected": ("must_include", "must_not_include"),  # a bare `answer` needs a judge, not a check
    "recall_at_k": ("doc_ids",),
    "matches_expected": ("pattern",),
}
"""Checks that read a reviewer's expectation, and the `expected` fields that make each apply."""

MeasureKind = Literal["check", "label", "rubric"]


class Measure(BaseModel):
    """One thing a slice is scored by."""

    name: str
    kind: MeasureKind
    args: dict[str, Any] = Field(default_factory=dict)
    why: str = ""


class SliceMeasure(BaseModel):
    """How one cluster's cases are measured."""

    cluster_id: str
    category: Category
    measures: list[Measure]
    labeled_cases: int = 0

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.measures]


class MeasurementGap(BaseModel):
    """A cluster nothing measures: not optimized; reported as an `evaluation` finding."""

    cluster_id: str
    category: Category
    reason: str
    build_first: str

    def finding(self, traces: int, examples: list[str]) -> Finding:
        return Finding(category=Category.evaluation, rule="slice_measurement", subject=f"cluster:{self.cluster_id}",
                       title=f"no measurement for cluster {self.cluster_id}: measure this first",
                       rationale=f"{self.reason}; build first: {self.build_first}", traces=traces,
                       examples=examples[:5])


class CaseMeasurement(BaseModel):
    """A case's score on a slice's measures, with the feedback text a reflective optimizer reads."""

    case_id: str
    score: float | None = Field(description="share of the applicable measures passed; None: nothing applied")
    outcomes: dict[str, CheckOutcome] = Field(default_factory=dict)

    @property
    def feedback(self) -> str:
        parts = [f"{name}: {'pass' if o.passed else 'FAIL'} ({o.detail})" for name, o in self.outcomes.items()
                 if o.passed is not None]
        return "; ".join(parts) or "no measure applied to this case"


def _recall_k(config: AutofixConfig) -> int:
    return next((j.k for j in config.judges if isinstance(j, CheckJudge) and j.check == "recall_at_k" and j.k), 5)


def implied_checks(config: AutofixConfig, category: Category) -> tuple[str, ...]:
    """The reference-free checks for `category`: the target's override, else autofix's default."""
    override = config.slices.checks.get(category.value)
    return tuple(override) if override is not None else IMPLIED_CHECKS.get(category, ())


def plan_measurement(config: AutofixConfig, cluster_id: str, category: Category | str,
                     cases: list[Case]) -> SliceMeasure | MeasurementGap:
    """The measures for a cluster whose (training) cases are `cases`, labels already attached."""
    category = Category(category)
    measures: list[Measure] = []
    for name in implied_checks(config, category):
        if name not in CHECKS:
            raise ValueError(f"slices.checks.{category.value}: no check named {name!r}; "
                             f"checks: {', '.join(sorted(CHECKS))}")
        measures.append(Measure(name=name, kind="check", why=f"implied by a {category.value} diagnosis"))
    labeled = [c for c in cases if c.expected]
    for name, fields in LABEL_CHECKS.items():
        n = sum(1 for c in labeled if any((c.expected or {}).get(f) for f in fields))
        if n and name not in {m.name for m in measures}:
            args = {"k": _recall_k(config)} if name == "recall_at_k" else {}
            measures.append(Measure(name=name, kind="label", args=args, why=f"{n} case(s) carry {'/'.join(fields)}"))
    for judge in config.judges:
        if isinstance(judge, RubricJudge) and not judge.safety and _trusted(config, judge.name):
            measures.append(Measure(name=judge.name, kind="rubric", why="calibrated rubric judge"))
    if not measures:
        return MeasurementGap(
            cluster_id=cluster_id, category=category,
            reason=f"a {category.value} failure implies no reference-free check, none of its {len(cases)} training "
                   f"case(s) carries a reviewer's expectation, and no calibrated rubric judge is configured",
            build_first=f"label some of its cases (`autofix label -c {config.file} --cluster {cluster_id}`: the facts "
                        f"or documents a right answer needs), or name checks under `slices.checks.{category.value}` "
                        f"in autofix.yaml, or calibrate a rubric judge (`autofix judges calibrate`)",
        )
    return SliceMeasure(cluster_id=cluster_id, category=category, measures=measures, labeled_cases=len(labeled))


def _trusted(config: AutofixConfig, name: str) -> bool:
    from autofix.judges.calibration import judge_trust

    try:
        return judge_trust(config, name)[0]
    except Exception:  # noqa: BLE001 - an unreadable calibration means untrusted, never a crash
        return False


def measure_results(config: AutofixConfig, measure: SliceMeasure, cases: list[Case],
                    results: list[CaseResult], *, lm: Any = None) -> list[CaseMeasurement]:
    """Score each case's result on the slice's measures (rubric judges through `model.judge`, or `lm`)."""
    by_id = {r.case_id: r for r in results}
    rubric = [m.name for m in measure.measures if m.kind == "rubric"]
    verdicts: dict[str, dict[str, CheckOutcome]] = {}
    if rubric:
        from autofix.judges.run import judge_cases

        judged, _ = judge_cases(cases, results, config, use_rubrics=True, judges=rubric, lm=lm)
        verdicts = {j.case_id: j.outcomes for j in judged}
    out = []
    for case in cases:
        result = by_id[case.case_id]
        outcomes: dict[str, CheckOutcome] = {}
        for m in measure.measures:
            if m.kind == "rubric":
                outcome = verdicts.get(case.case_id, {}).get(m.name)
                if outcome is not None:
                    outcomes[m.name] = outcome
                continue
            try:
                outcomes[m.name] = CHECKS[m.name](case, result, **m.args)
            except Exception as exc:  # noqa: BLE001 - a check bug must not lose the case
                outcomes[m.name] = CheckOutcome(passed=None, detail=f"check crashed: {type(exc).__name__}: {exc}")
        applied = [o.passed for o in outcomes.values() if o.passed is not None]
        if result.infrastructure:  # the sandbox or the gateway failed it: it says nothing about the target
            score: float | None = None
        elif applied:
            score = sum(applied) / len(applied)
        else:
            score = 0.0 if result.failed else None
        out.append(CaseMeasurement(case_id=case.case_id, score=score, outcomes=outcomes))
    return out


def slice_score(measured: list[CaseMeasurement]) -> float | None:
    """Mean score over the measured cases; None when no case was measured."""
    scores = [m.score for m in measured if m.score is not None]
    return sum(scores) / len(scores) if scores else None
