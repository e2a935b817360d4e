"""Retrieval auto-research: an Optuna (TPE) search over the target's retrieval configuration space,
scored by replaying the cluster's training cases, with the gate's guardrails as constraints.

    task.retrieval_space   {"top_k": IntParam(1..8), "chunk_size": IntParam(40..400, step 20), ...}
    task.files("retrieval")[0]   the file the values are written into (a minimal diff)

Each trial:
1. samples values and writes them into the retrieval file, changing only the lines of keys whose
   value moved. Trial 0 is the base's own values, enqueued and scored by `task.base` at no cost;
   the next `max(3, max_trials // 4)` are TPE's random start-up; after that, every other trial is a
   neighbour of the best feasible trial so far (one or two dimensions moved a step, enqueued: a
   local search, since on a small budget TPE alone rarely lands in the feasible corner of a space
   whose guardrails rule most of it out) and the others are TPE's (`gamma` 0.25: the best quarter
   of the trials shape its "good" density);
2. replays the *subset* (the first third of the measured training cases), its first case alone
   first. The tokens/cost/tool-call ratios the trial would have on all cases are estimated from what
   it adds per case over the base on the cases run so far (`estimated_ratios`: a bigger context adds
   about the same to every case); a trial whose estimate after the first case breaks a guardrail by
   50 % more than its limit, or after the subset by 10 % more, is stopped there as infeasible. The
   subset score is reported to Optuna, and a `ThresholdPruner` prunes the trial when it is below the
   base's on the same cases by more than `max(prune_margin, 1 / len(subset))` (more than one case's
   worth); a trial whose subset cases all fail to replay stops there as failed;
3. replays the remaining training cases; the guardrail ratios to the base (`tokens_ratio`,
   `cost_ratio` when the base costs anything, `tool_calls_ratio` when the base calls tools, and
   `latency_p95_ratio` only when asked for, see README) become Optuna constraints
   (`Trial.set_constraint` on Optuna 5, the sampler's `constraints_func` on Optuna 4), so TPE
   prefers feasible regions.

It stops before a trial the metric-call budget could not pay in full, on `BudgetExhausted`, or after
`max_trials` trials (default 12, base included; `AUTOFIX_RETRIEVAL_SEARCH_TRIALS` overrides). The
study lives in `task.work_dir/study.sqlite3` (a killed run resumes it) and every trial is written to
`task.work_dir/trials.json`. It proposes the best feasible trials that beat the base score, distinct
configurations, best first.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from autofix.optimize import BudgetExhausted, CaseEval, OptimizeTask, Proposal, optimizer

from autofix_retrieval_search.yaml_edit import MISSING, load_values, same_value, set_values

TRIALS_ENV = "AUTOFIX_RETRIEVAL_SEARCH_TRIALS"
"""Environment variable: the trial cap (base trial included)."""
LATENCY_ENV = "AUTOFIX_RETRIEVAL_SEARCH_LATENCY"
"""Environment variable: `1` makes `latency_p95_ratio` a constraint too (off by default, see README)."""
DEFAULT_TRIALS = 12
EARLY_INFEASIBLE_SLACK = 0.10
"""A subset breaking a guardrail by this much more than its limit stops the trial as infeasible."""
PROBE_INFEASIBLE_SLACK = 0.50
"""The first case alone stops the trial only when it breaks a guardrail by this much more than its limit."""
GUARDRAILS = (("tokens", "tokens_ratio"), ("cost", "cost_ratio"), ("latency_p95", "latency_p95_ratio"),
              ("tool_calls", "tool_calls_ratio"))
"""(figure, guardrail field of the gate policy)."""


# ---- figures of a set of replayed cases ---------------------------------------------------------


@dataclass
class Figures:
    """What the gate compares, computed from per-case records exactly as the engine's `ReplayBatch` is."""

    score: float | None
    tokens: float
    cost: float
    latency_p95: float
    tool_calls: float
    cases: int

    @classmethod
    def of(cls, cases: Sequence[CaseEval]) -> Figures:
        k = max(1, len(cases))
        scores = [c.score for c in cases if c.score is not None]
        latencies = [c.latency_ms for c in cases if not c.error]
        if not latencies:
            p95 = 0.0
        elif len(latencies) == 1:
            p95 = latencies[0]
        else:
            p95 = statistics.quantiles(latencies, n=100, method="inclusive")[94]
        return cls(score=sum(scores) / len(scores) if scores else None,
                   tokens=sum(c.tokens for c in cases) / k, cost=sum(c.cost_usd for c in cases) / k,
                   latency_p95=p95, tool_calls=sum(1 for c in cases for s in c.spans if s.get("kind") == "tool") / k,
                   cases=len(cases))


