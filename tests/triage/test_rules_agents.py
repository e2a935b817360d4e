"""The rules on traces of another shape than the helpdesk's: an airline (and a retail) tool-calling agent with
many llm and tool steps, its own tool names, OTel-style hex span ids, no chain span, mostly no router span, no
task_type. What the rules may know of the target comes from its `autofix.yaml` (`TargetKnowledge`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from autofix.config.target import TriageConfig
from autofix.config.triage_knowledge import DocumentConventions, RuleSettings, ToolErrorWording, TriageVocabulary
from autofix.triage import DetectionSettings, TargetKnowledge, TriageContext, detect, diagnose, extract_facts, triage_traces
from autofix.triage.records import Category, Diagnosis
from autofix.triage.voting import rule_refs

REWARD_OK = [{"name": "reward", "value": 1.0, "source": "tau-bench"}]
REWARD_FAIL = [{"name": "reward", "value": 0.0, "source": "tau-bench"}]
THUMB = [{"kind": "thumb_down", "value": -1}]


def _calls(ab, *tools: tuple[str, dict[str, Any], Any]) -> list[dict[str, Any]]:  # noqa: ANN001
    """An llm step before each tool call and one at the end: the agent's loop."""
    steps = []
    for name, args, out in tools:
        steps.append(ab.llm({"tool_calls": [{"name": name, "arguments": args}]}))
        steps.append(ab.tool(name, args, out))
    steps.append(ab.llm("All set."))
    return steps


def airline_background(ab, n: int = 12, code: str = "v1") -> list[dict[str, Any]]:  # noqa: ANN001
    """Healthy airline-agent conversations (reward 1) over the agent's tools."""
    shapes = [
        ("Check my reservation ZFA04Y please", [("get_user_details", {"user_id": "mia_li_3668"}, {"reservations": ["ZFA04Y"]}),
                                                 ("get_reservation_details", {"reservation_id": "ZFA04Y"}, {"status": "booked"})]),
        ("Find a direct flight from JFK to SEA on 2024-05-20", [("search_direct_flight",
                                                                 {"origin": "JFK", "destination": "SEA", "date": "2024-05-20"},
                                                                 [{"flight_number": "HAT069"}])]),
        ("Cancel reservation EHGLP3, my plans changed", [("get_reservation_details", {"reservation_id": "EHGLP3"}, {"status": "booked"}),
                                                         ("cancel_reservation", {"reservation_id": "EHGLP3"}, {"status": "cancelled"})]),
        ("Move my flight on reservation 4WQ150 to the next day", [("update_reservation_flights",
                                                                   {"reservation_id": "4WQ150", "cabin": "economy"},
                                                                   {"status": "updated"})]),
        ("Book the HAT069 flight for me and my husband", [("book_reservation", {"flight": "HAT069", "passengers": 2},
                                                            {"reservation_id": "K1NW8N"})]),
        ("I want to talk to a person", [("transfer_to_human_agents", {"summary": "wants a person"}, "transferred")]),
    ]
    out = []
    for k in range(n):
        request, tools = shapes[k % len(shapes)]
        out.append(ab.build(f"air-{code}-{k:03d}", request, _calls(ab, *tools), answer="All set.", scores=REWARD_OK,
                            versions={"model": "gpt-4o", "code": code}, at=ab.T0 + timedelta(minutes=k)))
    return out


def agent_context(ab, traces: list[dict[str, Any]], knowledge: TargetKnowledge | None = None) -> TriageContext:  # noqa: ANN001
    ctx = TriageContext(knowledge) if knowledge is not None else TriageContext()
    for t in traces:
        ctx.observe(ab.trace(t))
    return ctx.prepare()


def agent_run(ab, t: dict[str, Any], background: list[dict[str, Any]] | None = None,  # noqa: ANN001
              knowledge: TargetKnowledge | None = None) -> Diagnosis | None:
    bg = airline_background(ab) if background is None else background
    ctx = agent_context(ab, [*bg, t], knowledge)
    trace = ab.trace(t)
    det = detect(trace, DetectionSettings(knowledge=ctx.knowledge))
    assert det.failed, "the trace is no failure"
    return diagnose(trace, ctx, det.signals)


def knowledge(**triage: Any) -> TargetKnowledge:
    return TargetKnowledge.from_config(TriageConfig(**triage))


