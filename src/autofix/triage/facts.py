"""`TraceFacts`: what the rules may read of one failed trace, extracted once, in the span contract's terms.

A fact says what a span recorded (a router's decision, a retrieval's documents and their
metadata, a tool's arguments, error and whether a later call of it succeeded, an llm call's
messages), never what a target's ids or wording are supposed to mean: that is the
`TargetKnowledge`'s business. A new fact goes here, with its test; rules never re-read the trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from autofix.traces.schema import Span, Trace, tool_args_schema
from autofix.triage._text import content_terms, numbers, one_line, text_of
from autofix.triage.detection import SignalTuple
from autofix.triage.knowledge import DEFAULT_KNOWLEDGE, TargetKnowledge

__all__ = [
    "DocFact",
    "ExpectedAction",
    "RetrievalFact",
    "RouterFact",
    "ToolFact",
    "TraceFacts",
    "doc_fact",
    "extract_facts",
    "schema_problem",
]

INPUT_CHARS = 600
OUTPUT_CHARS = 800


@dataclass(slots=True)
class DocFact:
    doc_id: str
    chunk_id: str | None
    score: float | None
    status: str | None  # lower-case, from the declared status fields
    effective: str | None  # from the declared date fields
    title: str | None


@dataclass(slots=True)
class RetrievalFact:
    span_id: str
    name: str
    docs: tuple[DocFact, ...]
    top_k: int | None
    error: str | None


@dataclass(slots=True)
class ToolFact:
    span_id: str
    name: str
    error: str | None
    error_kind: str | None  # by the target's tool-error wording: context | infrastructure | business | arguments
    schema_problem: str | None
    args: str  # compact JSON, cut
    arguments: Any  # the arguments themselves when small (for comparing with expected actions), else None
    recovered: bool  # a later call of the same tool succeeded


@dataclass(slots=True)
class RouterFact:
    span_id: str
    name: str
    action: str | None  # search | answer | clarify | tool | None (unknown)
    raw_action: str
    reason: str


@dataclass(slots=True)
class ExpectedAction:
    name: str
    arguments: Any


@dataclass(slots=True)
class TraceFacts:
    """What the rules need of one failed trace, extracted once (a few hundred bytes)."""

    trace_id: str
    task_type: str
    input: str
    output: str
    prompt_version: str | None
    signals: tuple[SignalTuple, ...]
    router: RouterFact | None = None
    retrievals: tuple[RetrievalFact, ...] = ()
    tools: tuple[ToolFact, ...] = ()
    errors: tuple[tuple[str, str, str, str], ...] = ()  # (span_id, kind, name, error) of unrecovered non-tool spans
    llm_span_ids: tuple[str, ...] = ()
    chain_span_id: str | None = None
    llm_saw_history: bool = False
    coverage: float | None = None  # share of the request's content words found in the retrieved text
    retrieved_numbers: frozenset[str] = frozenset()
    comments: tuple[str, ...] = ()
    expected_docs: tuple[str, ...] = ()
    expected_actions: tuple[ExpectedAction, ...] = ()
    trace_error: str | None = None
    thumb_up: bool = False
    input_terms: frozenset[str] = frozenset()
    unretrieved_terms: tuple[str, ...] = ()  # the request's content words the retrieved text lacks (sorted)
    cut_off: tuple[str, int | None] | None = None  # (llm span id, its completion tokens) of an answer cut at the limit
    versions: tuple[tuple[str, str], ...] = ()

    @property
    def signal_names(self) -> set[str]:
        return {s[1] for s in self.signals}

    @property
    def retrieved_doc_ids(self) -> list[str]:
        return [d.doc_id for r in self.retrievals for d in r.docs]

    @property
    def steps(self) -> int:
        """How many model calls and tool calls the trace made (an agent makes many)."""
        return len(self.llm_span_ids) + len(self.tools)


_FINISH_KEYS = ("finish_reason", "gen_ai.response.finish_reasons", "llm.finish_reason", "stop_reason")
_CUT_OFF = frozenset({"length", "max_tokens", "max_output_tokens"})


def _finish_reason(span: Span) -> str | None:
    """Why the model stopped, from the span's attributes or an OpenAI-shaped output (lower-case)."""
    for key in _FINISH_KEYS:
        v = span.attributes.get(key)
        if isinstance(v, list) and v:
            v = v[-1]
        if isinstance(v, str):
            return v.lower()
    out = span.output
    if isinstance(out, dict) and isinstance(out.get("choices"), list) and out["choices"]:
        v = out["choices"][0].get("finish_reason") if isinstance(out["choices"][0], dict) else None
        return v.lower() if isinstance(v, str) else None
    return None


def _completion_tokens(span: Span) -> int | None:
    usage = span.attributes.get("usage")
    v = usage.get("completion_tokens") if isinstance(usage, dict) else span.attributes.get("gen_ai.usage.output_tokens")
    return v if isinstance(v, int) else None


