"""`autofix run` (the nightly loop on a target) and `autofix resume RUN_ID` (go on after a kill)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autofix.config import CONFIG_FILENAME, ConfigError, load_config


def _load(config_path: Path, err: Console):
    try:
        return load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _print(result, out: Console) -> None:  # noqa: ANN001 - a RunResult
    data = result.to_json()
    table = Table(title=f"run {data['run_id']}: candidates")
    for column in ("candidate", "optimizer", "gate", "reasons"):
        table.add_column(column, overflow="fold")
    for c in data["candidates"]:
        table.add_row(c["id"], c["optimizer"], "[green]passed[/green]" if c["gate"]["passed"] else "[red]refused[/red]",
                      escape("; ".join(c["gate"]["reasons"])[:400]))
    out.print(table)
    for x in data["skipped"]:
        out.print(f"[yellow]not done:[/yellow] {escape(x.get('cluster', ''))} / {escape(x.get('optimizer', ''))}: "
                  f"{escape(x['reason'])}", soft_wrap=True)
    for e in data["errors"]:
        out.print(f"[red]error:[/red] {escape(e)}", soft_wrap=True)
    out.print(f"{len(data['proposals'])} proposal(s) wait for approval · ${data['cost_usd']:.4f} · {data['wall_s']:.0f} s")
    if data["report"]:
        out.print(f"report: {data['report'].get('html')}", soft_wrap=True, highlight=False)  # a path to copy whole
    if data["proposals"]:
        out.print(f"next: autofix review list -c {result.state.get('config')}", soft_wrap=True, highlight=False)


def _display(as_json: bool, err: Console, title: str):
    """The live view on stderr (plain event lines when it is not a terminal); silent with --json."""
    from contextlib import nullcontext

    from autofix.cli.run_display import RunDisplay

    return nullcontext(lambda event: None) if as_json else RunDisplay(err, title)


def run(
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help="The target's autofix.yaml."),
    budget_usd: Optional[float] = typer.Option(None, "--budget-usd", min=0, help="Dollars the run may spend, "
                                               "split across clusters by priority."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Model tokens the optimizers may "
                                             "spend (their replays at the gateway, their own model), split like dollars."),
    max_metric_calls: Optional[int] = typer.Option(None, "--max-metric-calls", min=1,
                                                   help="Case replays the optimizers may run in all."),
    wall_s: Optional[float] = typer.Option(None, "--max-wall-s", min=1, help="Wall time after which the run "
                                           "starts nothing new and winds down, reporting what it did not reach."),
    max_jobs: Optional[int] = typer.Option(None, "--max-jobs", min=1,
                                           help="(cluster, optimizer) pairs optimized at most, by priority."),
    max_parallel: int = typer.Option(2, "--parallel", min=1, help="Candidates optimized or gated at once."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Override replay.sandbox: docker or local."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Name the run (default: run-<time>-<hex>)."),
    wait: float = typer.Option(0.0, "--wait", min=0, help="Seconds to wait for another run on this target."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the whole loop on a target: triage, optimize each fixable cluster, gate the candidates, queue the
    passing ones for approval, write the report. A killed run goes on with `autofix resume RUN_ID`.

    Exit codes: 0 done, 1 error, 2 bad input, 75 another run holds the target.
    """
    from autofix.graph import RunLocked, RunOptions, start_run

    err = Console(stderr=True)
    config = _load(config_path, err)
    try:
        with _display(as_json, err, f"autofix run · {config.project}") as on_event:
            result = start_run(config, RunOptions(budget_usd=budget_usd, max_tokens=max_tokens,
                                                  max_metric_calls=max_metric_calls, wall_s=wall_s, max_jobs=max_jobs,
                                                  sandbox_kind=sandbox),
                               run_id=run_id, max_parallel=max_parallel, wait_s=wait, on_event=on_event)
    except RunLocked as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(75) from None
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print(result, Console())


def resume(
    run_id: str = typer.Argument(..., help="The run to go on with (its folder under the state folder)."),
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help="The target's autofix.yaml."),
    max_parallel: int = typer.Option(2, "--parallel", min=1, help="Candidates optimized or gated at once."),
    wait: float = typer.Option(0.0, "--wait", min=0, help="Seconds to wait for another run on this target."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Go on with a run from its last checkpoint: finished steps are not redone, and nothing is left twice."""
    from autofix.graph import RunLocked, UnknownRun, resume_run

    err = Console(stderr=True)
    config = _load(config_path, err)
    try:
        with _display(as_json, err, f"autofix resume {run_id}") as on_event:
            result = resume_run(config, run_id, max_parallel=max_parallel, wait_s=wait, on_event=on_event)
    except UnknownRun as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except RunLocked as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(75) from None
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print(result, Console())
