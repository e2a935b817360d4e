"""`autofix gateway`: serve the model gateway, issue per-run keys, show per-case usage."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="The model gateway: the OpenAI-compatible endpoint replays call, with per-run keys and usage records.",
    no_args_is_help=True,
)

console = Console()
err = Console(stderr=True)

DEFAULT_DB = Path("runs") / "gateway.sqlite3"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4141

ConfigOpt = typer.Option(None, "--config", "-c", help="The target's autofix.yaml (model and state_dir defaults).")
DbOpt = typer.Option(None, "--db", help="Gateway database (default: <state_dir>/gateway.sqlite3, or runs/gateway.sqlite3).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _load_config(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        from autofix.config import load_config
    except ImportError as exc:  # the configuration room is missing from this install
        _fail(f"cannot read {path}: autofix.config is unavailable ({exc})")
    try:
        return load_config(path)
    except Exception as exc:  # the config loader's message names the file and the fix
        _fail(str(exc))


def _state_dir(config: Any, config_path: Path | None) -> Path | None:
    if config is None:
        return None
    state_path = getattr(config, "state_path", None)  # absolute, resolved by the config room
    if state_path is not None:
        return Path(state_path)
    state_dir = getattr(config, "state_dir", None)
    if state_dir is None:
        return None
    state_dir = Path(state_dir)
    if not state_dir.is_absolute():
        root = getattr(config, "root", None)
        if root is None and config_path is not None:
            root = config_path.parent if not config_path.is_dir() else config_path
        if root is not None:
            state_dir = Path(root).resolve() / state_dir
    return state_dir


def _db_path(db: Path | None, config: Any, config_path: Path | None) -> Path:
    if db is not None:
        return db
    state_dir = _state_dir(config, config_path)
    return (state_dir / "gateway.sqlite3") if state_dir is not None else DEFAULT_DB


def _open_existing(db: Path):
    from autofix.models.usage import UsageStore

    if not db.is_file():
        _fail(f"no gateway database at {db}; pass --db PATH or -c autofix.yaml, or start `autofix gateway serve` first")
    return UsageStore(db)


@app.command()
def serve(
    config: Optional[Path] = ConfigOpt,
    host: Optional[str] = typer.Option(None, "--host", help=f"Address to listen on (default: config, else {DEFAULT_HOST})."),
    port: Optional[int] = typer.Option(None, "--port", help=f"Port (0 picks a free one) (default: config, else {DEFAULT_PORT})."),
    model: Optional[str] = typer.Option(None, "--model", help="litellm model string every call goes to (default: config, else the embedded local model)."),
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run the gateway in the foreground until Ctrl-C."""
    cfg = _load_config(config)
    model_cfg = getattr(cfg, "model", None)
    gateway_cfg = getattr(model_cfg, "gateway", None)

    from autofix.models.gateway import GatewayServer, app_options
    from autofix.models.provider import LOCAL_MODEL

    options = app_options(model_cfg) if model_cfg is not None else {}  # aliases, body limit, default budget
    configured = options.pop("model", None)
    model = model or configured or LOCAL_MODEL
    host = host or getattr(gateway_cfg, "host", None) or DEFAULT_HOST
    if port is None:
        port = getattr(gateway_cfg, "port", None)
        port = DEFAULT_PORT if port is None else int(port)
    db_path = _db_path(db, cfg, config)

    try:
        server = GatewayServer(db_path, model=model, host=host, port=port, **options).start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        _fail(str(exc))
        return

    info = {"url": server.url, "base_url": server.base_url, "model": model, "db": str(db_path),
            "aliases": options.get("aliases") or {}}
    if as_json:
        print(json.dumps(info), flush=True)
    else:
        console.print(f"autofix model gateway on [bold]{server.base_url}[/bold]  model={model}  db={db_path}")
        console.print("Ctrl-C to stop.")

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    if not as_json:
        console.print("gateway stopped.")