def guardrail_ratios(trial: Figures, base: Figures, *, latency: bool) -> dict[str, float]:
    """Trial/base ratio of each guardrail figure that can be compared: a base of 0 has no ratio (the
    embedded model costs $0, a retrieval change rarely adds tool calls), latency only when asked."""
    out = {}
    for figure, _ in GUARDRAILS:
        if figure == "latency_p95" and not latency:
            continue
        b = getattr(base, figure)
        if b > 0:
            out[figure] = getattr(trial, figure) / b
    return out


def paired_ratios(cases: Sequence[CaseEval], base: Mapping[str, CaseEval], *, latency: bool) -> dict[str, float]:
    """Guardrail ratios on the cases that ran both at the trial and at the base: a failed replay (a
    prompt past the model's context window, a timeout) records no tokens, and must not look cheap."""
    ok = [c for c in cases if not c.error and not base[c.case_id].error]
    if not ok:
        return {}
    return guardrail_ratios(Figures.of(ok), Figures.of([base[c.case_id] for c in ok]), latency=latency)


def estimated_ratios(cases: Sequence[CaseEval], base: Mapping[str, CaseEval], base_all: Figures) -> dict[str, float]:
    """The tokens/cost/tool-call ratios a trial replayed on a few `cases` would have on every training
    case: what the trial adds per case (trial minus base on the same cases that ran at both) added to the
    base's figure on all cases. Retrieval settings change the context handed to the model, which adds
    about the same to every case; a plain ratio on a case whose base answer was short would overstate it."""
    ok = [c for c in cases if not c.error and not base[c.case_id].error]
    if not ok:
        return {}
    trial, at_base = Figures.of(ok), Figures.of([base[c.case_id] for c in ok])
    out = {}
    for figure in ("tokens", "cost", "tool_calls"):
        b = getattr(base_all, figure)
        if b > 0:
            out[figure] = max(0.0, b + getattr(trial, figure) - getattr(at_base, figure)) / b
    return out


def violations(ratios: Mapping[str, float], guardrails: Any) -> dict[str, float]:
    """Optuna constraint values, one per guardrail (ratio / limit - 1; <= 0 is feasible)."""
    out = {}
    for figure, field in GUARDRAILS:
        limit = float(getattr(guardrails, field, 0) or 0)
        out[figure] = ratios[figure] / limit - 1.0 if figure in ratios and limit > 0 else 0.0
    return out


# ---- the space ------------------------------------------------------------------------------------


def _label(choice: Any) -> str:
    return json.dumps(choice, sort_keys=True)


def _representable(param: Any, value: Any) -> bool:
    kind = getattr(param, "type", None)
    if value is MISSING:
        return False
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and param.low <= value <= param.high
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and param.low <= value <= param.high
    if kind == "categorical":
        return _label(value) in [_label(c) for c in param.choices]
    return False


def _optuna_value(param: Any, value: Any) -> Any:
    return _label(value) if getattr(param, "type", None) == "categorical" else value


def suggest(trial: optuna.Trial, key: str, param: Any) -> Any:
    """Sample one dimension; categorical choices (lists included) are sampled by their JSON label."""
    kind = getattr(param, "type", None)
    if kind == "int":
        return trial.suggest_int(key, param.low, param.high, step=param.step, log=param.log)
    if kind == "float":
        value = trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)
        return round(value, 10) if param.step else float(f"{value:.3g}")  # what a person would write
    if kind == "categorical":
        labels = [_label(c) for c in param.choices]
        return param.choices[labels.index(trial.suggest_categorical(key, list(dict.fromkeys(labels))))]
    raise ValueError(f"surfaces.retrieval.space.{key}: unknown dimension type {kind!r} (int, float or categorical)")