DEPARTED = "Error: reservation cannot be cancelled: the flight has already departed"


def _refused(ab, tid: str = "air-x1", **kw: Any) -> dict[str, Any]:  # noqa: ANN001
    steps = [ab.llm({"tool_calls": [{"name": "get_reservation_details"}]}),
             ab.tool("get_reservation_details", {"reservation_id": "SDZQKO"}, {"status": "flown", "flights": ["HAT045"]}),
             ab.llm({"tool_calls": [{"name": "cancel_reservation"}]}),
             ab.tool("cancel_reservation", {"reservation_id": "SDZQKO"}, None, DEPARTED),
             ab.llm("I'm sorry, the reservation could not be cancelled.")]
    return ab.build(tid, "Please cancel my reservation SDZQKO and refund it", steps,
                    answer="I'm sorry, the reservation could not be cancelled.", **kw)


# ----------------------------------------------------------------------------- errors


def test_a_business_rule_refusal_is_a_prompt_cause_not_infrastructure(ab) -> None:
    # (the rule first said routing; it now says prompt: the instructions must state the rule or check it first)
    t = _refused(ab, scores=REWARD_FAIL)
    d = agent_run(ab, t)
    cancel = ab.span_id("air-x1", 3)
    assert (d.category, d.rule, d.method) == (Category.prompt, "tool_rejected_by_business_rule", "rule"), d.rationale
    assert d.evidence == [cancel] and cancel in d.rationale and "cancel_reservation" in d.rationale
    assert "already departed" in d.rationale
    assert Category.infrastructure not in {a.category for a in d.alternatives}


def test_a_refusal_the_agent_handled_is_no_failure(ab) -> None:
    # the outcome passed: the agent told the user it could not be done
    det = detect(ab.trace(_refused(ab, scores=REWARD_OK)), DetectionSettings())
    assert not det.failed


def test_an_error_the_agent_recovered_from_is_no_signal_and_no_cause(ab) -> None:
    steps = [ab.llm({"tool_calls": [{"name": "search_direct_flight"}]}),
             ab.tool("search_direct_flight", {"origin": "JFK", "destination": "SEA"}, None, "503 Service Unavailable"),
             ab.llm("", error="TimeoutError: upstream timed out"),
             ab.llm({"tool_calls": [{"name": "search_direct_flight"}]}),
             ab.tool("search_direct_flight", {"origin": "JFK", "destination": "SEA"}, [{"flight_number": "HAT069"}]),
             ab.llm("HAT069 leaves at 06:00.")]
    t = ab.build("air-r1", "Find me a direct flight from JFK to SEA tomorrow", steps, answer="HAT069 leaves at 06:00.")
    det = detect(ab.trace(t), DetectionSettings())
    assert det.signals == []
    f = extract_facts(ab.trace(t))
    assert [x.recovered for x in f.tools] == [True, False] and f.errors == () and f.steps == 6
    t["feedback"] = THUMB  # the user is unhappy for another reason: the recovered errors are still no cause
    d = agent_run(ab, t)
    assert d is None or Category.infrastructure not in {d.category, *(a.category for a in d.alternatives)}


def test_a_tool_error_of_unknown_wording_stays_unclassified_with_a_hint(ab) -> None:
    steps = [ab.llm({"tool_calls": [{"name": "update_reservation_flights"}]}),
             ab.tool("update_reservation_flights", {"reservation_id": "4WQ150", "cabin": "economy"}, None,
                     "E4471: PNR locked by another agent"),
             ab.llm("Something went wrong.")]
    t = ab.build("air-u1", "Move my flight on reservation 4WQ150 to Friday", steps, answer="Something went wrong.",
                 scores=REWARD_FAIL)
    report = triage_traces([ab.trace(x) for x in [*airline_background(ab), t]])
    d = report.diagnosis_of("air-u1")
    assert (d.category, d.method) == (Category.unclassified, "none")
    assert "triage.tool_errors" in d.rationale and "E4471" in d.rationale and ab.span_id("air-u1", 1) in d.rationale
    # the target declares its own wording: the same trace is an infrastructure failure
    k = knowledge(tool_errors=ToolErrorWording(infrastructure=["default", r"\bPNR locked\b"]))
    report = triage_traces([ab.trace(x) for x in [*airline_background(ab), t]], DetectionSettings(knowledge=k))
    d = report.diagnosis_of("air-u1")
    assert (d.category, d.rule) == (Category.infrastructure, "infrastructure_error")


