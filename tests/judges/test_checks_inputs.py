"""Checks on inputs as they come: `expected.must_not_include`, and tool schemas under any usual attribute name.
Cases of a travel agent and a code-review bot, not the helpdesk's."""

import json

from autofix.judges.checks import CHECK_VERSIONS, contains_expected, tool_args_valid
from autofix.replay.records import Case, CaseResult

FLIGHT = {"type": "object", "properties": {"origin": {"type": "string", "pattern": "^[A-Z]{3}$"}}, "required": ["origin"]}


def case(**expected):
    return Case(case_id="trip-1", input="Fly me from Lyon", expected=expected or None)


def result(output="", spans=(), error=None):
    return CaseResult(case_id="trip-1", output=output, spans=list(spans), error=error)


def tool(args, **attributes):
    return {"kind": "tool", "name": "search_flights", "input": args, "attributes": attributes}


def test_an_answer_quoting_a_superseded_value_fails_and_names_it():
    c = case(must_include=["LYS"], must_not_include=["baggage fee 25 EUR", "Terminal 2"])
    outcome = contains_expected(c, result("From LYS, terminal 2; the baggage fee is 30 EUR."))
    assert outcome.passed is False
    assert outcome.detail == "contains ['Terminal 2'], which expected.must_not_include rules out"
    both = contains_expected(c, result("From CDG: baggage fee 25 eur"))
    assert both.passed is False and both.detail.startswith("missing ['LYS']; contains ['baggage fee 25 EUR']")
    good = contains_expected(c, result("From LYS, terminal 1, baggage fee 30 EUR."))
    assert good.passed is True and good.detail == "all expected strings present, none of must_not_include"


def test_must_not_include_alone_is_checked_and_a_single_string_is_allowed():
    assert contains_expected(case(must_not_include="v1 API"), result("Use the v2 API.")).passed is True
    outcome = contains_expected(case(must_not_include="v1 API"), result("Use the V1 api."))
    assert outcome.passed is False and "v1 API" in outcome.detail
    assert contains_expected(case(must_not_include=["v1 API"]), result(None, error="timeout")).passed is False
    assert contains_expected(case(), result("anything")).passed is None


def test_tool_args_valid_reads_the_schema_where_triage_reads_it():
    wrapped = {"type": "function", "function": {"name": "search_flights", "parameters": FLIGHT}}
    for attributes in ({"json_schema": FLIGHT}, {"schema": FLIGHT}, {"parameters": FLIGHT},
                       {"json_schema": json.dumps(wrapped)}, {"tool.json_schema": json.dumps(wrapped)}):
        assert tool_args_valid(case(), result(spans=[tool({"origin": "LYS"}, **attributes)])).passed is True, attributes
        bad = tool_args_valid(case(), result(spans=[tool({"origin": "Lyon"}, **attributes)]))
        assert bad.passed is False and bad.detail.startswith("search_flights: origin: 'Lyon' does not match"), attributes


def test_tool_args_valid_without_a_schema_says_where_it_looked():
    outcome = tool_args_valid(case(), result(spans=[tool({"origin": "LYS"}, parameters={"origin": "LYS"})]))
    assert outcome.passed is False
    assert outcome.detail == "search_flights: no argument schema on the tool span (attribute json_schema, schema or parameters)"


def test_the_changed_checks_have_new_versions():
    assert CHECK_VERSIONS["contains_expected"] == 2 and CHECK_VERSIONS["tool_args_valid"] == 2
