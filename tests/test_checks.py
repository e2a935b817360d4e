from autofix.judges.checks import citations_in_expected, contains_expected, recall_at_k, tool_args_valid
from autofix.replay.records import Case, CaseResult

SCHEMA = {"type": "object", "properties": {"since": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}},
          "required": ["since"]}


def case(**expected):
    return Case(case_id="c", input="q", expected=expected or None)


def result(output="", spans=(), error=None):
    return CaseResult(case_id="c", output=output, spans=list(spans), error=error)


def retrieval(*doc_ids):
    return {"kind": "retrieval", "name": "search", "output": [{"doc_id": d, "score": 1.0} for d in doc_ids]}


def test_contains_expected_is_case_insensitive_and_names_what_is_missing():
    assert contains_expected(case(must_include=["27 days"]), result("You get 27 Days.")).passed is True
    outcome = contains_expected(case(must_include=["27 days", "PeopleHub"]), result("27 days"))
    assert outcome.passed is False and "PeopleHub" in outcome.detail
    assert contains_expected(case(), result("anything")).passed is None
    assert contains_expected(case(must_include=["x"]), result(None, error="timeout")).passed is False


def test_recall_at_k_counts_distinct_documents_in_rank_order():
    spans = [retrieval("a", "a", "b", "c")]
    assert recall_at_k(case(doc_ids=["c"]), result(spans=spans), k=3).passed is True
    assert recall_at_k(case(doc_ids=["c"]), result(spans=spans), k=2).passed is False
    assert recall_at_k(case(doc_ids=[]), result(spans=spans)).passed is None


def test_citations_need_an_expected_document_named_in_the_answer():
    spans = [retrieval("hr-leave-001", "hr-leave-2023")]
    assert citations_in_expected(case(doc_ids=["hr-leave-001"]), result("27 days. Sources: hr-leave-001", spans)).passed
    assert not citations_in_expected(case(doc_ids=["hr-leave-001"]), result("27 days.", spans)).passed
    assert not citations_in_expected(case(doc_ids=["hr-leave-001"]), result("Sources: hr-leave-2023", spans)).passed
    # a longer id that merely starts with the expected one is not a citation of it
    assert not citations_in_expected(case(doc_ids=["hr-leave"]), result("see hr-leave-2023", [retrieval("hr-leave")])).passed


def test_tool_args_are_validated_against_the_span_schema():
    good = {"kind": "tool", "name": "list_tickets", "input": {"since": "2026-11-16"}, "attributes": {"json_schema": SCHEMA}}
    bad = {**good, "input": {"since": "16/11/2026"}}
    unknown = {"kind": "tool", "name": "x", "input": {}, "attributes": {}}
    assert tool_args_valid(case(), result(spans=[good])).passed is True
    outcome = tool_args_valid(case(), result(spans=[good, bad]))
    assert outcome.passed is False and "since" in outcome.detail and "16/11/2026" in outcome.detail
    assert tool_args_valid(case(), result(spans=[unknown])).passed is False
    assert tool_args_valid(case(), result(spans=[retrieval("a")])).passed is None