def test_a_declared_business_wording_makes_it_a_refusal(ab) -> None:
    steps = [ab.llm({"tool_calls": [{"name": "book_reservation"}]}),
             ab.tool("book_reservation", {"flight": "HAT069", "passengers": 2}, None, "FARE_RULE_17: basic economy is non-changeable"),
             ab.llm("Booking failed.")]
    t = ab.build("air-b1", "Book HAT069 for two", steps, answer="Booking failed.", scores=REWARD_FAIL)
    d = agent_run(ab, t)
    assert d.category == Category.unclassified
    k = knowledge(tool_errors=ToolErrorWording(business=[r"^FARE_RULE_\d+"]))
    d = agent_run(ab, t, knowledge=k)
    assert (d.category, d.rule) == (Category.prompt, "tool_rejected_by_business_rule")


def test_a_tool_failing_since_a_code_version_is_tool_arguments(ab) -> None:
    broken = []
    for k in range(6):
        steps = [ab.llm({"tool_calls": [{"name": "update_reservation_flights"}]}),
                 ab.tool("update_reservation_flights", {"reservation_id": f"R{k}", "cabin": "economy"}, None, "KeyError: 'payment_id'"),
                 ab.llm("I could not change the flight.")]
        broken.append(ab.build(f"air-v2-{k}", "Move my flight to Friday", steps, answer="I could not change the flight.",
                               scores=REWARD_FAIL, versions={"model": "gpt-4o", "code": "v2"},
                               at=ab.T0 + timedelta(hours=2, minutes=k)))
    traces = [*airline_background(ab, 36, "v1"), *broken]  # update_reservation_flights works 6 times under v1
    report = triage_traces([ab.trace(x) for x in traces])
    assert report.failures == 6
    for t in broken:
        d = report.diagnosis_of(t["trace_id"])
        assert (d.category, d.rule) == (Category.tool_arguments, "tool_fails_since_version"), d.rationale
        assert "code 'v2'" in d.rationale and "6 of 6" in d.rationale and "0 of 6" in d.rationale
        assert d.evidence == [ab.span_id(t["trace_id"], 1)]


def test_a_tool_failing_under_every_version_is_not_a_version_regression(ab) -> None:
    traces = []
    for k in range(12):
        code = "v1" if k < 6 else "v2"
        steps = [ab.llm({"tool_calls": [{"name": "update_reservation_flights"}]}),
                 ab.tool("update_reservation_flights", {"reservation_id": f"R{k}"}, None, "KeyError: 'payment_id'"),
                 ab.llm("I could not change the flight.")]
        traces.append(ab.build(f"air-all-{k}", "Move my flight to Friday", steps, scores=REWARD_FAIL,
                               versions={"model": "gpt-4o", "code": code}, at=ab.T0 + timedelta(minutes=k)))
    report = triage_traces([ab.trace(x) for x in [*airline_background(ab), *traces]])
    assert {report.diagnosis_of(t["trace_id"]).category for t in traces} == {Category.unclassified}


# ----------------------------------------------------------------------------- expected actions


def test_a_skipped_expected_action_is_routing(ab) -> None:
    steps = _calls(ab, ("get_user_details", {"user_id": "raj_sanchez_7340"}, {"reservations": ["Q69X3R"]}),
                   ("get_reservation_details", {"reservation_id": "Q69X3R"}, {"status": "booked"}))
    expected = [{"name": "get_reservation_details", "arguments": {"reservation_id": "Q69X3R"}},
                {"name": "cancel_reservation", "arguments": {"reservation_id": "Q69X3R"}}]
    t = ab.build("air-a1", "Cancel my trip to Boston", steps, answer="Your reservation is booked.", scores=REWARD_FAIL,
                 metadata={"expected_actions": expected})
    d = agent_run(ab, t)
    assert (d.category, d.rule) == (Category.routing, "actions_differ_from_expected"), d.rationale
    assert "'cancel_reservation'" in d.rationale and "never called" in d.rationale
    assert d.evidence == [ab.span_id("air-a1", 3)]  # the last call the agent made