_ACTION_WORDS = {
    "search": {"search", "retrieve", "retrieval", "rag", "lookup", "kb", "knowledge", "knowledge_base", "query"},
    "answer": {"answer", "direct", "respond", "reply", "chat", "llm", "generate", "none", "no_search", "direct_answer",
               "smalltalk"},
    "clarify": {"clarify", "clarification", "ask", "ask_user", "followup", "follow_up", "clarifying_question"},
    "tool": {"tool", "call_tool", "function", "function_call", "action", "tool_call"},
}
_ACTION_KEYS = ("action", "decision", "route", "next", "choice", "path", "intent", "destination")
_REASON_KEYS = ("reason", "rationale", "why", "explanation")


def _router_fact(span: Span) -> RouterFact:
    out = span.output
    raw = reason = ""
    tool = None
    if isinstance(out, dict):
        raw = next((out[k] for k in _ACTION_KEYS if isinstance(out.get(k), str)), "")
        reason = next((out[k] for k in _REASON_KEYS if isinstance(out.get(k), str)), "")
        tool = out.get("tool") or out.get("tool_name")
    elif isinstance(out, str):
        raw = out
    if not reason:
        r = span.attributes.get("reason")
        reason = r if isinstance(r, str) else ""
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    action = next((name for name, syn in _ACTION_WORDS.items() if key in syn or key.split("_")[0] in syn), None)
    if tool and action is None:
        action = "tool"
    return RouterFact(span.span_id or "", span.name, action, raw, one_line(reason)[:200])


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problem(arguments: Any, schema: Any) -> str | None:
    """Why `arguments` break the JSON `schema` ("since: '16/11/2026' does not match ..."), or None."""
    if not isinstance(schema, dict) or not schema:
        return None
    try:
        validator = _validator(json.dumps(schema, sort_keys=True, default=str))
    except Exception:  # an invalid schema says nothing about the arguments
        return None
    try:
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    except Exception:
        return None
    if not errors:
        return None
    e = errors[0]
    where = ".".join(str(p) for p in e.absolute_path) or "arguments"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {one_line(e.message)[:200]}{more}"


def _field(holders: Iterable[dict[str, Any]], names: list[str]) -> Any:
    for holder in holders:
        for key in names:
            v = holder.get(key)
            if v is not None and not isinstance(v, (dict, list, bool)):
                return v
    return None


def doc_fact(d: Any, knowledge: TargetKnowledge) -> DocFact:
    """A retrieved document's id, chunk, score and the status, date and title its metadata declares."""
    extra = d.__pydantic_extra__ or {}
    meta = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
    conv = knowledge.documents
    holders = (extra, meta)
    status = _field(holders, conv.status_fields)
    if status is None and any(h.get(flag) is True for h in holders for flag in ("superseded", "deprecated", "archived")):
        status = "superseded"
    effective = _field(holders, conv.date_fields)
    title = _field(holders, conv.title_fields)
    chunk = extra.get("chunk_id")
    return DocFact(
        d.doc_id, chunk if isinstance(chunk, str) else None, float(d.score) if d.score is not None else None,
        str(status).lower() if status is not None else None, str(effective) if effective is not None else None,
        str(title) if title is not None else None,
    )


def _expected(trace: Trace) -> tuple[tuple[str, ...], tuple[ExpectedAction, ...]]:
    """Documents and actions the trace itself says it expected (an evaluation run's reference)."""
    docs: list[str] = []
    actions: list[ExpectedAction] = []
    for holder in (trace.metadata, getattr(trace, "model_extra", None) or {}):
        exp = holder.get("expected") if isinstance(holder.get("expected"), dict) else {}
        for src, keys in ((holder, ("expected_doc_ids", "expected_docs", "relevant_doc_ids")), (exp, ("doc_ids", "documents", "docs"))):
            for key in keys:
                v = src.get(key)
                if isinstance(v, list):
                    docs += [x for x in v if isinstance(x, str)]
        for src, key in ((holder, "expected_actions"), (exp, "actions")):
            v = src.get(key)
            if isinstance(v, list):
                for a in v:
                    if isinstance(a, dict) and isinstance(a.get("name"), str):
                        actions.append(ExpectedAction(a["name"], a.get("arguments", a.get("kwargs"))))
    return tuple(dict.fromkeys(docs)), tuple(actions)


class _ChunkCache:
    """Content terms and numbers of retrieved chunks, cached: the same chunks come back in many traces."""

    def __init__(self, max_items: int = 100_000):
        self.max_items = max_items
        self._d: dict[tuple[str, int, str], tuple[frozenset[str], frozenset[str]]] = {}

    def get(self, doc_id: str, text: str) -> tuple[frozenset[str], frozenset[str]]:
        key = (doc_id, len(text), text[:64])
        hit = self._d.get(key)
        if hit is None:
            body = text[:2000]
            hit = (frozenset(content_terms(body)), frozenset(numbers(body)))
            if len(self._d) >= self.max_items:
                self._d.clear()
            self._d[key] = hit
        return hit


