"""The LLM root-cause classifier: validated structured answers, retries, the cache, the evidence text.

Unit tests script the model at the litellm boundary: a litellm custom provider (`autofix-fake/...`)
answers with the texts a test gives it, so the whole path runs for real (DSPy's JSON adapter,
dspy.LM, litellm) except the model itself. The `model`-marked test runs the embedded SmolLM2.
"""

from __future__ import annotations

import json
import time

import autofix  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before litellm is imported)

import litellm
import pytest
from litellm import CustomLLM, ModelResponse
from litellm.utils import custom_llm_setup

from autofix.traces.schema import Trace
from autofix.triage.classifier import CLASSIFIER_VERSION, LLMClassifier, RootCause
from autofix.triage.evidence import build_evidence
from autofix.triage.records import Category, Failure, Signal

FAKE = "autofix-fake"
MODEL = f"{FAKE}/scripted"


class ScriptedLLM(CustomLLM):
    """A litellm provider answering each call with the next scripted reply (a str, or an exception to raise)."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: list = []
        self.calls: list[dict] = []

    def completion(self, model, messages, *args, optional_params=None, timeout=None, **kwargs):  # type: ignore[override]
        self.calls.append({"messages": messages, "params": dict(optional_params or {}), "timeout": timeout})
        if not self.replies:
            raise AssertionError("the scripted model was called more often than scripted")
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        response = ModelResponse()
        response.choices[0].message.content = reply
        response.model = model
        return response

    def prompt(self, i: int = -1) -> str:
        return "\n".join(m["content"] for m in self.calls[i]["messages"])


@pytest.fixture
def fake():
    handler = ScriptedLLM()
    before = list(litellm.custom_provider_map)
    litellm.custom_provider_map[:] = [e for e in before if e.get("provider") != FAKE] + [
        {"provider": FAKE, "custom_handler": handler}
    ]
    custom_llm_setup()
    yield handler
    litellm.custom_provider_map[:] = before
    custom_llm_setup()


def answer(category="tool_arguments", confidence=0.9, rationale="The tool rejected the date format.", ids=("t1:2",)):
    return json.dumps(
        {"rationale": rationale, "category": category, "confidence": confidence, "evidence_span_ids": list(ids)}
    )


def make_trace(trace_id="t1", **over) -> Trace:
    raw = {
        "trace_id": trace_id,
        "session_id": "s1",
        "timestamp": "2026-11-20T09:00:00Z",
        "input": "Show my tickets since Monday",
        "output": "Sorry, the ticket system returned an error.",
        "spans": [
            {"kind": "chain", "name": "helpdesk.answer", "input": "Show my tickets since Monday"},
            {
                "kind": "router",
                "name": "route",
                "input": "Show my tickets since Monday",
                "output": {"action": "tool", "tool": "list_tickets", "reason": "ticket listing"},
            },
            {
                "kind": "tool",
                "name": "list_tickets",
                "input": {"requester": "ana", "since": "16/11/2026"},
                "error": "400 Bad Request: since: '16/11/2026' does not match '^\\d{4}-\\d{2}-\\d{2}$'",
                "attributes": {"json_schema": {"properties": {"since": {"pattern": "^\\d{4}-\\d{2}-\\d{2}$"}}}},
                "start_ms": 10,
                "end_ms": 25,
            },
            {
                "kind": "retrieval",
                "name": "bm25.search",
                "input": "carry over days",
                "output": [
                    {"doc_id": "hr-leave-2024", "chunk_id": "hr-leave-2024#3", "score": 4.25,
                     "text": "Employees may carry over up to five days of annual leave."},
                ],
            },
        ],
        "feedback": [{"kind": "thumb_down", "comment": "it never works"}],
        "scores": [{"name": "tool_success", "value": 0.0, "source": "check", "rationale": "tool error"}],
        "metadata": {"task_type": "tickets"},
    }
    for s in raw["spans"]:
        s.setdefault("span_id", None)
    for i, s in enumerate(raw["spans"]):
        s["span_id"] = f"{trace_id}:{i}"
    raw.update(over)
    return Trace.model_validate(raw)


def make_failure(trace: Trace) -> Failure:
    return Failure(
        trace_id=trace.trace_id,
        session_id=trace.session_id,
        timestamp=trace.timestamp,
        task_type=trace.task_type or "unknown",
        input=str(trace.input),
        output=str(trace.output),
        signals=[
            Signal(kind="explicit", name="thumb_down", detail="it never works"),
            Signal(kind="operational", name="tool_error", detail="400 Bad Request", span_id=f"{trace.trace_id}:2"),
        ],
        priority=2.0,
    )


@pytest.fixture
def case():
    t = make_trace()
    return make_failure(t), t


# --------------------------------------------------------------------------- answers


def test_valid_answer_gives_an_llm_diagnosis(fake, case, tmp_path):
    failure, trace = case
    fake.replies = [answer(rationale="  The list_tickets call sent since=16/11/2026;\n the tool wants YYYY-MM-DD.  ")]
    clf = LLMClassifier(MODEL, tmp_path / "cache.sqlite", timeout=30)

    d = clf.classify(failure, trace)

    assert d is not None
    assert d.method == "llm"
    assert d.category is Category.tool_arguments
    assert d.confidence == 0.9
    assert d.rationale == "The list_tickets call sent since=16/11/2026; the tool wants YYYY-MM-DD."
    assert d.evidence == ["t1:2"]
    assert d.trace_id == "t1" and d.rule is None
    # One call through litellm, with the evidence and the category definitions in the prompt.
    assert len(fake.calls) == 1
    prompt = fake.prompt()
    assert "[span t1:2 tool list_tickets]" in prompt and "16/11/2026" in prompt
    for c in Category:
        assert f"- {c.value}:" in prompt, c
    assert fake.calls[0]["params"]["temperature"] == 0.0
    assert fake.calls[0]["timeout"] == 30


def test_invalid_category_is_retried_then_accepted(fake, case):
    failure, trace = case
    fake.replies = [answer(category="tooling"), answer(category="routing", ids=["t1:1"])]
    clf = LLMClassifier(MODEL, None, retries=2)

    out = clf.explain(failure, trace)

    assert out.diagnosis is not None and out.diagnosis.category is Category.routing
    assert out.calls == 2 and len(fake.calls) == 2
    assert "category" in out.errors[0]
    # The retry is a different call: a higher temperature and its own rollout (no cache can replay the bad answer).
    assert fake.calls[1]["params"]["temperature"] > fake.calls[0]["params"]["temperature"]


@pytest.mark.parametrize("retries", [0, 2])
def test_always_invalid_ends_as_none_after_retries_plus_one_calls(fake, case, tmp_path, retries):
    failure, trace = case
    bad = ["not json at all", answer(category="banana"), answer(confidence=7), '{"category": "prompt"}']
    fake.replies = bad[: retries + 1]
    clf = LLMClassifier(MODEL, tmp_path / "c.sqlite", retries=retries)

    out = clf.explain(failure, trace)

    assert out.diagnosis is None
    assert len(fake.calls) == retries + 1
    assert f"in {retries + 1} attempt(s)" in out.reason
    # The unclassifiable outcome is cached with its reason: the model is not asked again ...
    again = clf.explain(failure, trace)
    assert again.diagnosis is None and again.cached and again.reason == out.reason
    assert len(fake.calls) == retries + 1
    # ... unless asked to refresh.
    fake.replies = [answer()]
    assert clf.classify(failure, trace, refresh=True).category is Category.tool_arguments
    assert len(fake.calls) == retries + 2
    assert clf.classify(failure, trace).category is Category.tool_arguments  # the refresh replaced the entry
    assert len(fake.calls) == retries + 2


@pytest.mark.parametrize("confidence", [1.5, -0.1, "high", None, "NaN"])
def test_confidence_outside_unit_interval_is_rejected_and_retried(fake, case, confidence):
    failure, trace = case
    fake.replies = [answer(confidence=confidence), answer(confidence=0.4)]
    d = LLMClassifier(MODEL, None).classify(failure, trace)
    assert d is not None and d.confidence == 0.4
    assert len(fake.calls) == 2


def test_unknown_evidence_ids_are_dropped(fake, case):
    failure, trace = case
    fake.replies = [answer(ids=["t1:2", "t9:9", "made-up", "[span t1:1]", "t1:2"])]
    d = LLMClassifier(MODEL, None).classify(failure, trace)
    assert d is not None
    assert d.evidence == ["t1:2", "t1:1"]


def test_model_answering_unclassified_gives_none_with_its_reason(fake, case):
    failure, trace = case
    fake.replies = [answer(category="unclassified", rationale="Nothing in the spans explains the thumb down.")]
    out = LLMClassifier(MODEL, None).explain(failure, trace)
    assert out.diagnosis is None
    assert "Nothing in the spans explains the thumb down." in out.reason
    assert len(fake.calls) == 1


def test_long_rationale_is_trimmed(fake, case):
    failure, trace = case
    fake.replies = [answer(rationale="word " * 500)]
    d = LLMClassifier(MODEL, None).classify(failure, trace)
    assert d is not None and len(d.rationale) <= 600 and d.rationale.endswith("…")


# --------------------------------------------------------------------------- errors of the call


def test_transient_model_error_gives_none_and_is_not_cached(fake, case, tmp_path):
    failure, trace = case
    fake.replies = [litellm.Timeout(message="upstream timed out", model=MODEL, llm_provider=FAKE)] * 3
    clf = LLMClassifier(MODEL, tmp_path / "c.sqlite", retries=2)

    out = clf.explain(failure, trace)

    assert out.diagnosis is None and "not cached" in out.reason and "Timeout" in out.reason
    # One classifier attempt: a failing service is not hammered with the retries meant for bad answers
    # (litellm's own transport retries, num_retries=2, are what reached the fake).
    assert out.calls == 1 and len(fake.calls) == 3
    fake.replies = [answer()]
    assert clf.classify(failure, trace).category is Category.tool_arguments  # asked again next time
    assert len(fake.calls) == 4


@pytest.mark.parametrize(
    "error",
    [
        # What llama.cpp raises for too long a prompt (litellm retries it num_retries=2 times itself).
        ValueError("Requested tokens (3100) exceed context window of 2048"),
        litellm.ContextWindowExceededError(message="prompt too long", model=MODEL, llm_provider=FAKE),
    ],
)
def test_context_window_error_is_cached_as_unclassifiable(fake, case, tmp_path, error):
    failure, trace = case
    fake.replies = [error] * 3
    clf = LLMClassifier(MODEL, tmp_path / "c.sqlite", retries=2)

    out = clf.explain(failure, trace)
    assert out.diagnosis is None and "cannot take this evidence" in out.reason
    assert out.calls == 1
    reached = len(fake.calls)
    again = clf.explain(failure, trace)
    assert again.cached and again.reason == out.reason
    assert len(fake.calls) == reached


# --------------------------------------------------------------------------- cache


def test_second_call_is_a_cache_hit(fake, case, tmp_path):
    failure, trace = case
    db = tmp_path / "triage" / "llm.sqlite"
    fake.replies = [answer()]
    first = LLMClassifier(MODEL, db).classify(failure, trace)
    second = LLMClassifier(MODEL, db).explain(failure, trace)  # a new process would do the same
    assert len(fake.calls) == 1
    assert second.cached and second.calls == 0
    assert second.diagnosis == first

    # The same evidence in another trace id reuses the answer under the new trace id ...
    other = make_trace("t1")
    other_failure = make_failure(other).model_copy(update={"trace_id": "t1-again"})
    assert LLMClassifier(MODEL, db).classify(other_failure, other).trace_id == "t1-again"
    assert len(fake.calls) == 1
    # ... while another model or changed evidence is a miss.
    fake.replies = [answer(category="routing")]
    assert LLMClassifier(f"{FAKE}/another", db).classify(failure, trace).category is Category.routing
    fake.replies = [answer(category="infrastructure", ids=["t2:2"])]
    t2 = make_trace("t2")
    assert LLMClassifier(MODEL, db).classify(make_failure(t2), t2).category is Category.infrastructure
    assert len(fake.calls) == 3


def test_cache_key_names_the_classifier_version_and_a_loaded_program(fake, case, tmp_path):
    failure, trace = case
    db = tmp_path / "c.sqlite"
    clf = LLMClassifier(MODEL, db)
    assert clf.version == CLASSIFIER_VERSION
    program = clf.save(tmp_path / "optimized.json")
    assert json.loads(program.read_text())  # DSPy's JSON state of the module

    fake.replies = [answer()]
    clf.classify(failure, trace)
    loaded = LLMClassifier(MODEL, db, program_path=program)
    assert loaded.version.startswith(CLASSIFIER_VERSION + "+")
    fake.replies = [answer(category="prompt")]
    assert loaded.classify(failure, trace).category is Category.prompt  # an optimized prompt is asked afresh
    assert len(fake.calls) == 2
    with pytest.raises(FileNotFoundError, match="no optimized classifier program"):
        LLMClassifier(MODEL, None, program_path=tmp_path / "missing.json")


def test_module_is_a_dspy_program_with_the_category_literal():
    import dspy

    clf = LLMClassifier(MODEL, None)
    assert isinstance(clf.module, dspy.Module)
    fields = clf.module.signature.output_fields
    assert list(fields) == ["rationale", "category", "confidence", "evidence_span_ids"]
    assert set(fields["category"].annotation.__args__) == {c.value for c in Category}
    assert RootCause.instructions.startswith("Find the root cause")


# --------------------------------------------------------------------------- evidence


def test_evidence_tags_span_ids_and_names_the_telling_facts(case):
    failure, trace = case
    text = build_evidence(failure, trace)
    lines = text.splitlines()
    assert lines[0] == "[task_type] tickets"
    assert "[request] Show my tickets since Monday" in lines
    assert any(x.startswith("[answer] Sorry") for x in lines)
    router = next(x for x in lines if x.startswith("[span t1:1 router route]"))
    assert '"action": "tool"' in router and "list_tickets" in router
    tool = next(x for x in lines if x.startswith("[span t1:2 tool list_tickets]"))
    assert '"since": "16/11/2026"' in tool and "ERROR 400 Bad Request" in tool and "15 ms" in tool
    retrieval = next(x for x in lines if x.startswith("[span t1:3 retrieval bm25.search]"))
    assert "hr-leave-2024" in retrieval and "score 4.25" in retrieval and "carry over up to five days" in retrieval
    assert "[signal operational/tool_error span=t1:2] 400 Bad Request" in lines
    assert '[feedback thumb_down] comment="it never works"' in lines
    assert any(x.startswith("[score tool_success=0.0 source=check]") for x in lines)
    assert build_evidence(failure, trace) == text  # deterministic: the cache key depends on it


def test_huge_trace_stays_under_the_cap_and_keeps_the_telling_spans():
    big = "lorem ipsum " * 5_000
    spans = [{"span_id": f"h:{i}", "kind": "llm", "name": "chat", "input": [{"role": "system", "content": big}],
              "output": big} for i in range(2000)]
    spans.insert(1500, {"span_id": "h:tool", "kind": "tool", "name": "book_room", "input": {"room": big},
                        "error": "503 Service Unavailable " + big})
    trace = make_trace("h", input=big, output=big, spans=spans,
                       feedback=[{"kind": "comment", "comment": big}] * 5)
    failure = make_failure(trace)

    for cap in (6000, 2500):
        text = build_evidence(failure, trace, max_chars=cap)
        assert len(text) <= cap
        assert "[span h:tool tool book_room]" in text and "ERROR 503 Service Unavailable" in text
        assert "[request] lorem ipsum" in text
        assert "spans left out to fit the size cap" in text
        for line in text.splitlines():
            assert line.startswith("["), line
    # Even the fixed lines alone overflowing a tiny cap are cut, not passed on.
    assert len(build_evidence(failure, trace, max_chars=300)) <= 300


def test_huge_trace_prompt_is_capped_too(fake):
    big = "x" * 2_000_000
    trace = make_trace("z", input=big, spans=[{"span_id": f"z:{i}", "kind": "chain", "name": "c", "output": big}
                                              for i in range(300)])
    fake.replies = [answer(ids=["z:0"])]
    clf = LLMClassifier(MODEL, None, max_evidence_chars=4000)
    d = clf.classify(make_failure(trace), trace)
    assert d is not None and d.evidence == ["z:0"]
    user = fake.calls[0]["messages"][-1]["content"]
    assert len(user) < 4000 + 1000  # the evidence plus the adapter's short framing


# --------------------------------------------------------------------------- the real embedded model


@pytest.mark.model
def test_embedded_model_ends_cleanly_and_is_cached(tmp_path, monkeypatch):
    """SmolLM2-135M cannot write the structured answer; whatever it does, no crash, no made-up category."""
    from autofix.models import local
    from autofix.models.provider import LOCAL_MODEL

    calls = []
    real_chat = local.chat
    monkeypatch.setattr(local, "chat", lambda *a, **k: calls.append(1) or real_chat(*a, **k))

    trace = make_trace("real")
    failure = make_failure(trace)
    # One attempt and a short answer keep the test to one model call on a 2-core machine.
    clf = LLMClassifier(LOCAL_MODEL, tmp_path / "c.sqlite", retries=0, max_tokens=96, max_evidence_chars=1500)

    started = time.perf_counter()
    first = clf.explain(failure, trace)
    first_s = time.perf_counter() - started
    assert len(calls) == 1
    if first.diagnosis is not None:
        assert first.diagnosis.method == "llm" and first.diagnosis.category in set(Category)
        assert 0.0 <= first.diagnosis.confidence <= 1.0
        assert set(first.diagnosis.evidence) <= {s.span_id for s in trace.spans}
    else:
        assert first.reason  # why it is unclassified is said

    started = time.perf_counter()
    second = LLMClassifier(LOCAL_MODEL, tmp_path / "c.sqlite", retries=0, max_tokens=96,
                           max_evidence_chars=1500).explain(failure, trace)
    second_s = time.perf_counter() - started
    assert second.cached and len(calls) == 1
    assert second.diagnosis == first.diagnosis and second.reason == first.reason
    assert second_s < min(1.0, first_s)
    print(f"\nembedded model: {first_s:.1f}s, cached: {second_s * 1000:.1f}ms, outcome: "
          f"{first.diagnosis.category.value if first.diagnosis else 'None'} {first.reason[:200]}")
