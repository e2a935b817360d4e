"""What a slice is scored by: the checks a diagnosis implies, reviewers' labels, calibrated judges;
the per-case score; and the gap reported when nothing measures a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from autofix.config import AutofixConfig
from autofix.judges.checks import cites_sources, no_tool_error, searched
from autofix.replay.records import Case, CaseResult
from autofix.slices import (
    IMPLIED_CHECKS,
    Label,
    MeasurementGap,
    SliceMeasure,
    measure_results,
    plan_measurement,
    slice_score,
    with_labels,
)
from autofix.slices.labels import LabelError, append_labels, load_labels
from autofix.triage.records import Category


def config(**extra) -> AutofixConfig:
    data = {"project": "t", "replay": {"command": "run {cases} {out}", "sandbox": "local"},
            "datasets": {"traces": "t.jsonl", "regression": "r.jsonl"},
            "judges": [{"name": "recall", "kind": "check", "check": "recall_at_k", "k": 3}], **extra}
    return AutofixConfig.model_validate(data)


def case(cid: str, text: str = "How many days of leave do I get, with sources?", **expected) -> Case:
    return Case(case_id=cid, input=text, expected=expected or None)


def hit(doc: str, title: str | None = None) -> dict:
    return {"doc_id": doc, "score": 1.0, **({"metadata": {"title": title}} if title else {})}


RETRIEVAL = {"kind": "retrieval", "name": "search", "output": [hit("leave-policy", "Annual leave"), hit("faq")]}
TOOL_ERROR = {"kind": "tool", "name": "list_tickets", "input": {"since": "16/11"}, "error": "400 Bad Request"}


def test_reference_free_checks_read_only_what_the_assistant_did() -> None:
    c = case("c")
    assert searched(c, CaseResult(case_id="c", output="25", spans=[RETRIEVAL])).passed is True
    assert searched(c, CaseResult(case_id="c", output="25")).passed is False
    assert no_tool_error(c, CaseResult(case_id="c", output="x")).passed is None
    assert no_tool_error(c, CaseResult(case_id="c", output="x", spans=[TOOL_ERROR])).passed is False
    assert cites_sources(c, CaseResult(case_id="c", output="25 days.")).passed is None
    assert cites_sources(c, CaseResult(case_id="c", output="25 days.", spans=[RETRIEVAL])).passed is False
    named = cites_sources(c, CaseResult(case_id="c", output="25 days (Annual leave).", spans=[RETRIEVAL]))
    assert named.passed is True and "Annual leave" in named.detail


def test_a_category_implies_checks_and_a_target_can_override_them() -> None:
    plan = plan_measurement(config(), "c1", "routing", [case("a")])
    assert isinstance(plan, SliceMeasure) and plan.names == list(IMPLIED_CHECKS[Category.routing])
    custom = plan_measurement(config(slices={"checks": {"routing": ["searched", "cites_sources"]}}), "c1", "routing",
                              [case("a")])
    assert custom.names == ["searched", "cites_sources"]
    with pytest.raises(ValueError, match="no check named 'nope'"):
        plan_measurement(config(slices={"checks": {"routing": ["nope"]}}), "c1", "routing", [case("a")])


def test_labels_add_their_checks_and_a_cluster_with_nothing_is_a_gap() -> None:
    labelled = [case("a", must_include=["25 days"], doc_ids=["leave-policy"]), case("b")]
    plan = plan_measurement(config(), "r1", "retrieval", labelled)
    assert isinstance(plan, SliceMeasure) and plan.names == ["contains_expected", "recall_at_k"]
    assert plan.labeled_cases == 1 and plan.measures[1].args == {"k": 3}  # the target's recall judge's k
    gap = plan_measurement(config(), "r1", "retrieval", [case("a"), case("b", answer="25 days")])
    assert isinstance(gap, MeasurementGap)
    finding = gap.finding(traces=12, examples=["a", "b"])
    assert finding.category == Category.evaluation and finding.traces == 12
    assert "autofix label" in finding.rationale and "slices.checks.retrieval" in finding.rationale


def test_a_case_scores_the_share_of_measures_that_apply_and_unmeasured_cases_are_left_out() -> None:
    cases = [case("a", must_include=["25 days"]), case("b", "How many days of leave?"), case("c")]
    plan = plan_measurement(config(), "p1", "prompt", cases)
    results = [CaseResult(case_id="a", output="25 days", spans=[RETRIEVAL]),  # asked for sources: none named
               CaseResult(case_id="b", output="I don't know"),  # nothing applies: unmeasured
               CaseResult(case_id="c", error="ValueError in the assistant")]  # failed: counts as 0
    measured = measure_results(config(), plan, cases, results)
    by_id = {m.case_id: m for m in measured}
    assert by_id["b"].score is None and by_id["c"].score == 0.0
    a = by_id["a"]
    applied = [o.passed for o in a.outcomes.values() if o.passed is not None]
    assert a.score == sum(applied) / len(applied) and "cites_sources: FAIL" in a.feedback
    assert slice_score(measured) == pytest.approx((a.score + 0.0) / 2)


def test_labels_file_is_append_only_the_last_line_wins_and_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    append_labels(path, [Label(case_id="a", expected={"must_include": ["26 days"]}, labeled_by="x")])
    append_labels(path, [Label(case_id="a", expected={"must_include": ["25 days"]}, labeled_by="y")])
    labels = load_labels(path)
    assert labels["a"].expected == {"must_include": ["25 days"]} and labels["a"].labeled_by == "y"
    [merged] = with_labels([case("a")], labels)
    assert merged.expected == {"must_include": ["25 days"]}
    with path.open("a") as handle:
        handle.write('{"case_id": "b", "expected": {"colour": "red"}}\n')
    with pytest.raises(LabelError, match=r"labels.jsonl:3: not a label"):
        load_labels(path)


def test_a_case_the_infrastructure_failed_is_unmeasured_not_a_zero() -> None:
    cases = [case("a", must_include=["25 days"])]
    plan = plan_measurement(config(), "p1", "prompt", cases)
    [m] = measure_results(config(), plan, cases, [CaseResult(case_id="a", error="the sandbox failed: timeout",
                                                             infrastructure=True)])
    assert m.score is None
