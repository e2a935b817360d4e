"""Root-cause rules: each on a small synthetic trace, with the category, the span the rationale names and the evidence."""

from __future__ import annotations

from typing import Any

import pytest

from autofix.triage import DetectionSettings, TriageContext, detect, diagnose, triage_traces
from autofix.triage.records import Category, Diagnosis
from autofix.triage.rules import RULES, extract_facts, schema_problem, version_key

THUMB = [{"kind": "thumb_down", "value": -1}]


def context(tb, extra: list[dict[str, Any]] = (), n: int = 10) -> TriageContext:  # noqa: ANN001
    ctx = TriageContext()
    for t in [*tb.background(n), *extra]:
        ctx.observe(tb.trace(t))
    return ctx


def run(tb, t: dict[str, Any], ctx: TriageContext | None = None) -> Diagnosis | None:  # noqa: ANN001
    trace = tb.trace(t)
    if ctx is None:
        ctx = context(tb, [t])
    det = detect(trace, DetectionSettings())
    return diagnose(trace, ctx, det.signals)


def check(d: Diagnosis | None, category: Category, rule: str, span_ids: list[str]) -> None:
    assert d is not None, "no rule matched"
    assert (d.category, d.rule, d.method) == (category, rule, "rule"), d.rationale
    assert d.evidence == span_ids or set(span_ids) <= set(d.evidence), (d.evidence, span_ids)
    assert span_ids[0] in d.rationale, d.rationale
    assert 0 < d.confidence <= 1


def test_rule_order_is_documented() -> None:
    import autofix.triage.rules as rules

    for i, (name, _) in enumerate(RULES, 1):
        assert f"{i:>2}. ``{name}``" in rules.__doc__


# ----------------------------------------------------------------------------- tools


def test_tool_arguments_against_the_json_schema(tb) -> None:
    t = tb.build("t1", "Show my tickets since Monday", route="tool", feedback=THUMB,
                 tool={"name": "list_tickets", "args": {"requester": "ann", "since": "16/11/2026"}, "schema": tb.LIST_SCHEMA,
                       "output": []})
    d = run(tb, t)
    check(d, Category.tool_arguments, "tool_arguments_invalid", ["t1:2"])
    assert "since" in d.rationale and "16/11/2026" in d.rationale and "list_tickets" in d.rationale


def test_tool_arguments_from_the_error_message(tb) -> None:
    err = "400 Bad Request: since: '16/11/2026' does not match '^\\d{4}-\\d{2}-\\d{2}$'"
    t = tb.build("t1", "Show my tickets since Monday", route="tool",
                 tool={"name": "list_tickets", "args": {"requester": "ann", "since": "16/11/2026"}, "error": err})
    d = run(tb, t)
    check(d, Category.tool_arguments, "tool_arguments_invalid", ["t1:2"])
    assert "400 Bad Request" in d.rationale
    assert d.confidence == 0.8
    t["spans"][2]["attributes"]["json_schema"] = tb.LIST_SCHEMA
    assert run(tb, t).confidence == 0.9  # schema and error agree


def test_schema_problem() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert schema_problem({"n": 1}, schema) is None
    assert "is not of type 'integer'" in schema_problem({"n": "x"}, schema)
    assert "required" in schema_problem({}, schema)
    assert schema_problem({"n": 1}, {"type": "no-such-type"}) is None  # a broken schema proves nothing


@pytest.mark.parametrize("error", ["503 Service Unavailable", "TimeoutError: read timed out after 30s", "ConnectionResetError"])
def test_other_tool_errors_are_infrastructure(tb, error: str) -> None:
    t = tb.build("t1", "What's the status of INC-1234?", route="tool",
                 tool={"name": "lookup_ticket", "args": {"ticket_id": "INC-1234"}, "error": error})
    d = run(tb, t)
    check(d, Category.infrastructure, "tool_or_span_error", ["t1:2"])
    assert "lookup_ticket" in d.rationale


