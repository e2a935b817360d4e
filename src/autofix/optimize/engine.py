"""Running optimizers on one failure cluster: measure the slice, hand the training part to each
optimizer, and commit every proposal on its own branch `autofix/<run>/<cluster>/<n>`.

    result = optimize_cluster(config, "retrieval-unknown-misses-request", budget=Budget(max_metric_calls=200))
    result.candidates[0].branch, result.candidates[0].train

The held-out part of the slice is never loaded here: it and the regression set belong to the gate.
A cluster nothing measures ends as an `evaluation` finding (what to measure first), not optimized.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from autofix.config import AutofixConfig
from autofix.optimize.base import find_optimizer, optimizer_categories, optimizers_for
from autofix.optimize.evaluation import SliceEvaluator
from autofix.optimize.lm import CompletionCache, budgeted_completion
from autofix.optimize.records import (
    Budget,
    BudgetExhausted,
    ClusterBrief,
    OptimizeTask,
    Proposal,
    ReplayBatch,
    Spend,
    SurfaceFile,
)
from autofix.replay.datasets import load_slice, read_cluster
from autofix.slices import MeasurementGap, plan_measurement
from autofix.triage.records import Category, Finding
from autofix.worktrees.manager import WorktreeManager
from autofix.worktrees.records import EmptyChangeError, SurfaceViolationError

EventCallback = Callable[[str], None]


class TrainScore(BaseModel):
    base_score: float | None
    score: float | None
    verified: bool = Field(description="the engine replayed the committed files itself and got `score`")


class CandidateRecord(BaseModel):
    """A proposal committed on its own branch: what `autofix optimize --json` lists."""

    id: str
    optimizer: str
    branch: str
    commit: str
    base_commit: str
    diff: str
    files: list[str]
    description: str
    rationale: str = ""
    train: TrainScore
    tokens_per_case: float | None = None
    base_tokens_per_case: float | None = None
    cost_usd: float = Field(description="what the optimizer that made it spent in all (replays and its model)")
    metric_calls: int
    lineage: dict[str, Any] = Field(default_factory=dict)


class OptimizerRun(BaseModel):
    """One optimizer's pass over the cluster."""

    optimizer: str
    proposals: int = 0
    metric_calls: int = 0
    cost_usd: float = 0.0
    stopped: str | None = Field(default=None, description="why it stopped early: budget, or its error")


class OptimizeResult(BaseModel):
    run_id: str
    cluster: str
    category: Category
    measures: list[str] = Field(default_factory=list)
    train_cases: int = 0
    base_score: float | None = None
    finding: Finding | None = Field(default=None, description="set when the cluster was not optimized")
    runs: list[OptimizerRun] = Field(default_factory=list)
    candidates: list[CandidateRecord] = Field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "cluster": self.cluster, "category": self.category.value,
            "measures": self.measures, "train_cases": self.train_cases, "base_score": self.base_score,
            "finding": self.finding.model_dump(mode="json") if self.finding else None,
            "optimizers": [r.model_dump() for r in self.runs],
            "candidates": [{"id": c.id, "optimizer": c.optimizer, "branch": c.branch, "commit": c.commit,
                            "diff": c.diff, "train": {"base_score": c.train.base_score, "score": c.train.score},
                            "cost_usd": round(c.cost_usd, 6), "metric_calls": c.metric_calls}
                           for c in self.candidates],
            "wall_s": round(self.wall_s, 1),
        }


class OptimizeError(RuntimeError):
    """The cluster cannot be optimized as asked (unknown optimizer, one that does not serve its category)."""


def new_run_id() -> str:
    import secrets

    return f"opt-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "optimizer"


def surface_files(config: AutofixConfig) -> list[SurfaceFile]:
    out = []
    for kind, files in (("prompt", config.surface_files("prompts")), ("code", config.surface_files("code")),
                        ("retrieval", config.surface_files("retrieval"))):
        for path in files:
            out.append(SurfaceFile(path=path.relative_to(config.root).as_posix(), kind=kind,  # type: ignore[arg-type]
                                   text=path.read_text(encoding="utf-8")))
    return out


