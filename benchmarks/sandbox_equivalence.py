"""Docker vs. local sandbox: the helpdesk regression set replayed at one commit in both, then from the cache.

    .venv/bin/python benchmarks/sandbox_equivalence.py              # all 100 regression cases
    .venv/bin/python benchmarks/sandbox_equivalence.py --cases 10   # a quick check

The target folder (default: the bundled helpdesk, as it is on disk) is copied into a fresh git
repository and committed, so every replay is of the same commit. Then, through one model gateway
(the configured model, the embedded local one by default):

1. the commit replayed in the Docker sandbox, cache off;
2. the same commit replayed in the local sandbox, cache off;
3. the same commit replayed in Docker again with the cache on (it was filled by run 2).

Prints, per run, the wall time and the per-metric results, then how many cases gave the same
result in Docker and locally (output, error, spans without their timings, tokens and model calls),
whether the metrics are equal, and the cache hits of run 3 with the number of model calls it made
(expected: hits = cases, 0 calls). Exits 1 when any of these does not hold.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_overhead import commit_copy  # noqa: E402

from autofix.config import load_config  # noqa: E402
from autofix.replay.records import reproducible_part  # noqa: E402
from autofix.replay.session import ReplayRun, replay_at_ref  # noqa: E402
from autofix.sandbox.docker_backend import DockerSandbox  # noqa: E402
from autofix.sandbox.local_backend import LocalSandbox  # noqa: E402


def model_calls(config) -> int:
    """Calls the gateway has recorded for this target (its usage database)."""
    path = config.state_path / "gateway.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def show(label: str, run: ReplayRun, wall: float) -> None:
    s = run.summary
    metrics = ", ".join(f"{name} {m.passed}/{m.applicable}" for name, m in sorted(s.metrics.items()))
    print(f"{label:<22} {wall:7.1f} s · {s.cases} cases, {s.failed_cases} failed, {run.cache_hits} cache hits, "
          f"{s.tokens} tokens · {metrics}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=None, help="replay only the first N regression cases")
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "helpdesk" / "autofix.yaml")
    args = parser.parse_args()

    source = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="autofix-equivalence-") as tmp:
        config = load_config(commit_copy(source.root, Path(tmp)) / source.file.name)
        docker, local = DockerSandbox(), LocalSandbox(warn=False)
        runs: dict[str, tuple[ReplayRun, float]] = {}
        for label, sandbox, use_cache in (("docker, cache off", docker, False), ("local, cache on", local, True),
                                          ("docker, from cache", docker, True)):
            calls_before = model_calls(config)
            started = time.perf_counter()
            run = replay_at_ref(config, "HEAD", "regression", limit=args.cases, sandbox=sandbox, use_cache=use_cache)
            runs[label] = (run, time.perf_counter() - started)
            show(label, *runs[label])
            calls = model_calls(config) - calls_before
        in_docker, _ = runs["docker, cache off"]
        locally, _ = runs["local, cache on"]
        cached, _ = runs["docker, from cache"]

        if locally.cache_hits:
            print(f"the local run found {locally.cache_hits} cases in the cache: it did not replay them", file=sys.stderr)
            return 1
        by_case = {r.case_id: r for r in locally.results}
        differ = [r.case_id for r in in_docker.results if reproducible_part(r) != reproducible_part(by_case[r.case_id])]
        same_metrics = in_docker.summary.metrics == locally.summary.metrics
        n = in_docker.summary.cases
        print(f"same result in Docker and locally: {n - len(differ)}/{n} cases"
              + (f" (differ: {', '.join(differ[:10])})" if differ else ""))
        print(f"same metrics: {same_metrics}")
        print(f"second Docker replay: {cached.cache_hits}/{cached.summary.cases} cases from the cache, "
              f"{calls} model calls")
        ok = not differ and same_metrics and cached.cache_hits == cached.summary.cases and calls == 0
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
