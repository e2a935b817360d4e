"""`autofix worktrees`: list and prune the candidate worktrees and branches of a target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autofix.config import CONFIG_FILENAME, AutofixConfig, ConfigError, load_config
from autofix.worktrees import (
    NotAGitRepositoryError,
    PruneReport,
    WorktreeInfo,
    default_worktrees_dir,
    find_repository,
    list_worktrees,
    prune,
)

app = typer.Typer(
    help="Candidate worktrees and autofix/* branches: list them, prune what killed runs left behind.",
    no_args_is_help=True,
)

console = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_INVALID = 2

ConfigOpt = typer.Option(
    Path(CONFIG_FILENAME), "--config", "-c", help="The target's autofix.yaml (or the folder holding it)."
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def _load(config: Path, as_json: bool) -> tuple[AutofixConfig, Path, Path]:
    """The config, the repository root, and the worktrees folder; exits with a message on failure."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "issues": [i.to_json() for i in exc.issues]}, indent=2))
        else:
            for issue in exc.issues:
                err.print(escape(issue.format()), soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None
    try:
        repo, _ = find_repository(cfg.root)
    except NotAGitRepositoryError as exc:
        _fail(str(exc), as_json)
    return cfg, Path(repo.working_tree_dir), default_worktrees_dir(cfg)


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message}, indent=2))
    else:
        err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(EXIT_FAILED)


def _shown(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _info_json(info: WorktreeInfo) -> dict[str, Any]:
    data = info.model_dump(mode="json")
    data["state"] = info.state
    return data


@app.command("list")
def list_cmd(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """List the target's autofix worktrees, branches and leftover folders."""
    cfg, root, wdir = _load(config, as_json)
    infos = list_worktrees(cfg.root, wdir)
    if as_json:
        payload = {
            "ok": True,
            "repo_root": str(root),
            "worktrees_dir": str(wdir),
            "worktrees": [_info_json(i) for i in infos],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    if not infos:
        console.print(f"No autofix worktrees or branches in {escape(str(root))}.")
        return
    table = Table(title=f"autofix worktrees in {escape(str(root))}")
    for column in ("run", "cluster", "#", "branch", "path", "state"):
        table.add_column(column, overflow="fold")
    styles = {"active": "green", "locked": "yellow", "folder gone": "red", "leftover folder": "red", "branch only": "yellow"}
    for i in infos:
        state = i.state
        table.add_row(
            escape(i.run_id or "-"),
            escape(i.cluster_id or "-"),
            "-" if i.n is None else str(i.n),
            escape(i.branch or "-"),
            escape(_shown(i.path)),
            f"[{styles.get(state, 'white')}]{escape(state)}[/]",
        )
    console.print(table)
    runs = sorted({i.run_id for i in infos if i.run_id})
    console.print(f"{len(infos)} item{'s' if len(infos) != 1 else ''} in {len(runs)} run{'s' if len(runs) != 1 else ''}.")


@app.command("prune")
def prune_cmd(
    config: Path = ConfigOpt,
    run: Optional[list[str]] = typer.Option(None, "--run", help="Prune only this run (repeatable)."),
    keep: Optional[list[str]] = typer.Option(None, "--keep", help="Leave this run alone (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; remove nothing."),
    as_json: bool = JsonOpt,
) -> None:
    """Remove stale autofix worktrees, leftover folders and autofix/* branches (e.g. after a killed run)."""
    cfg, root, wdir = _load(config, as_json)
    report = prune(cfg.root, keep or (), runs=run or None, worktrees_dir=wdir, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps({"ok": report.ok, **report.model_dump(mode="json")}, indent=2))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _print_report(report: PruneReport) -> None:
    verb = "would remove" if report.dry_run else "removed"
    if report.nothing_found:
        console.print("Nothing to prune.")
    else:
        where = escape(str(report.repo_root))
        table = Table(title=f"dry run: would prune in {where}" if report.dry_run else f"pruned in {where}")
        table.add_column("what")
        table.add_column(verb, overflow="fold")
        for path in report.removed_worktrees:
            table.add_row("worktree", escape(_shown(path)))
        for path in report.removed_folders:
            table.add_row("leftover folder", escape(_shown(path)))
        for branch in report.removed_branches:
            table.add_row("branch", escape(branch))
        console.print(table)
    if report.kept_runs:
        console.print(f"Kept run{'s' if len(report.kept_runs) != 1 else ''}: {escape(', '.join(report.kept_runs))}")
    for error in report.errors:
        err.print(f"[red]error:[/red] {escape(error)}", soft_wrap=True)
