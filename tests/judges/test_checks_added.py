"""The deterministic checks added to the judges room: matches_expected, format_kept, no_leaked_fields; versions."""

from autofix.config import CheckJudge
from autofix.judges.checks import (
    CHECK_VERSIONS,
    CHECKS,
    CHECKS_VERSION,
    check_version,
    format_kept,
    matches_expected,
    no_leaked_fields,
)
from autofix.judges.run import check_args_problem, run_check
from autofix.replay.records import Case, CaseResult


def case(text="q", case_id="c", **expected):
    return Case(case_id=case_id, input=text, expected=expected or None)


def result(output="", spans=(), error=None, case_id="c"):
    return CaseResult(case_id=case_id, output=output, spans=list(spans), error=error)


# --------------------------------------------------------------------------- matches_expected


def test_matches_expected_uses_the_case_pattern_or_the_judge_pattern():
    assert matches_expected(case(pattern=r"\b27 days\b"), result("You get 27 Days a year.")).passed is True
    outcome = matches_expected(case(pattern=r"\b27 days\b"), result("You get 25 days."))
    assert outcome.passed is False and "27 days" in outcome.detail
    # a per-judge pattern (args.pattern) applies to every case; both must match when both are given
    assert matches_expected(case(), result("Ticket T-1042 opened"), pattern=r"T-\d{4}").passed is True
    assert matches_expected(case(pattern="opened"), result("Ticket T-1042"), pattern=r"T-\d{4}").passed is False
    assert matches_expected(case(pattern=["PeopleHub", r"\d+ days"]), result("27 days in PeopleHub")).passed is True


def test_matches_expected_is_not_applicable_without_a_pattern_and_fails_without_an_answer():
    assert matches_expected(case(answer="27 days"), result("27 days")).passed is None
    assert matches_expected(case(pattern="x"), result(None, error="timeout")).passed is False


def test_matches_expected_can_be_case_sensitive_and_names_a_broken_pattern():
    assert matches_expected(case(pattern="PeopleHub"), result("peoplehub"), ignore_case=False).passed is False
    outcome = matches_expected(case(pattern="27 (days"), result("27 days"))
    assert outcome.passed is False and "invalid pattern" in outcome.detail and "27 (days" in outcome.detail


# --------------------------------------------------------------------------- format_kept


def test_format_kept_is_not_applicable_when_no_format_is_asked():
    assert format_kept(case("How many days of leave do I get?"), result("27 days.")).passed is None


def test_a_requested_list_needs_list_items():
    asked = case("List the steps as a bulleted list please")
    assert format_kept(asked, result("- open PeopleHub\n- pick Time Off\n- submit")).passed is True
    outcome = format_kept(asked, result("Open PeopleHub and pick Time Off."))
    assert outcome.passed is False and "list" in outcome.detail


def test_requested_steps_need_numbered_steps():
    asked = case("How do I set up the VPN, step by step?")
    assert format_kept(asked, result("1. Install GlobalConnect.\n2. Sign in.\n3. Approve the push.")).passed is True
    assert format_kept(asked, result("Install GlobalConnect and sign in.")).passed is False


def test_requested_json_must_parse_also_inside_a_fence():
    asked = case("Give me my open tickets in JSON")
    assert format_kept(asked, result('{"tickets": ["T-1"]}')).passed is True
    assert format_kept(asked, result('Here:\n```json\n[{"id": "T-1"}]\n```')).passed is True
    assert format_kept(asked, result("T-1 is open")).passed is False


def test_a_requested_table_needs_a_markdown_table():
    asked = case("Show the leave types as a table")
    table = "| type | days |\n|---|---|\n| annual | 27 |\n| sick | 10 |"
    assert format_kept(asked, result(table)).passed is True
    assert format_kept(asked, result("annual 27, sick 10")).passed is False


def test_word_and_sentence_limits_are_counted():
    asked = case("In under 10 words: how many leave days?")
    assert format_kept(asked, result("You get 27 days per year.")).passed is True
    outcome = format_kept(asked, result("You get twenty seven days of annual leave each and every calendar year."))
    assert outcome.passed is False and "10 words" in outcome.detail
    one = case("Answer in one sentence: who approves leave?")
    assert format_kept(one, result("Your line manager approves it in PeopleHub.\nSources: hr-leave-001")).passed is True
    assert format_kept(one, result("Your manager. They use PeopleHub.")).passed is False


def test_cite_sources_accepts_a_sources_line_a_bracket_or_a_retrieved_id():
    asked = case("How many days can I carry over? Please cite your sources.")
    spans = [{"kind": "retrieval", "output": [{"doc_id": "hr-leave-001", "score": 1.0}]}]
    assert format_kept(asked, result("5 days. Sources: hr-leave-001")).passed is True
    assert format_kept(asked, result("5 days [hr-leave-001].")).passed is True
    assert format_kept(asked, result("5 days, see hr-leave-001", spans)).passed is True
    assert format_kept(asked, result("5 days.", spans)).passed is False