def move(param: Any, value: Any, rng: random.Random) -> Any:
    """A neighbouring value of one dimension: one or two steps (int), up to 15 % of the range (float),
    another choice (categorical); always inside the space."""
    kind = getattr(param, "type", None)
    if kind == "int":
        if param.log:
            return min(param.high, max(param.low, round(value * rng.choice([0.5, 2.0]))))
        steps = (param.high - param.low) // param.step
        at = min(steps, max(0, round((value - param.low) / param.step) + rng.choice([-2, -1, 1, 2])))
        return param.low + at * param.step
    if kind == "float":
        if param.log:
            moved = value * math.exp(rng.uniform(-0.5, 0.5))
        else:
            moved = value + rng.uniform(-0.15, 0.15) * (param.high - param.low)
        if param.step:
            moved = param.low + round((moved - param.low) / param.step) * param.step
            return round(min(param.high, max(param.low, moved)), 10)
        return min(param.high, max(param.low, float(f"{moved:.3g}")))
    others = [c for c in param.choices if _label(c) != _label(value)]
    return rng.choice(others) if others else value


def space_size(space: Mapping[str, Any]) -> float:
    """How many distinct configurations the space holds (inf with a continuous dimension)."""
    size = 1.0
    for param in space.values():
        kind = getattr(param, "type", None)
        if kind == "int":
            size *= (param.high - param.low) // param.step + 1
        elif kind == "float" and param.step:
            size *= math.floor((param.high - param.low) / param.step + 1e-9) + 1
        elif kind == "categorical":
            size *= len({_label(c) for c in param.choices})
        else:
            return math.inf
    return size


def _fmt(value: Any) -> str:
    if value is MISSING:
        return "unset"
    if isinstance(value, bool) or value is None or isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ---- the optimizer --------------------------------------------------------------------------------


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: give a whole number of trials") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r}: give at least 1 trial")
    return value


@optimizer("retrieval_search", categories=["retrieval", "context"], version=1)
class RetrievalSearch:
    """Optuna TPE search over the retrieval configuration: pruned on a subset, guardrails as constraints."""

    def __init__(self, *, max_trials: int | None = None, subset_fraction: float = 1 / 3, prune_margin: float = 0.1,
                 latency: bool | None = None, local_search: bool = True, gamma: float | None = 0.25):
        self.max_trials = max_trials
        self.local_search, self.gamma = local_search, gamma
        self.subset_fraction = subset_fraction
        self.prune_margin = prune_margin
        self.latency = latency

    def propose(self, task: OptimizeTask) -> list[Proposal]:
        files = task.files("retrieval")
        if not files:
            task.log("no retrieval surface (surfaces.retrieval in autofix.yaml): nothing to search")
            return []
        if not task.retrieval_space:
            task.log(f"{files[0].path}: empty search space (surfaces.retrieval.space): nothing to search")
            return []
        if task.base.score is None:
            task.log("the base scores nothing on the training cases: no score to improve")
            return []
        max_trials = self.max_trials or _env_int(TRIALS_ENV) or DEFAULT_TRIALS
        latency = self.latency if self.latency is not None else os.environ.get(LATENCY_ENV, "") == "1"
        return _Search(task, files[0].path, files[0].text, max_trials=max_trials,
                       subset_fraction=self.subset_fraction, prune_margin=self.prune_margin, latency=latency,
                       local_search=self.local_search, gamma=self.gamma).run()