def test_an_expected_action_with_another_argument_is_tool_arguments(ab) -> None:
    steps = _calls(ab, ("get_reservation_details", {"reservation_id": "4WQ150"}, {"cabin": "economy"}),
                   ("update_reservation_flights", {"reservation_id": "4WQ150", "cabin": "business", "payment_id": "gift_card_1"},
                    {"status": "updated"}))
    expected = [{"name": "get_reservation_details", "arguments": {"reservation_id": "4WQ150"}},
                {"name": "update_reservation_flights",
                 "arguments": {"reservation_id": "4WQ150", "cabin": "economy", "payment_id": "gift_card_1"}}]
    t = ab.build("air-a2", "Move reservation 4WQ150 to the day after, same cabin", steps, scores=REWARD_FAIL,
                 metadata={"expected_actions": expected})
    d = agent_run(ab, t)
    assert (d.category, d.rule) == (Category.tool_arguments, "actions_differ_from_expected"), d.rationale
    span = ab.span_id("air-a2", 3)
    assert d.evidence == [span] and span in d.rationale
    assert 'cabin="business" (expected "economy")' in d.rationale and "payment_id" not in d.rationale


def test_the_expected_actions_taken_as_expected_say_nothing(ab) -> None:
    steps = _calls(ab, ("cancel_reservation", {"reservation_id": "Q69X3R"}, {"status": "cancelled"}))
    t = ab.build("air-a3", "Cancel Q69X3R", steps, scores=REWARD_FAIL,
                 metadata={"expected_actions": [{"name": "cancel_reservation", "arguments": {"reservation_id": "q69x3r "}}]})
    d = agent_run(ab, t)
    assert d is None or d.rule != "actions_differ_from_expected"


# ----------------------------------------------------------------------------- planning


POLICY_KB = [
    ("pol-7f2a", "Travel reimbursement limits: hotels up to 150 EUR per night and meals up to 40 EUR per day; "
                 "claims above a limit need a director's sign-off."),
    ("pol-19c4", "Parental leave: sixteen weeks fully paid; notify the people team eight weeks ahead."),
    ("pol-a310", "Laptop refresh: engineers receive a new laptop every three years through the IT portal."),
    ("pol-5be8", "Corporate cards: settle statements monthly in Spendly and attach receipts."),
    ("pol-c0d9", "Office access: badges are activated by security at the front desk on your first day."),
    ("pol-e4b1", "Remote work: up to three days a week from home with your manager's agreement."),
]


def policy_background(ab, n: int = 12) -> list[dict[str, Any]]:  # noqa: ANN001
    """Healthy traces of an internal policy assistant that searches its handbook."""
    out = []
    for k in range(n):
        did, text = POLICY_KB[k % len(POLICY_KB)]
        steps = [ab.router({"decision": "retrieve", "rationale": "policy question"}),
                 ab.search("handbook.vector", text[:30], [{"doc_id": did, "score": 0.83, "text": text}]),
                 ab.llm(f"{text} ({did})")]
        out.append(ab.build(f"pol-bg-{k}", f"What does the policy say? ({text[:25]})", steps, answer=text,
                            feedback=[{"kind": "thumb_up", "value": 1}], at=ab.T0 + timedelta(minutes=k)))
    return out


def test_an_instruction_answered_without_the_knowledge_it_names_is_routing(ab) -> None:
    steps = [ab.router({"decision": "direct_answer", "rationale": "writing task, no lookup needed"}),
             ab.llm("Hi team, travel costs are reimbursed in full.")]
    t = ab.build("pol-t1", "Draft an email to my team about the travel reimbursement limits", steps,
                 answer="Hi team, travel costs are reimbursed in full.", feedback=THUMB)
    d = agent_run(ab, t, policy_background(ab))
    router = ab.span_id("pol-t1", 0)
    assert (d.category, d.rule) == (Category.routing, "answered_without_retrieval"), d.rationale
    assert router in d.rationale and "writing task, no lookup needed" in d.rationale and "'direct_answer'" in d.rationale
    assert "'reimbursement'" in d.rationale and "'travel'" in d.rationale
    assert d.evidence == [router, ab.span_id("pol-t1", 1)]


