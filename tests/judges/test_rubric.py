"""Rubric judges with a scripted model at the litellm boundary: verdicts, retries, no verdict, cache,
safety that nothing compensates, versions."""

from __future__ import annotations

import litellm
import pytest

from autofix.judges.rubric import Evidence, LMJudge, Verdict, VerdictCache, aggregate_verdicts
from autofix.replay.records import Case, CaseResult

from .conftest import FAKE_MODEL, HELPFULNESS, SAFETY, field, reply

CASE = Case(case_id="reg-001", input="How many days of annual leave do I get?",
            expected={"answer": "27 days per calendar year.", "must_include": ["27 days"]})
RESULT = CaseResult(case_id="reg-001", output="You get 27 days of annual leave. Sources: hr-leave-001", spans=[
    {"kind": "router", "name": "route", "output": {"action": "search"}},
    {"kind": "retrieval", "name": "bm25.search", "input": "annual leave",
     "output": [{"doc_id": "hr-leave-001", "score": 3.2, "text": "Full-time employees get 27 days of annual leave."}]},
    {"kind": "tool", "name": "list_tickets", "input": {"since": "2026-11-16"}, "output": [{"id": "T-1"}]},
])


def judge(spec=HELPFULNESS, **kwargs) -> LMJudge:
    return LMJudge(spec, FAKE_MODEL, **kwargs)


def test_a_valid_verdict_carries_score_pass_confidence_tags_and_rationale(scripted):
    scripted.script = [reply(score=4, confidence=0.9, tags='["missing_fact"]', rationale="Says 27 days.")]
    verdict = judge().judge_case(CASE, RESULT)
    assert verdict.status == "verdict"
    assert (verdict.score, verdict.passed, verdict.confidence) == (4, True, 0.9)
    assert verdict.failure_tags == ["missing_fact"] and verdict.rationale == "Says 27 days."
    assert verdict.attempts == 1 and len(scripted.calls) == 1
    # every call goes through litellm with the judge's model at temperature 0
    assert scripted.calls[0]["model"] == FAKE_MODEL and scripted.calls[0]["temperature"] == 0.0


def test_the_judge_sees_the_evidence_the_assistant_saw(scripted):
    judge().judge_case(CASE, RESULT)
    messages = scripted.calls[0]["messages"]
    assert field(messages, "request") == CASE.input
    evidence = field(messages, "evidence")
    assert "[hr-leave-001] Full-time employees get 27 days" in evidence
    assert "[tool list_tickets]" in evidence and "2026-11-16" in evidence and "T-1" in evidence
    assert field(messages, "answer").startswith("You get 27 days")
    assert field(messages, "expected_answer") == "27 days per calendar year."
    rubric = field(messages, "rubric")
    assert "1: Wrong or off-topic." in rubric and "5: Answers exactly with the facts." in rubric
    assert "integers from 1 to 5" in rubric


def test_a_score_below_the_threshold_fails(scripted):
    scripted.script = [reply(score=2)]
    verdict = judge().judge_case(CASE, RESULT)
    assert verdict.status == "verdict" and verdict.passed is False


def test_an_invalid_output_is_retried_then_the_valid_verdict_counts(scripted):
    scripted.script = [reply(score=7), "Yes, the answer is good.", reply(score=5)]
    verdict = judge(retries=2).judge_case(CASE, RESULT)
    assert verdict.status == "verdict" and verdict.score == 5 and verdict.attempts == 3
    assert len(scripted.calls) == 3
    # the retries ask again at a higher temperature
    assert scripted.calls[1]["temperature"] == 0.7


def test_always_invalid_output_gives_no_verdict_never_a_made_up_score(scripted):
    scripted.script = [reply(score="4/5"), reply(score=0), "yes"]
    verdict = judge(retries=2).judge_case(CASE, RESULT)
    assert verdict.status == "no verdict"
    assert verdict.score is None and verdict.passed is None
    assert "outside the scale 1-5" in verdict.error and "attempt 3" in verdict.error
    assert len(scripted.calls) == 3
    outcome = verdict.as_outcome()
    assert outcome.passed is None and outcome.detail.startswith("no verdict")


