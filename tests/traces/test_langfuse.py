"""Importing Langfuse trace exports into native traces."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autofix.traces import Quarantine, iter_langfuse

FIXTURES = Path(__file__).parent / "fixtures"
T1 = "9f3c2a4e-6d1b-4c8e-9a57-2b1e0c7d4f11"
T2 = "1e7b9c0d-3f42-4a8b-8e61-5c2d9f0a7b22"
T3 = "c4a8e2f1-0b97-4d3c-a6e5-8f1b2d3c4e33"


def read(path):
    q = Quarantine(None)
    return {t.trace_id: t for t in iter_langfuse(path, q)}, q


def test_rag_trace_with_user_thumbs_down_and_eval_score():
    traces, q = read(FIXTURES / "langfuse_traces.jsonl")
    assert q.total == 0 and list(traces) == [T1, T2, T3]
    t = traces[T1]
    assert t.session_id == "lf-sess-0193"
    assert t.input == {"question": "How many days of annual leave do I get in London?"}
    assert [(s.span_id, s.kind, s.name) for s in t.spans] == [("obs-1a", "retrieval", "retrieve-docs"), ("obs-1b", "llm", "answer")]
    docs = t.span("obs-1a").documents
    assert [(d.doc_id, d.score) for d in docs] == [("hr-leave-annual-2022", 0.83), ("hr-leave-annual-faq-001", 0.79)]
    assert docs[0].text.startswith("Annual leave (2022)")
    gen = t.span("obs-1b")
    assert gen.attributes["model"] == "gpt-4o-mini" and gen.attributes["usage"]["total"] == 530
    assert (gen.start_ms, gen.end_ms) == (398.0, 2289.0)  # ms since the trace timestamp
    assert "usage" not in t.span("obs-1a").attributes  # Langfuse's all-zero usage on a span is dropped
    assert [(f.kind, f.value, f.comment) for f in t.feedback] == [("thumb_down", 0, "That's the 2022 policy, it's 25 days now")]
    assert [(s.name, s.value, s.source) for s in t.scores] == [("faithfulness", 0.35, "eval")]
    assert t.scores[0].rationale == "The answer cites the outdated 2022 document."
    assert t.versions == {"release": "2024.06.1", "version": "rag-2", "model": "gpt-4o-mini", "prompt": "helpdesk-answer:4"}
    assert t.tenant == "acme" and t.task_type == "hr_policy"
    assert t.metadata["user_id"] == "u-3318" and t.metadata["tags"] == ["hr", "leave"]
    assert t.metadata["source"] == {"format": "langfuse", "file": str(FIXTURES / "langfuse_traces.jsonl"), "line": 1}


def test_agent_trace_with_failing_tool_and_rephrase():
    traces, _ = read(FIXTURES / "langfuse_traces.jsonl")
    t = traces[T2]
    assert [(s.kind, s.name) for s in t.spans] == [("chain", "helpdesk-agent"), ("llm", "plan"), ("tool", "lookup_employee")]
    tool = t.span("obs-2c")
    assert tool.input == {"employee_id": "E1029"}  # the @observe kwargs, unwrapped
    assert tool.error == "HTTP 404: no employee with id 'E1029'"
    assert tool.parent_id == "obs-2a"
    assert [(f.kind, f.value) for f in t.feedback] == [("thumb_down", -1), ("rephrase", True)]
    assert t.feedback[0].comment == "it's E-1029 with a dash"


def test_router_retriever_event_escalation_and_categorical_annotation():
    traces, _ = read(FIXTURES / "langfuse_traces.jsonl")
    t = traces[T3]
    assert t.session_id is None
    assert [(s.kind, s.name) for s in t.spans] == [("router", "route-intent"), ("chain", "cache-miss"), ("retrieval", "kb-search")]
    assert [d.doc_id for d in t.span("obs-3b").documents] == ["fac-office-berlin-001"]
    assert t.span("obs-3c").start_ms == t.span("obs-3c").end_ms  # an EVENT is a point in time
    assert [(f.kind, f.comment) for f in t.feedback] == [("escalation", "handed to facilities")]
    assert [(s.name, s.value, s.source) for s in t.scores] == [("answer_relevance", "partially_relevant", "annotation")]


def test_api_listing_page_without_observation_details():
    traces, q = read(FIXTURES / "langfuse_api_page.json")
    assert q.total == 0
    (t,) = traces.values()
    assert t.trace_id == T1 and t.spans == [] and t.feedback == []
    assert t.metadata["observations_not_exported"] == 2 and t.metadata["scores_not_exported"] == 2
    assert t.metadata["source"]["line"] == 3


def test_observations_without_ids_in_retrieval_get_synthetic_ids(tmp_path):
    rec = {
        "id": "t-x", "timestamp": "2024-06-05T10:00:00Z", "sessionId": "s",
        "observations": [{"id": "o1", "type": "SPAN", "name": "vector-search", "startTime": "2024-06-05T10:00:00.1Z",
                          "output": ["chunk one", "chunk two"]},
                         {"id": "o2", "type": "SPAN", "name": "call_tool:calendar", "startTime": "2024-06-05T10:00:00.2Z",
                          "input": {"day": "monday"}}],
    }  # fmt: skip
    p = tmp_path / "lf.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    traces, q = read(p)
    t = traces["t-x"]
    assert [d.doc_id for d in t.span("o1").documents] == ["o1#0", "o1#1"]
    assert t.span("o1").attributes["autofix.synthetic_doc_ids"] is True
    assert t.span("o2").kind == "tool" and t.span("o2").input == {"day": "monday"}


def test_stray_observation_records_are_quarantined_with_the_fix(tmp_path):
    p = tmp_path / "lf.jsonl"
    obs = {"id": "o1", "traceId": "t1", "type": "GENERATION", "name": "x", "startTime": "2024-06-05T10:00:00Z"}
    good = json.loads((FIXTURES / "langfuse_traces.jsonl").read_text().splitlines()[0])
    p.write_text(json.dumps(good) + "\n" + json.dumps(obs) + "\n")
    traces, q = read(p)
    assert list(traces) == [T1]
    (r,) = q.records
    assert r["line"] == 2 and "export whole traces" in r["reason"]


# --------------------------------------------------------------------------- properties

BASE = [json.loads(line) for line in (FIXTURES / "langfuse_traces.jsonl").read_text().splitlines()]

CORRUPTIONS = {
    "missing_id": lambda t: {k: v for k, v in t.items() if k != "id"},
    "bad_timestamp": lambda t: {**t, "timestamp": "the day before yesterday"},
    "observations_not_list": lambda t: {**t, "observations": {"id": "o"}},
    "observation_not_object": lambda t: {**t, "observations": [5]},
    "observation_bad_time": lambda t: {**t, "observations": [{**t["observations"][0], "startTime": [2024]}]},
    "observation_no_type": lambda t: {**t, "observations": [{k: v for k, v in t["observations"][0].items() if k != "type"}]},
    "score_bad_value": lambda t: {**t, "scores": [{"name": "user-feedback", "value": {"thumbs": "down"}}]},
    "session_not_string": lambda t: {**t, "sessionId": ["s"]},
}


@st.composite
def corrupted_langfuse(draw):
    n = draw(st.integers(1, 12))
    lines = []  # (bytes, label, trace_id, code)
    for i in range(n):
        t = {**draw(st.sampled_from(BASE)), "id": f"lf-{i}"}
        raw = json.dumps(t).encode()
        what = draw(st.sampled_from(["good", "good", "invalid_json", "utf8", "blank", "not_object", *CORRUPTIONS]))
        if what == "good":
            lines.append((raw, "good", t["id"], None))
        elif what == "invalid_json":
            lines.append((raw[: draw(st.integers(1, len(raw) - 1))], "bad", None, "invalid_json"))
        elif what == "utf8":
            pos = draw(st.integers(0, len(raw)))
            lines.append((raw[:pos] + b"\xfe" + raw[pos:], "bad", None, "invalid_utf8"))
        elif what == "blank":
            lines.append((b"  ", "blank", None, None))
        elif what == "not_object":
            lines.append((b'["lf"]', "bad", None, "not_an_object"))
        else:
            lines.append((json.dumps(CORRUPTIONS[what](t)).encode(), "bad", None, "schema"))
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_langfuse())
def test_property_langfuse_export_with_corrupt_lines(tmp_path_factory, lines):
    p = tmp_path_factory.mktemp("lf") / "traces.jsonl"
    p.write_bytes(b"".join(raw + b"\n" for raw, *_ in lines))
    q = Quarantine(None)
    traces = list(iter_langfuse(p, q, layout="jsonl"))  # never raises
    assert [t.trace_id for t in traces] == [tid for _, label, tid, _ in lines if label == "good"]
    bad = {i: code for i, (_, label, _, code) in enumerate(lines, 1) if label == "bad"}
    assert len(q.records) == len(bad)
    assert {r["line"]: r["reason"].split(":")[0] for r in q.records} == bad
