"""`autofix optimize` (run optimizers on one failure cluster) and `autofix optimizers list`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from autofix.config import CONFIG_FILENAME, ConfigError, load_config

optimizers_app = typer.Typer(
    help="Optimizers: the built-ins and the plugins installed under the entry-point group autofix.optimizers.",
    no_args_is_help=True,
)


@optimizers_app.command("list")
def list_optimizers(
    as_json: bool = typer.Option(False, "--json", help="Print [{name, categories, distribution}] as JSON."),
) -> None:
    """List the installed optimizers and the root-cause categories each one serves."""
    from autofix.optimize import optimizer_categories, optimizer_registry

    entries = sorted(optimizer_registry.entries(), key=lambda e: e.name)
    rows = [{"name": e.name, "categories": sorted(c.value for c in optimizer_categories(e)),
             "distribution": e.distribution, "version": e.version, "doc": e.metadata.get("doc", "")} for e in entries]
    err = Console(stderr=True)
    for warning in optimizer_registry.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    if as_json:
        typer.echo(json.dumps([{k: r[k] for k in ("name", "categories", "distribution")} for r in rows], indent=2))
        return
    table = Table(title=f"{len(rows)} optimizers")
    for column in ("name", "categories", "distribution", "what it does"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], ", ".join(r["categories"]), r["distribution"] or "(built in)", r["doc"])
    Console().print(table)
    if not rows:
        Console().print("No optimizer is installed: `pip install -e optimizers/<name>` (see optimizers/README.md).")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def optimize(
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help="The target's autofix.yaml."),
    cluster: str = typer.Option(..., "--cluster", help="A cluster id of the latest `autofix triage`."),
    optimizer: Optional[str] = typer.Option(
        None, "--optimizer", help="One optimizer (see `autofix optimizers list`); default: every one serving the "
        "cluster's category."),
    budget_usd: Optional[float] = typer.Option(None, "--budget-usd", min=0,
                                               help="Dollars the optimizers may spend (replays and their model)."),
    max_tokens: Optional[int] = typer.Option(
        None, "--max-tokens", min=1, help="Model tokens the optimizers may spend (replays and their model)."),
    max_metric_calls: Optional[int] = typer.Option(
        None, "--max-metric-calls", min=1, help="Case replays the optimizers may run (cache hits are free)."),
    max_candidates: int = typer.Option(3, "--max-candidates", min=1, help="Candidates kept per optimizer."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Override replay.sandbox: docker or local."),
    seed: int = typer.Option(0, "--seed", help="Seed of the optimizers' sampling."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run optimizers on one failure cluster: each candidate fix is a commit on its own branch autofix/<run>/<cluster>/<n>.

    The cluster's failed traces are split into a training part, which the optimizers replay and score, and a held-out part they never see (the gate's). A cluster nothing measures (no check its category implies, no reviewer labels, no calibrated judge) is not optimized: it is reported as an evaluation finding naming what to measure first.

    Exit codes: 0 done (with or without candidates), 1 an error while running, 2 bad input, 3 the cluster was not optimized (finding printed).
    """
    from autofix.optimize import Budget
    from autofix.optimize.engine import OptimizeError, optimize_cluster
    from autofix.replay.records import DatasetError
    from autofix.sandbox.base import SandboxError
    from autofix.worktrees import WorktreeError

    err = Console(stderr=True)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if sandbox is not None and sandbox not in ("docker", "local"):
        err.print(f"[red]error:[/red] unknown sandbox {sandbox!r}: use docker or local", soft_wrap=True)
        raise typer.Exit(2)

    def event(message: str) -> None:
        if not as_json:
            err.print(f"[bold]•[/bold] {escape(message)}", soft_wrap=True, highlight=False)

    try:
        with err.status("optimizing", spinner="dots") if not as_json else _nothing():
            result = optimize_cluster(config, cluster, optimizer=optimizer, sandbox_kind=sandbox, seed=seed,
                                      budget=Budget(max_metric_calls=max_metric_calls, max_usd=budget_usd, max_tokens=max_tokens),
                                      max_candidates=max_candidates, on_event=event)
    except (DatasetError, KeyError, OptimizeError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc).strip(chr(39)))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except (SandboxError, WorktreeError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None

    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print_result(result)
    if result.finding is not None:
        raise typer.Exit(3)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _print_result(result) -> None:  # noqa: ANN001 - an OptimizeResult
    out = Console()
    if result.finding is not None:
        f = result.finding
        out.print(f"[bold yellow]not optimized[/bold yellow] ({f.category.value} finding): {escape(f.title)}")
        out.print(escape(f.rationale), soft_wrap=True)
        return
    out.print(f"cluster {result.cluster} ({result.category.value}) · {result.train_cases} training cases · measured by "
              f"{', '.join(result.measures)} · base score {_score(result.base_score)}")
    runs = Table(title="optimizers")
    for column in ("optimizer", "proposals", "metric calls", "cost", "stopped"):
        runs.add_column(column)
    for r in result.runs:
        runs.add_row(r.optimizer, str(r.proposals), str(r.metric_calls), f"${r.cost_usd:.4f}", r.stopped or "")
    out.print(runs)
    if not result.candidates:
        out.print("no candidate: nothing the optimizers tried beat the base on the training cases")
    for c in result.candidates:
        out.rule(f"{c.id} · {c.optimizer} · training {_score(c.train.base_score)} -> {_score(c.train.score)}"
                 + ("" if c.train.verified else " (optimizer's own score, not re-verified)"))
        out.print(f"branch {c.branch} · commit {c.commit[:12]} · {escape(c.description)}")
        out.print(Syntax(c.diff or "(empty diff)", "diff", word_wrap=True))
    out.print(f"[dim]{result.wall_s:.0f} s · artifacts under runs/optimize/{result.run_id}/ · next: "
              f"`autofix replay --ref <branch> --dataset slice:{result.cluster}:holdout`[/dim]")