def test_model_call_error_is_infrastructure(tb) -> None:
    t = tb.build("t1", docs=[tb.doc("hr-leave-001")], llm_error="TimeoutError: upstream timed out")
    check(run(tb, t), Category.infrastructure, "tool_or_span_error", ["t1:3"])


def test_context_overflow(tb) -> None:
    t = tb.build("t1", docs=[tb.doc("hr-leave-001")], llm_error="BadRequestError: maximum context length is 4096 tokens")
    check(run(tb, t), Category.context, "context_overflow", ["t1:3"])


# ----------------------------------------------------------------------------- capability and routing


@pytest.mark.parametrize(
    "request_text",
    ["Reset my password for me.", "Book meeting room Oberbaum for Thursday at 10am.", "Can you approve my leave request?",
     "Change my bank account in payroll for me."],
)
def test_missing_capability(tb, request_text: str) -> None:
    t = tb.build("t1", request_text, docs=[tb.doc("it-password-001", "Reset your password in MyAccess.")], feedback=THUMB,
                 answer="I can't do that, but you can reset it yourself in MyAccess.")
    tools = tb.build("bg-tool", "What's the status of INC-1234?", route="tool",
                     tool={"name": "lookup_ticket", "args": {"ticket_id": "INC-1234"}, "output": {"status": "open"}})
    d = run(tb, t, context(tb, [t, tools]))
    check(d, Category.missing_capability, "missing_capability", ["t1:1"])
    assert "lookup_ticket" in d.rationale  # the tools it does have
    assert d.confidence >= 0.8  # the answer declines


def test_a_request_a_tool_serves_is_not_missing_capability(tb) -> None:
    t = tb.build("t1", "Open a ticket: my monitor flickers", route="answer", reason="small talk", feedback=THUMB,
                 answer="Sure!")
    tools = tb.build("bg-tool", "please open a ticket, printer jams", route="tool",
                     tool={"name": "create_ticket", "args": {"summary": "printer jams"}, "output": {"id": "INC-2001"}})
    d = run(tb, t, context(tb, [t, tools]))
    assert d is None or d.category != Category.missing_capability


def test_answered_without_retrieval_is_routing(tb) -> None:
    t = tb.build("t1", "How many unused leave days can I carry over this year?", route="answer",
                 reason="time-relative question answered from the clock", answer="You can carry over 10 days.",
                 feedback=THUMB)
    d = run(tb, t)
    check(d, Category.routing, "answered_without_retrieval", ["t1:1", "t1:2"])
    assert "time-relative question answered from the clock" in d.rationale
    assert "no retrieval span" in d.rationale and "policy_qa" in d.rationale


def test_answered_without_retrieval_without_a_router_span(tb) -> None:
    t = tb.build("t1", "How many days of annual leave can I carry over and who approves it?", route=None,
                 answer="10 days.", feedback=THUMB, task_type="other")
    d = run(tb, t)
    check(d, Category.routing, "answered_without_retrieval", ["t1:1"])
    assert "carry" in d.rationale  # named terms of the knowledge base


def test_small_talk_answered_directly_is_not_routing(tb) -> None:
    chat = [tb.build(f"c{i}", "hi there", route="answer", reason="small talk", answer="Hello!", task_type="smalltalk")
            for i in range(6)]
    t = tb.build("t1", "thanks!", route="answer", reason="small talk", answer="Hello!", feedback=THUMB, task_type="smalltalk")
    assert run(tb, t, context(tb, [*chat, t])) is None


def test_needless_clarification(tb) -> None:
    t = tb.build("t1", "How do I book a desk in the Berlin office?", route="clarify", reason="request names no system",
                 answer="Which system do you mean?", feedback=THUMB)
    d = run(tb, t)
    check(d, Category.routing, "needless_clarification", ["t1:1"])
    assert "desk" in d.rationale