def test_missing_capability_in_an_agent_that_has_other_tools(ab) -> None:
    steps = [ab.llm("I'm sorry, I cannot do that; please contact the airport's special assistance desk.")]
    t = ab.build("air-m1", "Please order a wheelchair at the gate for my mother", steps,
                 answer="I'm sorry, I cannot do that; please contact the airport's special assistance desk.", feedback=THUMB)
    d = agent_run(ab, t)
    assert (d.category, d.rule) == (Category.missing_capability, "missing_capability"), d.rationale
    assert "cancel_reservation" in d.rationale and "book_reservation" in d.rationale  # tools it does have
    assert d.confidence >= 0.8 and d.evidence == [ab.span_id("air-m1", 0)]
    # a request one of its tools serves (cancel_reservation) is not a missing capability
    t2 = ab.build("air-m2", "Please cancel my reservation for me", steps, answer=t["output"]["content"], feedback=THUMB)
    d2 = agent_run(ab, t2)
    assert d2 is None or d2.category != Category.missing_capability


def test_a_lookup_on_the_way_does_not_hide_a_missing_capability(ab) -> None:
    decline = "I'm sorry, I cannot do that; please contact the airport's special assistance desk."
    steps = [ab.tool("get_user_details", {"user_id": "mia_li_3668"}, {"membership": "gold"}), ab.llm(decline)]
    t = ab.build("air-m3", "Please order a wheelchair at the gate for my mother", steps, answer=decline, feedback=THUMB)
    d = agent_run(ab, t)
    assert (d.category, d.rule) == (Category.missing_capability, "missing_capability"), d.rationale


# ----------------------------------------------------------------------------- the target's vocabulary and rules


def _retail(ab, tid: str, comment: str) -> dict[str, Any]:  # noqa: ANN001
    docs = [{"doc_id": "9b1d", "score": 12.1, "text": "Rückgabe innerhalb von 30 Tagen mit Kassenbon."}]
    steps = [ab.search("produkt_faq", "Rückgabe Frist", docs), ab.llm("Sie können innerhalb von 30 Tagen zurückgeben.")]
    return ab.build(tid, "Wie lange kann ich Ware zurückgeben?", steps, answer="Sie können innerhalb von 30 Tagen zurückgeben.",
                    feedback=[{"kind": "comment", "comment": comment}], versions={"prompt": "de-3"})


def test_a_declared_vocabulary_makes_a_german_source_request_a_prompt_cause(ab) -> None:
    t = _retail(ab, "de-1", "Woher stammt diese Information? Bitte Quelle angeben.")
    report = triage_traces([ab.trace(t)])
    assert report.failures == 0  # the neutral English defaults do not read German
    k = knowledge(vocabulary=TriageVocabulary(source_requests=["default", r"\bwoher (stammt|kommt)\b", r"\bquellen?\b"]))
    report = triage_traces([ab.trace(t)], DetectionSettings(knowledge=k))
    assert report.failures == 1
    d = report.diagnosis_of("de-1")
    assert (d.category, d.rule) == (Category.prompt, "requested_format_missing"), d.rationale
    assert "Woher stammt" in d.rationale and ab.span_id("de-1", 1) in d.rationale


def test_a_disabled_rule_does_not_run(ab) -> None:
    t = _refused(ab, scores=REWARD_FAIL)
    k = knowledge(rules=RuleSettings(disable=["tool_rejected_by_business_rule"]))
    assert "tool_rejected_by_business_rule@1" not in rule_refs(k.disabled_rules)
    assert "tool_rejected_by_business_rule@1" in rule_refs()
    d = agent_run(ab, t, knowledge=k)
    assert d is None or d.rule != "tool_rejected_by_business_rule"
    report = triage_traces([ab.trace(x) for x in [*airline_background(ab), t]], DetectionSettings(knowledge=k))
    assert report.diagnosis_of("air-x1").category == Category.unclassified
    assert not any(r.startswith("tool_rejected_by_business_rule") for r in report.rules)


# ----------------------------------------------------------------------------- freshness in item metadata


def _returns_doc(doc_id: str, score: float, text: str, **meta: Any) -> dict[str, Any]:
    return {"doc_id": doc_id, "score": score, "text": text, "metadata": {"source": "zendesk", **meta}}


