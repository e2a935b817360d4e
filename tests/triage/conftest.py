"""Builders of small synthetic traces that follow the span contract, and a tiny target folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from autofix.traces import Trace

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)

LIST_SCHEMA = {
    "type": "object",
    "properties": {"requester": {"type": "string"}, "since": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}},
    "required": ["requester", "since"],
    "additionalProperties": False,
}


def _span(tid: str, i: int, kind: str, name: str, input: Any = None, output: Any = None, error: str | None = None,
          start: float = 0, end: float = 10, **attributes: Any) -> dict[str, Any]:
    return {"span_id": f"{tid}:{i}", "kind": kind, "name": name, "input": input, "output": output, "error": error,
            "start_ms": start, "end_ms": end, "attributes": attributes}


def build(
    tid: str,
    question: str = "How many days of annual leave can I carry over?",
    *,
    route: str | None = "search",
    reason: str = "needs enterprise knowledge",
    docs: list[dict[str, Any]] | None = None,
    top_k: int | None = 5,
    tool: dict[str, Any] | None = None,
    answer: str = "You can carry over 5 days until 31 March. Sources: hr-leave-001",
    llm_error: str | None = None,
    feedback: list[dict[str, Any]] | None = None,
    scores: list[dict[str, Any]] | None = None,
    session: str | None = None,
    at: datetime | None = None,
    task_type: str = "policy_qa",
    latency_ms: float | None = 800.0,
    prompt_version: str = "p1",
    metadata: dict[str, Any] | None = None,
    llm_input: Any = None,
) -> dict[str, Any]:
    """A native trace dict: chain, router, then retrieval or a tool, then the model call."""
    spans = [_span(tid, 0, "chain", "assistant.answer", question, answer, end=latency_ms or 10)]
    i = 1
    if route is not None:
        spans.append(_span(tid, i, "router", "route", question, {"action": route, "tool": (tool or {}).get("name"), "reason": reason}))
        i += 1
    if docs is not None:
        attrs = {"top_k": top_k} if top_k is not None else {}
        spans.append(_span(tid, i, "retrieval", "bm25.search", question, docs, **attrs))
        i += 1
    if tool is not None:
        attrs = {"json_schema": tool["schema"]} if tool.get("schema") else {}
        spans.append(_span(tid, i, "tool", tool["name"], tool.get("args", {}), tool.get("output"), tool.get("error"), **attrs))
        i += 1
    if tool is None or route == "answer":
        messages = llm_input if llm_input is not None else [{"role": "system", "content": "You are a helpdesk assistant."},
                                                            {"role": "user", "content": question}]
        spans.append(_span(tid, i, "llm", "chat.completions", messages, answer, llm_error))
    md = {"task_type": task_type, "tenant": "acme"}
    if latency_ms is not None:
        md["latency_ms"] = latency_ms
    md.update(metadata or {})
    return {
        "trace_id": tid, "session_id": session or f"s-{tid}", "timestamp": (at or T0).isoformat(), "input": question,
        "output": answer, "spans": spans, "feedback": feedback or [], "scores": scores or [],
        "versions": {"prompt": prompt_version, "model": "m1"}, "metadata": md,
    }


def doc(doc_id: str, text: str = "Employees may carry over up to 5 days of annual leave until 31 March.",
        score: float = 3.0, **extra: Any) -> dict[str, Any]:
    return {"doc_id": doc_id, "score": score, "text": text, **extra}


def trace(d: dict[str, Any]) -> Trace:
    return Trace.model_validate(d)


def background(n: int = 10, task_type: str = "policy_qa", start: int = 0) -> list[dict[str, Any]]:
    """Healthy traces that search: they teach the context what this task type and the knowledge base look like."""
    topics = [
        ("How many days of annual leave can I carry over?", "hr-leave-001", "Annual leave: employees may carry over up to 5 days until 31 March; managers approve carry-over in PeopleHub."),
        ("How do I book a desk in the office?", "fac-desk-001", "Desk booking: book a desk in DeskFinder up to 14 days ahead; check in by 10:00."),
        ("What is the mileage allowance for business trips?", "fin-mileage-001", "Mileage allowance: 0.30 EUR per km for business trips in a private car, claimed in Expensa."),
        ("How do I reset my VPN token?", "it-vpn-001", "VPN tokens are reset in MyAccess under Security; the VPN client reconnects after a restart."),
        ("When is payroll paid in London?", "fin-payroll-london-001", "Payroll London: salaries are paid on the 25th of each month by bank transfer."),
    ]
    out = []
    for k in range(n):
        q, did, text = topics[k % len(topics)]
        out.append(build(f"bg-{task_type}-{start + k}", q, docs=[doc(did, text), doc(did + "#2", text)],
                         answer=f"See {did}: {text}", scores=[{"name": "quality", "value": 0.9}], task_type=task_type,
                         at=T0 + timedelta(minutes=10 * (start + k))))
    return out


@pytest.fixture
def write_jsonl() -> Callable[[Path, list[Any]], Path]:
    def _write(path: Path, rows: list[Any]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
        return path

    return _write


CONFIG = """\
project: triage-test
replay:
  command: python -m assistant.replay --cases {cases} --out {out}
  sandbox: local
