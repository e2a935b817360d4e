"""`autofix config`: check an autofix.yaml and print its JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autofix.config import (
    CONFIG_FILENAME,
    AutofixConfig,
    CheckJudge,
    ConfigError,
    GatePolicy,
    load_config,
)

app = typer.Typer(
    help="Check a target's autofix.yaml and print its schema.",
    no_args_is_help=True,
)

EXIT_INVALID = 2


def _count_lines(path: Path) -> int:
    if path.is_dir():  # a folder of trace files
        from autofix.traces.ingest import expand_paths

        return sum(_count_lines(f) for f in expand_paths(path))
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def _summary(cfg: AutofixConfig, console: Console) -> None:
    e = escape
    console.print(f"[green]✓[/green] {e(_shown(cfg.file))} is valid", soft_wrap=True)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("project", e(cfg.project))
    table.add_row("root", e(str(cfg.root)))
    table.add_row("state", e(cfg.state_dir))
    model = cfg.model.name if cfg.model.judge == cfg.model.name else f"{cfg.model.name} (judge: {cfg.model.judge})"
    table.add_row("model", e(model))
    replay = cfg.replay
    sandbox = replay.sandbox
    if replay.sandbox == "docker":
        sandbox += f", image {replay.image}"
        if replay.allow_local_fallback:
            sandbox += ", local fallback allowed"
    table.add_row("sandbox", e(sandbox))
    table.add_row("replay", e(f"{replay.command}  (timeout {replay.timeout_s:g}s, batch {replay.batch_size})"))

    surfaces = []
    for kind in ("prompts", "code"):
        patterns = getattr(cfg.surfaces, kind)
        if patterns:
            n = len(cfg.surface_files(kind))
            surfaces.append(f"{kind}: {n} file{'s' if n != 1 else ''} ({', '.join(patterns)})")
    if cfg.surfaces.retrieval:
        r = cfg.surfaces.retrieval
        surfaces.append(f"retrieval: {r.file} (search {', '.join(r.space)})")
    table.add_row("surfaces", e("\n".join(surfaces) or "none: optimizers may change nothing"))

    datasets = []
    for name in ("traces", "regression", "golden"):
        p = cfg.dataset_path(name)
        if p is not None:
            files = ""
            if p.is_dir():
                from autofix.traces.ingest import expand_paths

                n = len(expand_paths(p))
                files = f"{n} file{'s' if n != 1 else ''}, "
            datasets.append(f"{name}: {getattr(cfg.datasets, name)} ({files}{_lines(_count_lines(p))})")
    table.add_row("datasets", e("\n".join(datasets)))

    judges = []
    for j in cfg.judges:
        if isinstance(j, CheckJudge):
            detail = j.check + (f", k={j.k}" if j.k is not None else "")
            judges.append(f"{j.name}: check {detail}")
        elif j.safety:
            judges.append(f"{j.name}: rubric {j.dimension}, safety pass/fail")
        else:
            judges.append(f"{j.name}: rubric {j.dimension}, scale {j.scale[0]}-{j.scale[1]}, pass >= {j.threshold:g}")
    table.add_row("judges", e("\n".join(judges)))

    gate = cfg.gate_policy
    table.add_row(
        "policy",
        e(
            f"{cfg.policy} ({_shown(cfg.policy_path)}): held-out {gate.target.metric} +{gate.target.min_improvement:g} "
            f"at p<{gate.target.max_p_value:g} (>= {gate.target.min_cases} cases), regression drop <= "
            f"{gate.regression.margin:g} at {gate.regression.confidence:.0%} confidence"
        ),
    )
    console.print(table)


@app.command()
def validate(
    config: Path = typer.Option(
        Path(CONFIG_FILENAME), "--config", "-c", help="The autofix.yaml to check (or the folder holding it)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {ok, issues} as JSON."),
) -> None:
    """Check an autofix.yaml and the files and policy it references; exit 2 if anything is wrong."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "issues": [i.to_json() for i in exc.issues]}, indent=2))
        else:
            for issue in exc.issues:
                typer.echo(issue.format(), err=True)
            n = len(exc.issues)
            typer.echo(f"✗ {n} problem{'s' if n != 1 else ''} found", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, "issues": []}, indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped or captured: don't wrap lines mid-path
    _summary(cfg, console)


@app.command()
def schema(
    policy: bool = typer.Option(False, "--policy", help="Print the launch-gate policy schema instead."),
) -> None:
    """Print the JSON schema of autofix.yaml (for editors and validators)."""
    model = GatePolicy if policy else AutofixConfig
    typer.echo(json.dumps(model.model_json_schema(), indent=2))
