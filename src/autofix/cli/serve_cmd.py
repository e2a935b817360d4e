"""`autofix serve`: the review page in a browser (the approval queue, approve and reject, labelling).

Prints the page's URL once, with the token every request needs, then serves until Ctrl-C.
Exit codes: 0 stopped, 1 the server could not start (a port in use), 2 bad input (configuration, a
non-loopback --host without --allow-remote).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from autofix.config import CONFIG_FILENAME, ConfigError, load_config


def serve(
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help="The target's autofix.yaml."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; loopback only unless --allow-remote."),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: a free one, shown in the URL)."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a non-loopback --host: other machines "
                                      "can then reach the page (the token is still required; the traffic is plain "
                                      "HTTP)."),
    as_json: bool = typer.Option(False, "--json", help="Print {url, host, port, project, store} as one JSON line "
                                 "once listening, instead of the text."),
) -> None:
    """Serve the review page: the approval queue, one page per proposal with approve and reject, and labelling.

    Listens on 127.0.0.1 and prints the URL with the token it issued (every page and form needs it).
    Decisions are made with the reviewer's name typed in the form and audited like `autofix approve`.
    """
    from autofix.approval import open_store
    from autofix.web import AddressRefused, BindError, Guard, bind, create_app, run

    err = Console(stderr=True)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        with open_store(config) as store:
            where = store.where
            pending = len(store.proposals("pending"))
    except Exception as exc:  # noqa: BLE001 - an unreachable database or a bad URL: say which
        err.print(f"[red]error:[/red] cannot open the approval store: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    try:
        bound = bind(host, port, allow_remote=allow_remote)
    except AddressRefused as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    except BindError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    if not bound.loopback:
        err.print(f"[yellow]warning:[/yellow] listening on {escape(host)}, reachable from other machines: anyone "
                  f"with the URL below can approve merges, and plain HTTP shows the token to the network.",
                  soft_wrap=True, highlight=False)
    guard = Guard(allowed_hosts=bound.allowed_hosts())
    url = bound.url(guard.token)
    if as_json:
        print(json.dumps({"url": url, "host": bound.host, "port": bound.port, "project": config.project,
                          "store": where, "pending": pending}), flush=True)
    else:
        out = Console(highlight=False)
        out.print(f"autofix review page for [bold]{escape(config.project)}[/bold]: {pending} pending "
                  f"(queue: {escape(where)})", soft_wrap=True)
        out.print(f"open [bold]{escape(url)}[/bold]", soft_wrap=True)
        out.print("The token in the URL is shown only here; Ctrl-C stops the server.", style="dim")
        sys.stdout.flush()
    try:
        run(create_app(config, guard=guard), bound)
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises Ctrl-C: that is a normal stop
        pass
    if not as_json:
        err.print("review page stopped", style="dim")