def test_a_confidence_out_of_range_is_invalid_and_a_percentage_is_read_as_such(scripted):
    scripted.script = [reply(confidence=150), reply(confidence=85)]
    verdict = judge(retries=1).judge_case(CASE, RESULT)
    assert verdict.status == "verdict" and verdict.confidence == 0.85 and verdict.attempts == 2


def test_a_failing_model_call_is_a_clean_no_verdict_without_retries(scripted):
    scripted.script = [litellm.exceptions.APIConnectionError(message="connection refused", llm_provider="openai",
                                                             model="scripted-judge")]
    verdict = judge(retries=2).judge_case(CASE, RESULT)
    assert verdict.status == "no verdict" and "model call failed" in verdict.error
    assert "connection refused" in verdict.error


def test_a_cached_verdict_is_answered_without_calling_the_model(scripted, tmp_path):
    cache = VerdictCache(tmp_path / "verdicts.sqlite")
    first = judge(cache=cache).judge_case(CASE, RESULT)
    again = judge(cache=VerdictCache(tmp_path / "verdicts.sqlite")).judge_case(CASE, RESULT)
    assert len(scripted.calls) == 1
    assert again.cached and not first.cached
    assert again.model_dump(exclude={"cached"}) == first.model_dump(exclude={"cached"})
    # other evidence, or another judge version, is another key
    judge(cache=cache).judge(Evidence(request="q", answer="other answer"))
    assert len(scripted.calls) == 2
    changed = HELPFULNESS.model_copy(update={"anchors": {1: "Wrong.", 5: "Right."}})
    judge(changed, cache=cache).judge_case(CASE, RESULT)
    assert len(scripted.calls) == 3 and len(cache) == 3


def test_no_verdict_is_not_cached(scripted, tmp_path):
    cache = VerdictCache(tmp_path / "verdicts.sqlite")
    scripted.script = ["nonsense"]
    assert judge(cache=cache, retries=0).judge_case(CASE, RESULT).status == "no verdict"
    scripted.script = [reply()]
    assert judge(cache=cache, retries=0).judge_case(CASE, RESULT).status == "verdict"


def test_the_version_changes_with_anchors_scale_model_and_demos_only():
    base = judge().version
    assert base == judge().version and base.startswith("rubric-1-")
    assert judge(HELPFULNESS.model_copy(update={"anchors": {1: "x", 5: "y"}})).version != base
    assert judge(HELPFULNESS.model_copy(update={"threshold": 4.0})).version != base
    assert judge(HELPFULNESS.model_copy(update={"criteria": "Solves the user's problem."})).version != base
    assert LMJudge(HELPFULNESS, "openai/another-model").version != base
    tuned = judge()
    import dspy

    tuned.program.judge.demos = [dspy.Example(request="q", score=5)]
    tuned.invalidate_version()
    assert tuned.version != base
    # the retry count or the cache do not change what a verdict means
    assert judge(retries=5).version == base


def test_a_safety_judge_is_pass_fail(scripted):
    scripted.script = [reply(score=0, tags='["leaked_data"]', rationale="It reveals a colleague's salary.")]
    verdict = judge(SAFETY).judge_case(CASE, RESULT)
    assert verdict.safety and verdict.scale == (0, 1) and verdict.passed is False
    assert "0 or 1 (pass/fail)" in field(scripted.calls[0]["messages"], "rubric")
    scripted.script = [reply(score=3)]
    assert judge(SAFETY, retries=0).judge_case(CASE, RESULT).status == "no verdict"


def _verdict(name, score, *, safety=False, status="verdict"):
    scale = (0, 1) if safety else (1, 5)
    threshold = 1.0 if safety else 3.0
    passed = None if status != "verdict" else (score == 1 if safety else score >= threshold)
    return Verdict(judge=name, dimension=name, version="v", model="m", safety=safety, scale=scale, threshold=threshold,
                   status=status, score=score if status == "verdict" else None, passed=passed)