class _Search:
    def __init__(self, task: OptimizeTask, path: str, text: str, *, max_trials: int, subset_fraction: float,
                 prune_margin: float, latency: bool, local_search: bool = True, gamma: float | None = None):
        self.task, self.path, self.text = task, path, text
        self.max_trials, self.latency = max_trials, latency
        self.local_search, self.gamma = local_search, gamma
        self.startup = max(3, max_trials // 4)
        self.rng = random.Random(task.seed)
        self.space = dict(task.retrieval_space)
        self.base_values = load_values(text, path)
        self.base_cases = {c.case_id: c for c in task.base.cases}
        self.base = Figures.of(task.base.cases)
        self.base_ran = Figures.of([c for c in task.base.cases if not c.error])
        ids = [c.case_id for c in task.train]
        measured = [i for i in ids if i in self.base_cases and self.base_cases[i].score is not None]
        k = max(1, math.ceil(len(measured) * subset_fraction)) if len(ids) > 1 else 0
        self.subset = measured[:k] if len(measured) > k else []
        self.rest = [i for i in ids if i not in set(self.subset)]
        self.base_subset = Figures.of([self.base_cases[i] for i in self.subset]) if self.subset else None
        self.margin = max(prune_margin, 1.0 / len(self.subset)) if self.subset else 0.0
        self.records: dict[int, dict[str, Any]] = {}
        self.by_text: dict[str, dict[str, Any]] = {}
        self.work_dir = Path(task.work_dir).resolve()

    # ---- study ------------------------------------------------------------------------------------

    def _study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = {k: getattr(p, "model_dump", lambda: repr(p))() for k, p in self.space.items()}
        digest = hashlib.sha256(json.dumps([self.path, self.text, space, self.task.seed, sorted(self.subset)],
                                           sort_keys=True, default=str).encode()).hexdigest()[:10]
        self.study_name = f"retrieval_search-{self.task.cluster.id}-{digest}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.storage = f"sqlite:///{self.work_dir / 'study.sqlite3'}"
        startup = self.startup
        extra: dict[str, Any] = {}
        if self.gamma is not None:
            extra["gamma"] = lambda n, g=self.gamma: min(math.ceil(g * n), 25)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate TPE and constraints_func are flagged experimental/deprecated
            if hasattr(optuna.trial.Trial, "set_constraint"):
                sampler = optuna.samplers.TPESampler(seed=self.task.seed, n_startup_trials=startup, multivariate=True,
                                                     **extra)
            else:  # Optuna 4: constraints through the sampler
                sampler = optuna.samplers.TPESampler(
                    seed=self.task.seed, n_startup_trials=startup, multivariate=True, **extra,
                    constraints_func=lambda t: t.user_attrs.get("constraints", [0.0] * len(GUARDRAILS)))
        if self.base_subset is not None and self.base_subset.score is not None:
            # the explicit rule, through Optuna's pruner API: below base-on-subset minus the margin
            pruner: optuna.pruners.BasePruner = optuna.pruners.ThresholdPruner(
                lower=self.base_subset.score - self.margin - 1e-9)
        else:
            pruner = optuna.pruners.NopPruner()
        return optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=sampler, pruner=pruner,
                                   direction="maximize", load_if_exists=True)

    def _resume(self, study: optuna.Study) -> None:
        for t in study.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.RUNNING:  # left by a killed run
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            elif "record" in t.user_attrs:
                record = dict(t.user_attrs["record"])
                self.records[t.number] = record
                if record["status"] != "duplicate":
                    self.by_text.setdefault(record["text"], record)
        if self.records:
            self.task.log(f"resumed study {self.study_name}: {len(self.records)} trial(s) already run")

    # ---- one trial --------------------------------------------------------------------------------

    def _set_constraints(self, trial: optuna.Trial, cons: Mapping[str, float]) -> None:
        values = [float(cons.get(figure, 0.0)) for figure, _ in GUARDRAILS]
        trial.set_user_attr("constraints", values)
        if hasattr(trial, "set_constraint"):
            for (figure, _), v in zip(GUARDRAILS, values):
                trial.set_constraint(figure, v)

    def _finish(self, study: optuna.Study, trial: optuna.Trial, record: dict[str, Any],
                state: optuna.trial.TrialState, value: float | None = None) -> None:
        trial.set_user_attr("record", record)
        self.records[trial.number] = record
        if record["status"] != "duplicate":
            self.by_text.setdefault(record["text"], record)
        if state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, value if value is not None else 0.0)
        else:
            study.tell(trial, state=state)

    def _trial(self, study: optuna.Study) -> bool:
        """Run one trial; False when the budget stopped it (nothing more can be run)."""
        task = self.task
        trial = study.ask()
        values = {key: suggest(trial, key, param) for key, param in self.space.items()}
        text = set_values(self.text, values, self.path)
        changed = {k: [self.base_values.get(k, MISSING), v] for k, v in values.items()
                   if not same_value(self.base_values.get(k, MISSING), v)}
        record: dict[str, Any] = {
            "number": trial.number, "origin": trial.user_attrs.get("origin", "sampler"), "status": "complete",
            "params": values,
            "changed": {k: [None if a is MISSING else a, b] for k, (a, b) in changed.items()},
            "text": text, "subset_score": None, "score": None, "feasible": None, "ratios": {}, "metric_calls": 0,
        }
        what = ", ".join(f"{k} {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in changed.items()) or "the base"

        if text == self.text or text in self.by_text:  # the base, or a configuration already scored: free
            same = self.by_text.get(text)
            if same is None:  # the base: task.base scored it
                figures = self.base
                record.update(subset_score=self.base_subset.score if self.base_subset else None, **self._full(figures))
            else:
                record.update({k: same[k] for k in ("subset_score", "score", "feasible", "ratios", "figures")
                               if k in same}, status="duplicate", of=same["number"])
            self._set_constraints(trial, violations(record["ratios"], task.guardrails))
            state = optuna.trial.TrialState.COMPLETE
            if same is not None and same["status"] != "complete":  # stopped on the subset: stopped again
                state = optuna.trial.TrialState.PRUNED
                trial.report(same["subset_score"] or 0.0, 0)
            self._finish(study, trial, record, state, record["score"])
            task.log(f"trial {trial.number}: {what}: "
                     + ("base, scored by the base replay" if same is None else f"same as trial {same['number']}"))
            return True

        calls0 = task.spend.metric_calls
        limits = {f: float(getattr(task.guardrails, field, 0) or 0) for f, field in GUARDRAILS}
        try:
            cases: list[CaseEval] = []
            for ids, slack, is_subset in self._stages():
                cases += task.evaluate({self.path: text}, case_ids=list(ids)).cases
                if slack is None:
                    continue
                so_far = Figures.of(cases)
                base_so_far = Figures.of([self.base_cases[c.case_id] for c in cases])
                early = estimated_ratios(cases, self.base_cases, self.base_ran)
                broken = {f: r for f, r in early.items() if limits[f] > 0 and r > limits[f] * (1 + slack)}
                # every subset case failed to replay where the base's ran: the configuration breaks the target
                failed = is_subset and all(c.error for c in cases) and not all(self.base_cases[c.case_id].error
                                                                               for c in cases)
                if is_subset:
                    record["subset_score"] = so_far.score
                    trial.report(so_far.score if so_far.score is not None else 0.0, 0)
                if broken or failed or (is_subset and trial.should_prune()):
                    status = "infeasible_early" if broken else "failed" if failed else "pruned"
                    record.update(metric_calls=task.spend.metric_calls - calls0, ratios=early, figures=asdict(so_far),
                                  feasible=False if broken or failed else None, status=status,
                                  failed_cases=sum(1 for c in cases if c.error))
                    self._set_constraints(trial, violations(early, task.guardrails))
                    self._finish(study, trial, record, optuna.trial.TrialState.PRUNED)
                    if broken:
                        why = ", ".join(f"{f} x{r:.2f}" for f, r in broken.items()) + f" on {len(cases)} case(s)"
                    elif failed:
                        why = f"all {len(cases)} subset cases failed: {(cases[0].error or '')[:120]}"
                    else:
                        why = f"subset {so_far.score or 0.0:.2f} < base {base_so_far.score or 0.0:.2f} - {self.margin:.2f}"
                    label = {"infeasible_early": "infeasible", "failed": "failed", "pruned": "pruned"}[status]
                    task.log(f"trial {trial.number}: {what}: {label} ({why})")
                    return True
        except BudgetExhausted as exc:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            task.log(f"trial {trial.number}: {what}: budget spent ({exc})")
            return False
        figures = Figures.of(cases)
        record.update(self._full(figures, cases), metric_calls=task.spend.metric_calls - calls0,
                      failed_cases=sum(1 for c in cases if c.error))
        self._set_constraints(trial, violations(record["ratios"], task.guardrails))
        self._finish(study, trial, record, optuna.trial.TrialState.COMPLETE, record["score"])
        ratio = ", ".join(f"{f} x{r:.2f}" for f, r in record["ratios"].items())
        task.log(f"trial {trial.number}: {what}: score {_score(figures.score)} (base {_score(self.base.score)})"
                 f"{', ' + ratio if ratio else ''}{'' if record['feasible'] else ', INFEASIBLE'}")
        return True

    def _stages(self) -> list[tuple[list[str], float | None, bool]]:
        """(case ids, guardrail slack to stop at, whether the pruner looks) of each step of a trial: one
        probe case (stopped only far past a guardrail: a bigger context shows on any case), the rest of
        the subset (pruned, or stopped past a guardrail), then the remaining cases."""
        stages: list[tuple[list[str], float | None, bool]] = []
        if len(self.subset) >= 2:
            stages.append((self.subset[:1], PROBE_INFEASIBLE_SLACK, False))
            stages.append((self.subset[1:], EARLY_INFEASIBLE_SLACK, True))
        elif self.subset:
            stages.append((self.subset, EARLY_INFEASIBLE_SLACK, True))
        if self.rest:
            stages.append((self.rest, None, False))
        return stages

    def _full(self, figures: Figures, cases: Sequence[CaseEval] | None = None) -> dict[str, Any]:
        """Score, guardrail ratios and feasibility of a trial replayed on every training case (`cases`;
        None: the base itself)."""
        if cases is None:
            ratios = guardrail_ratios(figures, self.base, latency=self.latency)
            ran = True
        else:
            ratios = paired_ratios(cases, self.base_cases, latency=self.latency)
            ran = any(not c.error for c in cases) or all(c.error for c in self.base_cases.values())
        feasible = ran and all(v <= 0 for v in violations(ratios, self.task.guardrails).values())
        return {"score": figures.score if figures.score is not None else 0.0, "feasible": feasible,
                "ratios": ratios, "figures": asdict(figures)}

    # ---- the loop ---------------------------------------------------------------------------------

    def _counted(self) -> int:
        return sum(1 for r in self.records.values() if r["status"] != "duplicate")

    def run(self) -> list[Proposal]:
        task = self.task
        study = self._study()
        self._resume(study)
        base_pending = False
        if not study.trials:
            base = {k: _optuna_value(p, self.base_values.get(k, MISSING)) for k, p in self.space.items()
                    if _representable(p, self.base_values.get(k, MISSING))}
            if len(base) == len(self.space):
                study.enqueue_trial(base, user_attrs={"origin": "base"})
                base_pending = True
            else:
                task.log(f"{self.path}: the base values are not all in the search space "
                         f"({', '.join(sorted(set(self.space) - set(base)))}): the base is not a trial")
        full_cost = len(self.subset) + len(self.rest)
        limit = task.budget.max_metric_calls
        task.log(f"searching {', '.join(self.space)} in {self.path}: up to {self.max_trials} trials, "
                 f"subset of {len(self.subset)} case(s) then {len(self.rest)} more per trial")
        asks, size = 0, space_size(self.space)
        while self._counted() < self.max_trials and asks < 3 * self.max_trials:
            if len(self.by_text) >= size:
                task.log(f"all {int(size)} configurations of the space were tried")
                break
            free = base_pending
            if not free and self.local_search and self._counted() >= self.startup \
                    and (self._counted() - self.startup) % 2 == 0:
                neighbour = self._neighbour()
                if neighbour is not None:
                    study.enqueue_trial(neighbour, user_attrs={"origin": "local"})
            if not free and limit is not None and task.spend.metric_calls + full_cost > limit:
                task.log(f"budget: {task.spend.metric_calls} of {limit} metric calls used, a trial needs up to "
                         f"{full_cost}: stopping")
                break
            asks += 1
            base_pending = False
            if not self._trial(study):
                break
        self._write_table()
        return self._proposals()

    def _neighbour(self) -> dict[str, Any] | None:
        """Optuna values of an untried neighbour of the best feasible trial so far (the base when none
        beats it): one or two dimensions moved (`move`)."""
        done = [r for r in self.records.values() if r["status"] == "complete" and r["feasible"]]
        if done:
            best = min(done, key=lambda r: (-r["score"], r["figures"]["tokens"], r["number"]))["params"]
        elif all(_representable(p, self.base_values.get(k, MISSING)) for k, p in self.space.items()):
            best = {k: self.base_values[k] for k in self.space}
        else:
            return None
        for _ in range(20):
            values = dict(best)
            for key in self.rng.sample(sorted(self.space), k=min(len(self.space), self.rng.choice([1, 2]))):
                values[key] = move(self.space[key], values[key], self.rng)
            if set_values(self.text, values, self.path) not in self.by_text:
                return {k: _optuna_value(p, values[k]) for k, p in self.space.items()}
        return None

    # ---- results ----------------------------------------------------------------------------------

    def _counts(self) -> dict[str, int]:
        rs = [r for r in self.records.values() if r["status"] != "duplicate"]

        def failed(r: dict[str, Any]) -> bool:
            return r["status"] == "failed" or (r["status"] == "complete" and r["figures"]["cases"] > 0
                                               and r.get("failed_cases", 0) == r["figures"]["cases"])

        return {"trials": len(rs), "pruned": sum(r["status"] == "pruned" for r in rs),
                "infeasible": sum(r["status"] == "infeasible_early"
                                  or (r["status"] == "complete" and not r["feasible"] and not failed(r)) for r in rs),
                "failed": sum(failed(r) for r in rs),
                "duplicates": sum(r["status"] == "duplicate" for r in self.records.values())}

    def _tradeoff(self) -> list[list[Any]]:
        return [[round(r["score"], 4), round(r["figures"]["tokens"], 1), bool(r["feasible"])]
                for _, r in sorted(self.records.items()) if r["status"] == "complete"]

    def _write_table(self) -> None:
        rows = []
        for _, r in sorted(self.records.items()):
            rows.append({k: v for k, v in r.items() if k != "text"})
        table = {
            "study": self.study_name, "storage": self.storage, "file": self.path,
            "base": {"score": self.base.score, "figures": asdict(self.base), "values": self.base_values,
                     "subset_score": self.base_subset.score if self.base_subset else None},
            "subset": self.subset, "rest": self.rest,
            "prune_rule": (f"ThresholdPruner: prune when the subset score < base subset score - {self.margin:.3f}"
                           if self.subset else "no subset (too few measured cases): no pruning"),
            "guardrails": {field: getattr(self.task.guardrails, field, None) for _, field in GUARDRAILS},
            "latency_constraint": self.latency,
            "metric_calls": self.task.spend.metric_calls,
            **self._counts(), "trials_table": rows, "tradeoff": self._tradeoff(),
        }
        (self.work_dir / "trials.json").write_text(json.dumps(table, indent=2, default=str), encoding="utf-8")

    def _proposals(self) -> list[Proposal]:
        task, base = self.task, self.base.score or 0.0
        winners = [r for r in self.records.values()
                   if r["status"] == "complete" and r["feasible"] and r["text"] != self.text and r["score"] > base + 1e-9]
        winners.sort(key=lambda r: (-r["score"], r["figures"]["tokens"], r["number"]))
        counts, tradeoff = self._counts(), self._tradeoff()
        out: list[Proposal] = []
        seen: set[str] = set()
        for r in winners:
            if r["text"] in seen:
                continue
            seen.add(r["text"])
            moved = ", ".join(f"{k} {_fmt(MISSING if a is None else a)} -> {_fmt(b)}" for k, (a, b) in r["changed"].items())
            ratios = ", ".join(f"{f} x{v:.2f}" for f, v in r["ratios"].items()) or "no guardrail figure to compare"
            out.append(Proposal(
                files={self.path: r["text"]}, description=f"retrieval: {moved}",
                rationale=(f"Optuna TPE search over {', '.join(self.space)} ({counts['trials']} trials, "
                           f"{counts['pruned']} pruned, {counts['infeasible']} infeasible, {counts['failed']} failed): "
                           f"trial {r['number']} scores "
                           f"{r['score']:.3f} against the base's {base:.3f} on {len(task.train)} training cases; "
                           f"guardrail ratios to the base: {ratios}."),
                train_score=r["score"], base_score=self.base.score,
                metadata={**counts, "trial": r["number"], "study": self.study_name, "params": r["params"],
                          "changed": r["changed"], "ratios": r["ratios"],
                          "tokens_per_case": r["figures"]["tokens"], "base_tokens_per_case": self.base.tokens,
                          "tradeoff": tradeoff},
            ))
            if len(out) >= task.max_candidates:
                break
        if not out:
            task.log(f"no feasible trial beats the base score {base:.3f} ({counts['trials']} trials, "
                     f"{counts['pruned']} pruned, {counts['infeasible']} infeasible, {counts['failed']} failed)")
        return out


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
