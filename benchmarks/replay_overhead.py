"""Replay overhead: the helpdesk regression set through autofix in Docker vs. the command run directly.

    .venv/bin/python benchmarks/replay_overhead.py               # 100 cases
    .venv/bin/python benchmarks/replay_overhead.py --cases 10    # a quick check
    .venv/bin/python benchmarks/replay_overhead.py --parallel 1  # batches one after the other

Setup (not timed): the target folder (default: the bundled helpdesk, as it is on disk) is copied
into a fresh git repository and committed, so both runs use the same commit; the sandbox image is
built (or found: it is cached by content); one model gateway is started with the configured model
(the embedded local model by default) on the sandbox network's host address, and the model is
loaded with one call.

Timed, one run each, same commit, same gateway and model:

- direct: the replay command (`python -m helpdesk.replay --cases ... --out ...`) run once on the
  host, in the committed folder, over all the cases;
- autofix: `replay_at_ref(config, "HEAD", cases, sandbox=docker, use_cache=False)`: the commit
  checked out in a temporary worktree, the cases in batches (`replay.batch_size`) in locked-down
  containers, `--parallel` batches at once (default: one per CPU core), results read back with the
  gateway's per-case usage, scored and written as artifacts, the worktree removed.

Prints both wall times, the ratio (target: at most 1.10 for 100 cases), where autofix's time went
(per-batch container time, checkout, the rest), and whether the two runs gave the same outputs.
With `--parallel 1` it also prints each run's wall time outside the model calls: the model's own
speed drifts by several percent between two runs on a shared machine, which the ratio includes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from autofix.config import load_config  # noqa: E402
from autofix.models.gateway import GatewayServer  # noqa: E402
from autofix.models.usage import UsageStore  # noqa: E402
from autofix.replay.records import CaseResult, load_cases  # noqa: E402
from autofix.replay.session import default_parallel, replay_at_ref  # noqa: E402
from autofix.sandbox.docker_backend import DockerSandbox  # noqa: E402

TARGET = 1.10


class Timed:
    """Wall time of a block, and the machine's 1-minute load average when it started (other work on
    the machine slows a timed run down: run this on a quiet machine)."""

    def __enter__(self):
        self.load = os.getloadavg()[0]
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0


def commit_copy(target: Path, into: Path) -> Path:
    """`target` copied into a new git repository and committed; returns the copy."""
    copy = into / target.name
    shutil.copytree(target, copy, ignore=shutil.ignore_patterns("runs", "__pycache__", ".pytest_cache"))
    (copy / ".gitignore").write_text("runs/\n")
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "benchmark"]):
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args], cwd=copy,
                       check=True, capture_output=True, env=env)
    return copy


def run_direct(config, cases_file: Path, out_file: Path, gateway: GatewayServer, host: str) -> float:
    """The replay command on the host, once, over every case; returns its wall time."""
    command = config.replay.command.replace("{cases}", str(cases_file)).replace("{out}", str(out_file))
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        **config.replay.env,
        "AUTOFIX_MODEL_BASE_URL": gateway.base_url_for(host),
        "AUTOFIX_MODEL_API_KEY": gateway.store.issue_key("bench-direct"),
        "AUTOFIX_MODEL": config.model.name,
    }
    started = time.perf_counter()
    done = subprocess.run(command, shell=True, cwd=config.workdir_path, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the direct run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="regression cases to replay (default 100)")
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "helpdesk" / "autofix.yaml")
    parser.add_argument("--parallel", type=int, default=None, help="batches at once (default: one per CPU core)")
    parser.add_argument("--first", choices=["direct", "autofix"], default="direct", help="which run goes first")
    args = parser.parse_args()

    source = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="autofix-bench-") as tmp:
        target = commit_copy(source.root, Path(tmp))
        config = load_config(target / source.file.name)
        cases = load_cases(config.dataset_path("regression"))[: args.cases]
        cases_file = Path(tmp) / "cases.jsonl"
        cases_file.write_text("".join(c.model_dump_json() + "\n" for c in cases))
        batches = -(-len(cases) // config.replay.batch_size)
        parallel = args.parallel or default_parallel(batches)

        sandbox = DockerSandbox()
        t = time.perf_counter()
        image = sandbox.ensure_image(config.image_path, config.project)
        image_s = time.perf_counter() - t
        host = sandbox.gateway_bind_host()
        store = UsageStore(Path(tmp) / "gateway.sqlite3")
        print(f"{len(cases)} cases · {batches} batches of up to {config.replay.batch_size} · parallel {parallel} · "
              f"model {config.model.name} · image {image} (ready in {image_s:.1f} s) · {os.cpu_count()} CPUs",
              flush=True)
        with GatewayServer(store, model=config.model.name, host=host, port=0) as gateway:
            import httpx

            key = store.issue_key("bench-warmup")  # load the model once, outside both timings
            httpx.post(gateway.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4},
                       timeout=300, trust_env=False).raise_for_status()

            def direct() -> Timed:
                with Timed() as timed:
                    run_direct(config, cases_file, Path(tmp) / "direct.jsonl", gateway, host)
                return timed

            def through_autofix():
                with Timed() as timed:
                    run = replay_at_ref(config, "HEAD", list(cases), sandbox=sandbox, gateway=gateway,
                                        use_cache=False, parallel=parallel)
                return timed, run

            if args.first == "direct":
                direct_t = direct()
                autofix_t, run = through_autofix()
            else:
                autofix_t, run = through_autofix()
                direct_t = direct()

        direct_rows: dict[str, CaseResult] = {}
        for line in (Path(tmp) / "direct.jsonl").read_text().splitlines():
            row = CaseResult.model_validate_json(line)
            direct_rows[row.case_id] = row
        same = sum(1 for r in run.results if direct_rows.get(r.case_id) is not None
                   and (r.output, r.error) == (direct_rows[r.case_id].output, direct_rows[r.case_id].error))
        container = [json.loads(p.read_text())["duration_s"] for p in sorted((run.replay_dir / "io").glob("*/sandbox.json"))]
        model_s = sum(r.usage.model_latency_ms for r in run.results) / 1000
        direct_model_s = sum(c.latency_ms for c in store.calls("bench-direct")) / 1000

    ratio = autofix_t.wall / direct_t.wall
    print(f"direct on the host : {direct_t.wall:8.1f} s   (load at start {direct_t.load:.2f})")
    print(f"autofix in Docker  : {autofix_t.wall:8.1f} s   (load at start {autofix_t.load:.2f}; "
          f"{run.summary.failed_cases} failed cases; {len(container)} containers: "
          f"{', '.join(f'{d:.1f}' for d in container)} s; gateway model time incl. queueing {model_s:.1f} s)")
    print(f"ratio              : {ratio:8.3f}   (target <= {TARGET:.2f}: {'met' if ratio <= TARGET else 'NOT met'})")
    print(f"same outputs       : {same}/{len(cases)}")
    # The model's speed varies by several percent between two runs of the same calls on a shared machine;
    # the wall time outside the model calls is what autofix adds (with --parallel 1, where calls do not overlap).
    if parallel == 1:
        print(f"outside the model  : direct {direct_t.wall - direct_model_s:6.1f} s, autofix {autofix_t.wall - model_s:6.1f} s "
              f"(model time: direct {direct_model_s:.1f} s, autofix {model_s:.1f} s)")


if __name__ == "__main__":
    main()
