"""The live view of a nightly run: one row per stage, job and candidate, updated as the run's events come.

On a terminal it is a rich `Live` table (stage, what, status, the latest step, time); elsewhere (a log
file, cron, CI) each event is one plain line, so nothing is lost to a redraw.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from autofix.graph.events import RunEvent

STYLE = {"running": "yellow", "done": "green", "passed": "bold green", "refused": "red", "skipped": "dim",
         "failed": "bold red"}
WAITING = "waiting"


@dataclass
class _Row:
    stage: str
    subject: str
    status: str
    message: str
    started: float | None = None
    ended: float | None = None

    def seconds(self, now: float) -> str:
        if self.started is None:
            return ""
        return f"{(self.ended or now) - self.started:.0f} s"


class RunDisplay:
    """Callable as a run's `on_event` (from any thread: jobs run in parallel); use as a context manager around
    the run."""

    def __init__(self, console: Console, title: str = "autofix run"):
        self.console, self.title = console, title
        self.rows: dict[tuple[str, str], _Row] = {}
        self.clock = time.monotonic()
        self.live: Live | None = None
        self.lock = threading.Lock()  # events come from the run's threads, renders from rich's refresh thread

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            self.live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def __call__(self, event: RunEvent) -> None:
        now = time.monotonic()
        with self.lock:
            key = (event.stage, event.subject)
            row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = _Row(event.stage, event.subject, event.status, event.message)
            row.status, row.message = event.status, event.message
            if event.message != WAITING and row.started is None:
                row.started = now
            row.ended = None if event.status == "running" else now
        if self.live is None:
            self.console.print(f"[bold]•[/bold] {escape(str(event))}", soft_wrap=True, highlight=False)

    def __rich__(self) -> Group:
        now = time.monotonic()
        table = Table(expand=True, show_edge=False, pad_edge=False)
        table.add_column("stage", no_wrap=True)
        table.add_column("what", overflow="fold", ratio=2)
        table.add_column("status", no_wrap=True)
        table.add_column("latest", overflow="ellipsis", no_wrap=True, ratio=3)
        table.add_column("time", justify="right", no_wrap=True)
        with self.lock:
            rows = list(self.rows.values())
        for row in rows:
            status = WAITING if row.message == WAITING else row.status
            table.add_row(row.stage, escape(row.subject), Text(status, style=STYLE.get(status, "")),
                          escape(row.message), row.seconds(now))
        return Group(Text(f"{self.title} · {now - self.clock:.0f} s", style="bold"), table)
