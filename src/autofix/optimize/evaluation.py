"""The engine's side of an optimizer's calls: replay files on training cases, the optimizer's model,
the target's tests. Optimizers never touch a worktree, a sandbox or the held-out cases themselves.

A set of files is turned into a commit on top of the pinned base (a throw-away index, no worktree,
no branch), so every evaluation is a replay at a commit: cached by tree, and what is later committed
on a candidate branch is exactly what was scored.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from git import Repo

from autofix.config import AutofixConfig
from autofix.optimize.records import BudgetExhausted, CaseEval, ReplayBatch, Spend, TestRun
from autofix.replay.records import Case
from autofix.slices import SliceMeasure, measure_results, slice_score
from autofix.worktrees.changes import _commit_env

_TEST_OUTPUT_TAIL = 6000


def commit_files(repo: Repo, subpath: str, base: str, files: Mapping[str, str], message: str) -> str:
    """A commit whose parent is `base` and whose tree is base's with `files` (relative to the target
    folder `subpath`) replaced; `base` itself when nothing differs. No ref points at it."""
    with tempfile.TemporaryDirectory(prefix="autofix-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index"), **_commit_env()}
        repo.git.read_tree(base, env=env)
        for rel, text in sorted(files.items()):
            path = f"{subpath}/{rel}" if subpath else rel
            blob_file = Path(tmp) / "blob"
            blob_file.write_text(text, encoding="utf-8")
            blob = repo.git.hash_object("-w", "--no-filters", str(blob_file))
            listed = repo.git.ls_tree(base, "--", path)
            mode = listed.split()[0] if listed else "100644"
            repo.git.update_index("--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)
        tree = repo.git.write_tree(env=env)
        if tree == repo.git.rev_parse(f"{base}^{{tree}}"):
            return base
        return repo.git.commit_tree(tree, "-p", base, "-m", message, env=env)


def _p95(values: list[float]) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[94]


class SliceEvaluator:
    """Replays surface files on a cluster's training cases and measures them; charges the budget.

    Use as a context manager: the sandbox and the model gateway are started at the first evaluation
    and stopped at the end.
    """

    def __init__(self, config: AutofixConfig, *, repo: Repo, subpath: str, base: str, train: list[Case],
                 measure: SliceMeasure, spend: Spend, allowed: set[str], work_dir: Path, label: str,
                 sandbox_kind: str | None = None, parallel: int | None = None):
        self.config, self.repo, self.subpath, self.base = config, repo, subpath, base
        self.train = {c.case_id: c for c in train}
        self.order = [c.case_id for c in train]
        self.measure, self.spend, self.allowed = measure, spend, allowed
        self.work_dir, self.label = work_dir, label
        self.sandbox_kind, self.parallel = sandbox_kind, parallel
        self.evaluations = 0
        self._sandbox: Any = None
        self._gateway: Any = None
        self._store: Any = None

    # ---- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> SliceEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._gateway is not None:
            self._gateway.stop()
        if self._store is not None:
            self._store.close()

    def _gateway_budget(self) -> Any:
        """What is left of the token and dollar budget, for the gateway to enforce during one replay."""
        from autofix.models.usage import Budget as GatewayBudget

        tokens, usd = self.spend.tokens_left, self.spend.usd_left
        if tokens is None and usd is None:
            return None
        return GatewayBudget(tokens=tokens or None, usd=usd or None)

    def _runtime(self) -> tuple[Any, Any]:
        if self._gateway is None:
            from autofix.models.gateway import GatewayServer, app_options
            from autofix.models.usage import UsageStore
            from autofix.sandbox import get_sandbox

            self._sandbox = get_sandbox(self.sandbox_kind or self.config.replay.sandbox,
                                        self.config.replay.allow_local_fallback)
            self._store = UsageStore(self.config.state_path / "gateway.sqlite3")
            self._gateway = GatewayServer(self._store, host=self._sandbox.gateway_bind_host(), port=0,
                                          **app_options(self.config.model)).start()
        return self._sandbox, self._gateway

    # ---- what the optimizer calls ----------------------------------------------------

    def check_files(self, files: Mapping[str, str]) -> None:
        outside = sorted(set(files) - self.allowed)
        if outside:
            raise ValueError(f"not surface files of this target: {', '.join(outside)}; "
                             f"allowed: {', '.join(sorted(self.allowed))}")

    def commit(self, files: Mapping[str, str], message: str = "autofix evaluation") -> str:
        self.check_files(files)
        return commit_files(self.repo, self.subpath, self.base, files, message)

    def evaluate(self, files: Mapping[str, str], case_ids: list[str] | None = None) -> ReplayBatch:
        """Replay `files` over the base on the training cases (all, or `case_ids`); one metric call per case
        the replay cache cannot answer, reserved before anything runs, so the budget is never exceeded."""
        from autofix.replay.session import replay_at_ref

        ids = list(self.order if case_ids is None else case_ids)
        unknown = [i for i in ids if i not in self.train]
        if unknown:
            raise ValueError(f"not training cases of this slice: {', '.join(unknown[:5])} (an optimizer sees the "
                             f"training part only)")
        if self.spend.usd_left == 0.0:
            raise BudgetExhausted("dollar budget spent")
        if self.spend.tokens_left == 0:
            raise BudgetExhausted("token budget spent")
        commit = self.commit(files)
        cases = [self.train[i] for i in ids]
        self.evaluations += 1
        n = self.evaluations
        sandbox, gateway = self._runtime()
        run = replay_at_ref(self.config, commit, cases, sandbox=sandbox, gateway=gateway, parallel=self.parallel,
                            replay_id=f"{self.label}-e{n:04d}", before_misses=self.spend.reserve_metric_calls,
                            replay_dir=self.work_dir / "replays" / f"e{n:04d}", model_budget=self._gateway_budget())
        fresh = [r for r in run.results if r.case_id not in run.cached]
        self.spend.add_usd(sum(r.usage.cost_usd for r in fresh))
        self.spend.add_tokens(sum(r.usage.tokens for r in fresh))
        measured = measure_results(self.config, self.measure, cases, run.results)
        evals = []
        for case, result, m in zip(cases, run.results, measured):
            evals.append(CaseEval(
                case_id=case.case_id, input=case.input,
                messages=[t.model_dump() for t in case.messages or []], output=result.output, error=result.error,
                spans=result.spans, score=m.score, feedback=m.feedback, tokens=result.usage.tokens,
                cost_usd=result.usage.cost_usd, latency_ms=result.latency_ms,
            ))
        k = max(1, len(evals))
        return ReplayBatch(
            commit=commit, cases=evals, score=slice_score(measured),
            tokens_per_case=sum(e.tokens for e in evals) / k, cost_per_case=sum(e.cost_usd for e in evals) / k,
            latency_p95_ms=_p95([e.latency_ms for e in evals if not e.error]),
            tool_calls_per_case=sum(1 for e in evals for s in e.spans if s.get("kind") == "tool") / k,
            cached=len(run.cached),
        )

    def run_tests(self, files: Mapping[str, str]) -> TestRun:
        """The target's own tests (`tests.command`) on base plus `files`, in the sandbox."""
        from autofix.replay.refs import checkout, resolve_ref
        from autofix.sandbox.base import SandboxError, SandboxRun

        if self.config.tests is None:
            raise ValueError(f"{self.config.file} declares no `tests`; add `tests: {{command: ...}}`")
        commit = self.commit(files, "autofix test run")
        sandbox, _ = self._runtime()
        self.evaluations += 1
        io_dir = self.work_dir / "tests" / f"t{self.evaluations:04d}"
        io_dir.mkdir(parents=True, exist_ok=True)
        resolved = resolve_ref(self.config, commit)
        with checkout(self.config, resolved, f"{self.label}-t{self.evaluations:04d}") as target_dir:
            image = None
            if sandbox.name == "docker" and self.config.image_path is not None:
                image = sandbox.ensure_image(self.config.image_path, self.config.project)
            workdir = target_dir / self.config.workdir_path.relative_to(self.config.root)
            try:
                run = sandbox.run(SandboxRun(command=self.config.tests.command, workdir=workdir, io_dir=io_dir,
                                             env=dict(self.config.replay.env), image=image,
                                             timeout_s=self.config.tests.timeout_s))
            except SandboxError as exc:
                return TestRun(passed=False, exit_code=None, output=f"the sandbox failed: {exc}")
        output = (run.stdout + ("\n" + run.stderr if run.stderr.strip() else ""))[-_TEST_OUTPUT_TAIL:]
        (io_dir / "output.txt").write_text(output, encoding="utf-8")
        return TestRun(passed=run.ok, exit_code=run.exit_code, output=output)