@app.command()
def key(
    run: str = typer.Option(..., "--run", help="The run the key is for."),
    budget_tokens: Optional[int] = typer.Option(
        None, "--budget-tokens", min=1, help="Tokens the run may spend (default: model.gateway.budget, else no limit)."),
    budget_usd: Optional[float] = typer.Option(
        None, "--budget-usd", min=0.000001, help="US dollars the run may spend (default: model.gateway.budget, else no limit)."),
    config: Optional[Path] = ConfigOpt,
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Issue an API key for a run and print it (only its hash is stored); --budget-* set the run's budget."""
    from autofix.models.usage import Budget, UsageStore

    db_path = _db_path(db, _load_config(config), config)
    budget = Budget(tokens=budget_tokens, usd=budget_usd) if budget_tokens or budget_usd else None
    with UsageStore(db_path) as store:
        api_key = store.issue_key(run, budget=budget)
    if as_json:
        print(json.dumps({"run_id": run, "api_key": api_key, "db": str(db_path),
                          "budget": budget.model_dump() if budget else None}))
    else:
        print(api_key)


@app.command()
def revoke(
    run: str = typer.Option(..., "--run", help="The run whose keys to revoke."),
    config: Optional[Path] = ConfigOpt,
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Revoke every key of a run."""
    db_path = _db_path(db, _load_config(config), config)
    with _open_existing(db_path) as store:
        if not store.has_run(run):
            _fail(f"run {run!r} has no keys in {db_path}")
        revoked = store.revoke(run)
    if as_json:
        print(json.dumps({"run_id": run, "revoked": revoked}))
    else:
        console.print(f"revoked {revoked} key(s) of run {run}")


@app.command()
def usage(
    run: str = typer.Option(..., "--run", help="The run to report on."),
    config: Optional[Path] = ConfigOpt,
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Per-case tokens, cost and latency of a run's model calls, and its budget: what it may spend, what is left."""
    cfg = _load_config(config)
    db_path = _db_path(db, cfg, config)
    from autofix.models.gateway import app_options

    # A run the gateway has not served yet has no budget stored: show the one it would get.
    default = app_options(cfg.model).get("budget") if getattr(cfg, "model", None) is not None else None
    with _open_existing(db_path) as store:
        if not store.has_run(run):
            _fail(f"run {run!r} is unknown to {db_path} (no key issued, no call recorded)")
        by_case = store.usage_by_case(run)
        status = store.budget_status(run, default=default)
    budget = {
        "tokens": status.budget.tokens if status.budget else None,
        "usd": status.budget.usd if status.budget else None,
        "spent_tokens": status.spent_tokens,
        "spent_usd": status.spent_usd,
        "left_tokens": status.left_tokens,
        "left_usd": status.left_usd,
        "exceeded": status.exceeded,
    }

    if as_json:
        print(json.dumps({"run_id": run, "cases": [{"case_id": c, **u} for c, u in by_case.items()], "budget": budget},
                         indent=2))
        return

    table = Table(title=f"model usage of run {run}")
    table.add_column("case", overflow="fold", min_width=10)
    for name in ("calls", "errors", "tokens", "cost USD", "latency ms"):
        table.add_column(name, justify="right", no_wrap=True)
    totals = {"calls": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0, "cost_usd": 0.0, "latency_ms": 0.0}

    def row(label: str, u: dict[str, Any], style: str | None = None) -> None:
        table.add_row(
            label, str(u["calls"]), str(u["errors"]), str(u["tokens"]), f"{u['cost_usd']:.6f}", f"{u['latency_ms']:.0f}", style=style,
        )

    for case_id, u in by_case.items():
        row(case_id if case_id is not None else "(no case)", u)
        for name in totals:
            totals[name] += u[name]
    if by_case:
        table.add_section()
        row("total", totals, style="bold")
    console.print(table)
    if not by_case:
        console.print(f"no calls recorded yet for run {run}")
    if status.budget is None:
        console.print("budget: none (no limit)")
    else:
        parts = []
        if status.budget.tokens is not None:
            parts.append(f"{status.budget.tokens} tokens, {max(status.left_tokens or 0, 0)} left")
        if status.budget.usd is not None:
            parts.append(f"${status.budget.usd:.4f}, ${max(status.left_usd or 0.0, 0.0):.4f} left")
        note = " [red]spent: further calls are refused (429 budget_exceeded)[/red]" if status.exceeded else ""
        console.print(f"budget: {'; '.join(parts)}{note}")
