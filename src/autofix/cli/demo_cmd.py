"""`autofix demo`: the loop on the bundled helpdesk example (or any target) with the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from autofix.config import ConfigError, load_config
from autofix.cli.replay_cmd import print_replay_summary
from autofix.cli.triage_cmd import print_clusters
from autofix.demo import bundled_example, run_demo
from autofix.replay.records import DatasetError
from autofix.sandbox.base import SandboxError


def demo(
    config_path: Optional[Path] = typer.Option(
        None, "-c", "--config", help="The target's autofix.yaml (default: the bundled helpdesk example)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Replay only the first N regression cases."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Override replay.sandbox: docker or local."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Replay every case, even those the replay cache knows."),
) -> None:
    """Triage the target's production traces, then replay its regression set in a sandbox and score it.

    Uses the embedded defaults: the local model (SmolLM2-135M-Instruct) behind the gateway, Docker
    sandboxes where Docker works (else the local sandbox, if the config allows it), SQLite for usage.
    Artifacts go to the target's state folder: <state>/triage/<timestamp>/ (the triage report and its
    quarantine) and <state>/<run-id>/ (results.jsonl, summary.json).
    Cases whose result the replay cache holds for the unchanged working tree are not run again.
    """
    console = Console(stderr=True)
    path = config_path or bundled_example()
    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            console.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=as_json) as progress:
        task = progress.add_task("replay", total=None)
        try:
            run = run_demo(
                config, limit=limit, sandbox_kind=sandbox, use_cache=not no_cache,
                on_stage=lambda text: console.print(f"[bold]•[/bold] {text}") if not as_json else None,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except (DatasetError, SandboxError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(1) from None

    summary = run.summary
    if as_json:
        triage = run.triage.summary(limit_clusters=10) if run.triage is not None else None
        typer.echo(json.dumps({"run_id": run.run_id, "run_dir": str(run.run_dir), "sandbox": run.sandbox,
                               "cache_hits": run.cache_hits, **summary.model_dump(), "triage": triage},
                              indent=2, ensure_ascii=False))
        return

    out = Console()
    if not out.is_terminal:
        out = Console(width=240)
    if run.triage is not None:
        print_clusters(run.triage, 8, out, more_hint=f"autofix triage -c {path} lists them all")
        out.print()
    if not run.isolated:
        out.print("[yellow]The local sandbox does not isolate the replayed code.[/yellow]")
    print_replay_summary(out, f"{config.project}: regression set at the working tree ({summary.cases} cases)", summary,
                         cache_hits=run.cache_hits, sandbox=run.sandbox, by_task_type=True)
    out.print(f"artifacts: {run.run_dir}")
    out.print("[dim]Candidate fixes, the launch gate and approval are not built yet: the demo stops here.[/dim]")
