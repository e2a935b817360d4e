"""The native trace records: what validates, what is normalised, what is refused."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from autofix.traces import Trace, build_trace, summarize_validation_error
from autofix.traces.schema import TRUNCATION_MARKER, feedback_from_signal


def trace(**over):
    base = {
        "trace_id": "t-1",
        "session_id": "s-1",
        "timestamp": "2024-06-01T10:00:00Z",
        "input": "How do I reset my password?",
        "output": "Use the self-service portal.",
        "spans": [
            {"kind": "router", "name": "route", "output": "search"},
            {
                "kind": "retrieval",
                "name": "search",
                "input": "reset password",
                "output": [{"doc_id": "sec-password-policy-2023", "score": 0.8, "text": "..."}],
                "start_ms": 0,
                "end_ms": 12.5,
            },
            {"kind": "tool", "name": "open_ticket", "input": {"category": "access"}, "error": "timeout"},
            {"kind": "llm", "name": "answer", "input": [{"role": "user", "content": "hi"}]},
        ],
        "feedback": [{"kind": "thumb_down", "value": 0, "comment": "outdated"}],
        "scores": [{"name": "faithfulness", "value": 0.4, "rationale": "cites 2023", "source": "judge"}],
        "versions": {"prompt": "v3", "model": "smollm2"},
        "metadata": {"task_type": "it_howto", "tenant": "acme", "channel": "slack"},
    }
    base.update(over)
    return base


def test_a_full_trace_validates_and_spans_get_citable_ids():
    t = build_trace(trace())
    assert [s.span_id for s in t.spans] == ["t-1:0", "t-1:1", "t-1:2", "t-1:3"]
    assert [s.kind for s in t.spans] == ["router", "retrieval", "tool", "llm"]
    assert t.spans[1].documents[0].doc_id == "sec-password-policy-2023"
    assert t.spans[1].duration_ms == 12.5
    assert t.spans[2].input == {"category": "access"}
    assert t.task_type == "it_howto" and t.tenant == "acme"
    assert t.metadata["channel"] == "slack"  # unknown metadata keys are kept
    assert t.span("t-1:2").error == "timeout"


def test_given_span_ids_are_kept_and_duplicates_refused():
    t = build_trace(trace(spans=[{"span_id": "abc", "kind": "llm", "name": "x"}, {"kind": "llm", "name": "y"}]))
    assert [s.span_id for s in t.spans] == ["abc", "t-1:1"]
    with pytest.raises(ValidationError, match="duplicate span_id"):
        build_trace(trace(spans=[{"span_id": "a", "kind": "llm", "name": "x"}, {"span_id": "a", "kind": "llm", "name": "y"}]))


def test_naive_timestamps_are_utc_and_epoch_numbers_are_seconds_or_milliseconds():
    t = build_trace(trace(timestamp="2024-06-01T10:00:00"))
    assert t.timestamp.tzinfo == timezone.utc
    at = datetime(2024, 6, 1, 10, 0, tzinfo=timezone.utc)
    assert build_trace(trace(timestamp=1717236000)).timestamp == at  # seconds
    assert build_trace(trace(timestamp=1717236000.5)).timestamp == at.replace(microsecond=500000)
    assert build_trace(trace(timestamp=1717236000000)).timestamp == at  # milliseconds: over 1e11
    assert build_trace(trace(timestamp="1717236000")).timestamp == at  # a number written as a string
    for bad in (True, "yesterday", [2024, 6, 1], 10**30):
        with pytest.raises(ValidationError, match="timestamp"):
            build_trace(trace(timestamp=bad))


def test_a_trace_without_a_timestamp_is_read_and_round_trips():
    raw = trace()
    del raw["timestamp"]
    t = build_trace(raw)
    assert t.timestamp is None
    assert build_trace(trace(timestamp=None)).timestamp is None
    assert Trace.model_validate_json(t.to_json_line()) == t


@pytest.mark.parametrize(
    "over, where",
    [
        ({"trace_id": 5}, "trace_id"),
        ({"trace_id": ""}, "trace_id"),
        ({"spans": [{"kind": "database", "name": "x"}]}, "spans.0.kind"),
        ({"spans": [{"kind": "llm", "name": 3}]}, "spans.0.name"),
        ({"spans": [{"kind": "llm", "name": "x", "start_ms": "fast"}]}, "spans.0.start_ms"),
        ({"spans": [{"kind": "llm", "name": "x", "start_ms": True}]}, "spans.0.start_ms"),
        ({"spans": [{"kind": "retrieval", "name": "r", "output": "some text"}]}, "spans.0"),
        ({"spans": [{"kind": "retrieval", "name": "r", "output": [{"score": 1}]}]}, "doc_id"),
        ({"feedback": [{"kind": "love"}]}, "feedback.0.kind"),
        ({"versions": {"model": ["a"]}}, "versions.model"),
        ({"metadata": {"tenant": 7}}, "metadata"),
        ({"scores": [{"value": 1}]}, "scores.0.name"),
    ],
)
def test_wrong_types_are_refused_with_the_field_path(over, where):
    with pytest.raises(ValidationError) as err:
        build_trace(trace(**over))
    assert where in summarize_validation_error(err.value)


def test_lenient_where_it_should_be():
    t = build_trace(trace(versions={"prompt": 3}, extra_field={"kept": True}))
    assert t.versions["prompt"] == "3"
    assert t.model_extra == {"extra_field": {"kept": True}}
    doc = build_trace(trace(spans=[{"kind": "retrieval", "name": "r", "output": [{"doc_id": 17}]}])).spans[0].output[0]
    assert doc.doc_id == "17"


def test_huge_fields_are_truncated_with_a_marker_and_recorded():
    big = "x" * 150
    t = build_trace(trace(input=big, spans=[{"kind": "llm", "name": "a", "output": big}]), max_field_chars=100)
    assert t.input.startswith("x" * 100) and t.input.endswith(TRUNCATION_MARKER.format(n=150))
    assert t.spans[0].output.endswith(TRUNCATION_MARKER.format(n=150))
    assert t.truncated == ["input", "spans.0.output"]


def test_round_trip_through_a_json_line():
    t = build_trace(trace())
    again = Trace.model_validate_json(t.to_json_line())
    assert again == t


def test_summary_is_short_and_names_paths():
    with pytest.raises(ValidationError) as err:
        Trace.model_validate({"spans": [{"kind": "x"} for _ in range(8)]})
    summary = summarize_validation_error(err.value)
    assert summary.startswith("trace_id: Field required; spans.0.kind:")
    assert "more)" in summary


@pytest.mark.parametrize(
    "name, score, label, kind",
    [
        ("user-feedback", 0, None, "thumb_down"),
        ("user-feedback", 1, None, "thumb_up"),
        ("user-feedback", -1, None, "thumb_down"),
        ("user_feedback", None, "thumbs_down", "thumb_down"),
        ("thumbs", True, None, "thumb_up"),
        ("quality", None, "thumbs_up", "thumb_up"),
        ("rephrase", 1, None, "rephrase"),
        ("escalation", True, None, "escalation"),
        ("abandoned", 1, None, "abandon"),
        ("faithfulness", 0.3, None, None),
        ("hallucination", None, "factual", None),
    ],
)
def test_feedback_signals(name, score, label, kind):
    fb = feedback_from_signal(name, score=score, label=label, comment="c")
    assert (fb.kind if fb else None) == kind
