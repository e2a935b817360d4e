"""The run's live view: a row per stage, job and candidate on a terminal; plain lines in a log."""

from __future__ import annotations

import io

from rich.console import Console

from autofix.cli.run_display import RunDisplay
from autofix.graph.events import RunEvent

EVENTS = [
    RunEvent("triage", "reading the traces"),
    RunEvent("triage", "40 failures of 300 traces in 5 clusters", status="done"),
    RunEvent("optimize", "waiting", subject="retrieval-misses / retrieval_search"),
    RunEvent("optimize", "not reached: the run optimizes at most 1 pairs", subject="prompt-format / gepa",
             status="skipped"),
    RunEvent("optimize", "started", subject="retrieval-misses / retrieval_search"),
    RunEvent("optimize", "1 candidate(s)", subject="retrieval-misses / retrieval_search", status="done"),
    RunEvent("gate", "refused: held-out slice: too few held-out cases", subject="retrieval-misses/1",
             status="refused"),
]


def test_on_a_terminal_each_stage_job_and_candidate_is_one_row_with_its_latest_step() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=160, record=True)
    display = RunDisplay(console, "autofix run · toy")
    for event in EVENTS:
        display(event)
    console.print(display)
    lines = console.export_text().splitlines()
    rows = [line for line in lines if line.split() and line.split()[0] in ("triage", "optimize", "gate")]
    assert len(rows) == 4  # triage, two jobs, one candidate: a row each, however many events
    triage, job, skipped, gate = rows
    assert "done" in triage and "40 failures" in triage
    assert "retrieval-misses / retrieval_search" in job and "done" in job and "1 candidate(s)" in job
    assert "skipped" in skipped and "not reached" in skipped
    assert "refused" in gate and "too few held-out cases" in gate


def test_off_a_terminal_every_event_is_a_plain_line() -> None:
    out = io.StringIO()
    with RunDisplay(Console(file=out, force_terminal=False, width=200)) as display:
        for event in EVENTS:
            display(event)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(EVENTS)
    assert lines[-1] == "• gate retrieval-misses/1: refused: held-out slice: too few held-out cases"
