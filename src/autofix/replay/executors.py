"""Where replay batches run: threads on this machine, or tasks on a Ray cluster (`replay.executor`).

A batch is a `BatchJob`: its cases, the command line (with `{cases}` and `{out}` still in it), the
worktree folder and the environment. `run_batch` runs one in a sandbox and returns a `BatchOutcome`
(what the sandbox said and the text the command wrote), which the runner turns into results.

- `threads` (the default): at most `parallel` batches of a replay at once in a thread pool, and at most
  `replay.max_sandboxes` sandboxes running in the whole process (`sandbox_slots`), the sandbox and the
  io folders of this process.
- `ray`: each batch is a Ray task (one CPU) that builds its own sandbox of the same kind on the node
  it lands on, runs the batch in a temporary io folder there and returns the outcome by value; the
  driver keeps at most `parallel` tasks in flight and writes each outcome's files under the run's io
  folder, so the replay's artifacts look the same. `replay.ray_address` names the cluster (`auto`,
  `ray://head:10001`); without it a local Ray instance is started. Not shipped to the nodes: the
  worktree (its folder must be on a filesystem the nodes share) and the model gateway (its address
  must be reachable from the nodes' sandboxes); on one machine both hold by construction.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from autofix.replay.records import Case
from autofix.sandbox import Sandbox, SandboxError, SandboxResult, SandboxRun

BatchDone = Callable[[int], None]
"""Called with the number of cases of a batch that just finished."""


@dataclass(frozen=True)
class BatchJob:
    """One run of the replay command over some cases; picklable, so it can travel to a Ray node."""

    number: int
    cases: tuple[Case, ...]
    command: str
    """The replay command with `{cases}` and `{out}` not yet filled in."""
    workdir: Path
    env: dict[str, str]
    image: str | None
    timeout_s: float
    gateway_port: int

    def cases_jsonl(self) -> str:
        return "".join(case.model_dump_json() + "\n" for case in self.cases)


@dataclass(frozen=True)
class BatchOutcome:
    """What came of a batch: the sandbox's result (or why the sandbox broke) and what the command wrote."""

    run: SandboxResult | None
    sandbox_error: str | None
    results_text: str | None
    """The results file as the command left it; None when it wrote none."""


def run_batch(job: BatchJob, sandbox: Sandbox, io_dir: Path) -> BatchOutcome:
    """Write the batch's cases into `io_dir`, run the command there in `sandbox`, read its results file."""
    io_dir.mkdir(parents=True, exist_ok=True)
    cases_file, out_file = io_dir / "cases.jsonl", io_dir / "results.jsonl"
    cases_file.write_text(job.cases_jsonl(), encoding="utf-8")
    # Plain replacement, not str.format: commands may hold other braces (shell ${VAR}, JSON).
    command = job.command.replace("{cases}", shlex.quote(sandbox.io_path(io_dir, cases_file))).replace(
        "{out}", shlex.quote(sandbox.io_path(io_dir, out_file)))
    try:
        run = sandbox.run(SandboxRun(command=command, workdir=job.workdir, io_dir=io_dir, env=job.env,
                                     image=job.image, timeout_s=job.timeout_s, gateway_port=job.gateway_port))
    except SandboxError as exc:
        return BatchOutcome(run=None, sandbox_error=str(exc), results_text=None)
    text = out_file.read_text(encoding="utf-8", errors="replace") if out_file.exists() else None
    return BatchOutcome(run=run, sandbox_error=None, results_text=text)


def record_sandbox(io_dir: Path, outcome: BatchOutcome) -> None:
    """What the sandbox said of the batch, beside its cases and results in `io_dir`."""
    if outcome.sandbox_error is not None:
        (io_dir / "sandbox-error.txt").write_text(outcome.sandbox_error, encoding="utf-8")
    if outcome.run is not None:
        (io_dir / "sandbox.json").write_text(outcome.run.model_dump_json(indent=1), encoding="utf-8")


def record_remote_outcome(io_dir: Path, job: BatchJob, outcome: BatchOutcome) -> None:
    """A batch that ran elsewhere (a Ray node), written under the run's io folder as a local one would be."""
    io_dir.mkdir(parents=True, exist_ok=True)
    (io_dir / "cases.jsonl").write_text(job.cases_jsonl(), encoding="utf-8")
    if outcome.results_text is not None:
        (io_dir / "results.jsonl").write_text(outcome.results_text, encoding="utf-8")
    record_sandbox(io_dir, outcome)


