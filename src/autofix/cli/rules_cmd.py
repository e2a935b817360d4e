"""`autofix rules list`: the triage rules that run (built-ins and installed plugins), with their versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Triage rules: the built-ins and the plugins installed under the entry-point group autofix.rules.",
                  no_args_is_help=True)


@app.command("list")
def list_rules(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="An autofix.yaml: mark the rules its triage.rules.disable turns off."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print [{name, version, order, family, enabled, doc}] as JSON."),
) -> None:
    """List the triage rules in the order that breaks ties between equally confident causes."""
    from autofix.config import ConfigError, load_config
    from autofix.triage.rules import ordered_rules, rule_registry

    disabled: frozenset[str] = frozenset()
    if config is not None:
        try:
            disabled = frozenset(load_config(config).triage.rules.disable)
        except ConfigError as exc:
            for issue in exc.issues:
                Console(stderr=True).print(issue.format(), markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
    rows = [
        {"name": e.name, "version": e.version, "order": e.metadata.get("order"),
         "family": getattr(e.obj, "__module__", "").rsplit(".", 1)[-1], "enabled": e.name not in disabled,
         "plugin": e.distribution, "doc": e.metadata.get("doc", "")}
        for e in ordered_rules()
    ]
    unknown = sorted(disabled - {r["name"] for r in rows})
    if as_json:
        typer.echo(json.dumps({"rules": rows, "unknown_disabled": unknown, "warnings": rule_registry.warnings}, indent=2))
        return
    table = Table(title=f"{len(rows)} triage rules")
    table.add_column("name", no_wrap=True)
    for col in ("version", "family", "enabled", "what it finds"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(escape(r["name"]), str(r["version"]), r["family"], "yes" if r["enabled"] else "[dim]disabled[/dim]",
                      escape(r["doc"]))
    console = Console()
    console.print(table)
    for name in unknown:
        console.print(f"[yellow]triage.rules.disable names {name!r}, which is no rule[/yellow]")
    for w in rule_registry.warnings:
        console.print(f"[yellow]{escape(w)}[/yellow]")