def optimize_cluster(
    config: AutofixConfig,
    cluster_id: str,
    *,
    optimizer: str | None = None,
    budget: Budget | None = None,
    run_id: str | None = None,
    max_candidates: int = 3,
    seed: int = 0,
    sandbox_kind: str | None = None,
    first_n: int = 1,
    out_dir: Path | None = None,
    on_event: EventCallback = lambda message: None,
) -> OptimizeResult:
    """Run one optimizer (`optimizer`) or every one serving the cluster's category; see the module doc.

    Candidates are numbered from `first_n` (a run that optimizes one cluster several times gives each
    pass its own range); artifacts go to `out_dir` (default `<state>/optimize/<run>/<cluster>`).
    """
    clock = time.monotonic()
    run_id = run_id or new_run_id()
    cluster = read_cluster(config, cluster_id)
    brief = ClusterBrief(id=cluster_id, category=Category(cluster.get("category", "unclassified")),
                         name=str(cluster.get("name") or ""), rationale=str(cluster.get("rationale") or ""),
                         size=int(cluster.get("size") or len(cluster.get("trace_ids") or [])),
                         rules={str(k): int(v) for k, v in (cluster.get("rules") or {}).items()})
    result = OptimizeResult(run_id=run_id, cluster=cluster_id, category=brief.category)
    entries = [find_optimizer(optimizer)] if optimizer else optimizers_for(brief.category)
    if optimizer and brief.category not in optimizer_categories(entries[0]):
        served = ", ".join(sorted(c.value for c in optimizer_categories(entries[0])))
        raise OptimizeError(f"{entries[0].name} serves {served}, not {brief.category.value} (cluster {cluster_id})")
    if not entries:
        result.finding = Finding(
            category=brief.category, rule="no_optimizer", subject=f"cluster:{cluster_id}",
            title=f"no installed optimizer serves {brief.category.value}",
            rationale=f"a {brief.category.value} failure is fixed by its owner, not by an optimizer "
                      f"(`autofix optimizers list` shows which categories are served)",
            traces=brief.size, examples=[str(t) for t in (cluster.get("trace_ids") or [])[:5]])
        return result

    train = load_slice(config, cluster_id, "target").cases
    result.train_cases = len(train)
    measure = plan_measurement(config, cluster_id, brief.category, train)
    if isinstance(measure, MeasurementGap):
        result.finding = measure.finding(brief.size, [c.case_id for c in train])
        on_event(f"not optimized: {result.finding.rationale}")
        return result
    result.measures = measure.names
    on_event(f"cluster {cluster_id} ({brief.category.value}): {len(train)} training cases, "
             f"measured by {', '.join(measure.names)}")

    manager = WorktreeManager.from_config(config, run_id)
    base = manager.pin_base("HEAD")
    surfaces = surface_files(config)
    allowed = {s.path for s in surfaces}
    spend = Spend(budget or Budget())
    out_dir = out_dir or config.state_path / "optimize" / run_id / cluster_id
    n = first_n - 1
    for entry in entries:
        name = entry.name
        work_dir = out_dir / _slug(name)
        work_dir.mkdir(parents=True, exist_ok=True)
        run = OptimizerRun(optimizer=name)
        result.runs.append(run)
        calls0, usd0 = spend.metric_calls, spend.usd
        with SliceEvaluator(config, repo=manager.repo, subpath=manager.subpath, base=base, train=train,
                            measure=measure, spend=spend, allowed=allowed, work_dir=work_dir,
                            label=f"{run_id}-{cluster_id}-{_slug(name)}", sandbox_kind=sandbox_kind) as evaluator:
            try:
                on_event(f"{name}: replaying the base on the training cases")
                base_batch = evaluator.evaluate({})
            except BudgetExhausted as exc:
                run.stopped = f"budget: {exc}"
                continue
            result.base_score = base_batch.score
            measured = sum(1 for c in base_batch.cases if c.score is not None)
            if measured < config.slices.min_cases:
                gap = MeasurementGap(
                    cluster_id=cluster_id, category=brief.category,
                    reason=f"only {measured} of {len(train)} training cases are measurable by "
                           f"{', '.join(measure.names)} (slices.min_cases: {config.slices.min_cases})",
                    build_first=f"label more of its cases (`autofix label -c {config.file} --cluster {cluster_id}`)")
                result.finding = gap.finding(brief.size, [c.case_id for c in train])
                return _finish(result, out_dir, clock)
            on_event(f"{name}: base score {_fmt(base_batch.score)} on {measured} measured cases")
            task = OptimizeTask(
                run_id=run_id, cluster=brief, train=train, surfaces=surfaces, base=base_batch,
                evaluate=evaluator.evaluate,
                complete=budgeted_completion(config.model.optimizer or "", spend,
                                             CompletionCache(config.state_path / "optimizer-lm.sqlite3")),
                spend=spend, measures=measure.names,
                retrieval_space=dict(config.surfaces.retrieval.space) if config.surfaces.retrieval else {},
                guardrails=config.gate_policy.guardrails,
                run_tests=evaluator.run_tests if config.tests is not None else None,
                target_model=config.model.name, optimizer_model=config.model.optimizer or "", seed=seed,
                max_candidates=max_candidates, work_dir=work_dir, log=lambda m, _n=name: on_event(f"{_n}: {m}"),
            )
            try:
                proposals = entry.obj().propose(task)
            except BudgetExhausted as exc:
                proposals, run.stopped = [], f"budget: {exc}"
            except Exception as exc:  # noqa: BLE001 - one optimizer's failure must not stop the others
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                proposals, run.stopped = [], f"error: {type(exc).__name__}: {first_line}"
                on_event(f"{name} failed: {run.stopped}")
            run.proposals = len(proposals)
            for proposal in proposals[:max_candidates]:
                record = _commit_candidate(manager, config, evaluator, proposal, name, cluster_id, n + 1,
                                           base_batch, on_event)
                if record is not None:
                    n += 1
                    result.candidates.append(record)
            run.metric_calls, run.cost_usd = spend.metric_calls - calls0, spend.usd - usd0
            for record in result.candidates:
                if record.optimizer == name:
                    record.metric_calls, record.cost_usd = run.metric_calls, run.cost_usd
    return _finish(result, out_dir, clock)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _finish(result: OptimizeResult, out_dir: Path, clock: float) -> OptimizeResult:
    result.wall_s = time.monotonic() - clock
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "result.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
    return result