class BatchExecutor(Protocol):
    """Runs replay batches; outcomes come back in the order of `jobs`."""

    def run(self, jobs: list[BatchJob], io_root: Path, on_done: BatchDone) -> list[BatchOutcome]: ...


def batch_io_dir(io_root: Path, job: BatchJob) -> Path:
    return io_root / f"batch-{job.number:04d}"


_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def sandbox_slots(limit: int | None) -> threading.BoundedSemaphore:
    """The process-wide slots of running sandboxes: every replay in this process (the candidates of a run
    replayed in parallel) takes one per batch, so at most `limit` (default: one per core) run at once."""
    limit = limit or os.cpu_count() or 1
    with _slots_lock:
        return _slots.setdefault(limit, threading.BoundedSemaphore(limit))


class ThreadExecutor:
    """At most `parallel` batches of this replay at once, and at most `max_sandboxes` sandboxes in the whole
    process, through `sandbox`."""

    def __init__(self, sandbox: Sandbox, parallel: int, max_sandboxes: int | None = None):
        self.sandbox, self.parallel = sandbox, max(1, parallel)
        self.slots = sandbox_slots(max_sandboxes)

    def run(self, jobs: list[BatchJob], io_root: Path, on_done: BatchDone) -> list[BatchOutcome]:
        from concurrent.futures import ThreadPoolExecutor

        def one(job: BatchJob) -> BatchOutcome:
            io_dir = batch_io_dir(io_root, job)
            with self.slots:
                outcome = run_batch(job, self.sandbox, io_dir)  # writes the cases and results there itself
            record_sandbox(io_dir, outcome)
            on_done(len(job.cases))
            return outcome

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            return list(pool.map(one, jobs))


def _run_on_node(job: BatchJob, sandbox_kind: str) -> BatchOutcome:
    """A Ray task: the batch on whichever node runs it, in a sandbox of the driver's kind."""
    from autofix.sandbox import get_sandbox

    try:
        sandbox = get_sandbox(sandbox_kind)  # no silent fallback on a node: the driver chose the kind
    except SandboxError as exc:
        return BatchOutcome(run=None, sandbox_error=f"on the Ray node: {exc}", results_text=None)
    with tempfile.TemporaryDirectory(prefix="autofix-batch-") as io_dir:
        return run_batch(job, sandbox, Path(io_dir))


class RayExecutor:
    """Each batch a Ray task (1 CPU); at most `parallel` in flight; outcomes recorded by the driver."""

    def __init__(self, sandbox_kind: str, parallel: int, address: str | None = None):
        self.sandbox_kind, self.parallel, self.address = sandbox_kind, max(1, parallel), address

    def _remote(self):
        import ray

        if not ray.is_initialized():
            # A local instance unless an address (or RAY_ADDRESS) names a cluster. The working directory
            # is not shipped: autofix must be installed on the nodes, as it is on a local instance.
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        return ray, ray.remote(num_cpus=1, max_retries=0)(_run_on_node)

    def run(self, jobs: list[BatchJob], io_root: Path, on_done: BatchDone) -> list[BatchOutcome]:
        try:
            ray, task = self._remote()
        except ImportError as exc:
            raise SandboxError("replay.executor is `ray` but Ray is not installed: pip install 'autofix[ray]'") from exc
        outcomes: dict[int, BatchOutcome] = {}
        waiting = list(jobs)
        in_flight: dict[object, BatchJob] = {}
        while waiting or in_flight:
            while waiting and len(in_flight) < self.parallel:
                job = waiting.pop(0)
                in_flight[task.remote(job, self.sandbox_kind)] = job
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                job = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the task itself died (node lost, worker killed): its cases failed
                    outcome = BatchOutcome(run=None, sandbox_error=f"the Ray task failed: {exc}",
                                           results_text=None)
                record_remote_outcome(batch_io_dir(io_root, job), job, outcome)
                outcomes[job.number] = outcome
                on_done(len(job.cases))
        return [outcomes[job.number] for job in jobs]
