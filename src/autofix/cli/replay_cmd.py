"""`autofix replay`: replay a dataset on the target at a ref, in a sandbox, and score it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autofix.config import CONFIG_FILENAME, ConfigError, load_config
from autofix.replay.metrics import MetricSummary, ReplaySummary
from autofix.replay.records import DatasetError
from autofix.replay.refs import RefError
from autofix.sandbox.base import SandboxError
from autofix.worktrees import WorktreeError


def _rate(metric: MetricSummary | None) -> str:
    if metric is None or metric.rate is None:
        return "-"
    return f"{metric.rate:.0%} ({metric.passed}/{metric.applicable})"


def print_replay_summary(out: Console, title: str, summary: ReplaySummary, *, cache_hits: int, sandbox: str | None,
                         by_task_type: bool = False) -> None:
    """A replay's per-metric results (and per task type), then one line of failures, latency, cost and cache."""
    table = Table(title=title, min_width=len(title) + 4)  # the title on one line
    table.add_column("metric")
    table.add_column("passed", justify="right")
    for name, metric in summary.metrics.items():
        table.add_row(name, _rate(metric))
    out.print(table)
    if by_task_type:
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
              f"{summary.tool_calls} tool calls · {cache_hits}/{summary.cases} from the cache"
              + (f" · sandbox {sandbox}" if sandbox else ""))
    if summary.unavailable_checks:
        out.print(f"[yellow]not run:[/yellow] {', '.join(summary.unavailable_checks)}")


def replay(
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help="The target's autofix.yaml."),
    ref: str = typer.Option(
        "WORKTREE", "--ref",
        help="Branch, tag, commit sha or HEAD; WORKTREE (default) is the working tree as it is on disk.",
    ),
    dataset: str = typer.Option(
        "regression", "--dataset",
        help="regression, slice:<cluster> (failed traces of a triage cluster; :target or :holdout for its "
             "two parts), or the path of a JSONL file of cases.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Override replay.sandbox: docker or local."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Replay only the first N cases."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Replay every case, even those the replay cache knows."),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1,
                                           help="Batches replayed at once (default: one per CPU core)."),
    rubrics: bool = typer.Option(False, "--rubrics", help="Score with the rubric judges too (calls the judge model)."),
) -> None:
    """Replay a dataset on the target at a ref and score it with the deterministic checks (--rubrics: the rubric judges too).

    The ref is checked out in a temporary worktree (WORKTREE replays the folder itself); cases run in batches through the replay command in the sandbox against the model gateway.

    Results are cached by the target folder's tree hash, the case, the model, the judges and the replay command, so an unchanged commit is answered from the cache.

    Artifacts: <state>/replays/<id>/ (replay.json, summary.json, results.jsonl).
    """
    from autofix.replay.session import replay_at_ref

    console = Console(stderr=True)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            console.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if sandbox is not None and sandbox not in ("docker", "local"):
        console.print(f"[red]error:[/red] unknown sandbox {sandbox!r}: use docker or local", soft_wrap=True)
        raise typer.Exit(2)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=as_json) as progress:
        task = progress.add_task("replay", total=None)
        try:
            run = replay_at_ref(
                config, ref, dataset, limit=limit, sandbox_kind=sandbox, use_cache=not no_cache, parallel=parallel,
                use_rubrics=rubrics,
                on_stage=lambda text: console.print(f"[bold]•[/bold] {text}", soft_wrap=True) if not as_json else None,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except (RefError, DatasetError) as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None
        except (SandboxError, WorktreeError, OSError) as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None

    if as_json:
        typer.echo(json.dumps(run.to_json(), indent=2))
        return

    summary = run.summary
    out = Console()
    if run.sandbox is not None and not run.isolated:
        out.print("[yellow]The local sandbox does not isolate the replayed code.[/yellow]")
    print_replay_summary(out, f"{config.project}: {run.dataset.name} at {run.ref.label} ({summary.cases} cases)", summary,
                         cache_hits=run.cache_hits, sandbox=run.sandbox)
    for note in run.dataset.notes:
        out.print(f"[dim]{note}[/dim]")
    out.print(f"artifacts: {run.replay_dir}")