def test_clarifying_a_vague_request_is_fine(tb) -> None:
    vague = [tb.build(f"v{i}", "it's not working", route="clarify", answer="Which system?", task_type="vague") for i in range(6)]
    t = tb.build("t1", "it's broken", route="clarify", answer="Which system?", feedback=THUMB, task_type="vague")
    assert run(tb, t, context(tb, [*vague, t])) is None


def test_lost_conversation_memory(tb) -> None:
    t = tb.build("t1", "As I said, I'm in Berlin: what is the parking rule?", docs=[tb.doc("fac-parking-001", "Parking rules")],
                 feedback=THUMB, top_k=10, answer="Parking is free.")
    check(run(tb, t), Category.memory, "lost_conversation_memory", ["t1:3"])


# ----------------------------------------------------------------------------- retrieval, freshness, prompt


def test_retrieval_empty(tb) -> None:
    t = tb.build("t1", docs=[], feedback=THUMB, answer="I couldn't find anything.")
    check(run(tb, t), Category.retrieval, "retrieval_empty", ["t1:2"])


def test_source_requested_and_none_given_is_prompt(tb) -> None:
    # the prompt version never cites: every search answer of it lacks a source
    uncited = [tb.build(f"u{i}", docs=[tb.doc("hr-leave-001")], answer="You can carry over 5 days.", prompt_version="p2")
               for i in range(8)]
    t = tb.build("t1", docs=[tb.doc("hr-leave-001")], answer="You can carry over 5 days.", prompt_version="p2",
                 feedback=[{"kind": "comment", "value": -1, "comment": "where is this from? please link the policy"}])
    d = run(tb, t, context(tb, [*uncited, t]))
    check(d, Category.prompt, "requested_format_missing", ["t1:3", "t1:2"])
    assert "where is this from" in d.rationale and "p2" in d.rationale
    assert d.confidence == 0.85


def test_an_answer_with_a_source_is_not_a_prompt_failure(tb) -> None:
    t = tb.build("t1", docs=[tb.doc("hr-leave-001")], answer="5 days (source: hr-leave-001).", top_k=10,
                 feedback=[{"kind": "comment", "value": -1, "comment": "where is this from?"}])
    d = run(tb, t)
    assert d is None or d.category != Category.prompt


def test_superseded_document_by_version_ids(tb) -> None:
    current = tb.build("bg-cur", docs=[tb.doc("hr-leave-annual-001", "Full-time employees get 28 days of annual leave.")])
    t = tb.build("t1", "How many days of annual leave do full-time employees get?", feedback=THUMB, top_k=10,
                 docs=[tb.doc("hr-leave-annual-2023", "Full-time employees get 25 days of annual leave.", 5.0),
                       tb.doc("fac-desk-001", "Desks", 1.0)], answer="25 days.")
    d = run(tb, t, context(tb, [current, t]))
    check(d, Category.data_freshness, "superseded_document", ["t1:2"])
    assert "hr-leave-annual-2023" in d.rationale and "hr-leave-annual-001" in d.rationale


def test_current_version_ranked_first_is_freshness_with_less_confidence(tb) -> None:
    t = tb.build("t1", "How many days of annual leave do full-time employees get?", feedback=THUMB, top_k=10,
                 docs=[tb.doc("hr-leave-annual-001", "28 days.", 6.0), tb.doc("hr-leave-annual-2023", "25 days.", 5.0)],
                 answer="28 days.")
    d = run(tb, t)
    check(d, Category.data_freshness, "superseded_document", ["t1:2"])
    assert d.confidence < 0.65 and "both reach the model" in d.rationale


def test_a_document_dated_years_before_the_request(tb) -> None:
    t = tb.build("t1", "How long are backups kept?", feedback=THUMB, top_k=10,
                 docs=[tb.doc("it-backup-retention-2023", "Backups are kept 30 days.")], answer="90 days.")
    d = run(tb, t)  # the request is of 2026
    check(d, Category.data_freshness, "superseded_document", ["t1:2"])
    assert d.confidence < 0.5 and "dated 2023" in d.rationale
    t2 = tb.build("t2", "What did the 2023 backup policy say?", feedback=THUMB, top_k=10,
                  docs=[tb.doc("it-backup-retention-2023", "Backups are kept 30 days.")], answer="90 days.")
    d2 = run(tb, t2)
    assert d2 is None or d2.category != Category.data_freshness  # it asks about that year


