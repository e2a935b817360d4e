"""Importing OpenInference / Phoenix span exports into native traces."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from autofix.traces import Quarantine, iter_openinference

FIXTURES = Path(__file__).parent / "fixtures"
TA = "4bf92f3577b34da6a3ce929d0e0e4736"
TB = "0af7651916cd43dd8448eb211c80319c"
TC = "e3b0c44298fc1c149afbf4c8996fb924"


def read(path, **kw):
    q = Quarantine(None)
    traces = {t.trace_id: t for t in iter_openinference(path, q, **kw)}
    return traces, q


def test_phoenix_jsonl_export_groups_interleaved_spans_into_traces():
    traces, q = read(FIXTURES / "phoenix_spans.jsonl")
    assert q.total == 0
    assert list(traces) == [TA, TB, TC]  # order of each trace's first span in the file

    a = traces[TA]
    assert a.session_id == "sess-7f3a"
    assert str(a.timestamp) == "2024-06-03 09:14:02.101000+00:00"  # the root span's start
    assert a.input == {"question": "How do I set up the VPN on my Mac?"}  # application/json parsed
    assert a.output.startswith("Install GlobalConnect")
    assert [(s.name, s.kind) for s in a.spans] == [
        ("helpdesk.answer", "chain"),
        ("route_query", "router"),
        ("VectorStoreRetriever", "retrieval"),
        ("ChatOpenAI", "llm"),
    ]
    ret = a.span("a1b2c3d4e5f60002")
    assert [d.doc_id for d in ret.documents] == ["it-vpn-setup-windows-001", "it-vpn-setup-macos-001", "sec-travel-devices-001"]
    assert ret.documents[0].score == 0.8123
    assert ret.documents[0].text.startswith("To set up the VPN on Windows")
    assert ret.parent_id == "a1b2c3d4e5f60000"
    assert (ret.start_ms, ret.end_ms) == (309.0, 554.0)  # ms since the root span started
    llm = a.span("a1b2c3d4e5f60003")
    assert [m["role"] for m in llm.input] == ["system", "user"]
    assert llm.attributes["llm.token_count.total"] == 435
    assert "llm.input_messages.0.message.role" not in llm.attributes  # moved into input, not repeated
    assert a.versions == {"model": "gpt-4o-mini-2024-07-18", "prompt": "answer-v3"}
    assert a.metadata["tenant"] == "acme" and a.task_type == "it_howto"
    assert a.metadata["user_id"] == "u-1042" and a.metadata["tags"] == ["it", "vpn"]
    assert a.metadata["source"] == {"format": "openinference", "file": str(FIXTURES / "phoenix_spans.jsonl"), "line": 7}
    assert a.feedback == [] and a.scores == []


def test_failed_tool_call_and_human_thumbs_down():
    traces, _ = read(FIXTURES / "phoenix_spans.jsonl")
    b = traces[TB]
    assert b.spans[0].kind == "chain" and b.spans[0].attributes["openinference.span.kind"] == "AGENT"
    tool = b.span("b7ad6b7169203332")
    assert tool.kind == "tool" and tool.name == "create_ticket"
    assert tool.input == {"category": "hardware", "summary": "Cracked laptop screen"}  # the call's arguments
    assert tool.error == "ValidationError: field 'priority' is required"
    assert tool.attributes["events"][0]["name"] == "exception"
    planner = b.span("b7ad6b7169203331")
    assert planner.output[0]["tool_calls"][0]["name"] == "create_ticket"
    assert planner.output[0]["tool_calls"][0]["arguments"] == {"category": "hardware", "summary": "Cracked laptop screen"}
    assert [(f.kind, f.value, f.comment, f.span_id) for f in b.feedback] == [
        ("thumb_down", 0, "It never opened my ticket", "b7ad6b7169203330")
    ]
    assert b.session_id == "sess-91c0" and b.tenant == "globex"


def test_nested_attributes_reranker_and_judge_annotation():
    traces, _ = read(FIXTURES / "phoenix_spans.jsonl")
    c = traces[TC]
    assert c.session_id == "sess-44d2"
    assert [s.kind for s in c.spans] == ["chain", "retrieval", "retrieval", "llm"]
    bm25, rerank = c.span("c9d1000000000002"), c.span("c9d1000000000003")
    assert [d.doc_id for d in bm25.documents] == ["hr-leave-parental-berlin-001", "hr-leave-annual-faq-001"]
    assert [(d.doc_id, d.score) for d in rerank.documents] == [("hr-leave-parental-berlin-001", 0.97)]
    assert rerank.input["query"] == "parental leave Berlin"
    assert [d["doc_id"] for d in rerank.input["documents"]] == ["hr-leave-parental-berlin-001", "hr-leave-annual-faq-001"]
    assert rerank.attributes["openinference.span.kind"] == "RERANKER"
    assert [(f.kind, f.span_id) for f in c.feedback] == [("thumb_up", "c9d1000000000001")]
    (score,) = c.scores
    assert (score.name, score.value, score.source, score.span_id) == ("hallucination", 1, "llm", "c9d1000000000004")
    assert score.rationale.startswith("The answer is supported")
    assert c.versions == {"model": "claude-3-5-haiku"}


def test_phoenix_rest_page_document():
    traces, q = read(FIXTURES / "phoenix_rest_page.json")
    assert q.total == 0
    (a,) = traces.values()
    assert a.trace_id == TA and a.spans[0].name == "helpdesk.answer"
    assert {s.kind for s in a.spans} == {"chain", "router", "retrieval", "llm"}
    assert a.metadata["source"]["line"] > 1  # the line where the root span starts in the document


def test_dataframe_rows_and_otel_console_shape(tmp_path):
    rows = [
        {  # a row of px.Client().get_spans_dataframe(), written with DataFrame.to_json(orient="records", lines=True)
            "context.span_id": "s1", "context.trace_id": "T1", "parent_id": None, "name": "query",
            "span_kind": "CHAIN", "start_time": 1717405442101, "end_time": 1717405443101,
            "status_code": "OK", "status_message": "", "events": [],
            "attributes.input.value": "where is the printer?", "attributes.output.value": "2nd floor",
            "attributes.session.id": "sess-x", "attributes.llm.model_name": None,
        },
        {  # the OpenTelemetry ConsoleSpanExporter shape
            "name": "search_tool", "context": {"trace_id": "T1", "span_id": "s2", "trace_state": "[]"},
            "kind": "SpanKind.INTERNAL", "parent_id": "s1",
            "start_time": "2024-06-03T09:04:02.200000Z", "end_time": "2024-06-03T09:04:02.300000Z",
            "status": {"status_code": "ERROR", "description": "TimeoutError: index unavailable"},
            "attributes": {"openinference.span.kind": "TOOL", "tool.name": "search_kb",
                           "tool.parameters": "{\"query\": \"printer\"}"},
            "events": [], "links": [], "resource": {"attributes": {"service.name": "helpdesk"}},
        },
    ]  # fmt: skip
    p = tmp_path / "spans.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    traces, q = read(p)
    assert q.total == 0
    t = traces["T1"]
    assert t.session_id == "sess-x" and t.input == "where is the printer?"
    assert t.timestamp.year == 2024  # epoch milliseconds
    tool = t.span("s2")
    assert tool.kind == "tool" and tool.name == "search_kb"
    assert tool.input == {"query": "printer"}  # tool.parameters when there is no input.value
    assert tool.error == "TimeoutError: index unavailable"


def test_bad_spans_are_quarantined_and_the_rest_of_the_trace_survives(tmp_path):
    lines = (FIXTURES / "phoenix_spans.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"start_time": "2024-06-03T09:14:02.410000+00:00"', '"start_time": "soon"')
    lines.insert(3, "{broken")
    lines.append(json.dumps({"span_id": "ffff", "name": "user_feedback", "annotator_kind": "HUMAN", "result": {"score": 0}}))
    p = tmp_path / "spans.jsonl"
    p.write_text("\n".join(lines) + "\n")
    traces, q = read(p)
    got = {r["line"]: r["reason"] for r in q.records}
    assert set(got) == {2, 4, 16}
    assert got[2].startswith(f"schema: span of trace {TA}: start_time: 'soon' is not an ISO 8601 time")
    assert got[4].startswith("invalid_json")
    assert got[16].startswith("orphan: annotation 'user_feedback' names span 'ffff'")
    a = traces[TA]
    assert "a1b2c3d4e5f60002" not in {s.span_id for s in a.spans}
    assert a.metadata["quarantined_spans"] == 1
    assert len(traces) == 3


# --------------------------------------------------------------------------- properties


def oi_span(tid: str, sid: str, parent: str | None, kind: str, i: int) -> dict:
    attrs: dict = {"openinference.span.kind": kind, "input.value": f"in {sid}", "output.value": f"out {sid}"}
    if kind == "RETRIEVER":
        attrs.update({"retrieval.documents.0.document.id": f"doc-{sid}", "retrieval.documents.0.document.score": 0.5})
    return {
        "name": f"step-{sid}", "context": {"trace_id": tid, "span_id": sid}, "span_kind": kind, "parent_id": parent,
        "start_time": f"2024-06-03T09:00:{i:02d}+00:00", "end_time": f"2024-06-03T09:00:{i:02d}.5+00:00",
        "status_code": "OK", "status_message": "", "attributes": attrs, "events": [],
    }  # fmt: skip


@st.composite
def corrupted_export(draw):
    n_traces = draw(st.integers(1, 6))
    items = []  # (obj, trace_id, span_id)
    for t in range(n_traces):
        tid = f"{t:032x}"
        n = draw(st.integers(1, 4))
        for j in range(n):
            sid = f"{t:08x}{j:08x}"
            kind = draw(st.sampled_from(["CHAIN", "LLM", "RETRIEVER", "TOOL", "AGENT", "EMBEDDING"]))
            items.append((oi_span(tid, sid, None if j == 0 else f"{t:08x}{0:08x}", kind, j), tid, sid))
    order = draw(st.permutations(range(len(items))))
    lines = []  # (bytes, label, trace_id, span_id, code)
    for k in order:
        obj, tid, sid = items[k]
        what = draw(st.sampled_from(["good", "good", "good", "invalid_json", "utf8", "no_trace_id", "bad_time", "bad_attrs"]))
        raw = json.dumps(obj).encode()
        if what == "good":
            lines.append((raw, "good", tid, sid, None))
        elif what == "invalid_json":
            lines.append((raw[: draw(st.integers(1, len(raw) - 1))], "bad", tid, sid, "invalid_json"))
        elif what == "utf8":
            pos = draw(st.integers(0, len(raw)))
            bad = raw[:pos] + b"\xff" + raw[pos:]
            lines.append((bad, "bad", tid, sid, "invalid_utf8"))
        elif what == "no_trace_id":
            o = json.loads(raw)
            del o["context"]["trace_id"]
            lines.append((json.dumps(o).encode(), "bad", tid, sid, "schema"))
        elif what == "bad_time":
            lines.append((json.dumps({**obj, "start_time": draw(st.sampled_from(["later", 3.5e40, None, [1]]))}).encode(), "bad", tid, sid, "schema"))
        else:
            lines.append((json.dumps({**obj, "attributes": draw(st.sampled_from([[1], 5, "x"]))}).encode(), "bad", tid, sid, "schema"))
        if draw(st.integers(0, 5)) == 0:
            lines.append((b"", "blank", None, None, None))
    assume(lines)
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_export())
def test_property_openinference_export_with_corrupt_lines(tmp_path_factory, lines):
    p = tmp_path_factory.mktemp("oi") / "spans.jsonl"
    p.write_bytes(b"".join(raw + b"\n" for raw, *_ in lines))
    q = Quarantine(None)
    traces = {t.trace_id: t for t in iter_openinference(p, q)}  # never raises

    bad = {i: code for i, (_, label, _, _, code) in enumerate(lines, 1) if label == "bad"}
    got = {r["line"]: r["reason"].split(":")[0] for r in q.records}
    assert len(q.records) == len(bad)
    assert got == bad
    good_spans: dict[str, set[str]] = {}
    for _, label, tid, sid, _ in lines:
        if label == "good":
            good_spans.setdefault(tid, set()).add(sid)
    assert set(traces) == set(good_spans)
    for tid, t in traces.items():
        assert {s.span_id for s in t.spans} == good_spans[tid]
        # spans lost to a schema error while their trace id was still readable are counted on the trace
        lost = sum(
            1 for raw, label, t2, _, code in lines
            if label == "bad" and t2 == tid and code == "schema" and b'"trace_id"' in raw
        )  # fmt: skip
        assert t.metadata.get("quarantined_spans", 0) == lost


def test_spans_shuffled_across_a_larger_export_are_regrouped(tmp_path):
    """Pass 1 keeps only offsets per trace; pass 2 re-reads each trace's spans wherever they are."""
    rnd = random.Random(7)
    p = tmp_path / "spans.jsonl"
    spans = [oi_span(f"{t:032x}", f"{t:08x}{j:08x}", None if j == 0 else f"{t:08x}{0:08x}", "LLM", j) for t in range(300) for j in range(3)]
    for s in spans:
        s["attributes"]["output.value"] = "x" * 2000
    rnd.shuffle(spans)
    p.write_text("\n".join(json.dumps(s) for s in spans) + "\n")
    q = Quarantine(None)
    traces = list(iter_openinference(p, q))
    assert len(traces) == 300 and all(len(t.spans) == 3 for t in traces) and q.total == 0
