"""What a run reports while it works: one `RunEvent` per step of a stage, for a live display or a log.

    on_event(RunEvent(stage="gate", subject="retrieval-misses/1", status="passed", message="PASSED"))
    str(event)  # "gate retrieval-misses/1: PASSED", the log line
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Stage = Literal["triage", "plan", "optimize", "gate", "enqueue", "report"]
Status = Literal["running", "done", "passed", "refused", "skipped", "failed"]


@dataclass(frozen=True)
class RunEvent:
    """A step of a stage: which stage, for what (a `cluster / optimizer` job, a candidate id, or nothing),
    where it stands, and what happened in words."""

    stage: Stage
    message: str
    subject: str = ""
    status: Status = "running"

    def __str__(self) -> str:
        return f"{self.stage}{' ' + self.subject if self.subject else ''}: {self.message}"


EventCallback = Callable[[RunEvent], None]
