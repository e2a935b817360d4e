"""`autofix triage`: read the production traces, find the failures and their root causes, rank the clusters."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from autofix.config import CONFIG_FILENAME, ConfigError, load_config

EXIT_INPUT = 1
EXIT_CONFIG = 2

_PHASES = {"read": "reading traces", "diagnose": "diagnosing failures", "classify": "classifying (LLM)", "cluster": "clustering"}


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; use ISO 8601, e.g. 2026-11-01 or 2026-11-01T08:00:00Z", param_hint="--since"
        ) from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def print_clusters(report, limit: int | None, console: Console, more_hint: str = "drop --limit-clusters to see them") -> None:  # noqa: ANN001
    """The ranked clusters of a triage report as a table, then the counts by category and where the report is."""
    clusters = report.clusters if limit is None else report.clusters[:limit]
    title = (
        f"{report.traces} traces, {report.failures} failures, {report.quarantined} quarantined: "
        f"{len(report.clusters)} clusters"
    )
    table = Table(title=title, show_lines=False, expand=False)
    fixed = dict(no_wrap=True, overflow="fold")
    table.add_column("#", justify="right", **fixed, min_width=max(2, len(str(len(clusters)))))
    table.add_column("cluster", **fixed, min_width=max((len(c.id) for c in clusters), default=7))
    table.add_column("category", **fixed, min_width=max((len(c.category.value) for c in clusters), default=8))
    table.add_column("owner", **fixed, min_width=max((len(c.owner) for c in clusters), default=5))
    table.add_column("size", justify="right", **fixed, min_width=4)
    table.add_column("trend", **fixed, min_width=9)
    table.add_column("priority", justify="right", **fixed, min_width=8)
    table.add_column("fixable", **fixed, min_width=7)
    table.add_column("name", no_wrap=True, overflow="ellipsis", min_width=10, max_width=32)
    table.add_column("rationale", no_wrap=True, overflow="ellipsis", min_width=10, max_width=80)
    for c in clusters:
        table.add_row(
            str(c.rank), escape(c.id), c.category.value, c.owner, str(c.size), _trend_cell(c.trend), f"{c.priority:.2f}",
            "yes" if c.fixable else "no", escape(c.name), escape(c.rationale),
        )
    console.print(table)
    if limit is not None and len(report.clusters) > limit:
        console.print(f"… {len(report.clusters) - limit} more clusters ({more_hint})")
    changes = getattr(report, "changes", None)
    if changes is not None:
        print_changes(changes, console)
    if report.by_category:
        console.print("by category: " + ", ".join(f"{k} {v}" for k, v in report.by_category.items()))
    for f in report.findings:
        console.print(f"[bold]finding[/bold] ({f.category.value}, {f.traces} traces): {escape(f.title)}: "
                      f"{escape(f.rationale)}", soft_wrap=True)
    if report.report_path:
        console.print(f"report: {escape(report.report_path)}", soft_wrap=True)
    if report.quarantined:
        console.print(f"[yellow]{report.quarantined} bad records quarantined[/yellow]: {escape(str(report.quarantine_path))}",
                      soft_wrap=True)
    for warning in getattr(report, "warnings", None) or []:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)


_TREND_STYLE = {"new": "cyan", "growing": "red", "shrinking": "green", "steady": "dim", "resolved": "green"}
CHANGE_ROWS = 20


def _trend_cell(trend: str) -> str:
    style = _TREND_STYLE.get(trend)
    return f"[{style}]{trend}[/{style}]" if style else trend


def print_changes(changes, console: Console, limit: int = CHANGE_ROWS) -> None:  # noqa: ANN001
    """The comparison with the previous run: one line of counts, then a short table of what changed (new,
    growing, shrinking and resolved clusters, sizes then and now); steady clusters are only counted."""
    n = changes.counts
    if changes.previous is None:
        console.print("since the previous run: none to compare with (first run), every cluster is new")
        return
    when = changes.previous.generated_at.strftime("%Y-%m-%d %H:%M") if changes.previous.generated_at else "?"
    console.print(
        f"since the previous run ({when}, {changes.previous.clusters} clusters): {n.get('kept', 0)} kept "
        f"({n.get('growing', 0)} growing, {n.get('shrinking', 0)} shrinking, {n.get('steady', 0)} steady), "
        f"{n.get('new', 0)} new, {n.get('resolved', 0)} resolved", soft_wrap=True)
    rows = [(c.trend, c.id, c.previous_size, c.size) for c in changes.clusters if c.trend != "steady"]
    rows += [("resolved", r.id, r.previous_size, 0) for r in changes.resolved]
    if not rows:
        return
    table = Table(show_lines=False, expand=False, box=None, padding=(0, 2, 0, 0))
    fixed = dict(no_wrap=True, overflow="fold")
    table.add_column("change", **fixed, min_width=9)
    table.add_column("cluster", **fixed, min_width=max(len(r[1]) for r in rows[:limit]))
    table.add_column("then", justify="right", **fixed, min_width=4)
    table.add_column("now", justify="right", **fixed, min_width=4)
    for trend, cid, then, now in rows[:limit]:
        table.add_row(_trend_cell(trend), escape(cid), "-" if then is None else str(then), str(now))
    console.print(table)
    if len(rows) > limit:
        console.print(f"… {len(rows) - limit} more changes (--json lists them all)")


def nothing_read(report) -> str | None:  # noqa: ANN001
    """Why a triage read no trace at all (no record, or every record quarantined); None when it read some.

    Traces left out by --since were read, so they do not count as nothing read.
    """
    if report.traces > 0 or (report.ingest or {}).get("skipped_before_since", 0) > 0:
        return None
    files = (report.ingest or {}).get("files", 0)
    records = report.traces + report.quarantined
    where = ", ".join(report.sources) or "the trace files"
    if files == 0:
        return f"no trace file in {where} (a folder is read for its *.jsonl, *.ndjson and *.json files)"
    head = f"no trace could be read: {records} record{'s' if records != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    if not report.quarantined:
        return f"{head} ({where} holds no record)"
    reasons = ", ".join(f"{k} {v}" for k, v in report.quarantined_by_reason.items())
    shown = report.quarantine_path or "(not written)"
    return f"{head}, all {report.quarantined} quarantined ({reasons}); see {shown} for each record's file, line and reason"


def triage(
    config: Path = typer.Option(
        Path(CONFIG_FILENAME), "--config", "-c", help="The target's autofix.yaml (or the folder holding it)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print {traces, failures, quarantined, clusters, changes} as JSON."),
    since: Optional[str] = typer.Option(None, "--since", help="Only traces at or after this date (ISO 8601)."),
    limit_clusters: Optional[int] = typer.Option(None, "--limit-clusters", min=1, help="Show only the top N clusters."),
    no_llm: bool = typer.Option(False, "--no-llm", help="Rules only: do not ask the LLM classifier."),
) -> None:
    """Find the failures in the production traces, diagnose their root causes and rank the clusters.

    Reads datasets.traces of autofix.yaml (native JSONL, OpenInference or Langfuse exports). Each run writes <state>/triage/<timestamp>/report.json and quarantine.jsonl (bad records, with file, line and reason); <state>/triage/latest.json is the newest report.

    Each cluster keeps its id from the previous run (the report latest.json held) while its mechanism is the same;
    the trend column and the table after it show what is new, growing, shrinking or resolved since then.

    Exit 2 on a bad config, 1 on unreadable input: a trace file that cannot be read, or no trace read at all
    (no record, or every record quarantined).
    """
    from autofix.triage.pipeline import default_classifier, run_triage

    err = Console(stderr=True)
    since_dt = _parse_since(since)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    classifier = None if no_llm else default_classifier(cfg)

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=as_json, transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def on_progress(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(_PHASES.get(phase, phase), total=total)
            progress.update(tasks[phase], completed=done, total=total)

        try:
            report = run_triage(cfg, since=since_dt, classifier=classifier, progress=on_progress)
        except (FileNotFoundError, PermissionError, IsADirectoryError, UnicodeError, OSError) as exc:
            err.print(f"[red]error:[/red] cannot read the traces: {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_INPUT) from None

    problem = nothing_read(report)
    if as_json:
        summary = report.summary(limit_clusters)
        if problem:
            summary["error"] = problem
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        if problem:
            raise typer.Exit(EXIT_INPUT)
        return
    if problem:
        err.print(f"[red]error:[/red] {escape(problem)}", soft_wrap=True)
        for warning in report.warnings:
            err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
        raise typer.Exit(EXIT_INPUT)
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)
    print_clusters(report, limit_clusters, console)