def _retail_bg(ab, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:  # noqa: ANN001
    return [ab.build(f"shop-bg-{i}", "What is the return window?", [ab.search("kb.hybrid", "return window", [d]), ab.llm("ok")],
                     answer="ok", feedback=[{"kind": "thumb_up", "value": 1}]) for i, d in enumerate(docs)]


def test_a_deprecated_document_in_the_items_metadata_is_stale(ab) -> None:
    docs = [_returns_doc("a8f1e2", 0.91, "Items can be returned within 14 days of delivery.", status="Deprecated",
                         title="Return window"),
            _returns_doc("c77d10", 0.74, "Items can be returned within 30 days of delivery.", status="published",
                         title="Return window (2026)")]
    t = ab.build("shop-1", "How many days do I have to return an item after delivery?",
                 [ab.search("kb.hybrid", "return days", docs), ab.llm("You have 14 days.")], answer="You have 14 days.",
                 feedback=THUMB)
    d = agent_run(ab, t, [])
    span = ab.span_id("shop-1", 0)
    assert (d.category, d.rule) == (Category.data_freshness, "stale_document"), d.rationale
    assert "'a8f1e2'" in d.rationale and "'deprecated'" in d.rationale and span in d.rationale and d.evidence == [span]


def test_an_older_version_by_title_and_date_in_the_items_metadata_is_stale(ab) -> None:
    old = _returns_doc("a8f1e2", 0.91, "Items can be returned within 14 days of delivery.", title="Return window",
                       effective_date="2024-02-01")
    new = _returns_doc("c77d10", 0.88, "Items can be returned within 30 days of delivery.", title="Return window",
                       effective_date="2026-02-01")
    t = ab.build("shop-2", "How many days do I have to return an item after delivery?",
                 [ab.search("kb.hybrid", "return days", [old]), ab.llm("You have 14 days.")], answer="You have 14 days.",
                 feedback=THUMB)
    d = agent_run(ab, t, _retail_bg(ab, [new]))
    assert (d.category, d.rule) == (Category.data_freshness, "stale_document"), d.rationale
    assert "'c77d10'" in d.rationale and "dated 2026-02-01 against 2024-02-01" in d.rationale
    assert "was not retrieved" in d.rationale and d.confidence == 0.7
    # a target whose documents carry their date in another field declares it
    k = knowledge(documents=DocumentConventions(date_fields=["valid_since"]))
    for x in (old, new):
        x["metadata"]["valid_since"] = x["metadata"].pop("effective_date")
    d = agent_run(ab, t, _retail_bg(ab, [new]))
    assert d is None or d.category != Category.data_freshness
    d = agent_run(ab, t, _retail_bg(ab, [new]), knowledge=k)
    assert (d.category, d.rule) == (Category.data_freshness, "stale_document")


def test_an_answer_cut_at_the_token_limit_is_a_model_limitation(ab) -> None:
    loop = "Please contact the desk. " * 30
    cut = {**ab.llm(loop), "attributes": {"gen_ai.response.finish_reasons": ["length"], "gen_ai.usage.output_tokens": 512}}
    t = ab.build("air-cut", "What is the checked bag allowance on basic economy?", [cut], answer=loop, feedback=THUMB)
    d = agent_run(ab, t)
    sid = ab.span_id("air-cut", 0)
    assert (d.category, d.rule, d.evidence) == (Category.model_limitation, "answer_cut_off", [sid]), d.rationale
    assert "after 512 tokens" in d.rationale and "repeating itself" in d.rationale
    # an answer that ended on its own is no cut-off
    done = {**ab.llm("Two bags."), "attributes": {"gen_ai.response.finish_reasons": ["stop"]}}
    t2 = ab.build("air-ok", "What is the checked bag allowance on basic economy?", [done], answer="Two bags.", feedback=THUMB)
    d2 = agent_run(ab, t2)
    assert d2 is None or d2.rule != "answer_cut_off"


def test_a_missing_capability_outranks_the_rambling_that_followed(ab) -> None:
    loop = "I am here to help with your trip. " * 20
    cut = {**ab.llm(loop), "attributes": {"finish_reason": "length"}}
    t = ab.build("air-cap", "Please order a wheelchair at the gate for my mother", [cut], answer=loop, feedback=THUMB)
    d = agent_run(ab, t)
    assert d.category == Category.missing_capability, d.rationale
    assert [a.rule for a in d.alternatives] == ["answer_cut_off"]