def test_superseded_document_by_status_metadata(tb) -> None:
    t = tb.build("t1", "What is the visitor policy?", feedback=THUMB, top_k=10,
                 docs=[tb.doc("visitors", "Visitors sign in at reception.", status="superseded")], answer="Sign in.")
    check(run(tb, t), Category.data_freshness, "superseded_document", ["t1:2"])


def test_version_key() -> None:
    assert version_key("hr-leave-annual-2023") == ("hr-leave-annual", (2023,), "dated")
    assert version_key("hr-leave-annual-001") == ("hr-leave-annual", (1,), "seq")
    assert version_key("policy_v2") == ("policy", (2,), "v")
    assert version_key("readme") == ("readme", (), "none")
    assert version_key("it-email-quota-2022")[0] == version_key("it-email-quotas-001")[0]


def test_sequence_numbers_are_not_versions(tb) -> None:
    ctx = context(tb, [tb.build("x", docs=[tb.doc("hr-leave-001"), tb.doc("hr-leave-002"), tb.doc("pol-v1"),
                                            tb.doc("pol-v2"), tb.doc("hb-2023"), tb.doc("hb")])])
    assert ctx.newer_version("hr-leave-001") is None and ctx.newer_version("hr-leave-002") is None
    assert ctx.newer_version("pol-v1") == "pol-v2" and ctx.newer_version("pol-v2") is None
    assert ctx.newer_version("hb-2023") == "hb" and ctx.newer_version("hb") is None


def test_expected_document_missing(tb) -> None:
    t = tb.build("t1", feedback=THUMB, top_k=10, docs=[tb.doc("fac-desk-001", "Desks")],
                 metadata={"expected": {"doc_ids": ["hr-leave-001"]}}, answer="Book a desk.")
    d = run(tb, t)
    check(d, Category.retrieval, "expected_document_missing", ["t1:2"])
    assert "hr-leave-001" in d.rationale


def test_fragmentary_retrieval(tb) -> None:
    t = tb.build("t1", "How many days can I carry over, and who approves it?", feedback=THUMB, top_k=2,
                 docs=[tb.doc("hr-leave-001", "Employees may carry over up to 5 days.", chunk_id="hr-leave-001#3")],
                 answer="I couldn't find who approves it.")
    d = run(tb, t)
    check(d, Category.retrieval, "fragmentary_retrieval", ["t1:2"])
    assert "hr-leave-001#3" in d.rationale and "could not find" in d.rationale


def test_answer_contradicting_its_sources_is_a_model_limitation(tb) -> None:
    t = tb.build("t1", "How many days of annual leave can I carry over?", feedback=THUMB, top_k=8,
                 docs=[tb.doc("hr-leave-001", "Employees may carry over up to 5 days of annual leave until 31 March."),
                       tb.doc("hr-leave-002", "Annual leave carry over is approved by managers."),
                       tb.doc("hr-leave-003", "Days of leave beyond the carry over limit lapse.")],
                 answer="You can carry over 12 days. Sources: hr-leave-001")
    d = run(tb, t)
    check(d, Category.model_limitation, "answer_contradicts_sources", ["t1:2"])
    assert d.confidence <= 0.5 and "12" in d.rationale


def test_judge_contradicting_the_user_is_evaluation(tb) -> None:
    t = tb.build("t1", feedback=[{"kind": "thumb_up", "value": 1}], scores=[{"name": "quality", "value": 0.2}])
    d = run(tb, t)
    assert d is not None and d.category == Category.evaluation and d.rule == "judge_contradicts_user"
    assert "quality=0.2" in d.rationale


