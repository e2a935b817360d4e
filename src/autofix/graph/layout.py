"""One run, one folder: `<state>/<run_id>/` holds its triage, candidates, verdicts, checkpoint and report;
and the lock that keeps two runs on one target from interleaving."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from autofix.config import AutofixConfig

LOCK_FILE = "run.lock"


def new_run_id() -> str:
    """`run-20261205T101500Z-1a2b`: sortable, a valid folder and branch component."""
    return f"run-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunLayout:
    """Where a run keeps what it made."""

    root: Path

    @classmethod
    def of(cls, config: AutofixConfig, run_id: str) -> RunLayout:
        return cls(config.state_path / run_id)

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.sqlite3"

    @property
    def triage(self) -> Path:
        return self.root / "triage"

    def optimize(self, cluster: str, index: int) -> Path:
        return self.root / "candidates" / f"{index:02d}-{cluster}"

    def verdict(self, candidate_id: str) -> Path:
        return self.root / "verdicts" / candidate_id.replace("/", "-")

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def state_json(self) -> Path:
        return self.root / "state.json"


class RunLocked(RuntimeError):
    """Another run holds the target's lock."""


class RunLock:
    """An exclusive lock on a target's state folder (`flock`: released by the kernel when a run dies)."""

    def __init__(self, config: AutofixConfig, run_id: str):
        self.path = config.state_path / LOCK_FILE
        self.run_id = run_id
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError):
            return "another run"
        return f"run {data.get('run_id', '?')} (pid {data.get('pid', '?')}, since {data.get('since', '?')})"

    def acquire(self, wait_s: float = 0.0) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunLocked(f"{self.holder()} is running on this target ({self.path}); wait for it "
                                    f"(`--wait SECONDS`) or let it finish") from None
                time.sleep(1.0)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"run_id": self.run_id, "pid": os.getpid(),
                                 "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
