"""Inputs as they come: optional and epoch timestamps, folders of exports, tool schemas from OpenInference,
Langfuse top_k and trace latency. The traces are a travel-booking agent's and a code-review bot's, not the
helpdesk's: other span shapes, other names, other scales."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from autofix.traces import IngestStats, Quarantine, ingest, iter_langfuse, iter_openinference
from autofix.traces.ingest import expand_paths
from autofix.traces.schema import Span, tool_args_schema
from autofix.triage.detection import trace_latency_ms

BOOKING_ARGS = {
    "type": "object",
    "properties": {"origin": {"type": "string", "minLength": 3, "maxLength": 3}, "date": {"type": "string"}},
    "required": ["origin", "date"],
}


def booking(tid: str, **over) -> dict:
    """A travel agent's trace: a planner llm call, then a flight-search tool; no router, no retrieval."""
    t = {
        "trace_id": tid,
        "session_id": "trip-42",
        "input": "Find me a flight from Lyon on Friday",
        "output": "There is a 7:05 flight LYS-AMS.",
        "spans": [
            {"kind": "llm", "name": "planner", "input": "plan", "output": "call search_flights"},
            {"kind": "tool", "name": "search_flights", "input": {"origin": "LYS", "date": "2026-03-06"},
             "attributes": {"json_schema": BOOKING_ARGS}},
        ],
        "metadata": {"task_type": "flight_search"},
    }
    t.update(over)
    return t


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- timestamps


def test_native_timestamps_may_be_missing_epoch_seconds_milliseconds_or_iso(tmp_path: Path) -> None:
    no_ts = booking("t-none")
    rows = [
        no_ts,
        booking("t-null", timestamp=None),
        booking("t-sec", timestamp=1772784000),
        booking("t-ms", timestamp=1772784000250),
        booking("t-iso", timestamp="2026-03-06T08:00:00+01:00"),
    ]
    q = Quarantine(None)
    stats = IngestStats()
    traces = {t.trace_id: t for t in ingest(write_lines(tmp_path / "agent.jsonl", rows), quarantine=q, stats=stats)}
    assert q.total == 0 and list(traces) == ["t-none", "t-null", "t-sec", "t-ms", "t-iso"]
    assert traces["t-none"].timestamp is None and traces["t-null"].timestamp is None
    assert traces["t-sec"].timestamp == datetime(2026, 3, 6, 8, 0, tzinfo=timezone.utc)
    assert traces["t-ms"].timestamp == datetime(2026, 3, 6, 8, 0, 0, 250000, tzinfo=timezone.utc)
    assert traces["t-iso"].timestamp == datetime(2026, 3, 6, 7, 0, tzinfo=timezone.utc)
    assert stats.undated == 2


def test_since_keeps_the_traces_it_cannot_place_in_time(tmp_path: Path) -> None:
    rows = [booking("old", timestamp=1600000000), booking("undated"), booking("new", timestamp=1772784000)]
    stats = IngestStats()
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    kept = [t.trace_id for t in ingest(write_lines(tmp_path / "a.jsonl", rows), since=since, stats=stats)]
    assert kept == ["undated", "new"]
    assert stats.skipped_before_since == 1 and stats.undated == 1


def test_a_bad_timestamp_is_still_quarantined_with_its_line(tmp_path: Path) -> None:
    rows = [booking("ok"), booking("bool", timestamp=True), booking("word", timestamp="last friday")]
    q = Quarantine(None)
    assert [t.trace_id for t in ingest(write_lines(tmp_path / "a.jsonl", rows), quarantine=q)] == ["ok"]
    assert [(r["line"], r["reason"].split(":")[0]) for r in q.records] == [(2, "schema"), (3, "schema")]
    assert all("timestamp" in r["reason"] for r in q.records)


# --------------------------------------------------------------------------- folders


