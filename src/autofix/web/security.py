"""Who may use the review page: the holder of the token the server printed, from this machine by default.

- The server makes a random token when it starts and prints it once, inside the URL
  (`http://127.0.0.1:8765/?token=...`). Every request needs it: in the query (the first visit: the page then
  sets it as an HttpOnly, SameSite=Strict cookie and redirects to the same URL without it, so it does not stay
  in the address bar or the history) or in that cookie. No token is 401; a wrong one is 403.
- Every form carries a CSRF field derived from the token (an HMAC), checked on every POST, so another site
  open in the same browser cannot submit a decision even if the cookie went along.
- Bound to loopback, the page answers only to loopback host names (no DNS rebinding).
- A non-loopback address is refused unless asked for explicitly (`--allow-remote`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
"""Host names a loopback-bound server answers to."""


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) is reachable only from this machine."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a `Host` header, without its port (`[::1]:8765` -> `[::1]`, `127.0.0.1:80` -> `127.0.0.1`)."""
    header = (header or "").strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Guard:
    """The token of one server, and what is derived from it."""

    token: str = field(default_factory=new_token, repr=False)
    allowed_hosts: frozenset[str] | None = None
    """Host names the page answers to; None answers to any (a server bound for remote use, or a test)."""

    @property
    def cookie_name(self) -> str:
        """Per server, so two servers on one machine (two targets, two ports) do not overwrite each other's."""
        return "autofix_" + hashlib.sha256(self.token.encode()).hexdigest()[:10]

    @property
    def csrf(self) -> str:
        """The value every form carries in its `csrf` field."""
        return hmac.new(self.token.encode(), b"autofix-review-form", hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())

    def host_ok(self, header: str) -> bool:
        return self.allowed_hosts is None or host_name(header) in self.allowed_hosts


__all__ = ["LOOPBACK_NAMES", "Guard", "host_name", "is_loopback", "new_token"]