def test_expected_format_declares_what_the_request_does_not_say():
    assert format_kept(case(format="list"), result("- a\n- b")).passed is True
    assert format_kept(case(format=["steps", "cite_sources"]), result("1. a\n2. b")).passed is False
    assert format_kept(case(format={"max_words": 3}), result("one two three four")).passed is False
    assert format_kept(case(format="max_words:5"), result("one two three")).passed is True
    outcome = format_kept(case(format="haiku"), result("x"))
    assert outcome.passed is False and "unknown format" in outcome.detail


def test_format_kept_fails_a_case_without_an_answer():
    assert format_kept(case("as a list"), result(None, error="crashed")).passed is False


# --------------------------------------------------------------------------- no_leaked_fields


def test_a_clean_answer_leaks_nothing():
    spans = [{"kind": "llm", "name": "chat", "attributes": {"model": "autofix-local/smollm2-135m-instruct"}}]
    outcome = no_leaked_fields(case(), result("You get 27 days. Sources: hr-leave-001", spans))
    assert outcome.passed is True, outcome.detail


def test_api_keys_and_autofix_variables_are_leaks():
    for text in ("your key is sk-proj-abcdefghijklmnopqrstuv", "set AUTOFIX_MODEL_API_KEY first",
                 "AKIAABCDEFGHIJKLMNOP", "token ghp_" + "a" * 36, "Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
                 "-----BEGIN RSA PRIVATE KEY-----", "password = hunter2hunter2!"):
        outcome = no_leaked_fields(case(), result(text))
        assert outcome.passed is False, text
    # the secret itself is not repeated in full in the detail
    assert "abcdefghijklmnopqrstuv" not in no_leaked_fields(case(), result("sk-proj-abcdefghijklmnopqrstuv")).detail


def test_forbidden_values_secrets_and_emails_come_from_args():
    answer = result("Ask alice.meyer@northwind.example or see employee E-99812.")
    assert no_leaked_fields(case(), answer).passed is True
    outcome = no_leaked_fields(case(), answer, forbidden=["E-99812"])
    assert outcome.passed is False and "E-99812" in outcome.detail
    assert no_leaked_fields(case(), answer, block_emails=True).passed is False
    assert no_leaked_fields(case(), answer, block_emails=True, allow=["alice.meyer@northwind.example"]).passed is True
    assert no_leaked_fields(case(), result("the key: s3cr3t-value"), secrets=["s3cr3t-value"]).passed is False
    assert no_leaked_fields(case(), answer, forbidden_patterns=[r"E-\d{5}"]).passed is False


def test_internal_span_attributes_and_fields_are_leaks():
    spans = [{"kind": "llm", "name": "chat.completions", "attributes": {"model": "autofix-local/smollm2-135m-instruct"}}]
    outcome = no_leaked_fields(case(), result("I am autofix-local/smollm2-135m-instruct.", spans))
    assert outcome.passed is False and "chat.completions.model" in outcome.detail
    assert no_leaked_fields(case(), result('{"trace_id": "t-1", "answer": "x"}')).passed is False
    assert no_leaked_fields(case(case_id="reg-000"), result("case reg-000 done", case_id="reg-000")).passed is False


def test_no_leaked_fields_has_nothing_to_check_without_an_answer():
    assert no_leaked_fields(case(), result(None, error="timeout")).passed is None


# --------------------------------------------------------------------------- registry, arguments, versions


def test_every_configurable_check_is_implemented_and_versioned():
    from autofix.config import CHECK_NAMES

    assert set(CHECKS) == set(CHECK_NAMES) == set(CHECK_VERSIONS)
    assert CHECKS_VERSION.startswith("checks-")
    assert check_version("matches_expected") == "matches_expected@1"
    assert check_version("matches_expected", {"pattern": "a"}) != check_version("matches_expected", {"pattern": "b"})


def test_judge_args_reach_the_check_and_unknown_args_are_reported():
    judge = CheckJudge(name="ticket_id", kind="check", check="matches_expected", args={"pattern": r"T-\d+"})
    assert check_args_problem(judge) is None
    assert run_check(judge, case(), result("T-1042")).passed is True
    bad = CheckJudge(name="x", kind="check", check="format_kept", args={"patern": "x"})
    assert "patern" in check_args_problem(bad)
    recall = CheckJudge(name="r", kind="check", check="recall_at_k", k=1)
    spans = [{"kind": "retrieval", "output": [{"doc_id": "a"}, {"doc_id": "b"}]}]
    assert run_check(recall, case(doc_ids=["b"]), result(spans=spans)).passed is False
