"""Running a target's judges on replayed cases: every check, and the rubric judges when asked.

`judge_cases(cases, results, config)` is what scoring calls (`autofix.replay.metrics.score_cases`
delegates to it): per case, one outcome per configured judge (`CheckOutcome`; a rubric judge's is a
`RubricOutcome` carrying its score), the rubric verdicts themselves, and their aggregate, in which a
failed safety judge fails the case whatever the other dimensions scored. It also returns the
configured judges that could not run or gave no verdict, so nothing disappears silently.

Rubric judges use `model.judge` of autofix.yaml, the optimized program saved by calibration when
there is one, and the verdict cache `<state>/judges/verdicts.sqlite`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from pydantic import BaseModel, Field

from autofix.config import AutofixConfig, CheckJudge, RubricJudge
from autofix.judges.checks import CHECKS, CheckOutcome, check_version
from autofix.replay.records import Case, CaseResult

__all__ = ["CaseJudgement", "build_judge", "check_args_problem", "judge_cases", "judge_versions",
           "judges_version", "run_check", "verdict_cache"]

ProgressCallback = Callable[[int], None]


class CaseJudgement(BaseModel):
    """All the judges' say on one case."""

    model_config = {"arbitrary_types_allowed": True}

    case_id: str
    outcomes: dict[str, CheckOutcome] = Field(default_factory=dict, description="Judge name -> outcome.")
    verdicts: dict[str, Any] = Field(default_factory=dict, description="Rubric judge name -> Verdict.")
    aggregate: Any = Field(default=None, description="AggregateVerdict of the rubric verdicts, when any ran.")


# --------------------------------------------------------------------------- checks


def check_args_problem(judge: CheckJudge) -> str | None:
    """What is wrong with a check judge's `args` (an argument its check does not take), or None."""
    if judge.check not in CHECKS:
        return "not implemented"
    params = inspect.signature(CHECKS[judge.check]).parameters
    takes = list(params)[2:]
    unknown = [a for a in judge.args if a not in takes or a == "k"]
    if unknown:
        return (f"unknown argument(s) {', '.join(map(repr, unknown))} in args; {judge.check} takes "
                f"{', '.join(t for t in takes if t != 'k') or 'no arguments'}")
    return None


def run_check(judge: CheckJudge, case: Case, result: CaseResult) -> CheckOutcome:
    kwargs: dict[str, Any] = dict(judge.args)
    if judge.check == "recall_at_k" and judge.k:
        kwargs["k"] = judge.k
    try:
        return CHECKS[judge.check](case, result, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a check bug must not lose the case
        return CheckOutcome(passed=None, detail=f"check crashed: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- rubric judges


def verdict_cache(config: AutofixConfig) -> Any:
    from autofix.judges.rubric import VerdictCache

    return VerdictCache(config.state_path / "judges" / "verdicts.sqlite")


def build_judge(config: AutofixConfig, spec: RubricJudge, *, lm: Any = None, cache: Any = True,
                program: Any = None, model: str | None = None, retries: int = 2) -> Any:
    """The `LMJudge` for a configured rubric judge: `model.judge`, the saved optimized program if any,
    and the verdict cache (`cache=True`: the target's; False/None: none; or a `VerdictCache`)."""
    from autofix.judges.calibration import program_path
    from autofix.judges.rubric import LMJudge

    if cache is True:
        cache = verdict_cache(config)
    judge = LMJudge(spec, model or config.model.judge or config.model.name, lm=lm, program=program,
                    cache=None if cache is None or cache is False else cache, retries=retries)
    if program is None:
        judge.load_program(program_path(config, spec.name))
    return judge


def judge_versions(config: AutofixConfig, *, rubrics: bool = True) -> dict[str, str]:
    """Judge name -> version of every configured judge (rubric judges only with `rubrics`)."""
    versions: dict[str, str] = {}
    for judge in config.judges:
        if isinstance(judge, CheckJudge):
            args = {**judge.args, **({"k": judge.k} if judge.k else {})}
            versions[judge.name] = check_version(judge.check, args) if judge.check in CHECKS else "unavailable"
        elif rubrics:
            versions[judge.name] = build_judge(config, judge, cache=False).version
    return versions


def judges_version(config: AutofixConfig, *, rubrics: bool = True) -> str:
    """One short hash of `judge_versions`: changes when any judge's verdict could."""
    payload = json.dumps(judge_versions(config, rubrics=rubrics), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- all together


def judge_cases(
    cases: list[Case],
    results: list[CaseResult],
    config: AutofixConfig,
    use_rubrics: bool = True,
    *,
    judges: list[str] | None = None,
    lm: Any = None,
    cache: Any = True,
    parallel: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[CaseJudgement], list[str]]:
    """Run the configured judges (all, or those named in `judges`) on each case's result.

    Returns one `CaseJudgement` per case, in case order, and the judges that could not run
    (`name (check): why`) or that gave no verdict on some cases (`name (rubric, model): no verdict
    on k/n cases: first reason`). `lm` replaces the judge model (tests); `parallel` is the number
    of rubric calls at a time (default 4, 1 for the embedded model, which serves one at a time)."""
    from autofix.models.provider import is_local

    by_id = {r.case_id: r for r in results}
    missing = [c.case_id for c in cases if c.case_id not in by_id]
    if missing:
        raise ValueError(f"no result for case(s) {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    selected = [j for j in config.judges if judges is None or j.name in judges]
    checks = [j for j in selected if isinstance(j, CheckJudge)]
    unavailable: list[str] = []
    runnable: list[CheckJudge] = []
    for judge in checks:
        problem = check_args_problem(judge)
        if problem:
            unavailable.append(f"{judge.name} ({judge.check}): {problem}")
        else:
            runnable.append(judge)
    judged = [CaseJudgement(case_id=c.case_id) for c in cases]
    for case, judgement in zip(cases, judged):
        for judge in runnable:
            judgement.outcomes[judge.name] = run_check(judge, case, by_id[case.case_id])

    rubrics = [j for j in selected if isinstance(j, RubricJudge)] if use_rubrics else []
    if rubrics:
        from autofix.judges.rubric import aggregate_verdicts

        built = [build_judge(config, spec, lm=lm, cache=cache) for spec in rubrics]
        model = built[0].model
        workers = parallel or (1 if is_local(model) else 4)
        jobs = [(i, j) for i in range(len(cases)) for j in built]

        def run(job: tuple[int, Any]) -> tuple[int, Any]:
            index, judge = job
            verdict = judge.judge_case(cases[index], by_id[cases[index].case_id])
            if progress:
                progress(1)
            return index, verdict

        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                done = list(pool.map(run, jobs))
        else:
            done = [run(job) for job in jobs]
        for index, verdict in done:
            judged[index].verdicts[verdict.judge] = verdict
            judged[index].outcomes[verdict.judge] = verdict.as_outcome()
        for judgement in judged:
            judgement.aggregate = aggregate_verdicts(judgement.verdicts)
        for judge in built:
            failures = [j.verdicts[judge.name] for j in judged if j.verdicts[judge.name].status != "verdict"]
            if failures:
                unavailable.append(f"{judge.name} (rubric, {judge.model}): no verdict on {len(failures)}/{len(cases)} "
                                   f"cases: {(failures[0].error or '')[:200]}")
    return judged, unavailable

