"""The plugin test suite: what every optimizer must do, checked on a synthetic task in memory.

    from autofix.optimize.testing import check_optimizer
    check_optimizer(MyOptimizer)          # raises AssertionError naming what it broke

No replay, sandbox or model runs: `evaluate` scores files by a function you give (default: the share
of training cases whose id appears in the surface files' text), `complete` answers with a canned
string. It checks that the optimizer returns `Proposal`s changing only surface files, stays within a
metric-call budget (it must stop when `evaluate` raises `BudgetExhausted`, returning what it has),
asks only for training cases, and does not fail when the model budget is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autofix.optimize.base import Optimizer
from autofix.optimize.records import (
    Budget,
    BudgetExhausted,
    CaseEval,
    ClusterBrief,
    OptimizeTask,
    Proposal,
    ReplayBatch,
    Spend,
    SurfaceFile,
)
from autofix.replay.records import Case
from autofix.triage.records import Category

Scorer = Callable[[Mapping[str, str], Case], float]


def _default_scorer(files: Mapping[str, str], case: Case) -> float:
    return 1.0 if any(case.case_id in text for text in files.values()) else 0.0


def synthetic_task(category: Category | str, work_dir: Path, *, budget: Budget | None = None,
                   scorer: Scorer = _default_scorer, answer: str = "") -> tuple[OptimizeTask, dict[str, Any]]:
    """An `OptimizeTask` over three training cases and one file of each surface kind, plus a log of
    what the optimizer asked for (`evaluated_ids`, `metric_calls`, `completions`)."""
    surfaces = [
        SurfaceFile(path="prompts/system.md", kind="prompt", text="You answer questions.\n"),
        SurfaceFile(path="src/app/tools.py", kind="code", text="def tool(x):\n    return x\n"),
        SurfaceFile(path="config/retrieval.yaml", kind="retrieval", text="top_k: 2\nchunk_size: 40\n"),
    ]
    base_files = {s.path: s.text for s in surfaces}
    train = [Case(case_id=f"case-{i}", input=f"question {i}") for i in range(3)]
    spend = Spend(budget or Budget(max_metric_calls=30))
    seen: dict[str, Any] = {"evaluated_ids": [], "completions": 0, "outside": []}
    allowed = set(base_files)

    def evaluate(files: Mapping[str, str], case_ids: list[str] | None = None) -> ReplayBatch:
        outside = sorted(set(files) - allowed)
        if outside:
            seen["outside"].extend(outside)
            raise ValueError(f"not surface files: {outside}")
        ids = list(case_ids) if case_ids is not None else [c.case_id for c in train]
        by_id = {c.case_id: c for c in train}
        if any(i not in by_id for i in ids):
            raise ValueError(f"not training cases: {[i for i in ids if i not in by_id]}")
        spend.reserve_metric_calls(len(ids))
        seen["evaluated_ids"].extend(ids)
        merged = {**base_files, **files}
        evals = [CaseEval(case_id=i, input=by_id[i].input, output="answer", score=scorer(merged, by_id[i]),
                          feedback="synthetic", tokens=10) for i in ids]
        return ReplayBatch(commit="0" * 40, cases=evals, score=sum(e.score or 0 for e in evals) / max(1, len(evals)),
                           tokens_per_case=10.0)

    def complete(messages: Any, **kwargs: Any) -> str:
        seen["completions"] += 1
        spend.check_usd(0.01)
        spend.add_usd(0.01)
        return answer

    base = evaluate({})
    task = OptimizeTask(run_id="test", cluster=ClusterBrief(id="cluster-1", category=Category(category), size=3),
                        train=train, surfaces=surfaces, base=base, evaluate=evaluate, complete=complete, spend=spend,
                        measures=["synthetic"], work_dir=work_dir, max_candidates=3,
                        retrieval_space={})
    return task, seen


def check_optimizer(factory: Callable[[], Optimizer], work_dir: Path, *, category: Category | str | None = None,
                    answer: str = "", scorer: Scorer = _default_scorer) -> list[Proposal]:
    """Run the optimizer on synthetic tasks and assert the plugin contract; returns its proposals."""
    instance = factory()
    assert isinstance(instance, Optimizer), f"{factory!r} does not build an Optimizer (no propose method)"
    cat = category or "prompt"
    work_dir.mkdir(parents=True, exist_ok=True)
    task, seen = synthetic_task(cat, work_dir / "run", answer=answer, scorer=scorer)
    proposals = instance.propose(task)
    assert isinstance(proposals, list), f"propose returned {type(proposals).__name__}, not a list of Proposal"
    allowed = {s.path for s in task.surfaces}
    for p in proposals:
        assert isinstance(p, Proposal), f"propose returned a {type(p).__name__}, not a Proposal"
        assert set(p.files) <= allowed, f"a proposal changes non-surface files: {sorted(set(p.files) - allowed)}"
    assert len(proposals) <= task.max_candidates, f"{len(proposals)} proposals, max_candidates is {task.max_candidates}"
    assert task.spend.metric_calls <= (task.budget.max_metric_calls or 0), "metric-call budget exceeded"
    assert not seen["outside"], f"evaluated non-surface files: {seen['outside']}"

    tight, _ = synthetic_task(cat, work_dir / "tight", budget=Budget(max_metric_calls=4, max_usd=0.0),
                              answer=answer, scorer=scorer)
    try:
        instance.propose(tight)
    except BudgetExhausted as exc:
        raise AssertionError(f"the optimizer let BudgetExhausted escape instead of returning what it had: {exc}")
    assert tight.spend.metric_calls <= 4, "metric-call budget exceeded on a tight budget"
    return proposals