def _commit_candidate(manager: WorktreeManager, config: AutofixConfig, evaluator: SliceEvaluator,
                      proposal: Proposal, optimizer: str, cluster_id: str, n: int, base: ReplayBatch,
                      on_event: EventCallback) -> CandidateRecord | None:
    """Re-check the proposal against the surfaces, score it (the cache answers what the optimizer
    already replayed), and commit it on `autofix/<run>/<cluster>/<n>`; None when it changes nothing."""
    try:
        evaluator.check_files(proposal.files)
    except ValueError as exc:
        on_event(f"{optimizer}: proposal refused: {exc}")
        return None
    verified, score, tokens = False, proposal.train_score, None
    try:
        batch = evaluator.evaluate(proposal.files)
        verified, score, tokens = True, batch.score, batch.tokens_per_case
    except BudgetExhausted:
        on_event(f"{optimizer}: budget spent: candidate {n} keeps the optimizer's own training score")
    candidate = manager.create(cluster_id, n)
    try:
        for rel, text in proposal.files.items():
            path = candidate.target_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        try:
            commit = manager.commit(candidate, optimizer=optimizer, description=proposal.description,
                                    allowed_globs=config.surface_globs())
        except (EmptyChangeError, SurfaceViolationError) as exc:
            on_event(f"{optimizer}: proposal not committed: {str(exc).splitlines()[0]}")
            manager.remove(candidate, delete_branch=True)
            return None
        diff = manager.diff(candidate)
    finally:
        if candidate.path.exists():
            manager.remove(candidate, delete_branch=False)
    on_event(f"{optimizer}: candidate {n} on {candidate.branch}: training score {_fmt(base.score)} -> {_fmt(score)}")
    return CandidateRecord(
        id=f"{cluster_id}/{n}", optimizer=optimizer, branch=candidate.branch, commit=commit.sha,
        base_commit=candidate.base_commit, diff=diff.patch, files=[f.path for f in diff.files],
        description=proposal.description, rationale=proposal.rationale,
        train=TrainScore(base_score=base.score if verified else proposal.base_score, score=score, verified=verified),
        tokens_per_case=tokens,
        base_tokens_per_case=base.tokens_per_case, cost_usd=0.0, metric_calls=0,
        lineage={"cluster": cluster_id, "optimizer": optimizer, **proposal.metadata},
    )


def load_result(path: Path) -> OptimizeResult:
    return OptimizeResult.model_validate(json.loads(path.read_text(encoding="utf-8")))