def test_no_rule_matches(tb) -> None:
    t = tb.build("t1", docs=[tb.doc("hr-leave-001"), tb.doc("hr-leave-002"), tb.doc("hr-leave-003"), tb.doc("hr-x-004")],
                 top_k=10, feedback=THUMB, answer="You can carry over 5 days. Sources: hr-leave-001")
    assert run(tb, t) is None


def test_facts_are_small(tb) -> None:
    t = tb.build("t1", "q " * 5000, docs=[tb.doc("d", "x " * 50_000)], answer="a " * 10_000)
    f = extract_facts(tb.trace(t))
    assert len(f.input) <= 600 and len(f.output) <= 800


# ----------------------------------------------------------------------------- unclassified and the classifier


def test_unexplained_failure_is_unclassified_never_dropped(tb) -> None:
    t = tb.build("t1", docs=[tb.doc("hr-leave-001"), tb.doc("hr-leave-002"), tb.doc("hr-leave-003"), tb.doc("hr-x-004")],
                 top_k=10, feedback=THUMB, answer="You can carry over 5 days. Sources: hr-leave-001")
    report = triage_traces([tb.trace(x) for x in [*tb.background(5), t]])
    assert report.failures == 1
    failure, d, cluster = next(report.failure_list())
    assert (failure.trace_id, d.category, d.method) == ("t1", Category.unclassified, "none")
    assert "no deterministic rule matched" in d.rationale and "no classifier" in d.rationale
    c = report.cluster_of("t1")
    assert c is not None and c.category == Category.unclassified and c.owner == "team:triage" and c.trace_ids == ["t1"]


class FakeClassifier:
    def __init__(self, answer: Category | None = Category.context, fail: bool = False) -> None:
        self.answer, self.fail, self.seen = answer, fail, []

    def classify(self, failure, trace):  # noqa: ANN001, ANN201
        self.seen.append((failure.trace_id, trace.trace_id, len(trace.spans)))
        if self.fail:
            raise RuntimeError("model unavailable")
        if self.answer is None:
            return None
        return Diagnosis(trace_id=failure.trace_id, category=self.answer, confidence=0.6, rationale="llm says so",
                         evidence=["t1:2"], method="llm")


def _mixed(tb) -> list:  # noqa: ANN001
    unexplained = tb.build("t1", docs=[tb.doc("hr-leave-001"), tb.doc("hr-leave-002"), tb.doc("hr-leave-003"), tb.doc("hr-x")],
                           top_k=10, feedback=THUMB, answer="You can carry over 5 days. Sources: hr-leave-001")
    explained = tb.build("t2", docs=[], feedback=THUMB, answer="nothing found")
    return [tb.trace(x) for x in [*tb.background(5), unexplained, explained]]


def test_the_classifier_sees_only_what_no_rule_explains(tb) -> None:
    from autofix.triage.pipeline import Classifier

    fake = FakeClassifier()
    assert isinstance(fake, Classifier)
    report = triage_traces(_mixed(tb), classifier=fake)
    assert [s[0] for s in fake.seen] == ["t1"] and fake.seen[0][1] == "t1" and fake.seen[0][2] == 4  # the whole trace
    d1, d2 = report.diagnosis_of("t1"), report.diagnosis_of("t2")
    assert (d1.category, d1.method) == (Category.context, "llm")
    assert (d2.category, d2.method) == (Category.retrieval, "rule")


@pytest.mark.parametrize("fake, reason", [(FakeClassifier(fail=True), "classifier failed"),
                                          (FakeClassifier(answer=None), "classifier gave no answer")])
def test_a_classifier_without_an_answer_leaves_it_unclassified(tb, fake, reason: str) -> None:  # noqa: ANN001
    report = triage_traces(_mixed(tb), classifier=fake)
    d = report.diagnosis_of("t1")
    assert (d.category, d.method) == (Category.unclassified, "none") and reason in d.rationale
    assert report.failures == 2
