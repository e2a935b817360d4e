"""GEPA reflective prompt evolution over a target's prompt files (`autofix-gepa/gepa`).

    autofix optimize -c autofix.yaml --cluster <prompt cluster> --optimizer gepa

gepa's candidate is `{path: text}` of the prompt files the cluster's cases went through; each
iteration it picks a candidate from the Pareto front of per-case training scores, replays it on a
minibatch of training cases, asks the reflection model (`model.optimizer`) for a new version of one
file from those cases' answers, spans and verdicts, and keeps the new candidate when it does better
on the minibatch (then it is replayed on every training case). The held-out part of the slice is
never seen: gepa's valset here is the training part again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autofix.optimize import BudgetExhausted, OptimizeTask, Proposal, SurfaceFile, optimizer

REFLECTION_TEMPLATE = """I gave an AI assistant the file `{path}`, one of its prompt files. Its current content:
```
<curr_param>
```
{fields}
Below are requests the assistant answered with it: its answer, what happened inside (router decision, \
retrieved documents, tool calls, errors) and how each answer was judged.
```
<side_info>
```
Write a new version of `{path}` that fixes the failures judged above and keeps what passed.
First say in one or two sentences what you change and why. Then give the complete new content of the \
file within ``` blocks."""

FIELDS_NOTE = ("It is a template: the assistant fills in {fields} (Python str.format fields). Keep them, "
               "and write literal braces as {{{{ }}}}.\n")

_FENCE = re.compile(r"```[^\n`]*\n?.*?(?:```|$)", re.DOTALL)


def reflection_template(path: str, text: str) -> str:
    from autofix_gepa.adapter import template_fields

    fields = template_fields(text)
    note = FIELDS_NOTE.format(fields=", ".join(f"{{{f}}}" for f in fields)) if fields else ""
    return REFLECTION_TEMPLATE.replace("{path}", path).replace("{fields}\n", note)


