"""`autofix review list|show`, `autofix approve` and `autofix reject`: the approval queue in the terminal.

Exit codes: 0 done, 1 refused or failed (the reason is printed), 2 bad input (configuration, unknown
proposal, a missing name or reason).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from autofix.config import CONFIG_FILENAME, ConfigError, load_config

review_app = typer.Typer(
    help="The approval queue: candidate fixes that passed the launch gate, waiting for a human decision.",
    no_args_is_help=True,
)

_CONFIG_HELP = "The target's autofix.yaml."
_MAX_EXAMPLES = 10


def _err() -> Console:
    return Console(stderr=True)


def _fail(message: str, code: int, *, as_json: bool = False, payload: dict[str, Any] | None = None) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({**(payload or {}), "ok": False, "error": message}, indent=2))
    _err().print(f"[red]{'refused' if code == 1 else 'error'}:[/red] {escape(message)}", soft_wrap=True,
                 highlight=False)
    raise typer.Exit(code)


def _config(path: Path) -> Any:
    try:
        return load_config(path)
    except ConfigError as exc:
        err = _err()
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _store(config: Any) -> Any:
    from autofix.approval import open_store

    try:
        return open_store(config)
    except Exception as exc:  # noqa: BLE001 - an unreachable database or a bad URL: say which
        _fail(f"cannot open the approval store: {exc}", 1)


# ------------------------------------------------------------------------------------------ review list


@review_app.command("list")
def review_list(
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help=_CONFIG_HELP),
    status: Optional[str] = typer.Option(None, "--status", help="Only proposals with this status: pending, "
                                                                "approved, rejected or merged."),
    as_json: bool = typer.Option(False, "--json", help="Print [{id, status, cluster, ...}] as JSON."),
) -> None:
    """List the proposals of the approval queue, oldest first."""
    config = _config(config_path)
    with _store(config) as store:
        try:
            records = store.proposals(status)
        except ValueError as exc:
            _fail(str(exc), 2, as_json=as_json)
    if as_json:
        typer.echo(json.dumps([r.summary() for r in records], indent=2))
        return
    table = Table(title=f"{len(records)} proposal{'s' if len(records) != 1 else ''}"
                        + (f" ({status})" if status else ""))
    for column in ("id", "status", "cluster", "optimizer", "what", "fixed", "regressed", "created", "decided by"):
        table.add_column(column)
    for r in records:
        table.add_row(r.id, _status(r.status), Text(r.cluster or "-"), Text(r.optimizer or "-"), Text(r.title),
                      str(len(r.verdict.fixed)), str(len(r.verdict.regressed)), r.created_at, Text(r.decided_by or ""))
    console = Console()
    console.print(table)
    if not records:
        console.print("Nothing queued: only candidates that pass `autofix gate` enter the queue.")


def _status(status: str) -> Text:
    colour = {"pending": "yellow", "approved": "cyan", "merged": "green", "rejected": "red"}.get(status, "")
    return Text(status, style=colour)


# ------------------------------------------------------------------------------------------ review show


@review_app.command("show")
def review_show(
    proposal_id: str = typer.Argument(..., help="The proposal, e.g. p-0001."),
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help=_CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the proposal (diff, verdict, lineage, audit) as JSON."),
) -> None:
    """Show one proposal: the diff, the verdict table, the cases it fixed and regressed, its lineage and history."""
    from autofix.approval import ProposalNotFound

    config = _config(config_path)
    with _store(config) as store:
        try:
            record = store.get(proposal_id)
        except ProposalNotFound as exc:
            _fail(str(exc.args[0]), 2, as_json=as_json)
        log = store.audit_log(record.id)
    if as_json:
        typer.echo(json.dumps({**record.model_dump(mode="json"), "diff_sha256": record.diff_sha256,
                               "audit": [e.model_dump(mode="json") for e in log]}, indent=2))
        return
    console = Console()
    console.print(_header(record))
    console.print(_lineage(record))
    console.print(_verdict_table(record.verdict, f"verdict {record.verdict.verdict_id}"))
    if record.revalidated_verdict is not None:
        console.print(_verdict_table(record.revalidated_verdict,
                                     f"re-validation {record.revalidated_verdict.verdict_id}"))
    for note in record.verdict.notes:
        console.print(Text(f"note: {note}", style="dim"))
    for title, changes in (("fixed", record.verdict.fixed), ("regressed", record.verdict.regressed)):
        if changes:
            console.print(_examples(title, changes))
    console.print(Panel(Syntax(record.diff or "(empty diff)", "diff", word_wrap=True),
                        title=f"diff {record.base_commit[:12]}..{record.commit[:12]}", title_align="left"))
    console.print(_audit_table(log))


def _header(record: Any) -> Panel:
    lines = Text()
    rows = [("status", record.status), ("what", record.title), ("cluster", record.cluster or "-"),
            ("optimizer", record.optimizer or "-"), ("branch", record.branch or "-"),
            ("commit", f"{record.commit} (tree {record.tree[:12]})"),
            ("base", f"{record.base_commit} (tree {record.base_tree[:12]})"), ("queued", record.created_at)]
    rows += record.decision_rows()
    for key, value in rows:
        lines.append(f"{key:>10}  ", style="bold")
        lines.append(str(value) + "\n", style=_status(record.status).style if key == "status" else "")
    return Panel(lines, title=f"proposal {record.id}", title_align="left")


def _lineage(record: Any) -> Table:
    lineage = record.lineage
    table = Table(title="lineage", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    ids = lineage.trace_ids
    shown = ", ".join(ids[:12]) + (f" and {len(ids) - 12} more" if len(ids) > 12 else "")
    rows: list[tuple[str, str]] = [
        ("traces", f"{len(ids)}: {shown}" if ids else "-"), ("cluster", lineage.cluster or "-"),
        ("optimizer", lineage.optimizer or "-"), ("run", lineage.run_id or "-"),
        ("models", ", ".join(f"{k}: {v}" for k, v in lineage.models.items()) or "-"),
        ("cost", f"${lineage.cost_usd:.4f}"), ("metric calls", str(lineage.metric_calls)),
    ]
    if lineage.rationale:
        rows.append(("rationale", lineage.rationale))
    for key, value in (lineage.model_extra or {}).items():
        rows.append((key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    for key, value in rows:
        table.add_row(key, Text(value))
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _verdict_table(verdict: Any, title: str) -> Table:
    outcome = Text("passed", style="green") if verdict.passed else Text("refused", style="red")
    table = Table(title=Text.assemble(f"{title}: ", outcome, f" (policy {verdict.policy})"), title_justify="left")
    for column in ("section", "check", "value", "threshold", "margin", "passed", "reason"):
        table.add_column(column, justify="right" if column in ("value", "threshold", "margin") else "left")
    for check in verdict.checks:
        table.add_row(check.section, Text(check.name), _num(check.value), _num(check.threshold), _num(check.margin),
                      Text("✓", style="green") if check.passed else Text("✗", style="red"), Text(check.reason))
    return table


def _examples(title: str, changes: list[Any]) -> Panel:
    parts: list[Any] = []
    for change in changes[:_MAX_EXAMPLES]:
        head = Text.assemble((f"{change.case_id}", "bold"),
                             f" ({change.dataset}" + (f", trace {change.trace_id}" if change.trace_id else "") + ") ",
                             f"{change.metric}: {_num(change.base)} → {_num(change.candidate)}")
        table = Table(show_header=False, box=None, padding=(0, 1))
        table.add_column("", style="dim", no_wrap=True)
        table.add_column("")
        table.add_row("input", Text(change.input or ""))
        table.add_row("base", Text(change.base_output if change.base_output is not None else "(no output)"))
        table.add_row("candidate", Text(change.candidate_output if change.candidate_output is not None
                                        else "(no output)"))
        parts.extend([head, table, Text("")])
    if len(changes) > _MAX_EXAMPLES:
        parts.append(Text(f"... and {len(changes) - _MAX_EXAMPLES} more (`--json` lists them all)", style="dim"))
    style = "green" if title == "fixed" else "red"
    return Panel(Group(*parts), title=f"{len(changes)} {title}", title_align="left", border_style=style)


def _audit_table(log: list[Any]) -> Table:
    table = Table(title="history", title_justify="left")
    for column in ("at", "actor", "action", "detail"):
        table.add_column(column)
    for entry in log:
        detail = "  ".join(f"{k}={_short(v)}" for k, v in entry.detail.items()
                           if k != "verdict" and v not in (None, "", []))
        table.add_row(entry.at, Text(entry.actor), entry.action, Text(detail[:400]))
    return table


def _short(value: Any) -> str:
    """A detail value for the history table: commit and tree ids cut to 12 characters."""
    if isinstance(value, str):
        return value[:12] if len(value) == 40 and all(c in "0123456789abcdef" for c in value) else value
    if isinstance(value, list):
        return ", ".join(_short(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------------------------------ approve, reject


def approve(
    proposal_id: str = typer.Argument(..., help="The proposal, e.g. p-0001."),
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help=_CONFIG_HELP),
    by: str = typer.Option(..., "--by", help="Who approves (recorded in the audit log)."),
    note: Optional[str] = typer.Option(None, "--note", help="A note kept with the decision."),
    revalidate: bool = typer.Option(False, "--revalidate", help="If the target branch moved since validation, "
                                    "re-apply the change on its head and run the gate again; merge only if it passes."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Override replay.sandbox for a re-validation."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Approve a proposal: fast-forward the target branch to exactly the validated commit, then add its failure cases to the regression set.

    The target branch is the one checked out in the repository's main worktree. If it moved since the gate validated the proposal, approving is refused unless --revalidate passes on the new head.

    Exit codes: 0 merged, 1 refused or failed (reason printed), 2 bad input.
    """
    from autofix.approval import ApprovalError, ProposalNotFound
    from autofix.approval import approve as approve_proposal
    from autofix.approval.branch import GitError
    from autofix.worktrees import WorktreeError

    config = _config(config_path)
    payload = {"proposal_id": proposal_id, "approved": False}
    err = _err()

    def event(message: str) -> None:
        if not as_json:
            err.print(f"[bold]•[/bold] {escape(message)}", soft_wrap=True, highlight=False)

    with _store(config) as store:
        try:
            result = approve_proposal(config, proposal_id, by, note=note, revalidate=revalidate, store=store,
                                      sandbox_kind=sandbox, on_event=event)
        except (ProposalNotFound, ValueError) as exc:
            _fail(str(exc.args[0] if exc.args else exc), 2, as_json=as_json, payload=payload)
        except (ApprovalError, GitError, WorktreeError, OSError) as exc:
            _fail(str(exc), 1, as_json=as_json, payload=payload)
    if as_json:
        typer.echo(json.dumps({**result.model_dump(mode="json"), "ok": True, "approved": True}, indent=2))
    else:
        console = Console()
        how = " (re-validated on the moved branch)" if result.revalidated else ""
        console.print(f"[green]merged[/green] {result.proposal_id} into {escape(result.target_branch)}{how}: "
                      f"{result.merged_commit} (tree {result.merged_tree[:12]}, the validated tree)", soft_wrap=True)
        if result.feedback is not None:
            fb = result.feedback
            if fb.added:
                console.print(f"regression set: {fb.added} case{'s' if fb.added != 1 else ''} added in "
                              f"{fb.commit} (version {fb.version.version if fb.version else '?'}). "
                              f"{escape(fb.note)}", soft_wrap=True)
            else:
                console.print(f"regression set unchanged: {escape(fb.note)}", soft_wrap=True)
    if result.feedback_error:
        err.print(f"[yellow]warning:[/yellow] the merge stands, but its cases were not added to the regression "
                  f"set: {escape(result.feedback_error)}", soft_wrap=True, highlight=False)