def test_a_safety_fail_is_not_compensated_by_perfect_scores_elsewhere():
    verdicts = {"helpfulness": _verdict("helpfulness", 5), "accuracy": _verdict("accuracy", 5),
                "no_harm": _verdict("no_harm", 0, safety=True)}
    overall = aggregate_verdicts(verdicts)
    assert overall.passed is False and overall.safety_failures == ["no_harm"]
    assert overall.score == 1.0  # the other dimensions are perfect, and it still fails
    assert aggregate_verdicts({**verdicts, "no_harm": _verdict("no_harm", 1, safety=True)}).passed is True
    assert aggregate_verdicts({**verdicts, "helpfulness": _verdict("helpfulness", 2),
                               "no_harm": _verdict("no_harm", 1, safety=True)}).passed is False
    unknown = aggregate_verdicts({**verdicts, "no_harm": _verdict("no_harm", None, safety=True, status="no verdict")})
    assert unknown.passed is None and "no safety verdict" in unknown.reason


def test_evidence_from_a_golden_record_accepts_spans_passages_or_text():
    spans = Evidence.from_record({"input": "q", "output": "a", "expected": {"answer": "e"},
                                  "evidence": RESULT.spans})
    assert spans.passages[0].doc_id == "hr-leave-001" and spans.tool_calls[0].name == "list_tickets"
    mapping = Evidence.from_record({"input": "q", "output": "a", "expected": "e",
                                    "evidence": {"passages": [{"doc_id": "d1", "text": "t"}],
                                                 "tool_calls": [{"name": "x", "arguments": {}, "error": "400"}]}})
    assert mapping.expected_answer == "e" and mapping.passages[0].doc_id == "d1" and mapping.tool_calls[0].error == "400"
    hits = Evidence.from_record({"input": "q", "output": "a", "evidence": [
        {"doc_id": "it-vpn-001", "chunk_id": "it-vpn-001#2", "score": 6.1, "text": "Use GlobalConnect."},
        {"name": "list_tickets", "arguments": {"since": "2026-11-16"}, "result": []}]})
    assert [p.doc_id for p in hits.passages] == ["it-vpn-001"] and hits.tool_calls[0].name == "list_tickets"
    assert "[it-vpn-001] Use GlobalConnect." in hits.inputs()["evidence"]
    text = Evidence.from_record({"input": "q", "output": "a", "evidence": "the policy says 27 days"})
    assert "27 days" in text.inputs()["evidence"] and text.inputs()["expected_answer"] == "none"


def test_long_evidence_is_capped():
    evidence = Evidence(request="q", answer="a", passages=[{"doc_id": f"d{i}", "text": "x" * 1000} for i in range(20)])
    rendered = evidence.inputs(max_chars=2000)["evidence"]
    assert len(rendered) < 2100 and "left out for length" in rendered


def test_rubric_verdicts_serialize_as_check_outcomes_where_typed_so():
    from autofix.replay.metrics import CaseScore

    outcome = _verdict("helpfulness", 4).as_outcome()
    score = CaseScore(case_id="c", checks={"helpfulness": outcome})
    assert score.checks["helpfulness"].score == 4
    assert score.model_dump()["checks"]["helpfulness"] == {"passed": True, "detail": outcome.detail}


@pytest.mark.parametrize("raw", ["4", 4.0])
def test_an_integer_score_written_as_text_or_float_is_accepted(scripted, raw):
    from autofix.judges.rubric import InvalidVerdict  # noqa: F401 - the class the validation raises

    j = judge()
    import dspy

    verdict = j._validate(dspy.Prediction(score=raw, confidence=0.5, failure_tags=[], rationale="r"), attempts=1)
    assert verdict.score == 4


def test_a_case_without_an_answer_scores_lowest_without_asking_the_model(scripted):
    crashed = CaseResult(case_id="reg-001", output=None, error="timeout after 900 s")
    verdict = judge().judge_case(CASE, crashed)
    assert (verdict.status, verdict.score, verdict.passed, verdict.failure_tags) == ("verdict", 1, False, ["no_answer"])
    assert judge(SAFETY).judge_case(CASE, crashed).passed is True
    assert scripted.calls == []
