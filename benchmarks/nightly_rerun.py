"""A second nightly run on the same traces and target: how much of the first it costs again.

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python benchmarks/nightly_rerun.py            # the model-free toy
    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python benchmarks/nightly_rerun.py --helpdesk # the helpdesk, embedded model

Prints, for each run: wall time, model calls and tokens at the gateway (the replays' and the judges'),
optimizer-model answers asked, and the second/first ratios. The second run replays nothing the replay
cache knows and asks the optimizer model nothing its answer cache knows. What it costs again depends on
where the first night stopped: an optimizer cut short by its wall-time share on the first night goes
further on the second (the cached part is quick), and those new trials are new replays; add
`--wall-s 0` to let both nights stop at the optimizers' own trial limits.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autofix.config import load_config  # noqa: E402
from autofix.graph import RunOptions, start_run  # noqa: E402


def gateway_totals(state: Path) -> tuple[int, int, float]:
    db = state / "gateway.sqlite3"
    if not db.exists():
        return 0, 0, 0.0
    with sqlite3.connect(db) as conn:
        calls, tokens, usd = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost_usd), 0) FROM calls"
        ).fetchone()
    return int(calls), int(tokens), float(usd)


def lm_answers(state: Path) -> int:
    db = state / "optimizer-lm.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--helpdesk", action="store_true", help="the bundled helpdesk instead of the toy target")
    parser.add_argument("--max-jobs", type=int, default=None)
    parser.add_argument("--max-metric-calls", type=int, default=None)
    parser.add_argument("--sandbox", default="local", choices=["local", "docker"])
    parser.add_argument("--wall-s", type=float, default=None,
                        help="the run's wall-time budget (--helpdesk: the demo's by default; 0: none, so that the "
                             "optimizers stop at their own trial limits on both nights)")
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="nightly-rerun-"))
    if args.helpdesk:
        from autofix.demo import bundled_example, prepare_demo_target

        config = load_config(prepare_demo_target(bundled_example(), parent))
    else:
        from tests.graph.toy import make_target

        config = load_config(make_target(parent) / "autofix.yaml")
    if args.helpdesk:  # the demo's bounds, so the first night is the demo's own run
        from dataclasses import replace

        from autofix.demo import DEMO_OPTIONS

        options = replace(DEMO_OPTIONS, sandbox_kind=args.sandbox, max_jobs=args.max_jobs or DEMO_OPTIONS.max_jobs,
                          max_metric_calls=args.max_metric_calls or DEMO_OPTIONS.max_metric_calls)
        if args.wall_s is not None:
            options = replace(options, wall_s=args.wall_s or None)
    else:
        options = RunOptions(sandbox_kind=args.sandbox, max_jobs=args.max_jobs, max_metric_calls=args.max_metric_calls)
    rows = []
    for night in (1, 2):
        before = gateway_totals(config.state_path), lm_answers(config.state_path)
        clock = time.monotonic()
        result = start_run(config, options)
        wall = time.monotonic() - clock
        after = gateway_totals(config.state_path), lm_answers(config.state_path)
        data = result.to_json()
        rows.append({"wall_s": wall, "calls": after[0][0] - before[0][0], "tokens": after[0][1] - before[0][1],
                     "usd": after[0][2] - before[0][2], "lm_answers": after[1] - before[1],
                     "candidates": len(data["candidates"]), "proposals": len(data["proposals"])})
        print(f"run {night}: {wall:.1f} s, {rows[-1]['calls']} gateway calls, {rows[-1]['tokens']} tokens, "
              f"${rows[-1]['usd']:.4f}, {rows[-1]['lm_answers']} new optimizer-model answers, "
              f"{rows[-1]['candidates']} candidates, {rows[-1]['proposals']} new proposals")
    first, second = rows
    ratio = lambda a, b: "n/a (first is 0)" if not a else f"{b / a:.3f}"  # noqa: E731
    print(f"second/first: wall {ratio(first['wall_s'], second['wall_s'])}, tokens {ratio(first['tokens'], second['tokens'])}, "
          f"cost {ratio(first['usd'], second['usd'])}, gateway calls {ratio(first['calls'], second['calls'])}")


if __name__ == "__main__":
    main()
