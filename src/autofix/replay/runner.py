"""Replaying cases through the target's replay command inside a sandbox, against the model gateway.

The cases go out in batches (`replay.batch_size`), each batch one run of the replay command in the
sandbox with its own io folder; batches run `parallel` at a time, in threads here or as tasks on a
Ray cluster (`replay.executor`, see `executors`). Every case comes back as a `CaseResult`: what the
command wrote for it, or a failed result saying why nothing came back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pydantic import ValidationError

from autofix.config import AutofixConfig
from autofix.models.usage import Budget
from autofix.replay.executors import BatchExecutor, BatchJob, BatchOutcome, RayExecutor, ThreadExecutor
from autofix.replay.records import Case, CaseResult, CaseUsage
from autofix.sandbox import Sandbox

if TYPE_CHECKING:
    from autofix.models.gateway import GatewayServer  # imports litellm: only for the annotation

INFLIGHT_GRACE_S = 60.0
"""How long a replay waits, after its batches ended, for model calls its cases left running."""

ProgressCallback = Callable[[int], None]
"""Called with the number of cases just finished."""


def _batches(cases: list[Case], size: int) -> list[list[Case]]:
    return [cases[i:i + size] for i in range(0, len(cases), size)]


def _why_missing(outcome: BatchOutcome) -> str:
    if outcome.sandbox_error is not None:
        return f"the sandbox failed: {outcome.sandbox_error}"
    run = outcome.run
    if run.ok:
        return "the replay command exited 0 but wrote no result for this case"
    tail = run.stderr.strip().splitlines()[-3:]
    detail = f"; stderr: {' | '.join(tail)}" if tail else ""
    return f"the replay command failed ({run.reason or f'exit {run.exit_code}'}){detail}"


def _read_results(job: BatchJob, outcome: BatchOutcome) -> list[CaseResult]:
    wanted = {case.case_id for case in job.cases}
    found: dict[str, CaseResult] = {}
    if outcome.results_text is not None:
        for line in outcome.results_text.splitlines():
            try:
                result = CaseResult.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError):
                continue  # a malformed row counts as no result for its case
            if result.case_id in wanted:
                # What the target wrote is its own answer, whatever the row claims.
                found.setdefault(result.case_id, result.model_copy(update={"infrastructure": False}))
    results = []
    for case in job.cases:
        result = found.get(case.case_id) or CaseResult(case_id=case.case_id, error=_why_missing(outcome),
                                                       infrastructure=True)
        if result.error is None and not (result.output or "").strip():
            result = result.model_copy(update={"error": "empty output"})
        results.append(result)
    return results


def executor_for(config: AutofixConfig, sandbox: Sandbox, parallel: int) -> BatchExecutor:
    """The executor `replay.executor` names, bounded to `parallel` batches at once."""
    if config.replay.executor == "ray":
        return RayExecutor(sandbox.name, parallel, config.replay.ray_address)
    return ThreadExecutor(sandbox, parallel, config.replay.max_sandboxes)


def replay_cases(
    cases: list[Case],
    *,
    config: AutofixConfig,
    target_dir: Path,
    sandbox: Sandbox,
    gateway: GatewayServer,
    replay_id: str,
    io_root: Path,
    image: str | None = None,
    parallel: int = 1,
    on_progress: ProgressCallback | None = None,
    budget: Budget | None = None,
) -> list[CaseResult]:
    """Replay `cases` against the target checked out at `target_dir`; results come back in case order.

    `replay_id` names this replay at the gateway (its own API key, its own usage rows, and `budget`: what
    its model calls may spend before the gateway answers 429).
    """
    workdir = target_dir / config.workdir_path.relative_to(config.root)
    key = gateway.store.issue_key(replay_id, budget)
    env = {
        **config.replay.env,
        "AUTOFIX_MODEL_BASE_URL": gateway.base_url_for(sandbox.gateway_url_host()),
        "AUTOFIX_MODEL_API_KEY": key,
        "AUTOFIX_MODEL": config.model.name,
    }

    jobs = [BatchJob(number=n, cases=tuple(batch), command=config.replay.command, workdir=workdir, env=env,
                     image=image, timeout_s=config.replay.timeout_s, gateway_port=gateway.port)
            for n, batch in enumerate(_batches(cases, config.replay.batch_size))]
    executor = executor_for(config, sandbox, parallel)
    try:
        outcomes = executor.run(jobs, io_root, on_progress or (lambda n: None))
    finally:
        gateway.store.revoke(replay_id)
    batched = [_read_results(job, outcome) for job, outcome in zip(jobs, outcomes)]

    # A call whose caller gave up (its own timeout) may still be running: wait for it, so that its
    # record (an error: the caller hung up) is read with the others.
    still_running = gateway.inflight.wait_idle(replay_id, timeout_s=INFLIGHT_GRACE_S)
    usage = gateway.store.usage_by_case(replay_id)
    results = []
    for result in (r for batch in batched for r in batch):
        spent = usage.get(result.case_id)
        if spent:
            result = result.model_copy(update={"usage": CaseUsage(
                calls=spent["calls"], tokens=spent["tokens"], cost_usd=spent["cost_usd"],
                model_latency_ms=spent["latency_ms"], errors=spent["errors"],
            ), "infrastructure": result.infrastructure or spent["errors"] > 0})  # the gateway failed it
        if result.case_id in still_running:
            result = result.model_copy(update={"infrastructure": True})
        results.append(result)
    return results