def reflection_summary(raw: str, limit: int = 600) -> str:
    """What the reflection model said about its change: its answer outside the fenced new text."""
    text = " ".join(_FENCE.sub(" ", raw or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def order_prompt_files(task: OptimizeTask) -> list[SurfaceFile]:
    """The prompt files the training cases went through, most failures first (then by path); all of
    them when none can be told apart. A file with too little static text to tell counts as used."""
    from autofix_gepa.adapter import is_exercised

    failing = [c for c in task.base.cases if c.score is None or c.score < 1.0] or list(task.base.cases)
    ranked = []
    for surface in task.files("prompt"):
        seen = [is_exercised(surface.text, c) for c in failing]
        hits = sum(1 for s in seen if s is None or s)
        ranked.append((hits, surface))
    used = [s for hits, s in sorted(ranked, key=lambda r: (-r[0], r[1].path)) if hits > 0]
    return used or sorted(task.files("prompt"), key=lambda s: s.path)


class _SpendStopper:
    """gepa's stop condition from autofix's budget: stop when a model call was refused, when what is
    left cannot pay for one more iteration (a minibatch, then a full pass if it is kept), when every
    training case already has a perfect candidate, or when iterations stop finding anything new to
    replay (each minibatch perfect, or the model proposing what was already replayed or cannot be)."""

    STALL_ITERATIONS = 5

    def __init__(self, task: OptimizeTask, adapter: Any, worst_iteration: int, cap: int | None):
        self.task, self.adapter, self.worst, self.cap = task, adapter, worst_iteration, cap
        self.reason: str | None = None
        self._last: int | None = None
        self._stalled = 0

    def __call__(self, gepa_state: Any) -> bool:
        spend = self.task.spend
        limit = spend.budget.max_metric_calls
        if limit is None:
            limit = self.cap
        activity = spend.metric_calls
        self._stalled = self._stalled + 1 if activity == self._last else 0
        self._last = activity
        front = getattr(gepa_state, "pareto_front_valset", {}) or {}
        if self.adapter.exhausted:
            self.reason = f"budget: {self.adapter.exhausted}"
        elif spend.usd_left is not None and spend.usd_left <= 0.0:
            self.reason = "budget: dollars spent"
        elif limit is not None and limit - spend.metric_calls < self.worst:
            self.reason = (f"budget: {limit - spend.metric_calls} metric calls left, an iteration may need "
                           f"{self.worst}")
        elif front and all(score >= 1.0 for score in front.values()):
            self.reason = "every training case has a candidate scoring 1.0"
        elif self._stalled >= self.STALL_ITERATIONS:
            self.reason = f"no progress: {self._stalled} iterations in a row replayed nothing new"
        return self.reason is not None


class _Logger:
    """gepa's log into `<run_dir>/run_log.txt`; its decisions also go to the task's log."""

    _FORWARD = ("Found a better program", "not better", "Accepted candidate", "Exception", "failed",
                "Loading gepa state", "did not propose", "All subsample scores perfect")

    def __init__(self, path: Path, task: OptimizeTask):
        self.path, self.task = path, task

    def log(self, *args: Any, **kwargs: Any) -> None:
        message = " ".join(str(a) for a in args)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(message + "\n")
        first = message.splitlines()[0] if message else ""
        if any(k in first for k in self._FORWARD):
            self.task.log(first[:200])


class _Reflections:
    """gepa callback: remember the reflection model's raw answer for each proposed text, and append
    each reflection (prompt, raw answer, parsed text) to `<run_dir>/reflections.jsonl`."""

    def __init__(self, adapter: Any, path: Path):
        self.adapter, self.path = adapter, path

    def on_proposal_end(self, event: Mapping[str, Any]) -> None:
        from autofix_gepa.adapter import candidate_key

        raw_outputs = event.get("raw_lm_outputs") or {}
        prompts = event.get("prompts") or {}
        with self.path.open("a", encoding="utf-8") as fh:
            for name, text in (event.get("new_instructions") or {}).items():
                raw = raw_outputs.get(name, "")
                self.adapter.reflections[candidate_key({name: text})] = raw
                fh.write(json.dumps({"iteration": event.get("iteration"), "file": name, "prompt": prompts.get(name),
                                     "raw": raw, "proposed": text}, ensure_ascii=False, default=str) + "\n")


@optimizer("gepa", categories=["prompt", "routing"], version=1, writes_with_model=True)
class GEPAPromptOptimizer:
    """GEPA reflective prompt evolution over the target's prompt files (Pareto selection, gepa library)."""

    def __init__(self, *, minibatch_size: int = 3, max_tokens: int = 768, temperature: float = 0.7,
                 default_max_metric_calls: int | None = None):
        self.minibatch_size = minibatch_size
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.default_max_metric_calls = default_max_metric_calls
        """The metric-call cap when the budget sets none (default: 10 passes over the training cases)."""

    def propose(self, task: OptimizeTask) -> list[Proposal]:
        import gepa
        from gepa.core.state import GEPAState

        from autofix_gepa.adapter import PromptFilesAdapter, candidate_key

        files = order_prompt_files(task)
        if not files:
            task.log("no prompt files among the surfaces (surfaces.prompts in autofix.yaml): nothing to evolve")
            return []
        if not task.train:
            task.log("no training cases: nothing to evolve against")
            return []
        seed = {s.path: s.text for s in files}
        task.log(f"evolving {', '.join(seed)} on {len(task.train)} training cases")
        adapter = PromptFilesAdapter(task, seed)
        ids = [c.case_id for c in task.train]
        minibatch = max(1, min(self.minibatch_size, len(ids)))
        cap = None if task.budget.max_metric_calls is not None else (
            self.default_max_metric_calls or 10 * len(ids)) + task.spend.metric_calls
        stopper = _SpendStopper(task, adapter, worst_iteration=len(ids), cap=cap)
        run_dir = task.work_dir / "gepa"
        run_dir.mkdir(parents=True, exist_ok=True)
        calls0 = task.spend.metric_calls
        started = time.monotonic()

        def reflection_lm(prompt: str | list[dict[str, Any]]) -> str:
            adapter.reflection_calls += 1
            try:
                return task.complete(prompt, max_tokens=self.max_tokens, temperature=self.temperature)
            except BudgetExhausted as exc:
                adapter.exhausted = str(exc)
                raise

        stopped: str | None = None
        try:
            gepa.optimize(
                seed_candidate=seed, trainset=ids, valset=ids, adapter=adapter, reflection_lm=reflection_lm,
                candidate_selection_strategy="pareto", reflection_minibatch_size=minibatch,
                reflection_prompt_template={p: reflection_template(p, t) for p, t in seed.items()},
                module_selector="round_robin", stop_callbacks=[stopper], run_dir=str(run_dir),
                logger=_Logger(run_dir / "run_log.txt", task),
                callbacks=[_Reflections(adapter, run_dir / "reflections.jsonl")],
                seed=task.seed, raise_on_exception=True, display_progress_bar=False,
            )
        except BudgetExhausted as exc:
            stopped = f"budget: {exc}"
        stopped = stopped or stopper.reason
        if not (run_dir / "gepa_state.bin").exists():
            task.log(f"stopped before the first iteration ({stopped or 'no state'})")
            return []
        state = GEPAState.load(str(run_dir))
        adapter.set_adapter_state(state.adapter_state)
        proposals = self._proposals(task, state, adapter, candidate_key, task.spend.metric_calls - calls0)
        summary = {
            "candidates": len(state.program_candidates), "iterations": state.i + 1,
            "metric_calls": task.spend.metric_calls - calls0, "gepa_metric_calls": state.total_num_evals,
            "reflections": adapter.reflection_calls, "refused_before_replay": adapter.refused,
            "stopped": stopped, "wall_s": round(time.monotonic() - started, 1),
            "proposals": [{"files": sorted(p.files), "train_score": p.train_score} for p in proposals],
        }
        (run_dir / "autofix_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        task.log(f"{len(state.program_candidates) - 1} candidate(s) in {state.i + 1} iteration(s), "
                 f"{summary['metric_calls']} metric calls; {len(proposals)} better than the base"
                 + (f"; stopped on {stopped}" if stopped else ""))
        return proposals

    def _proposals(self, task: OptimizeTask, state: Any, adapter: Any, candidate_key: Any,
                   metric_calls: int) -> list[Proposal]:
        base_score = task.base.score
        ids = [c.case_id for c in task.train]  # gepa's data ids are positions in this list
        iteration_of: dict[int, dict[str, Any]] = {}
        for entry in state.full_program_trace:
            for idx in entry.get("new_program_indices") or ([entry["new_program_idx"]] if "new_program_idx" in entry
                                                             else []):
                iteration_of[idx] = entry
        front = {idx for members in state.program_at_pareto_front_valset.values() for idx in members}
        found = []
        for idx, candidate in enumerate(state.program_candidates):
            if idx == 0:
                continue
            changed = adapter.changed(candidate)
            if not changed:
                continue
            score, known = adapter.train_score(candidate)
            if known < len(task.train):  # not replayed on every training case: gepa's view (unmeasured as 0)
                subs = {ids[j]: v for j, v in state.prog_candidate_val_subscores[idx].items()}
                measured = [c.case_id for c in task.base.cases if c.score is not None]
                score = sum(subs.get(c, 0.0) for c in measured) / len(measured) if measured else None
            if score is None or (base_score is not None and score <= base_score):
                continue
            found.append((score, state.program_full_scores_val_set[idx], idx, candidate, changed))
        found.sort(key=lambda f: (-f[0], -f[1], f[2]))
        proposals = []
        for score, aggregate, idx, candidate, changed in found[: task.max_candidates]:
            parents = [p for p in state.parent_program_for_candidate[idx] if p is not None]
            parent_files = adapter.changed(state.program_candidates[parents[0]]) if parents else {}
            notes = [reflection_summary(adapter.reflections.get(candidate_key({p: t}), ""))
                     for p, t in changed.items() if parent_files.get(p) != t]
            entry = iteration_of.get(idx, {})
            lineage = {
                "candidate": idx, "parents": parents, "ancestry": _ancestry(state, idx),
                "iteration": entry["i"] + 1 if "i" in entry else None,
                "minibatch": [ids[j] for j in entry.get("subsample_ids") or []],
                "subsample_scores": entry.get("subsample_scores"),
                "new_subsample_scores": entry.get("new_subsample_scores"),
                "discovered_after_metric_calls": state.num_metric_calls_by_discovery[idx],
                "pareto_front": idx in front, "gepa_val_score": aggregate,
            }
            names = ", ".join(sorted(changed))
            proposals.append(Proposal(
                files=changed,
                description=f"prompt: GEPA-evolved {names} (training score {_fmt(base_score)} -> {_fmt(score)})",
                rationale=" ".join(n for n in notes if n) or (
                    f"GEPA reflective mutation of {names} from candidate {parents[0] if parents else 0} "
                    f"(iteration {lineage['iteration']})"),
                train_score=score, base_score=base_score,
                metadata={"lineage": lineage, "metric_calls": metric_calls,
                          "gepa_metric_calls": state.total_num_evals},
            ))
        return proposals


def _ancestry(state: Any, idx: int) -> list[int]:
    chain, seen = [], set()
    while idx not in seen:
        seen.add(idx)
        chain.append(idx)
        parents = [p for p in state.parent_program_for_candidate[idx] if p is not None]
        if not parents:
            break
        idx = parents[0]
    return chain[::-1]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
