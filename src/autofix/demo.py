"""The demo: the whole nightly loop on the bundled helpdesk example with the embedded defaults.

`autofix demo` copies `examples/helpdesk` into a fresh git repository under `runs/demo-<time>/`
(the example's own folder is never changed), then runs `autofix run` there: triage of its production
traces, one optimizer branch per fixable cluster, the launch gate on every candidate, the approval
queue, the report. The embedded model answers the replays and is also the optimizers' model (a
real deployment points `model.optimizer` at a strong one), so the model-free retrieval search is the
optimizer that can win here; the others run and their refusals are reported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import autofix
from autofix.config import AutofixConfig, load_config
from autofix.graph import RunOptions, RunResult, start_run
from autofix.graph.events import EventCallback

DEMO_OPTIONS = RunOptions(max_metric_calls=600, wall_s=17 * 60, max_jobs=6, max_candidates=1)
"""Sized to finish within 20 minutes on a 2-core machine with the embedded model (see the README)."""


def bundled_example() -> Path:
    """The helpdesk example's autofix.yaml in a source checkout."""
    return Path(autofix.__file__).resolve().parents[2] / "examples" / "helpdesk" / "autofix.yaml"


def prepare_demo_target(example: Path, parent: Path) -> Path:
    """`example`'s folder copied into `parent/demo-<time>/<name>` and committed in a repository of its own."""
    source = example.parent if example.name.endswith(".yaml") else example
    dest = parent / f"demo-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}" / source.name
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("runs", "__pycache__", ".pytest_cache", "*.egg-info"))
    (dest / ".gitignore").write_text("runs/\n__pycache__/\n")
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", f"{source.name}: as bundled"]):
        subprocess.run(["git", "-c", "user.name=autofix demo", "-c", "user.email=demo@localhost", *args], cwd=dest,
                       check=True, capture_output=True, env=env)
    return dest / "autofix.yaml"


def run_demo(config: AutofixConfig, options: RunOptions = DEMO_OPTIONS, *, max_parallel: int = 2,
             on_event: EventCallback = lambda m: None) -> RunResult:
    """The nightly run on a prepared demo target."""
    return start_run(config, options, max_parallel=max_parallel, on_event=on_event)


def demo_config(example: Path | None, parent: Path) -> AutofixConfig:
    return load_config(prepare_demo_target(example or bundled_example(), parent))
