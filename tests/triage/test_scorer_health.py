"""Scorer health: a score broken for a whole run is one `evaluation` finding, and its low values stop being
failure signals; a score that fails some traces along with the other evidence is trusted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from autofix.triage import Category, triage_traces
from autofix.triage.scorer_health import ScoreHealth, ScoreVerdicts

UP = [{"kind": "thumb_up", "value": 1}]
DOWN = [{"kind": "thumb_down", "value": -1}]


def _helpdesk(tb, i: int, scores: list[dict[str, Any]], feedback: list[dict[str, Any]], task: str = "policy_qa") -> dict:  # noqa: ANN001
    did = f"hr-leave-{i % 3:03d}"
    return tb.build(f"hd-{i}", docs=[tb.doc(did)], answer=f"You can carry over 5 days. Sources: {did}", scores=scores,
                    feedback=feedback, task_type=task, at=tb.T0 + timedelta(minutes=i), session=f"hd-s{i}")


def _signal_details(report, trace_id: str) -> list[str]:  # noqa: ANN001
    failure = next(f for f, _, _ in report.failure_list() if f.trace_id == trace_id)
    return [s.detail for s in failure.signals]


def test_a_score_that_fails_every_trace_is_one_finding_and_no_failure(tb) -> None:
    liked = [_helpdesk(tb, i, [{"name": "page_match", "value": False}, {"name": "answer_quality", "value": 0.9}],
                       UP if i % 5 else []) for i in range(30)]
    disliked = [_helpdesk(tb, 100 + i, [{"name": "page_match", "value": False}, {"name": "answer_quality", "value": 0.2}], DOWN)
                for i in range(5)]
    report = triage_traces([tb.trace(t) for t in [*liked, *disliked]])
    assert len(report.findings) == 1
    f = report.findings[0]
    assert (f.category, f.rule, f.subject, f.traces) == (Category.evaluation, "scorer_health", "score:page_match", 35)
    assert "page_match" in f.title and "fails all 35" in f.rationale and 1 <= len(f.examples) <= 5
    assert report.summary()["findings"][0]["subject"] == "score:page_match"
    # the liked traces are not failures; the disliked ones still are, on their other signals only
    assert report.failures == 5
    assert {r.trace_id for r, _, _ in report.failure_list()} == {t["trace_id"] for t in disliked}
    details = _signal_details(report, "hd-100")
    assert any("answer_quality" in d for d in details) and not any("page_match" in d for d in details)


def test_a_score_contradicted_on_most_of_its_failures_is_a_finding(tb) -> None:
    traces = []
    for i in range(30):
        if i < 18:  # grounded says no, the other judge and the user say yes
            traces.append(_helpdesk(tb, i, [{"name": "grounded", "value": 0.1}, {"name": "correct", "value": True}], UP))
        elif i < 20:  # grounded says no and so does the other judge
            traces.append(_helpdesk(tb, i, [{"name": "grounded", "value": 0.1}, {"name": "correct", "value": False}], []))
        else:
            traces.append(_helpdesk(tb, i, [{"name": "grounded", "value": 0.9}, {"name": "correct", "value": True}], UP))
    report = triage_traces([tb.trace(t) for t in traces])
    assert [f.subject for f in report.findings] == ["score:grounded"]
    assert "18 of the 20" in report.findings[0].rationale
    assert report.failures == 2 and {r.trace_id for r, _, _ in report.failure_list()} == {"hd-18", "hd-19"}


def test_a_score_that_fails_some_traces_with_the_other_evidence_is_trusted(tb) -> None:
    traces = []
    for i in range(30):
        if i % 10 < 3:  # 30%: the score, the other judge and the user agree the answer is bad
            traces.append(_helpdesk(tb, i, [{"name": "faithfulness", "value": 0.1}, {"name": "correct", "value": False}], DOWN))
        else:
            traces.append(_helpdesk(tb, i, [{"name": "faithfulness", "value": 0.9}, {"name": "correct", "value": True}], UP))
    report = triage_traces([tb.trace(t) for t in traces])
    assert report.findings == []
    assert report.failures == 9
    assert any("faithfulness" in d for d in _signal_details(report, "hd-0"))


def test_a_broken_score_across_two_shapes_and_task_types_is_one_finding(tb, ab) -> None:
    helpdesk = [_helpdesk(tb, i, [{"name": "page_match", "value": False}, {"name": "answer_quality", "value": 0.9}], UP)
                for i in range(15)]
    agent = []
    for i in range(15):
        steps = [ab.llm({"tool_calls": [{"name": "get_reservation_details"}]}),
                 ab.tool("get_reservation_details", {"reservation_id": f"R{i}"}, {"status": "booked"}),
                 ab.llm("It is booked.")]
        agent.append(ab.build(f"air-{i}", "Is my reservation booked?", steps, answer="It is booked.", feedback=UP,
                              scores=[{"name": "page_match", "value": False}, {"name": "reward", "value": 1.0}],
                              metadata={"task_type": "booking"}, at=ab.T0 + timedelta(hours=1, minutes=i)))
    report = triage_traces([tb.trace(t) for t in [*helpdesk, *agent]])
    assert len(report.findings) == 1
    assert (report.findings[0].subject, report.findings[0].traces) == ("score:page_match", 30)
    assert report.failures == 0


def test_too_few_scored_traces_say_nothing_about_a_scorer(tb) -> None:
    traces = [_helpdesk(tb, i, [{"name": "page_match", "value": False}, {"name": "answer_quality", "value": 0.9}], UP)
              for i in range(10)]
    report = triage_traces([tb.trace(t) for t in traces])
    assert report.findings == [] and report.failures == 10


def test_score_health_merges_parts_of_a_run() -> None:
    a, b = ScoreHealth(), ScoreHealth()
    for i in range(12):
        a.observe(ScoreVerdicts(("page_match",), ("quality",), True, f"a{i}"))
        b.observe(ScoreVerdicts(("page_match",), ("quality",), False, f"b{i}"))
    assert a.broken() == {} and b.broken() == {}  # 12 scored traces each: too few
    a.merge(b)
    assert list(a.broken()) == ["page_match"]
    (f,) = a.findings()
    assert f.traces == 24 and len(f.examples) == 5