def test_a_folder_is_every_trace_file_under_it_sorted_and_each_bad_record_names_its_file(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    write_lines(root / "2026-03-06" / "b.jsonl", [booking("b1", timestamp=1772784000), '{"trace_id": "b2", "spans": 7}'])
    write_lines(root / "2026-03-05.jsonl", [booking("a1", timestamp=1772697600)])
    (root / "2026-03-07").mkdir()
    (root / "2026-03-07" / "c.json").write_text(json.dumps([booking("c1"), {"trace_id": "c2", "timestamp": "soon"}]))
    write_lines(root / ".partial" / "x.jsonl", [booking("hidden")])  # an exporter's temporary folder
    (root / "README.txt").write_text("exported nightly\n")

    files = expand_paths(root)
    assert [f.relative_to(root).as_posix() for f in files] == ["2026-03-05.jsonl", "2026-03-06/b.jsonl", "2026-03-07/c.json"]

    q = Quarantine(None)
    stats = IngestStats()
    ids = [t.trace_id for t in ingest(root, quarantine=q, stats=stats)]
    assert ids == ["a1", "b1", "c1"]
    assert stats.files == 3 and stats.quarantined == 2
    assert [(Path(r["file"]).relative_to(root).as_posix(), r["line"]) for r in q.records] == [
        ("2026-03-06/b.jsonl", 2),
        ("2026-03-07/c.json", 1),  # the JSON array starts on line 1
    ]


def test_an_empty_folder_reads_nothing_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    stats = IngestStats()
    assert list(ingest(tmp_path / "empty", stats=stats)) == [] and stats.files == 0
    with pytest.raises(FileNotFoundError, match="datasets.traces"):
        list(ingest(tmp_path / "nope"))


# --------------------------------------------------------------------------- tool schemas


@pytest.mark.parametrize(
    "attributes",
    [
        {"json_schema": BOOKING_ARGS},
        {"schema": BOOKING_ARGS},
        {"parameters": BOOKING_ARGS},
        {"json_schema": json.dumps(BOOKING_ARGS)},
        {"json_schema": {"type": "function", "function": {"name": "search_flights", "parameters": BOOKING_ARGS}}},
        {"tool.json_schema": json.dumps({"type": "function", "function": {"name": "s", "parameters": BOOKING_ARGS}})},
        {"schema": {"name": "search_flights", "input_schema": BOOKING_ARGS}},  # Anthropic tool definition
        {"json_schema": {"name": "search_flights", "inputSchema": BOOKING_ARGS}},  # MCP tool
        {"parameters": {"origin": "LYS"}, "json_schema": BOOKING_ARGS},  # arguments under parameters: skipped
    ],
)
def test_tool_args_schema_finds_the_schema_under_any_usual_name_and_shape(attributes: dict) -> None:
    assert tool_args_schema(attributes) == BOOKING_ARGS
    assert Span(kind="tool", name="search_flights", attributes=attributes).args_schema == BOOKING_ARGS


@pytest.mark.parametrize(
    "attributes",
    [{}, {"parameters": {"origin": "LYS", "date": "Friday"}}, {"json_schema": "not json"},
     {"json_schema": {"type": "function", "function": {"name": "get_weather"}}}, None],
)
def test_tool_args_schema_is_none_when_nothing_declares_one(attributes) -> None:  # noqa: ANN001
    assert tool_args_schema(attributes) is None


def oi_span(span_id: str, name: str, kind: str, parent: str | None, attributes: dict, start: str) -> dict:
    return {
        "name": name, "context": {"trace_id": "review-1", "span_id": span_id}, "span_kind": kind,
        "parent_id": parent, "start_time": start, "end_time": start, "status_code": "OK", "attributes": attributes,
    }


def test_openinference_tool_json_schema_becomes_the_span_json_schema(tmp_path: Path) -> None:
    definition = {"type": "function", "function": {"name": "post_comment", "description": "Comment on a PR",
                                                   "parameters": {"type": "object", "required": ["line"],
                                                                  "properties": {"line": {"type": "integer"}}}}}
    rows = [
        oi_span("s0", "review_bot", "AGENT", None, {"input.value": "review PR 17"}, "2026-03-06T08:00:00Z"),
        oi_span("s1", "post_comment", "TOOL", "s0", {"tool.name": "post_comment", "tool.json_schema": json.dumps(definition),
                                                     "input.value": json.dumps({"line": "twelve"})}, "2026-03-06T08:00:01Z"),
        oi_span("s2", "lint", "TOOL", "s0", {"tool.name": "lint", "tool.parameters": json.dumps(
            {"type": "object", "properties": {"path": {"type": "string"}}})}, "2026-03-06T08:00:02Z"),
        oi_span("s3", "fetch_diff", "TOOL", "s0", {"tool.name": "fetch_diff", "tool.parameters": json.dumps({"pr": 17})},
                "2026-03-06T08:00:03Z"),
    ]
    q = Quarantine(None)
    [t] = list(iter_openinference(write_lines(tmp_path / "phoenix.jsonl", rows), q))
    assert q.total == 0
    comment, lint, diff = t.span("s1"), t.span("s2"), t.span("s3")
    assert comment.attributes["json_schema"] == definition["function"]["parameters"]
    assert comment.attributes["tool.json_schema"] == json.dumps(definition)  # the raw attribute stays
    assert comment.input == {"line": "twelve"} and comment.args_schema == definition["function"]["parameters"]
    assert lint.attributes["json_schema"] == {"type": "object", "properties": {"path": {"type": "string"}}}
    assert lint.input is None  # a schema under tool.parameters is not the call's arguments
    assert "json_schema" not in diff.attributes and diff.input == {"pr": 17}  # arguments under tool.parameters


# --------------------------------------------------------------------------- Langfuse


def langfuse_trace(tid: str, observations: list, latency: float | None = 2.75) -> dict:
    t = {"id": tid, "timestamp": "2026-03-06T08:00:00.000Z", "name": "code-search", "sessionId": "repo-9",
         "input": {"q": "where is the retry policy?"}, "output": "in net/retry.go", "observations": observations,
         "scores": []}
    if latency is not None:
        t["latency"] = latency
    return t


def observation(oid: str, **over) -> dict:
    o = {"id": oid, "traceId": "x", "type": "RETRIEVER", "name": "code-index", "startTime": "2026-03-06T08:00:00.100Z",
         "endTime": "2026-03-06T08:00:00.400Z", "output": [{"id": "net/retry.go#L10", "score": 0.7, "text": "func Retry"}]}
    o.update(over)
    return o


def test_langfuse_keeps_a_retrievals_top_k_and_the_trace_latency(tmp_path: Path) -> None:
    rows = [
        langfuse_trace("lf-1", [observation("o1", input={"query": "retry policy", "k": 8})]),
        langfuse_trace("lf-2", [observation("o2", input={"args": [], "kwargs": {"query": "retry", "top_k": 3}})]),
        langfuse_trace("lf-3", [observation("o3", input="retry policy", metadata={"search_kwargs": {"k": 12}})]),
        langfuse_trace("lf-4", [observation("o4", type="SPAN", name="vector-search", input={"query": "q", "limit": "5"})]),
        langfuse_trace("lf-5", [observation("o5", input="retry policy")], latency=None),
    ]
    q = Quarantine(None)
    traces = {t.trace_id: t for t in iter_langfuse(write_lines(tmp_path / "langfuse.jsonl", rows), q)}
    assert q.total == 0
    top = {tid: t.spans[0].attributes.get("top_k") for tid, t in traces.items()}
    assert top == {"lf-1": 8, "lf-2": 3, "lf-3": 12, "lf-4": 5, "lf-5": None}
    assert traces["lf-1"].metadata["latency_s"] == 2.75 and traces["lf-1"].metadata["latency_ms"] == 2750.0
    assert trace_latency_ms(traces["lf-1"]) == 2750.0  # the trace's own latency, not its one span's 300 ms
    assert "latency_ms" not in traces["lf-5"].metadata and trace_latency_ms(traces["lf-5"]) == 300.0
