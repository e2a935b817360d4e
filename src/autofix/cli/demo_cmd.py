"""`autofix demo`: the whole loop on the bundled helpdesk example (or a copy of any target) with the embedded defaults."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from autofix.config import ConfigError


def demo(
    config_path: Optional[Path] = typer.Option(
        None, "-c", "--config", help="The example to copy (default: the bundled helpdesk example)."),
    into: Path = typer.Option(Path("runs"), "--into", help="Where the demo's copy of the example is made."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Override replay.sandbox: docker or local."),
    max_jobs: Optional[int] = typer.Option(None, "--max-jobs", min=1, help="(cluster, optimizer) pairs, by priority."),
    max_metric_calls: Optional[int] = typer.Option(None, "--max-metric-calls", min=1,
                                                   help="Case replays the optimizers may run in all."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON."),
) -> None:
    """Run the whole loop on a fresh copy of the bundled helpdesk example: triage, optimizers, gate, approval queue, report.

    The example is copied into a new git repository under --into (runs/ by default), so the bundled files are never changed. The embedded model (SmolLM2-135M) answers the replays and is the optimizers' model; Docker sandboxes are used where Docker works, else the local sandbox. It ends with the report's path and the command to review the proposals.
    """
    from autofix.demo import DEMO_OPTIONS, demo_config, run_demo
    from autofix.graph import RunLocked

    err = Console(stderr=True)
    try:
        config = demo_config(config_path, into.resolve())
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if sandbox is not None and sandbox not in ("docker", "local"):
        err.print(f"[red]error:[/red] unknown sandbox {sandbox!r}: use docker or local", soft_wrap=True)
        raise typer.Exit(2)
    options = replace(DEMO_OPTIONS, sandbox_kind=sandbox,
                      max_jobs=max_jobs or DEMO_OPTIONS.max_jobs,
                      max_metric_calls=max_metric_calls or DEMO_OPTIONS.max_metric_calls)
    if not as_json:
        err.print(f"[bold]demo target:[/bold] {config.root} (a fresh repository with a copy of the example)")
    try:
        from autofix.cli.run_cmd import _display

        with _display(as_json, err, "autofix demo") as on_event:
            result = run_demo(config, options, on_event=on_event)
    except RunLocked as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(75) from None
    data = result.to_json()
    if as_json:
        typer.echo(json.dumps({**data, "target": str(config.root)}, indent=2))
        return
    from autofix.cli.run_cmd import _print

    out = Console()
    _print(result, out)
    out.print(f"review: autofix review list -c {config.file}   (then autofix review show ID, approve or reject)",
              soft_wrap=True, highlight=False)
