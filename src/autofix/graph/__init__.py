"""The nightly run: a LangGraph state machine over triage, optimizers, the gate and the approval queue."""

from autofix.graph.layout import RunLayout, RunLock, RunLocked
from autofix.graph.nodes import RunOptions
from autofix.graph.run import RunResult, UnknownRun, resume_run, start_run

__all__ = ["RunLayout", "RunLock", "RunLocked", "RunOptions", "RunResult", "UnknownRun", "resume_run", "start_run"]