def reject(
    proposal_id: str = typer.Argument(..., help="The proposal, e.g. p-0001."),
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help=_CONFIG_HELP),
    by: str = typer.Option(..., "--by", help="Who rejects (recorded in the audit log)."),
    reason: str = typer.Option(..., "--reason", help="Why; recorded, and the same change is not proposed again."),
    as_json: bool = typer.Option(False, "--json", help="Print the rejected proposal as JSON."),
) -> None:
    """Reject a proposal: record the reason; later runs do not propose the same change for its cluster again.

    Exit codes: 0 rejected, 1 refused (not pending any more), 2 bad input.
    """
    from autofix.approval import ApprovalError, ProposalNotFound
    from autofix.approval import reject as reject_proposal

    config = _config(config_path)
    payload = {"proposal_id": proposal_id, "rejected": False}
    with _store(config) as store:
        try:
            record = reject_proposal(config, proposal_id, by, reason, store=store)
        except (ProposalNotFound, ValueError) as exc:
            _fail(str(exc.args[0] if exc.args else exc), 2, as_json=as_json, payload=payload)
        except ApprovalError as exc:
            _fail(str(exc), 1, as_json=as_json, payload=payload)
    if as_json:
        typer.echo(json.dumps({"ok": True, "rejected": True, **record.summary(), "reason": record.reason}, indent=2))
    else:
        Console().print(f"[red]rejected[/red] {record.id} by {escape(record.decided_by or '')}: "
                        f"{escape(record.reason or '')}", soft_wrap=True)
