"""Building the nightly run's graph, starting it, and resuming a killed one.

    result = start_run(config, RunOptions(budget_usd=5, wall_s=3600))
    result = resume_run(config, "run-20261205T101500Z-1a2b")

ingest+detect+triage -> plan -> one `optimize` branch per (cluster, optimizer), sent in parallel ->
`gate` per candidate, in parallel -> enqueue the gate-passing ones for approval -> report. The
SQLite checkpointer (`<run>/checkpoint.sqlite3`) saves the state after every step: `resume_run`
goes on from the last one; branches that had finished keep their results.
"""

from __future__ import annotations

import json
import sqlite3
import time
from time import time as wall_clock
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from autofix.config import AutofixConfig
from autofix.graph.layout import RunLayout, RunLock, new_run_id
from autofix.graph.events import EventCallback
from autofix.graph.nodes import Nodes, RunOptions
from autofix.graph.state import RunState


def build_graph(nodes: Nodes, checkpointer: Any) -> Any:
    graph = StateGraph(RunState)
    graph.add_node("triage", nodes.triage)
    graph.add_node("plan", nodes.plan)
    graph.add_node("optimize", nodes.optimize)
    graph.add_node("gate_dispatch", nodes.gate_dispatch)
    graph.add_node("gate", nodes.gate)
    graph.add_node("enqueue", nodes.enqueue)
    graph.add_node("report", nodes.report)
    graph.add_edge(START, "triage")
    graph.add_edge("triage", "plan")
    graph.add_conditional_edges("plan", nodes.fan_out_jobs, ["optimize", "gate_dispatch"])
    graph.add_edge("optimize", "gate_dispatch")
    graph.add_conditional_edges("gate_dispatch", nodes.fan_out_candidates, ["gate", "enqueue"])
    graph.add_edge("gate", "enqueue")
    graph.add_edge("enqueue", "report")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=checkpointer)


@dataclass
class RunResult:
    run_id: str
    state: dict[str, Any]
    wall_s: float
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        """What `autofix run --json` prints."""
        s = self.state
        return {
            "run_id": self.run_id,
            "clusters": [{"id": c["id"], "category": c["category"], "size": c["size"], "fixable": c["fixable"],
                          "owner": c.get("owner"), "trend": c.get("trend")} for c in s.get("clusters", [])],
            "candidates": [{"id": c["id"], "cluster": c["cluster"], "optimizer": c["optimizer"], "branch": c["branch"],
                            "commit": c["commit"], "gate": {"passed": (c.get("gate") or {}).get("passed", False),
                                                            "reasons": (c.get("gate") or {}).get("reasons", [])}}
                           for c in sorted(s.get("gated", []), key=lambda c: c["id"])],
            "proposals": [p for p in s.get("proposals", []) if p.get("proposal")],
            "findings": s.get("findings", []) + [x["finding"] for x in s.get("skipped", []) if x.get("finding")],
            "skipped": [{k: v for k, v in x.items() if k != "finding"} for x in s.get("skipped", [])],
            "errors": s.get("errors", []),
            "report": s.get("report", {}),
            "cost_usd": round(float(s.get("cost_usd", 0.0)), 6),
            "wall_s": round(self.wall_s, 1),
        }


def _invoke(config: AutofixConfig, run_id: str, options: RunOptions, initial: dict[str, Any] | None,
            on_event: EventCallback, max_parallel: int) -> dict[str, Any]:
    layout = RunLayout.of(config, run_id)
    layout.root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(layout.checkpoint, check_same_thread=False)
    try:
        nodes = Nodes(config, layout, options, on_event)
        graph = build_graph(nodes, SqliteSaver(conn))
        thread = {"configurable": {"thread_id": run_id}, "max_concurrency": max_parallel}
        if initial is None:  # a resume: the wall budget counts the time worked, not the time since the start
            snapshot = graph.get_state(thread)
            worked = 0.0
            if snapshot.values and snapshot.created_at:
                last = datetime.fromisoformat(snapshot.created_at).timestamp()
                worked = max(0.0, last - float(snapshot.values["budget"]["started"]))
            else:  # killed before its first checkpoint
                initial = json.loads((layout.root / "input.json").read_text(encoding="utf-8"))
            nodes.wall_start = wall_clock() - worked
        # "sync": each step's checkpoint is on disk before the next step starts, so a kill loses nothing done
        graph.invoke(initial, thread, durability="sync")
        state = dict(graph.get_state(thread).values)
    finally:
        conn.close()
    layout.state_json.write_text(json.dumps(state, indent=1, default=str), encoding="utf-8")
    return state


def start_run(config: AutofixConfig, options: RunOptions | None = None, *, run_id: str | None = None,
              max_parallel: int = 2, wait_s: float = 0.0, on_event: EventCallback = lambda m: None) -> RunResult:
    """A new nightly run on the target of `config` (RunLocked when another run holds the target)."""
    options = options or RunOptions()
    run_id = run_id or new_run_id()
    clock = time.monotonic()
    with RunLock(config, run_id).acquire(wait_s):
        layout = RunLayout.of(config, run_id)
        layout.root.mkdir(parents=True, exist_ok=True)
        (layout.root / "options.json").write_text(json.dumps(options.__dict__, indent=1), encoding="utf-8")
        initial = {"run_id": run_id, "config": str(config.file), "run_dir": str(layout.root),
                   "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "budget": {"started": wall_clock(), **options.__dict__}}
        (layout.root / "input.json").write_text(json.dumps(initial, indent=1), encoding="utf-8")
        state = _invoke(config, run_id, options, initial, on_event, max_parallel)
    return RunResult(run_id=run_id, state=state, wall_s=time.monotonic() - clock)


class UnknownRun(ValueError):
    """No checkpoint for that run id."""


def resume_run(config: AutofixConfig, run_id: str, *, max_parallel: int = 2, wait_s: float = 0.0,
               on_event: EventCallback = lambda m: None) -> RunResult:
    """Go on with a run from its last checkpoint (a finished run just returns its state)."""
    layout = RunLayout.of(config, run_id)
    if not layout.checkpoint.is_file():
        known = sorted(p.name for p in config.state_path.glob("run-*") if (p / "checkpoint.sqlite3").is_file())
        raise UnknownRun(f"no run {run_id!r} with a checkpoint under {config.state_path} "
                         f"(runs: {', '.join(known[-5:]) or 'none'})")
    saved = json.loads((layout.root / "options.json").read_text(encoding="utf-8"))
    options = RunOptions(**saved)
    clock = time.monotonic()
    with RunLock(config, run_id).acquire(wait_s):
        state = _invoke(config, run_id, options, None, on_event, max_parallel)
    return RunResult(run_id=run_id, state=state, wall_s=time.monotonic() - clock, resumed=True)
