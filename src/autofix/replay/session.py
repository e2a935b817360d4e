"""A replay at a ref: resolve it, answer what the cache knows, check out and replay the rest, score.

    run = replay_at_ref(config, "HEAD", "regression")
    run.summary.metrics["answer_correct"].rate, run.cache_hits, run.replay_dir

The flow: the ref is resolved to a commit and the target folder's tree hash there (`refs`); the
dataset is loaded (`datasets`); every case's cache key is computed and the cached results are taken
(`cache`); only when cases remain is the commit checked out in a temporary worktree (the folder
itself for `WORKTREE`), the sandbox image built (cached by Docker), the model gateway started and
the remaining cases replayed in parallel batches (`runner`). Fresh results are cached unless the
infrastructure failed them. The results are scored by the deterministic checks and written to
`<state>/replays/<replay_id>/`: `replay.json` (what `--json` prints), `summary.json`,
`results.jsonl` (each result with its checks and whether it came from the cache), `cases.jsonl`,
and the sandbox io of each batch under `io/`.

The configuration (replay command, model, judges, datasets) is the one loaded from disk; the
code, prompts and configuration files the command reads are those of the ref.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from autofix.config import AutofixConfig
from autofix.models.usage import Budget, UsageStore
from autofix.replay.cache import ReplayCache, cache_key, case_hash, judges_version, replay_fingerprint
from autofix.replay.datasets import Dataset, load_dataset
from autofix.replay.metrics import CaseScore, ReplaySummary, score_cases, summarize
from autofix.replay.records import Case, CaseResult
from autofix.replay.refs import WORKTREE, ResolvedRef, checkout, resolve_ref
from autofix.replay.runner import replay_cases
from autofix.sandbox import Sandbox, get_sandbox

if TYPE_CHECKING:
    from autofix.models.gateway import GatewayServer

StageCallback = Callable[[str], None]
ProgressCallback = Callable[[int, int], None]
"""Called with (cases done, cases in all); cache hits count as done at once."""


def new_replay_id(prefix: str = "replay") -> str:
    """`replay-20261123T171928Z-1a2b3c`: sortable, unique, a valid folder and run name."""
    return f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def default_parallel(batches: int) -> int:
    """Batches replayed at once: one per CPU core, at most the number of batches."""
    return max(1, min(batches, os.cpu_count() or 1))


@dataclass
class ReplayRun:
    """A finished replay: where, what, the results (in case order) and their scores."""

    replay_id: str
    replay_dir: Path
    ref: ResolvedRef
    dataset: Dataset
    sandbox: str | None
    """The sandbox backend that ran the misses; None when the cache answered every case."""
    isolated: bool
    results: list[CaseResult]
    scores: list[CaseScore]
    summary: ReplaySummary
    cached: set[str] = field(default_factory=set)
    """Case ids answered from the cache."""
    started_at: str = ""
    duration_s: float = 0.0

    @property
    def cache_hits(self) -> int:
        return len(self.cached)

    def to_json(self) -> dict[str, Any]:
        """What `autofix replay --json` prints."""
        s = self.summary
        return {
            "ref": self.ref.ref,
            "commit": self.ref.commit,
            "tree": self.ref.tree,
            "dirty": self.ref.dirty,
            "dataset": self.dataset.name,
            "cases": s.cases,
            "failed_cases": s.failed_cases,
            "metrics": {name: {"passed": m.passed, "applicable": m.applicable, "rate": m.rate}
                        for name, m in s.metrics.items()},
            "latency_ms": s.latency_ms,
            "cost_usd": s.cost_usd,
            "tokens": s.tokens,
            "tool_calls": s.tool_calls,
            "cache_hits": self.cache_hits,
            "sandbox": self.sandbox,
            "replay_id": self.replay_id,
            "replay_dir": str(self.replay_dir),
            "unavailable_checks": s.unavailable_checks,
            "duration_s": round(self.duration_s, 2),
        }


def _write_artifacts(run: ReplayRun) -> None:
    out = run.replay_dir
    out.mkdir(parents=True, exist_ok=True)
    with (out / "cases.jsonl").open("w", encoding="utf-8") as handle:
        for case in run.dataset.cases:
            handle.write(case.model_dump_json() + "\n")
    with (out / "results.jsonl").open("w", encoding="utf-8") as handle:
        for result, score in zip(run.results, run.scores):
            row = result.model_dump()
            row["cached"] = result.case_id in run.cached
            row["checks"] = {name: outcome.model_dump() for name, outcome in score.checks.items()}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(run.summary.model_dump_json(indent=2), encoding="utf-8")
    (out / "replay.json").write_text(json.dumps(run.to_json(), indent=2), encoding="utf-8")


def replay_at_ref(
    config: AutofixConfig,
    ref: str | ResolvedRef = WORKTREE,
    dataset: str | Dataset | list[Case] = "regression",
    *,
    limit: int | None = None,
    sandbox_kind: str | None = None,
    sandbox: Sandbox | None = None,
    gateway: GatewayServer | None = None,
    use_cache: bool = True,
    use_rubrics: bool = False,
    parallel: int | None = None,
    replay_id: str | None = None,
    replay_dir: Path | None = None,
    on_stage: StageCallback = lambda _: None,
    on_progress: ProgressCallback = lambda done, total: None,
    before_misses: Callable[[int], None] = lambda n: None,
    model_budget: Budget | None = None,
) -> ReplayRun:
    """Replay `dataset` on the target at `ref` and score it (see the module doc).

    `ref`: a branch, tag, sha, `HEAD`, or `WORKTREE` (the working tree on disk); RefError when it
    names nothing. `dataset`: `regression`, `slice:<cluster>[:target|:holdout]`, a JSONL path, a
    `Dataset` or a list of cases; DatasetError when it cannot be read. `sandbox`/`gateway` reuse
    running ones (the gateway must listen where the sandbox reaches it); otherwise they are made
    here (`sandbox_kind` overrides `replay.sandbox`) and only when a case must really run.
    `use_rubrics`: score with the rubric judges too (model calls; their verdicts are cached by
    the judges room), not only the deterministic checks. `parallel`: batches at once (default: one
    per CPU core). Artifacts go to `replay_dir` (default `<state>/replays/<replay_id>/`).
    `before_misses(n)` is called with the number of cases the cache cannot answer, before any runs; an
    exception it raises (a spent budget) stops the replay with nothing run. `model_budget`: the tokens and
    dollars this replay's model calls may spend at the gateway, which answers 429 past them (those cases
    fail as infrastructure: unmeasured, not cached).
    """
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    resolved = ref if isinstance(ref, ResolvedRef) else resolve_ref(config, ref)
    if isinstance(dataset, Dataset):
        data = dataset
    elif isinstance(dataset, list):
        data = Dataset(name="cases", cases=list(dataset), source=config.root, kind="cases")
    else:
        data = load_dataset(config, dataset)
    data = data.limited(limit)
    cases = data.cases
    replay_id = replay_id or new_replay_id()
    replay_dir = replay_dir or config.state_path / "replays" / replay_id
    replay_dir.mkdir(parents=True, exist_ok=True)
    on_stage(f"ref {resolved.label} · tree {resolved.tree[:12]} · dataset {data.name} ({len(cases)} cases)")

    model, judges, replay_fp = config.model.name, judges_version(config), replay_fingerprint(config)
    if config.model.aliases:  # an alias changes which model answers a case
        model += " aliases=" + ",".join(f"{k}:{v}" for k, v in sorted(config.model.aliases.items()))
    parts_of: dict[str, dict[str, str]] = {}
    key_of: dict[str, str] = {}
    for case in cases:
        digest = case_hash(case)
        parts_of[case.case_id] = {"tree": resolved.tree, "case_id": case.case_id, "case_hash": digest,
                                  "model": model, "judges": judges, "replay": replay_fp}
        key_of[case.case_id] = cache_key(tree=resolved.tree, case_digest=digest, model=model, judges=judges,
                                         replay=replay_fp)

    cache = ReplayCache.for_config(config) if use_cache else None
    by_id: dict[str, CaseResult] = {}
    try:
        if cache is not None:
            hits = cache.get_many(key_of.values())
            for case in cases:
                hit = hits.get(key_of[case.case_id])
                if hit is not None:
                    by_id[case.case_id] = hit.model_copy(update={"case_id": case.case_id})
        cached = set(by_id)
        misses = [c for c in cases if c.case_id not in by_id]
        if cached:
            on_stage(f"cache: {len(cached)} of {len(cases)} cases answered without running anything")
        on_progress(len(cached), len(cases))

        sandbox_name: str | None = None
        isolated = True
        if misses:
            before_misses(len(misses))
            fresh, sandbox_name, isolated = _replay_misses(
                config, resolved, misses, replay_id=replay_id, io_root=replay_dir / "io", sandbox=sandbox,
                sandbox_kind=sandbox_kind, gateway=gateway, parallel=parallel, on_stage=on_stage,
                on_progress=lambda done: on_progress(len(cached) + done, len(cases)), model_budget=model_budget,
            )
            by_id.update({r.case_id: r for r in fresh})
            if cache is not None:
                cache.put_many(((key_of[r.case_id], parts_of[r.case_id], r) for r in fresh), replay_id=replay_id)
    finally:
        if cache is not None:
            cache.close()

    results = [by_id[c.case_id] for c in cases]
    if use_rubrics:
        on_stage("judging with the rubric judges")
    scores, unavailable = score_cases(cases, results, config, use_rubrics=use_rubrics)
    summary = summarize(cases, results, scores, unavailable)
    run = ReplayRun(replay_id=replay_id, replay_dir=replay_dir, ref=resolved, dataset=data, sandbox=sandbox_name,
                    isolated=isolated, results=results, scores=scores, summary=summary, cached=cached,
                    started_at=started.isoformat(timespec="seconds"), duration_s=time.monotonic() - clock)
    _write_artifacts(run)
    return run


def _replay_misses(
    config: AutofixConfig,
    resolved: ResolvedRef,
    cases: list[Case],
    *,
    replay_id: str,
    io_root: Path,
    sandbox: Sandbox | None,
    sandbox_kind: str | None,
    gateway: GatewayServer | None,
    parallel: int | None,
    on_stage: StageCallback,
    on_progress: Callable[[int], None],
    model_budget: Budget | None = None,
) -> tuple[list[CaseResult], str, bool]:
    """Check out the ref, then replay `cases` through the sandbox and the gateway."""
    from autofix.models.gateway import GatewayServer, app_options  # litellm: imported only when something runs

    if sandbox is None:
        kind = sandbox_kind or config.replay.sandbox
        on_stage(f"sandbox: {kind}")
        sandbox = get_sandbox(kind, config.replay.allow_local_fallback)
    batches = -(-len(cases) // config.replay.batch_size)
    # On Ray every batch is submitted at once: the cluster's CPUs, not this machine's, bound them.
    parallel = parallel or (batches if config.replay.executor == "ray" else default_parallel(batches))
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        on_progress(done)

    if not resolved.worktree:
        on_stage(f"checking out {resolved.label} in a temporary worktree")
    with checkout(config, resolved, replay_id) as target_dir:
        image = None
        if sandbox.name == "docker":
            image_dir = _image_dir(config, target_dir)
            if image_dir is not None:
                on_stage("sandbox image (built once, then cached)")
                image = sandbox.ensure_image(image_dir, config.project)  # type: ignore[attr-defined]

        def run(gw: GatewayServer) -> list[CaseResult]:
            on_stage(f"replaying {len(cases)} cases in {batches} batch{'es' if batches != 1 else ''}, "
                     f"{min(parallel, batches)} at a time, model {config.model.name}")
            return replay_cases(cases, config=config, target_dir=target_dir, sandbox=sandbox, gateway=gw,
                                replay_id=replay_id, io_root=io_root, image=image, parallel=parallel,
                                on_progress=progress, budget=model_budget)

        if gateway is not None:
            results = run(gateway)
        else:
            on_stage(f"model gateway: {config.model.name}")
            store = UsageStore(config.state_path / "gateway.sqlite3")
            try:
                with GatewayServer(store, host=sandbox.gateway_bind_host(), port=0, **app_options(config.model)) as gw:
                    results = run(gw)
            finally:
                store.close()
    return results, sandbox.name, sandbox.isolates


def _image_dir(config: AutofixConfig, target_dir: Path) -> Path | None:
    """The sandbox image folder as it is at the ref (falling back to the one on disk)."""
    if config.image_path is None:
        return None
    try:
        at_ref = target_dir / config.image_path.relative_to(config.root)
    except ValueError:
        return config.image_path
    return at_ref if (at_ref / "Dockerfile").is_file() else config.image_path
