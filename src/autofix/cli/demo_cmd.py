"""`autofix demo`: the loop on the bundled helpdesk example (or any target) with the embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autofix.config import ConfigError, load_config
from autofix.cli.triage_cmd import print_clusters
from autofix.demo import bundled_example, run_demo
from autofix.replay.metrics import MetricSummary
from autofix.replay.records import DatasetError
from autofix.sandbox.base import SandboxError


def _rate(metric: MetricSummary | None) -> str:
    if metric is None or metric.rate is None:
        return "-"
    return f"{metric.rate:.0%} ({metric.passed}/{metric.applicable})"


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
    metrics = Table(title=f"{config.project}: regression set at the working tree ({summary.cases} cases)")
    metrics.add_column("check")
    metrics.add_column("passed", justify="right")
    for name, metric in summary.metrics.items():
        metrics.add_row(name, _rate(metric))
    out.print(metrics)

    names = list(summary.metrics)
    by_task = Table(title="by task type")
    by_task.add_column("task type")
    for name in names:
        by_task.add_column(name, justify="right")
    for task_type, task_metrics in summary.by_task_type.items():
        by_task.add_row(task_type, *[_rate(task_metrics.get(name)) for name in names])
    out.print(by_task)

    out.print(f"failed cases {summary.failed_cases}/{summary.cases} · latency p50 {summary.latency_ms['p50']:.0f} ms, "
              f"p95 {summary.latency_ms['p95']:.0f} ms · {summary.tokens} tokens · ${summary.cost_usd:.4f} · "
              f"{summary.tool_calls} tool calls · sandbox {run.sandbox} · {run.cache_hits} from the replay cache")
    if summary.unavailable_checks:
        out.print(f"[yellow]not run (check not implemented yet):[/yellow] {', '.join(summary.unavailable_checks)}")
    out.print(f"artifacts: {run.run_dir}")
    out.print("[dim]Candidate fixes, the launch gate and approval are not built yet: the demo stops here.[/dim]")
