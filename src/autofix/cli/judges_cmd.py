"""`autofix judges`: calibrate the rubric judges against the human-labelled golden set, and list the judges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autofix.config import CONFIG_FILENAME, AutofixConfig, ConfigError, RubricJudge, load_config

app = typer.Typer(
    help="Rubric judges: calibrate them against human labels (the gate trusts only calibrated judges); list them.",
    no_args_is_help=True,
)

EXIT_NOT_CALIBRATED = 1
EXIT_INVALID = 2

ConfigOpt = typer.Option(Path(CONFIG_FILENAME), "--config", "-c", help="The target's autofix.yaml (or its folder).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def _load(config: Path, as_json: bool, err: Console) -> AutofixConfig:
    try:
        return load_config(config)
    except ConfigError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "issues": [i.to_json() for i in exc.issues]}, indent=2))
        else:
            for issue in exc.issues:
                err.print(escape(issue.format()), soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None


def _fail(message: str, as_json: bool, err: Console, code: int = EXIT_INVALID) -> None:
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message}, indent=2))
    else:
        err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@app.command("calibrate")
def calibrate_cmd(
    config: Path = ConfigOpt,
    judge: Optional[list[str]] = typer.Option(None, "--judge", "-j", help="Calibrate only this rubric judge (repeatable)."),
    golden: Optional[Path] = typer.Option(None, "--golden", help="Labelled JSONL to use instead of datasets.golden."),
    model: Optional[str] = typer.Option(None, "--model", help="litellm model string to judge with instead of model.judge."),
    optimize: Optional[str] = typer.Option(
        None, "--optimize",
        help="First optimize each judge's few-shot demos on a train split of the labels: labeled or bootstrap; "
             "kept only when it agrees better on the held-out rest."),
    train_fraction: float = typer.Option(0.5, "--train-fraction", min=0.1, max=0.9, help="Share of labels to train on."),
    min_kappa: float = typer.Option(0.6, "--min-kappa", help="Cohen's kappa (pass/fail) needed."),
    min_coverage: float = typer.Option(0.9, "--min-coverage", help="Share of labelled cases with a verdict needed."),
    min_within_one: float = typer.Option(0.8, "--min-within-one", help="Scale judges: share within one point needed."),
    min_labels: int = typer.Option(10, "--min-labels", help="Fewest labelled cases that can calibrate a judge."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use only the first N golden records."),
    retries: int = typer.Option(2, "--retries", min=0, help="Times an invalid judge output is asked again."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the judge model again even for cached verdicts."),
    as_json: bool = JsonOpt,
) -> None:
    """Run each rubric judge on the golden set and measure its agreement with the human labels.

    Prints per judge: agreement (kappa, accuracy, within-one, Spearman), coverage (share of cases with
    a verdict) and whether it is calibrated. Results are saved to <state>/judges/calibration.json,
    where the gate reads them. Exits 1 when a judge is not calibrated, 2 on bad input.
    """
    from autofix.judges.calibration import CalibrationThresholds, GoldenError, calibrate, label_of, load_golden
    from autofix.judges.run import build_judge

    console, err = Console(), Console(stderr=True)
    cfg = _load(config, as_json, err)
    if optimize not in (None, "labeled", "bootstrap"):
        _fail(f"unknown --optimize {optimize!r}: use labeled or bootstrap", as_json, err)
    specs = [j for j in cfg.judges if isinstance(j, RubricJudge) and (not judge or j.name in judge)]
    known = [j.name for j in cfg.judges if isinstance(j, RubricJudge)]
    unknown = [n for n in judge or [] if n not in known]
    if unknown:
        _fail(f"not a rubric judge of {cfg.file}: {', '.join(unknown)}; rubric judges: {', '.join(known) or '(none)'}",
              as_json, err)
    if not specs:
        _fail(f"{cfg.file} declares no rubric judge (kind: rubric) to calibrate", as_json, err)
    golden_path = golden.resolve() if golden else (cfg.path(cfg.datasets.golden) if cfg.datasets.golden else None)
    if golden_path is None:
        _fail(f"{cfg.file}: no golden set: add `datasets.golden: <labelled JSONL>` or pass --golden", as_json, err)
    thresholds = CalibrationThresholds(min_kappa=min_kappa, min_coverage=min_coverage,
                                       min_within_one=min_within_one, min_labels=min_labels)
    try:
        records = load_golden(golden_path)
        records = records[:limit] if limit else records
        if not records:
            raise GoldenError(f"{golden_path}: the golden set is empty; add labelled records "
                              '({"case_id", "input", "output", "evidence", "labels": {...}}, one a line)')
        built = [build_judge(cfg, s, cache=False, model=model) for s in specs]
        total = sum(1 for b in built for r in records if label_of(b, r) is not None)
    except GoldenError as exc:
        _fail(str(exc), as_json, err)
    if optimize:
        total = None  # the optimizer's own calls are not counted
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=as_json) as progress:
        task = progress.add_task("judging the golden set", total=total)
        try:
            results = calibrate(cfg, [s.name for s in specs], golden=golden_path, thresholds=thresholds,
                                optimize=optimize, train_fraction=train_fraction, use_cache=not no_cache, model=model,
                                limit=limit, retries=retries,
                                progress=lambda n: progress.advance(task, n))
        except (GoldenError, ValueError) as exc:
            _fail(str(exc), as_json, err)
    ok = all(r.calibrated for r in results)
    if as_json:
        payload = {"ok": ok, "golden": str(golden_path), "records": len(records),
                   "judges": [r.model_dump(mode="json", exclude={"cases"}) for r in results]}
        typer.echo(json.dumps(payload, indent=2))
    else:
        models = ", ".join(sorted({r.model for r in results}))
        table = Table(title=f"judge calibration: {len(records)} golden records, judged by {escape(models)}")
        table.add_column("judge", no_wrap=True)
        for column in ("labels", "coverage", "kappa", "accuracy", "within-1", "spearman", "calibrated"):
            table.add_column(column, justify="right")
        for r in results:
            g = r.agreement
            mark = "[green]yes[/green]" if r.calibrated else "[red]no[/red]"
            name = escape(r.judge) + (" (safety)" if r.safety else "") + (" (optimized)" if r.optimized else "")
            table.add_row(name, str(g.labelled), _f(g.coverage), _f(g.kappa), _f(g.accuracy), _f(g.within_one),
                          _f(g.spearman), mark)
        console.print(table)
        for r in results:
            if not r.calibrated:
                console.print(f"[red]✗[/red] {escape(r.judge)}: {escape('; '.join(r.reasons))}", soft_wrap=True)
            failures = [c for c in r.cases if c.status != "verdict"]
            if failures:
                console.print(f"  {len(failures)} case(s) without a verdict, e.g. {escape(failures[0].case_id)}: "
                              f"{escape((failures[0].error or '')[:240])}", soft_wrap=True, highlight=False)
        console.print(f"Golden set: {escape(str(golden_path))}", soft_wrap=True)
        console.print(f"Saved to {escape(str(cfg.state_path / 'judges' / 'calibration.json'))}", soft_wrap=True)
    if not ok:
        raise typer.Exit(EXIT_NOT_CALIBRATED)


@app.command("list")
def list_cmd(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """List the target's judges with their versions and, for rubric judges, whether the gate trusts them."""
    from autofix.judges.calibration import GoldenError, judge_trust, load_calibration
    from autofix.judges.run import build_judge, judge_versions

    console, err = Console(), Console(stderr=True)
    cfg = _load(config, as_json, err)
    try:
        stored = load_calibration(cfg)
    except GoldenError as exc:
        _fail(str(exc), as_json, err)
    versions = judge_versions(cfg)
    rows = []
    for j in cfg.judges:
        row = {"name": j.name, "kind": j.kind, "version": versions[j.name]}
        if isinstance(j, RubricJudge):
            trusted, why = judge_trust(cfg, j.name, judge=build_judge(cfg, j, cache=False))
            result = stored.get(j.name)
            row.update({"dimension": j.dimension, "safety": j.safety, "model": cfg.model.judge, "trusted": trusted,
                        "why": why, "kappa": result.agreement.kappa if result else None,
                        "coverage": result.agreement.coverage if result else None})
        else:
            row.update({"check": j.check})
        rows.append(row)
    if as_json:
        typer.echo(json.dumps({"ok": True, "judges": rows}, indent=2))
        return
    table = Table(title=f"judges of {escape(cfg.project)}")
    for column in ("judge", "kind", "version", "trusted by the gate"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row["kind"] == "check":
            table.add_row(escape(row["name"]), f"check {escape(row['check'])}", escape(row["version"]), "yes (deterministic)")
        else:
            kind = f"rubric {escape(row['dimension'])}" + (" (safety)" if row["safety"] else "")
            trust = ("[green]yes[/green] " if row["trusted"] else "[red]no[/red] ") + escape(row["why"])
            table.add_row(escape(row["name"]), kind, escape(row["version"]), trust)
    console.print(table)
