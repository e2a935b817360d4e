"""The nodes of the nightly run. Each is idempotent: run again after a kill it gives the same result and
leaves nothing twice (a job first removes what an interrupted attempt of it left; the queue takes a
commit once; replays come back from the cache)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from time import time as wall_clock
from typing import Any

from langgraph.types import Send

from autofix.config import AutofixConfig
from autofix.graph.events import EventCallback, RunEvent
from autofix.graph.layout import RunLayout
from autofix.graph.state import CandidateOutcome, Job, RunState

FAULT_ENV = "AUTOFIX_FAULT_AT"
"""Fault injection for tests: the process kills itself (SIGKILL) when the named node starts."""


@dataclass
class RunOptions:
    """What bounds a run."""

    budget_usd: float | None = None
    max_tokens: int | None = None
    max_metric_calls: int | None = None
    wall_s: float | None = None
    max_jobs: int | None = None
    """Fixable clusters optimized at most (highest priority first); the rest are reported as not reached."""
    sandbox_kind: str | None = None
    max_candidates: int = 2


def _fault(node: str) -> None:
    if os.environ.get(FAULT_ENV) == node:
        os.kill(os.getpid(), signal.SIGKILL)


class Nodes:
    """The node functions, bound to one target, run folder and set of options."""

    def __init__(self, config: AutofixConfig, layout: RunLayout, options: RunOptions, on_event: EventCallback):
        self.config, self.layout, self.options, self.on_event = config, layout, options, on_event
        self.wall_start: float | None = None
        """When the wall-time budget started counting; on a resume, now less the time worked before the kill."""

    def _deadline_passed(self, state: RunState) -> bool:
        if self.options.wall_s is None:
            return False
        start = self.wall_start if self.wall_start is not None else float(state["budget"]["started"])
        return wall_clock() - start > self.options.wall_s

    # ---- triage ------------------------------------------------------------------------------

    def triage(self, state: RunState) -> dict[str, Any]:
        _fault("triage")
        from autofix.triage.pipeline import default_classifier, run_triage

        clock = time.monotonic()
        self.on_event(RunEvent("triage", "reading the traces, diagnosing the failures, clustering them"))
        # triage keeps its own history (`<state>/triage/`, whose latest.json slices read); the run keeps a copy
        report = run_triage(self.config, classifier=default_classifier(self.config))
        if report.report_path:
            self.layout.triage.mkdir(parents=True, exist_ok=True)
            shutil.copy2(report.report_path, self.layout.triage / "report.json")
        clusters = [{k: v for k, v in c.model_dump(mode="json").items() if k != "examples"} for c in report.clusters]
        findings = [f.model_dump(mode="json") for f in report.findings]
        self.on_event(RunEvent("triage", f"{report.failures} failures of {report.traces} traces in {len(clusters)} "
                               f"clusters", status="done"))
        return {"triage": {"traces": report.traces, "failures": report.failures, "quarantined": report.quarantined,
                           "by_category": report.by_category, "report": report.report_path,
                           "warnings": report.warnings,
                           "changes": (report.changes.model_dump(mode="json")
                                       if getattr(report, "changes", None) is not None else None)},
                "clusters": clusters, "findings": findings, "timings": {"triage": time.monotonic() - clock}}

    # ---- plan --------------------------------------------------------------------------------

    def plan(self, state: RunState) -> dict[str, Any]:
        _fault("plan")
        from autofix.optimize import optimizers_for

        from autofix.models.provider import is_local

        jobs: list[Job] = []
        skipped: list[dict[str, Any]] = []
        weak_model = is_local(self.config.model.optimizer)
        for cluster in state.get("clusters", []):
            served = optimizers_for(cluster["category"]) if cluster.get("fixable") else []
            if not served:
                continue  # an owned finding: the report lists it with its owner
            for entry in served:
                if weak_model and entry.metadata.get("writes_with_model"):
                    skipped.append({"cluster": cluster["id"], "optimizer": entry.name,
                                    "reason": f"skipped: its proposals are written by the optimizer model, and "
                                              f"model.optimizer is the embedded {self.config.model.optimizer}, "
                                              f"which wrote no usable one when measured; set model.optimizer to a "
                                              f"strong model"})
                    continue
                jobs.append(Job(index=len(jobs), cluster=cluster["id"], category=cluster["category"],
                                optimizer=entry.name, priority=float(cluster.get("score") or 0.0)))
        if self.options.max_jobs is not None and len(jobs) > self.options.max_jobs:
            for job in jobs[self.options.max_jobs:]:
                skipped.append({"cluster": job.cluster, "optimizer": job.optimizer,
                                "reason": f"not reached: the run optimizes at most {self.options.max_jobs} "
                                          f"(cluster, optimizer) pairs, highest priority first"})
            jobs = jobs[:self.options.max_jobs]
        total = sum(j.priority for j in jobs) or 1.0
        for job in jobs:  # the run budget, split by priority
            share = job.priority / total if total else 1.0 / len(jobs)
            if self.options.budget_usd is not None:
                job.budget_usd = round(self.options.budget_usd * share, 6)
            if self.options.max_tokens is not None:
                job.max_tokens = max(1, int(self.options.max_tokens * share))
            if self.options.max_metric_calls is not None:
                job.max_metric_calls = max(1, int(self.options.max_metric_calls * share))
            if self.options.wall_s is not None:  # the gates need time too: optimizers get 70% of it
                job.wall_s = round(0.7 * self.options.wall_s * share, 1)
        self.on_event(RunEvent("plan", f"{len(jobs)} (cluster, optimizer) pairs" +
                               (f", {len(skipped)} not reached" if skipped else ""), status="done"))
        for job in jobs:
            self.on_event(RunEvent("optimize", "waiting", subject=f"{job.cluster} / {job.optimizer}"))
        for skip in skipped:
            self.on_event(RunEvent("optimize", skip["reason"], subject=f"{skip['cluster']} / {skip['optimizer']}",
                                   status="skipped"))
        return {"jobs": [j.model_dump() for j in jobs], "skipped": skipped}

    def fan_out_jobs(self, state: RunState) -> list[Send] | str:
        jobs = state.get("jobs", [])
        if not jobs:
            return "gate_dispatch"
        return [Send("optimize", {**state, "job": job}) for job in jobs]

    # ---- optimize ----------------------------------------------------------------------------

    def _clean_job(self, job: Job) -> None:
        """Remove what an interrupted attempt of this job left: its branches, worktrees and folder."""
        from autofix.worktrees.manager import WorktreeManager
        from autofix.worktrees.registry import branch_name

        manager = WorktreeManager.from_config(self.config, state_run_id(self.layout))
        existing = set(manager.repo.git.branch("--list", "--format=%(refname:short)").split())
        for n in range(job.first_n, job.first_n + 100):
            if branch_name(manager.run_id, job.cluster, n) in existing:
                manager.remove(manager._candidate(job.cluster, n, manager.repo.git.rev_parse("HEAD")),
                               delete_branch=True)
        shutil.rmtree(self.layout.optimize(job.cluster, job.index), ignore_errors=True)

    def optimize(self, state: dict[str, Any]) -> dict[str, Any]:
        _fault("optimize")
        from autofix.optimize import Budget
        from autofix.optimize.engine import optimize_cluster

        job = Job.model_validate(state["job"])
        label = f"{job.cluster} / {job.optimizer}"
        if self._deadline_passed(state):  # type: ignore[arg-type]
            reason = "not reached: the run's wall-time budget was spent"
            self.on_event(RunEvent("optimize", reason, subject=label, status="skipped"))
            return {"skipped": [{"cluster": job.cluster, "optimizer": job.optimizer, "reason": reason}]}
        self._clean_job(job)
        clock = time.monotonic()
        self.on_event(RunEvent("optimize", "started", subject=label))
        try:
            result = optimize_cluster(
                self.config, job.cluster, optimizer=job.optimizer, run_id=state_run_id(self.layout),
                budget=Budget(max_usd=job.budget_usd, max_tokens=job.max_tokens, max_metric_calls=job.max_metric_calls,
                              deadline=None if job.wall_s is None else time.time() + job.wall_s),
                max_candidates=self.options.max_candidates, sandbox_kind=self.options.sandbox_kind,
                first_n=job.first_n, out_dir=self.layout.optimize(job.cluster, job.index),
                on_event=lambda m: self.on_event(RunEvent("optimize", m, subject=label)))
        except Exception as exc:  # noqa: BLE001 - one branch's failure is reported, the run goes on
            self.on_event(RunEvent("optimize", f"{type(exc).__name__}: {exc}", subject=label, status="failed"))
            return {"errors": [f"optimize {label}: {type(exc).__name__}: {exc}"]}
        out: dict[str, Any] = {"timings": {f"optimize {label}": time.monotonic() - clock},
                               "cost_usd": sum(r.cost_usd for r in result.runs)}
        if result.finding is not None:
            out["skipped"] = [{"cluster": job.cluster, "optimizer": job.optimizer,
                               "reason": f"not optimized: {result.finding.title}: {result.finding.rationale}",
                               "finding": result.finding.model_dump(mode="json")}]
        out["candidates"] = [CandidateOutcome(
            id=c.id, cluster=job.cluster, optimizer=c.optimizer, branch=c.branch, commit=c.commit, diff=c.diff,
            train=c.train.model_dump(), cost_usd=c.cost_usd, metric_calls=c.metric_calls,
            lineage={**c.lineage, "trace_ids": _cluster_traces(state, job.cluster), "run_id": state_run_id(self.layout),
                     "models": {"target": self.config.model.name, "optimizer": self.config.model.optimizer},
                     "cost_usd": c.cost_usd, "metric_calls": c.metric_calls},
        ).model_dump() for c in result.candidates]
        for c in result.candidates:
            self.on_event(RunEvent("gate", "waiting", subject=c.id))
        self.on_event(RunEvent("optimize", f"{len(result.candidates)} candidate(s)" if result.finding is None else
                               f"not optimized: {result.finding.title}", subject=label,
                               status="done" if result.finding is None else "skipped"))
        return out

    # ---- gate --------------------------------------------------------------------------------

    def gate_dispatch(self, state: RunState) -> dict[str, Any]:
        _fault("gate_dispatch")
        candidates = state.get("candidates", [])
        if len(candidates) > 1 and not self._deadline_passed(state):  # one gate replays its base anyway
            from autofix.gate.runner import replay_base_once

            clock = time.monotonic()
            self.on_event(RunEvent("gate", "replaying the base once for every gate", subject="base"))
            replay_base_once(self.config, [(c["commit"], c["cluster"]) for c in candidates],
                             sandbox_kind=self.options.sandbox_kind,
                             on_event=lambda m: self.on_event(RunEvent("gate", m, subject="base")))
            self.on_event(RunEvent("gate", "replayed", subject="base", status="done"))
            return {"timings": {"gate the base, replayed once for every gate": time.monotonic() - clock}}
        return {}

    def fan_out_candidates(self, state: RunState) -> list[Send] | str:
        candidates = state.get("candidates", [])
        if not candidates:
            return "enqueue"
        return [Send("gate", {**state, "candidate": c}) for c in candidates]

    def gate(self, state: dict[str, Any]) -> dict[str, Any]:
        _fault("gate")
        from autofix.gate.runner import run_gate

        candidate = CandidateOutcome.model_validate(state["candidate"])
        if self._deadline_passed(state):  # type: ignore[arg-type]
            candidate.gate = {"passed": False, "reasons": ["not gated: the run's wall-time budget was spent"]}
            self.on_event(RunEvent("gate", candidate.gate["reasons"][0], subject=candidate.id, status="refused"))
            return {"gated": [candidate.model_dump()]}
        clock = time.monotonic()
        self.on_event(RunEvent("gate", "replaying the held-out cases and the regression set", subject=candidate.id))
        out_dir = self.layout.verdict(candidate.id)
        try:
            verdict = run_gate(self.config, candidate.branch, cluster=candidate.cluster,
                               sandbox_kind=self.options.sandbox_kind, out_dir=out_dir,
                               on_event=lambda m: self.on_event(RunEvent("gate", m, subject=candidate.id)))
            candidate.gate = {"passed": verdict.passed, "reasons": verdict.reasons, "verdict_id": verdict.verdict_id,
                              "verdict_path": str(out_dir / "verdict.json"),
                              "target": next((c.model_dump() for c in verdict.checks if c.section == "target"), None)}
        except Exception as exc:  # noqa: BLE001 - fail-closed: an error refuses the candidate
            candidate.gate = {"passed": False, "reasons": [f"the gate could not run: {type(exc).__name__}: {exc}"]}
        passed = candidate.gate["passed"]
        self.on_event(RunEvent("gate", "PASSED" if passed else "refused: " + "; ".join(candidate.gate["reasons"])[:300],
                               subject=candidate.id, status="passed" if passed else "refused"))
        return {"gated": [candidate.model_dump()], "timings": {f"gate {candidate.id}": time.monotonic() - clock}}

    # ---- enqueue -----------------------------------------------------------------------------

    def enqueue(self, state: RunState) -> dict[str, Any]:
        _fault("enqueue")
        from autofix.approval.store import open_store
        from autofix.gate.records import GateVerdict

        proposals = []
        passed = [CandidateOutcome.model_validate(c) for c in state.get("gated", []) if (c.get("gate") or {}).get("passed")]
        if passed:
            from autofix.approval.diffhash import diff_sha256

            with open_store(self.config) as store:
                waiting = {(p.cluster, p.diff_sha256): p.id for p in store.proposals(status="pending")}
                for c in sorted(passed, key=lambda c: c.id):
                    same = waiting.get((c.cluster, diff_sha256(c.diff)))
                    if same is not None and store.find_by_commit(c.commit) is None:  # an earlier night's, same change
                        proposals.append({"candidate": c.id, "proposal": None,
                                          "reason": f"the same change already waits for approval as {same}"})
                        continue
                    verdict = GateVerdict.model_validate_json(open(c.gate["verdict_path"], encoding="utf-8").read())
                    try:
                        pid = store.enqueue(verdict, c.diff, {**c.lineage, "cluster": c.cluster,
                                                              "optimizer": c.optimizer}, actor="autofix run")
                    except ValueError as exc:  # e.g. the same change was rejected before
                        proposals.append({"candidate": c.id, "proposal": None, "reason": str(exc)})
                        continue
                    proposals.append({"candidate": c.id, "proposal": pid, "branch": c.branch})
        self.on_event(RunEvent("enqueue", f"{sum(1 for p in proposals if p['proposal'])} proposal(s) wait for approval",
                               status="done"))
        return {"proposals": proposals}

    # ---- report ------------------------------------------------------------------------------

    def report(self, state: RunState) -> dict[str, Any]:
        _fault("report")
        from autofix.report import write_report

        html, md = write_report(dict(state), self.layout)
        self.on_event(RunEvent("report", str(html), status="done"))
        return {"report": {"html": str(html), "md": str(md)}}


def state_run_id(layout: RunLayout) -> str:
    return layout.root.name


def _cluster_traces(state: dict[str, Any], cluster_id: str) -> list[str]:
    cluster = next((c for c in state.get("clusters", []) if c["id"] == cluster_id), None)
    return list(cluster.get("trace_ids", []))[:50] if cluster else []
