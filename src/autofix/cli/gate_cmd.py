"""`autofix gate`: replay a commit against its base, judge both the same way, and apply the launch policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autofix.config import CONFIG_FILENAME, ConfigError, load_config

EXIT_REFUSED = 100


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def print_verdict(out: Console, verdict) -> None:  # noqa: ANN001 - a GateVerdict
    """The verdict table, then the cases it moved."""
    title = (f"{'PASSED' if verdict.passed else 'REFUSED'}: {verdict.candidate_ref} ({verdict.candidate_commit[:12]}) "
             f"vs base {verdict.base_commit[:12]}" + (f" · cluster {verdict.cluster}" if verdict.cluster else ""))
    table = Table(title=title)
    for column in ("section", "check", "value", "threshold", "margin", "", "reason"):
        table.add_column(column, overflow="fold")
    for c in verdict.checks:
        table.add_row(c.section, c.name, _num(c.value), _num(c.threshold), _num(c.margin),
                      "[green]pass[/green]" if c.passed else "[red]FAIL[/red]", escape(c.reason))
    out.print(table)
    for note in verdict.notes:
        out.print(f"[dim]note: {escape(note)}[/dim]", soft_wrap=True)
    for label, cases in (("fixed", verdict.fixed), ("regressed", verdict.regressed)):
        if cases:
            out.print(f"[bold]{label}[/bold] ({len(cases)}):")
            for c in cases[:8]:
                out.print(f"  {c.dataset} {c.case_id} [{c.metric}] {_num(c.base)} -> {_num(c.candidate)}: "
                          f"{escape(c.input[:90])}", soft_wrap=True, highlight=False)
    out.print(f"[dim]{verdict.unchanged} held-out cases unchanged · verdict {verdict.verdict_id} · "
              f"{verdict.wall_s:.0f} s[/dim]")


def gate(
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help="The target's autofix.yaml."),
    candidate: Optional[str] = typer.Option(None, "--candidate", help="The commit to gate: a branch, tag or sha."),
    base: Optional[str] = typer.Option(None, "--base", help="What it is compared with (default: its merge-base "
                                       "with HEAD, which must be HEAD itself)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="The triage cluster it fixes: its held-out cases "
                                          "must improve. Without it only regression, guardrails and safety apply."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="A policy file instead of autofix.yaml's `policy`."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="Override replay.sandbox: docker or local."),
    confirm_judges: bool = typer.Option(False, "--confirm-judges", help="Write the current judge versions into the "
                                        "policy file (after a judge change was reviewed), then exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Gate a candidate commit: replay it and its base, score both with the base's checks and judges, apply the policy.

    Exit codes: 0 passed, 100 refused (the reasons are printed), 1 error, 2 bad input. Fail-closed: a stale base, an evaluation change, a missing metric, an uncalibrated judge the policy names, or too few held-out cases refuse.
    """
    from autofix.gate.runner import GateError, run_gate, verdict_json
    from autofix.gate.runner import confirm_judges as confirm
    from autofix.replay.records import DatasetError
    from autofix.sandbox.base import SandboxError
    from autofix.worktrees import WorktreeError

    err = Console(stderr=True)
    try:
        config = load_config(config_path)
        if policy is not None:
            from autofix.config import load_gate_policy

            load_gate_policy(policy, judges=config.judge_names)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if confirm_judges:
        try:
            versions = confirm(config, policy)
        except GateError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(versions, indent=2) if as_json else
                   "judges confirmed: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        return
    if candidate is None:
        err.print("[red]error:[/red] give --candidate REF (or --confirm-judges)", soft_wrap=True)
        raise typer.Exit(2)
    if sandbox is not None and sandbox not in ("docker", "local"):
        err.print(f"[red]error:[/red] unknown sandbox {sandbox!r}: use docker or local", soft_wrap=True)
        raise typer.Exit(2)
    try:
        with err.status("gating", spinner="dots") if not as_json else _quiet():
            verdict = run_gate(config, candidate, base=base, cluster=cluster, policy_path=policy, sandbox_kind=sandbox,
                               on_event=lambda m: None if as_json else err.print(f"[bold]•[/bold] {escape(m)}",
                                                                                 soft_wrap=True, highlight=False))
    except (GateError, DatasetError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except (SandboxError, WorktreeError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(verdict_json(verdict), indent=2))
    else:
        print_verdict(Console(), verdict)
        if not verdict.passed:
            err.print("[red]refused:[/red] " + escape(" | ".join(verdict.reasons)), soft_wrap=True)
    if not verdict.passed:
        raise typer.Exit(EXIT_REFUSED)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
