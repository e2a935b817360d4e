"""The demo: autofix's loop on a target with the embedded defaults, as far as it is built.

Today it validates the target's configuration, starts the model gateway with the configured model
(the embedded local model by default), builds the sandbox, replays the regression set at the
target's current commit, scores it with the deterministic checks and writes the run's artifacts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import autofix
from autofix.config import AutofixConfig
from autofix.models.gateway import GatewayServer
from autofix.models.usage import UsageStore
from autofix.replay import CaseResult, load_cases, replay_cases
from autofix.replay.metrics import ReplaySummary, score_cases, summarize
from autofix.sandbox import get_sandbox


def bundled_example() -> Path:
    """The helpdesk example's autofix.yaml in a source checkout."""
    return Path(autofix.__file__).resolve().parents[2] / "examples" / "helpdesk" / "autofix.yaml"


@dataclass
class DemoRun:
    run_id: str
    run_dir: Path
    sandbox: str
    isolated: bool
    summary: ReplaySummary
    results: list[CaseResult]


def new_run_id() -> str:
    return "demo-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def run_demo(
    config: AutofixConfig,
    *,
    limit: int | None = None,
    sandbox_kind: str | None = None,
    on_stage: Callable[[str], None] = lambda _: None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> DemoRun:
    """Replay the target's regression set at its working tree and score it; artifacts go to `<state>/<run_id>/`."""
    regression = config.dataset_path("regression")
    if regression is None:
        raise ValueError(f"{config.file}: datasets.regression is not set; the demo replays the regression set")
    cases = load_cases(regression)[:limit]
    run_id = new_run_id()
    run_dir = config.state_path / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    on_stage(f"sandbox: {sandbox_kind or config.replay.sandbox}")
    sandbox = get_sandbox(sandbox_kind or config.replay.sandbox, config.replay.allow_local_fallback)
    image = None
    if sandbox.name == "docker" and config.image_path is not None:
        on_stage("building the sandbox image (cached when unchanged)")
        image = sandbox.ensure_image(config.image_path, config.project)

    on_stage(f"model gateway: {config.model.name}")
    store = UsageStore(config.state_path / "gateway.sqlite3")
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        on_progress(done, len(cases))

    with GatewayServer(store, model=config.model.name, host=sandbox.gateway_bind_host(), port=0) as gateway:
        on_stage(f"replaying {len(cases)} regression cases")
        results = replay_cases(
            cases, config=config, target_dir=config.root, sandbox=sandbox, gateway=gateway,
            replay_id=f"{run_id}:regression", io_root=run_dir / "replay", image=image, on_progress=progress,
        )
    scores, unavailable = score_cases(cases, results, config)
    summary = summarize(cases, results, scores, unavailable)

    with (run_dir / "results.jsonl").open("w", encoding="utf-8") as out:
        for result, score in zip(results, scores):
            row = result.model_dump()
            row["checks"] = {name: outcome.model_dump() for name, outcome in score.checks.items()}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    (run_dir / "summary.json").write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    return DemoRun(run_id=run_id, run_dir=run_dir, sandbox=sandbox.name, isolated=sandbox.isolates,
                   summary=summary, results=results)