CHUNKS = _ChunkCache()


_SHARED: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}


def _shared(versions: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """One object per distinct versions tuple: a million failures share a handful of them."""
    if len(_SHARED) > 10_000:
        _SHARED.clear()
    return _SHARED.setdefault(versions, versions)


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)[:200]
    except (TypeError, ValueError):
        return str(value)[:200]


def extract_facts(trace: Trace, signals: Iterable[SignalTuple] = (), thumb_up: bool = False,
                  knowledge: TargetKnowledge = DEFAULT_KNOWLEDGE) -> TraceFacts:
    """The facts the rules read, from one trace (spans, feedback, versions)."""
    input_text = text_of(trace.input, INPUT_CHARS)
    output_text = text_of(trace.output, OUTPUT_CHARS)
    router = None
    retrievals: list[RetrievalFact] = []
    tools: list[ToolFact] = []
    errors: list[tuple[str, str, str, str]] = []
    llm_ids: list[str] = []
    chain_id = None
    saw_history = False
    retrieved_terms: set[str] = set()
    retrieved_nums: set[str] = set()
    retrieved_chars = 0
    last_llm_output = None
    cut_off = None
    spans = trace.spans
    # the last successful call of each (kind, name): an earlier error of it was recovered from
    last_ok: dict[tuple[str, str], int] = {}
    for i, span in enumerate(spans):
        if not span.error:
            last_ok[(span.kind, span.name)] = i
    for i, span in enumerate(spans):
        sid = span.span_id or ""
        recovered = bool(span.error) and last_ok.get((span.kind, span.name), -1) > i
        if span.kind == "router" and router is None:
            router = _router_fact(span)
        elif span.kind == "retrieval":
            docs = []
            for d in span.documents:
                docs.append(doc_fact(d, knowledge))
                if d.text:
                    terms, nums = CHUNKS.get(d.doc_id, d.text)
                    retrieved_terms |= terms
                    retrieved_nums |= nums
                    retrieved_chars += len(d.text)
            top_k = span.attributes.get("top_k")
            top_k = top_k if isinstance(top_k, int) and not isinstance(top_k, bool) else None
            retrievals.append(RetrievalFact(sid, span.name, tuple(docs), top_k, span.error))
        elif span.kind == "tool":
            schema = tool_args_schema(span.attributes)
            problem = schema_problem(span.input, schema) if schema is not None else None
            args = _compact(span.input)
            small = span.input if len(args) < 200 else None
            err = one_line(span.error)[:300] if span.error else None
            tools.append(ToolFact(sid, span.name, err, knowledge.error_kind(err), problem, args, small, recovered))
        elif span.kind == "llm":
            llm_ids.append(sid)
            if isinstance(span.input, list):
                roles = [m.get("role") for m in span.input if isinstance(m, dict)]
                if roles.count("user") > 1 or "assistant" in roles:
                    saw_history = True
            if isinstance(span.output, str):
                last_llm_output = span.output
            finish = _finish_reason(span)
            cut_off = (sid, _completion_tokens(span)) if finish in _CUT_OFF else None  # the last model call counts
        elif span.kind == "chain" and chain_id is None:
            chain_id = sid
        if span.error and span.kind != "tool" and not recovered:
            errors.append((sid, span.kind, span.name, one_line(span.error)[:300]))
    if not output_text and last_llm_output:
        output_text = last_llm_output[:OUTPUT_CHARS]
    q = frozenset(content_terms(input_text))
    coverage = round(len(q & retrieved_terms) / len(q), 3) if retrieved_chars and q else None
    err = trace.metadata.get("error")
    exp_docs, exp_actions = _expected(trace)
    return TraceFacts(
        trace_id=trace.trace_id,
        task_type=trace.task_type or "unknown",
        input=input_text,
        output=output_text,
        prompt_version=trace.versions.get("prompt"),
        signals=tuple(signals),
        router=router,
        retrievals=tuple(retrievals),
        tools=tuple(tools),
        errors=tuple(errors),
        llm_span_ids=tuple(llm_ids),
        chain_span_id=chain_id,
        llm_saw_history=saw_history,
        coverage=coverage,
        retrieved_numbers=frozenset(retrieved_nums),
        comments=tuple(one_line(f.comment)[:300] for f in trace.feedback if f.comment),
        expected_docs=exp_docs,
        expected_actions=exp_actions,
        trace_error=one_line(err)[:300] if isinstance(err, str) and err.strip() else None,
        thumb_up=thumb_up or any(f.kind == "thumb_up" for f in trace.feedback),
        input_terms=q,
        unretrieved_terms=tuple(sorted(q - retrieved_terms)) if retrieved_chars else (),
        cut_off=cut_off,
        versions=_shared(tuple((k, str(v)) for k, v in sorted(trace.versions.items()) if v is not None)),
    )
