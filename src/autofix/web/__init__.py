"""The review page (`autofix serve`): the approval queue, one page per proposal (diff, verdict, examples,
lineage, history) with approve and reject forms, and a labelling page per triage cluster.

Server-rendered HTML with its own CSS, no JavaScript and nothing loaded from the network. Loopback only by
default; every page and form needs the token the server prints at start (see `security`). Decisions go
through `autofix.approval.approve` / `reject`, audited exactly as from the command line.

Modules: `security` (the token, CSRF, loopback), `html` (escaping, the page frame), `views` (the pages),
`app` (`create_app`: the FastAPI routes), `server` (binding and running it).
"""

from autofix.web.app import create_app
from autofix.web.security import Guard, is_loopback, new_token
from autofix.web.server import AddressRefused, BindError, Bound, bind, check_host, run

__all__ = ["AddressRefused", "BindError", "Bound", "Guard", "bind", "check_host", "create_app", "is_loopback",
           "new_token", "run"]
