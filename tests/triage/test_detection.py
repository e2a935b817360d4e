"""Failure detection: each detector on small synthetic traces, and the triage priority."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autofix.triage import DetectionSettings, detect, priority, similar_inputs, triage_traces
from autofix.triage.detection import LatencyStats


def names(det) -> list[str]:  # noqa: ANN001
    return [s[1] for s in det.signals]


S = DetectionSettings()


# ----------------------------------------------------------------------------- explicit


def test_thumb_down_is_an_explicit_failure(tb) -> None:
    det = detect(tb.trace(tb.build("t1", feedback=[{"kind": "thumb_down", "value": -1}])), S)
    assert det.failed
    assert det.signals[0][0] == "explicit" and det.signals[0][1] == "thumb_down"


def test_thumb_up_alone_is_not_a_failure(tb) -> None:
    det = detect(tb.trace(tb.build("t1", feedback=[{"kind": "thumb_up", "value": 1}], scores=[{"name": "q", "value": 0.9}])), S)
    assert not det.failed and det.thumb_up


@pytest.mark.parametrize(
    "comment, value, signal",
    [
        ("that's not right", None, "negative_comment"),
        ("where is this from? please link the policy", None, "source_request"),
        ("can you cite the source?", None, "source_request"),
        ("wrong answer, the policy says something else", None, "negative_comment"),
        ("thanks, that helped!", None, None),
        ("interesting", None, None),
        ("meh", -1, "negative_comment"),
    ],
)
def test_negative_comments(tb, comment: str, value, signal: str | None) -> None:  # noqa: ANN001
    det = detect(tb.trace(tb.build("t1", feedback=[{"kind": "comment", "value": value, "comment": comment}])), S)
    assert names(det) == ([signal] if signal else [])
    if signal:
        assert det.signals[0][0] == "explicit" and comment in det.signals[0][2]


def test_a_source_request_is_not_contradicted_by_a_correctness_judge(tb) -> None:
    fb = [{"kind": "comment", "value": -1, "comment": "where is this from?"}]
    assert _prio(tb, feedback=fb, scores=[{"name": "q", "value": 0.95}]) == _prio(tb, feedback=fb)


# ----------------------------------------------------------------------------- behavioural


@pytest.mark.parametrize("kind", ["rephrase", "abandon", "escalation"])
def test_behavioural_feedback(tb, kind: str) -> None:
    det = detect(tb.trace(tb.build("t1", feedback=[{"kind": kind, "value": -1}])), S)
    assert [(s[0], s[1]) for s in det.signals] == [("behavioural", kind)]


def test_rephrase_in_the_same_session_within_the_window(tb) -> None:
    first = tb.build("t1", "How many days of annual leave can I carry over?", session="s1", at=tb.T0)
    again = tb.build("t2", "how many leave days carry over", session="s1", at=tb.T0 + timedelta(seconds=40))
    report = triage_traces([tb.trace(first), tb.trace(again)], S)
    assert report.failures == 1
    failure, diagnosis, _ = next(report.failure_list())
    assert failure.trace_id == "t1"
    assert [(s.kind, s.name) for s in failure.signals] == [("behavioural", "rephrase")]
    assert "t2" in failure.signals[0].detail


@pytest.mark.parametrize(
    "second, session, gap_s",
    [
        ("how many leave days carry over", "s1", 600),  # outside the window
        ("How do I book a parking space in Berlin?", "s1", 30),  # a different question
        ("how many leave days carry over", "s2", 30),  # another session
    ],
)
def test_no_rephrase(tb, second: str, session: str, gap_s: int) -> None:  # noqa: ANN001
    first = tb.build("t1", "How many days of annual leave can I carry over?", session="s1", at=tb.T0)
    other = tb.build("t2", second, session=session, at=tb.T0 + timedelta(seconds=gap_s))
    report = triage_traces([tb.trace(first), tb.trace(other)], S)
    assert report.failures == 0


def test_rephrase_window_comes_from_the_settings(tb) -> None:
    first = tb.build("t1", "How many days of annual leave can I carry over?", session="s1", at=tb.T0)
    again = tb.build("t2", "how many leave days carry over", session="s1", at=tb.T0 + timedelta(seconds=300))
    report = triage_traces([tb.trace(first), tb.trace(again)], DetectionSettings(rephrase_window_s=600))
    assert report.failures == 1


def test_similar_inputs() -> None:
    assert similar_inputs("Reset my password for me.", "reset my password for me")
    assert similar_inputs("Show my tickets since Monday", "show my tickets since monday please")
    assert not similar_inputs("hi", "How do I book a desk?")


# ----------------------------------------------------------------------------- judged


@pytest.mark.parametrize(
    "score, settings, failed",
    [
        ({"name": "quality", "value": 0.3}, S, True),
        ({"name": "quality", "value": 0.7}, S, False),
        ({"name": "quality", "value": 0.7}, DetectionSettings(score_thresholds={"quality": 0.8}), True),
        ({"name": "helpfulness", "value": 2}, DetectionSettings(judge_scales={"helpfulness": (1, 5, 3)}), True),
        ({"name": "helpfulness", "value": 4}, DetectionSettings(judge_scales={"helpfulness": (1, 5, 3)}), False),
        ({"name": "stars", "value": 2}, S, False),  # unknown scale: not read
        ({"name": "cites_sources", "value": False}, S, True),
    ],
)
def test_judged(tb, score, settings, failed: bool) -> None:  # noqa: ANN001
    det = detect(tb.trace(tb.build("t1", scores=[score])), settings)
    assert det.failed is failed
    if failed:
        assert det.signals[0][0] == "judged" and score["name"] in det.signals[0][2]


def test_judged_settings_from_config(target) -> None:  # noqa: ANN001
    from autofix.config import load_config

    s = DetectionSettings.from_config(load_config(target))
    assert s.judge_scales["helpfulness"] == (1.0, 5.0, 3.0)
    assert s.rephrase_window_s == 120 and s.latency_outlier_z == 3.0


# ----------------------------------------------------------------------------- operational


def test_tool_error_is_operational(tb) -> None:
    t = tb.build("t1", "Show my tickets since Monday", route="tool",
                 tool={"name": "list_tickets", "args": {"since": "x"}, "error": "503 Service Unavailable"})
    det = detect(tb.trace(t), S)
    assert [(s[0], s[1], s[3]) for s in det.signals] == [("operational", "tool_error", "t1:2")]


def test_span_error_is_operational(tb) -> None:
    det = detect(tb.trace(tb.build("t1", docs=[], llm_error="TimeoutError: the model timed out")), S)
    assert [(s[0], s[1]) for s in det.signals] == [("operational", "span_error")]


def test_latency_outlier_per_task_type(tb) -> None:
    traces = [tb.build(f"t{i}", latency_ms=800 + (i % 7) * 20, task_type="policy_qa") for i in range(60)]
    traces.append(tb.build("slow", latency_ms=9000, task_type="policy_qa"))
    # another task type is slow by nature: 9 s is normal there
    traces += [tb.build(f"u{i}", latency_ms=9000 + (i % 5) * 100, task_type="report") for i in range(40)]
    report = triage_traces([tb.trace(t) for t in traces], S)
    failed = {f.trace_id: f for f, _, _ in report.failure_list()}
    assert set(failed) == {"slow"}
    sig = failed["slow"].signals[0]
    assert (sig.kind, sig.name) == ("operational", "latency_outlier")
    assert "policy_qa" in sig.detail and "median" in sig.detail
    d = report.diagnosis_of("slow")
    assert d is not None and d.category.value == "infrastructure" and d.rule == "latency_only"


def test_latency_stats_are_robust() -> None:
    stats = LatencyStats(min_count=10)
    for i in range(100):
        stats.add("a", 100.0 + i % 10)
    stats.add("a", 100_000.0)  # one huge value does not move the median much
    stats.finalize()
    assert stats.z("a", 104.0) < 1
    assert stats.z("a", 200.0) > 10
    assert stats.z("b", 200.0) is None  # unseen task type


# ----------------------------------------------------------------------------- priority


def _prio(tb, settings=S, **kw) -> float:  # noqa: ANN001
    det = detect(tb.trace(tb.build("t", **kw)), settings)
    return priority(det.signals, settings, det.passing_scores, det.thumb_up)


def test_priority_orders_by_signal_strength(tb) -> None:
    strong = _prio(tb, feedback=[{"kind": "thumb_down"}, {"kind": "escalation"}], scores=[{"name": "q", "value": 0.1}])
    medium = _prio(tb, feedback=[{"kind": "thumb_down"}], scores=[{"name": "q", "value": 0.2}])
    weak = _prio(tb, scores=[{"name": "q", "value": 0.45}])
    assert strong > medium > weak > 0


def test_lone_thumb_down_contradicted_by_a_judge_is_penalised(tb) -> None:
    contradicted = _prio(tb, feedback=[{"kind": "thumb_down"}], scores=[{"name": "q", "value": 0.95}])
    alone = _prio(tb, feedback=[{"kind": "thumb_down"}])
    assert contradicted < alone


def test_judge_alone_against_a_thumb_up_is_penalised(tb) -> None:
    contradicted = _prio(tb, feedback=[{"kind": "thumb_up"}], scores=[{"name": "q", "value": 0.3}])
    alone = _prio(tb, scores=[{"name": "q", "value": 0.3}])
    assert contradicted < alone


def test_priority_weights_come_from_the_settings(tb) -> None:
    explicit_heavy = DetectionSettings(w_explicit=2.0, w_behavioural=0.1)
    behaviour_heavy = DetectionSettings(w_explicit=0.1, w_behavioural=2.0)
    thumb = dict(feedback=[{"kind": "thumb_down"}])
    escalated = dict(feedback=[{"kind": "escalation"}])
    assert _prio(tb, explicit_heavy, **thumb) > _prio(tb, explicit_heavy, **escalated)
    assert _prio(tb, behaviour_heavy, **thumb) < _prio(tb, behaviour_heavy, **escalated)


def test_a_slow_trace_with_no_other_signal_is_diagnosed_by_its_slowness_alone(tb) -> None:
    traces = [tb.build(f"t{i}", latency_ms=800 + (i % 7) * 20) for i in range(60)]
    # an action request the assistant declined: other rules would see a missing capability in its full spans,
    # but its only failure signal is slowness, and a slow trace keeps only what the latency rule reads
    traces.append(tb.build("slow", "Reset my password for me.", latency_ms=9000, answer="I can't; use MyAccess yourself."))
    report = triage_traces([tb.trace(t) for t in traces], S)
    d = report.diagnosis_of("slow")
    assert (d.category.value, d.rule, d.alternatives) == ("infrastructure", "latency_only", [])
