"""Running the review page: bind the address, make the URL with the token, serve with uvicorn.

    bound = bind("127.0.0.1", 8765)            # AddressRefused for a non-loopback host without allow_remote
    url = bound.url(guard.token)               # http://127.0.0.1:8765/?token=...
    run(create_app(config, guard=guard), bound)

The socket is bound and listening before anything is printed, so a port in use is an error at once, the URL
works as soon as it is shown, and port 0 picks a free port whose number is in the URL. uvicorn's access log is off: it would write the token of the first request.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from autofix.web.security import LOOPBACK_NAMES, is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class AddressRefused(ValueError):
    """A host the review page may not bind (not loopback, and remote use not asked for)."""


class BindError(OSError):
    """The address could not be bound (a port in use, an unknown host)."""


@dataclass
class Bound:
    """A bound, listening socket (not yet served) and what the URL shows."""

    sock: socket.socket
    host: str
    port: int
    loopback: bool

    def url(self, token: str) -> str:
        shown = self.host
        if shown in ("0.0.0.0", "::", ""):
            shown = socket.gethostname()
        elif ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/?token={token}"

    def allowed_hosts(self) -> frozenset[str] | None:
        """The Host header names to answer to: the loopback names when bound to loopback, else any."""
        return LOOPBACK_NAMES if self.loopback else None


def check_host(host: str, allow_remote: bool) -> bool:
    """Whether `host` is loopback; AddressRefused when it is not and `allow_remote` is false."""
    if is_loopback(host):
        return True
    if not allow_remote:
        raise AddressRefused(
            f"--host {host} is not a loopback address: the review page approves merges, so by default it listens "
            f"on 127.0.0.1 only. To serve it to other machines, pass --allow-remote as well (anyone who can reach "
            f"the port and has the URL's token can then decide; the traffic is plain HTTP: put it behind TLS)")
    return False


def bind(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, allow_remote: bool = False) -> Bound:
    """Bind `host:port` (port 0: a free one); AddressRefused or BindError saying why not."""
    loopback = check_host(host, allow_remote)
    name = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(name).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((name, port))
    except OSError as exc:
        sock.close()
        hint = "; pick another with --port (or --port 0 for a free one)" if exc.errno in (98, 48) else ""
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.listen(128)  # connections wait in the backlog from now on, so the printed URL works at once
    return Bound(sock=sock, host=host, port=sock.getsockname()[1], loopback=loopback)


def run(app: Any, bound: Bound, *, log_level: str = "warning") -> None:
    """Serve `app` on the bound socket until interrupted (Ctrl-C, SIGTERM)."""
    import uvicorn

    config = uvicorn.Config(app, host=bound.host, port=bound.port, log_level=log_level, access_log=False,
                            proxy_headers=False, server_header=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[bound.sock])


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "AddressRefused", "BindError", "Bound", "bind", "check_host", "run"]
