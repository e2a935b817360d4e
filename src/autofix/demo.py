"""The demo: autofix's loop on a target with the embedded defaults, as far as it is built.

Today it validates the target's configuration, triages the production traces (failures, root
causes, ranked clusters: `autofix.triage`), starts the model gateway with the configured model (the
embedded local model by default), builds the sandbox, replays the regression set at the target's
working tree (cached results where it is unchanged), scores it with the deterministic checks and
writes the run's artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import autofix
from autofix.config import AutofixConfig
from autofix.replay import CaseResult
from autofix.replay.metrics import ReplaySummary
from autofix.replay.refs import WORKTREE
from autofix.replay.session import replay_at_ref
from autofix.triage import TriageReport
from autofix.triage.pipeline import default_classifier, run_triage


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
    triage: TriageReport | None = None
    """The triage of the production traces; None when the target names no `datasets.traces`."""
    cache_hits: int = 0


def new_run_id() -> str:
    return "demo-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def run_demo(
    config: AutofixConfig,
    *,
    limit: int | None = None,
    sandbox_kind: str | None = None,
    use_cache: bool = True,
    on_stage: Callable[[str], None] = lambda _: None,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> DemoRun:
    """Triage the target's production traces, then replay its regression set at its working tree and score it.

    The triage report goes to `<state>/triage/<timestamp>/` (and `latest.json`, which `slice:` datasets
    read); the replay's artifacts to `<state>/<run_id>/`. The replay is at `WORKTREE`
    (`autofix.replay.session.replay_at_ref`): an unchanged working tree is answered from the replay cache.
    """
    if config.dataset_path("regression") is None:
        raise ValueError(f"{config.file}: datasets.regression is not set; the demo replays the regression set")
    run_id = new_run_id()
    run_dir = config.state_path / run_id
    triage = None
    if config.dataset_path("traces") is not None:
        on_stage(f"triage of the production traces ({config.dataset_path('traces')})")
        triage = run_triage(config, classifier=default_classifier(config))
    replay = replay_at_ref(
        config, WORKTREE, "regression", limit=limit, sandbox_kind=sandbox_kind, use_cache=use_cache,
        replay_id=run_id, replay_dir=run_dir, on_stage=on_stage, on_progress=on_progress,
    )
    return DemoRun(run_id=run_id, run_dir=run_dir, sandbox=replay.sandbox or "cache",
                   isolated=replay.isolated, summary=replay.summary, results=replay.results,
                   triage=triage, cache_hits=replay.cache_hits)