surfaces:
  prompts: [prompts/*.md]
  code: [src/assistant/router.py]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
  - {name: helpfulness, kind: rubric, dimension: helpfulness, scale: [1, 5], threshold: 3}
triage:
  llm_classifier: false
"""


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A small target folder with an autofix.yaml; data/traces.jsonl is for the test to write."""
    files = {
        "autofix.yaml": CONFIG,
        "prompts/system.md": "You are a helpdesk assistant.\n",
        "src/assistant/router.py": "def route(q):\n    return 'search'\n",
        "data/regression.jsonl": '{"case_id": "c1", "input": "hi"}\n',
        "data/traces.jsonl": "",
    }
    for rel, content in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return tmp_path


@pytest.fixture
def tb() -> Any:
    """The trace builders: tb.build, tb.doc, tb.trace, tb.background, tb.T0, tb.LIST_SCHEMA."""
    from types import SimpleNamespace

    return SimpleNamespace(build=build, doc=doc, trace=trace, background=background, T0=T0, LIST_SCHEMA=LIST_SCHEMA)


# ----------------------------------------------------------------------------- agent-shaped traces
# Unlike the helpdesk's: chat messages in and out, many llm and tool steps, OTel-style hex span ids,
# no chain or router span unless given, no task_type, versions by code release.


def span_id(tid: str, i: int) -> str:
    """The span id of step `i` of agent trace `tid` (16 hex digits, as OTel exporters write them)."""
    import hashlib

    return hashlib.sha1(f"{tid}/{i}".encode()).hexdigest()[:16]


def llm_step(output: Any = "", *, messages: list[dict[str, Any]] | None = None, error: str | None = None,
             name: str = "openai.chat") -> dict[str, Any]:
    return {"kind": "llm", "name": name, "input": messages or [{"role": "system", "content": "You are an airline agent."}],
            "output": output, "error": error}


def tool_step(name: str, args: Any, output: Any = None, error: str | None = None, **attributes: Any) -> dict[str, Any]:
    return {"kind": "tool", "name": name, "input": args, "output": output, "error": error, "attributes": attributes}


def search_step(name: str, query: str, docs: list[dict[str, Any]], **attributes: Any) -> dict[str, Any]:
    return {"kind": "retrieval", "name": name, "input": {"query": query}, "output": docs, "attributes": attributes}


def router_step(output: Any, name: str = "planner") -> dict[str, Any]:
    return {"kind": "router", "name": name, "input": None, "output": output}


def agent_build(
    tid: str,
    request: str,
    steps: list[dict[str, Any]],
    *,
    answer: str = "Done.",
    feedback: list[dict[str, Any]] | None = None,
    scores: list[dict[str, Any]] | None = None,
    versions: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    at: datetime | None = None,
    session: str | None = None,
) -> dict[str, Any]:
    """A native trace of a tool-calling agent: `steps` (llm_step, tool_step, search_step, router_step) in order,
    each 100 ms long, span ids from `span_id`."""
    spans = []
    for i, st in enumerate(steps):
        spans.append({"span_id": span_id(tid, i), "parent_id": None, "start_ms": 100 * i, "end_ms": 100 * i + 90,
                      "attributes": {}, "error": None, **st})
    return {
        "trace_id": tid, "session_id": session or f"conv-{tid}", "timestamp": (at or T0).isoformat(),
        "input": [{"role": "system", "content": "You are an airline agent."}, {"role": "user", "content": request}],
        "output": {"role": "assistant", "content": answer}, "spans": spans, "feedback": feedback or [],
        "scores": scores or [], "versions": versions or {"model": "gpt-4o", "code": "v1"}, "metadata": metadata or {},
    }


@pytest.fixture
def ab() -> Any:
    """The agent-trace builders: ab.build, ab.llm, ab.tool, ab.search, ab.router, ab.span_id, ab.trace, ab.T0."""
    from types import SimpleNamespace

    return SimpleNamespace(build=agent_build, llm=llm_step, tool=tool_step, search=search_step, router=router_step,
                           span_id=span_id, trace=trace, T0=T0)
