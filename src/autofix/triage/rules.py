"""Deterministic root-cause rules over the structure of a trace, following the span contract.

The rules read `TraceFacts` (what a failed trace's spans say, extracted once, small) and a
`TriageContext` (what the whole run's traces say: how often each task type searches, the tools
the assistant has, the documents its retrieval returns and their versions, how often each
prompt version cites a source, the vocabulary of the knowledge base). They are written for any
assistant whose spans follow the contract (``router``, ``retrieval``, ``tool``, ``llm``,
``chain``), not for one target.

Order: the first rule that matches wins. Errors first (they are unambiguous), then the
planner's decisions, then retrieval, then the answer itself:

 1. ``judge_contradicts_user``      evaluation        only a judge says it failed; the user gave a thumb up
 2. ``latency_only``                infrastructure    the only signal is a latency outlier
 3. ``tool_arguments_invalid``      tool_arguments    a tool span's arguments break its ``json_schema``, or its
                                                      error says invalid / bad request / does not match / schema
 4. ``context_overflow``            context           a span error says the context window was exceeded
 5. ``tool_or_span_error``          infrastructure    any other tool or span error (timeouts, 5xx, connection), or
                                                      a trace-level error
 6. ``missing_capability``          missing_capability  the user asks the assistant to *do* something (book, reset,
                                                      approve, change ... for me) that none of its tools does
 7. ``answered_without_retrieval``  routing           no retrieval (and no tool) although the request needs
                                                      enterprise knowledge: the task type's other traces search,
                                                      or a question names terms of the knowledge base
 8. ``needless_clarification``      routing           asked the user to clarify a request that was clear
 9. ``lost_conversation_memory``    memory            the request refers to an earlier turn the model never saw
10. ``retrieval_empty``             retrieval         retrieval returned nothing
11. ``requested_format_missing``    prompt            the user asked for a source / steps / a list / JSON and the
                                                      answer has none (sources: across the prompt version)
12. ``superseded_document``         data_freshness    a superseded or older version of a document was retrieved
                                                      above (or instead of) its current version
13. ``expected_document_missing``   retrieval         a document the trace expects or the user names was not
                                                      retrieved
14. ``fragmentary_retrieval``       retrieval         retrieval returned fragments (chunks ``doc#n``, small
                                                      top-k) or text not covering the request, or the answer says
                                                      it could not find it
15. ``answer_contradicts_sources``  model_limitation  the retrieved text covers the request, yet the answer states
                                                      numbers that are not in it (low confidence)

What none explains goes to the LLM classifier, or ends ``unclassified``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from autofix.traces.schema import Span, Trace
from autofix.triage._text import STOPWORDS, clip, content_terms, is_question, numbers, one_line, text_of
from autofix.triage.detection import SOURCE_REQUEST, SignalTuple
from autofix.triage.records import Category, Diagnosis

__all__ = [
    "RULES",
    "Rule",
    "RuleMatch",
    "TraceFacts",
    "TriageContext",
    "apply_rules",
    "diagnose",
    "extract_facts",
    "no_rule_diagnosis",
]

INPUT_CHARS = 600
OUTPUT_CHARS = 800

# --------------------------------------------------------------------------- facts


@dataclass(slots=True)
class DocFact:
    doc_id: str
    chunk_id: str | None
    score: float | None
    status: str | None
    effective: str | None


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
    schema_problem: str | None
    args: str


@dataclass(slots=True)
class RouterFact:
    span_id: str
    name: str
    action: str | None  # search | answer | clarify | tool | None (unknown)
    raw_action: str
    reason: str


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
    errors: tuple[tuple[str, str, str, str], ...] = ()  # (span_id, kind, name, error) of non-tool spans
    llm_span_ids: tuple[str, ...] = ()
    chain_span_id: str | None = None
    llm_saw_history: bool = False
    coverage: float | None = None  # share of the request's content words found in the retrieved text
    retrieved_numbers: frozenset[str] = frozenset()
    retrieved_chars: int = 0
    comments: tuple[str, ...] = ()
    expected_docs: tuple[str, ...] = ()
    trace_error: str | None = None
    thumb_up: bool = False
    year: int | None = None  # of the trace's timestamp
    input_terms: frozenset[str] = frozenset()

    @property
    def signal_names(self) -> set[str]:
        return {s[1] for s in self.signals}

    @property
    def retrieved_doc_ids(self) -> list[str]:
        return [d.doc_id for r in self.retrievals for d in r.docs]


_ACTION_WORDS = {
    "search": {"search", "retrieve", "retrieval", "rag", "lookup", "kb", "knowledge", "knowledge_base", "query"},
    "answer": {"answer", "direct", "respond", "reply", "chat", "llm", "generate", "none", "no_search", "direct_answer", "smalltalk", "clock"},
    "clarify": {"clarify", "clarification", "ask", "ask_user", "followup", "follow_up", "clarifying_question"},
    "tool": {"tool", "call_tool", "function", "function_call", "action", "tool_call"},
}


def _router_fact(span: Span) -> RouterFact:
    out = span.output
    raw = ""
    reason = ""
    tool = None
    if isinstance(out, dict):
        for key in ("action", "decision", "route", "next", "choice", "path", "intent", "destination"):
            if isinstance(out.get(key), str):
                raw = out[key]
                break
        for key in ("reason", "rationale", "why", "explanation"):
            if isinstance(out.get(key), str):
                reason = out[key]
                break
        tool = out.get("tool") or out.get("tool_name")
    elif isinstance(out, str):
        raw = out
    if not reason:
        r = span.attributes.get("reason")
        reason = r if isinstance(r, str) else ""
    action = None
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    for name, syn in _ACTION_WORDS.items():
        if key in syn or key.split("_")[0] in syn:
            action = name
            break
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


_DOC_META_KEYS = frozenset({"metadata", "status", "doc_status", "state", "lifecycle", "superseded", "deprecated", "archived",
                            "effective", "effective_date", "version_date", "updated", "updated_at", "date", "valid_from"})


def _doc_status(doc: Any) -> tuple[str | None, str | None]:
    extra = doc.__pydantic_extra__
    if not extra or not (extra.keys() & _DOC_META_KEYS):
        return None, None
    meta = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
    status = None
    for src in (extra, meta):
        for key in ("status", "doc_status", "state", "lifecycle"):
            v = src.get(key)
            if isinstance(v, str):
                status = v.lower()
                break
        if status is None and (src.get("superseded") is True or src.get("deprecated") is True or src.get("archived") is True):
            status = "superseded"
        if status:
            break
    effective = None
    for src in (extra, meta):
        for key in ("effective", "effective_date", "version_date", "updated", "updated_at", "date", "valid_from"):
            v = src.get(key)
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                effective = str(v)
                break
        if effective:
            break
    return status, effective


def _expected_docs(trace: Trace) -> tuple[str, ...]:
    out: list[str] = []
    for holder in (trace.metadata, getattr(trace, "model_extra", None) or {}):
        for key in ("expected_doc_ids", "expected_docs", "gold_doc_ids", "relevant_doc_ids"):
            v = holder.get(key)
            if isinstance(v, list):
                out += [x for x in v if isinstance(x, str)]
        exp = holder.get("expected")
        if isinstance(exp, dict):
            for key in ("doc_ids", "documents", "docs"):
                v = exp.get(key)
                if isinstance(v, list):
                    out += [x for x in v if isinstance(x, str)]
    return tuple(dict.fromkeys(out))


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


_CHUNKS = _ChunkCache()


def extract_facts(trace: Trace, signals: Iterable[SignalTuple] = (), thumb_up: bool = False) -> TraceFacts:
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
    for span in trace.spans:
        sid = span.span_id or ""
        if span.kind == "router" and router is None:
            router = _router_fact(span)
        elif span.kind == "retrieval":
            docs = []
            for d in span.documents:
                status, effective = _doc_status(d)
                extra = d.__pydantic_extra__
                chunk = extra.get("chunk_id") if extra else None
                docs.append(DocFact(d.doc_id, chunk if isinstance(chunk, str) else None,
                                    float(d.score) if d.score is not None else None, status, effective))
                if d.text:
                    terms, nums = _CHUNKS.get(d.doc_id, d.text)
                    retrieved_terms |= terms
                    retrieved_nums |= nums
                    retrieved_chars += len(d.text)
            top_k = span.attributes.get("top_k")
            top_k = top_k if isinstance(top_k, int) and not isinstance(top_k, bool) else None
            retrievals.append(RetrievalFact(sid, span.name, tuple(docs), top_k, span.error))
        elif span.kind == "tool":
            schema = span.attributes.get("json_schema") or span.attributes.get("schema") or span.attributes.get("parameters")
            problem = schema_problem(span.input, schema) if schema is not None else None
            try:
                args = json.dumps(span.input, ensure_ascii=False, default=str)[:200]
            except (TypeError, ValueError):
                args = str(span.input)[:200]
            tools.append(ToolFact(sid, span.name, span.error, problem, args))
        elif span.kind == "llm":
            llm_ids.append(sid)
            if isinstance(span.input, list):
                roles = [m.get("role") for m in span.input if isinstance(m, dict)]
                if roles.count("user") > 1 or "assistant" in roles:
                    saw_history = True
            if isinstance(span.output, str):
                last_llm_output = span.output
        elif span.kind == "chain" and chain_id is None:
            chain_id = sid
        if span.error and span.kind != "tool":
            errors.append((sid, span.kind, span.name, one_line(span.error)[:300]))
    if not output_text and last_llm_output:
        output_text = last_llm_output[:OUTPUT_CHARS]
    coverage = None
    q = frozenset(content_terms(input_text))
    if retrieved_chars:
        if q:
            coverage = round(len(q & retrieved_terms) / len(q), 3)
    comments = tuple(one_line(f.comment)[:300] for f in trace.feedback if f.comment)
    err = trace.metadata.get("error")
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
        retrieved_chars=retrieved_chars,
        comments=comments,
        expected_docs=_expected_docs(trace),
        trace_error=one_line(err)[:300] if isinstance(err, str) and err.strip() else None,
        thumb_up=thumb_up or any(f.kind == "thumb_up" for f in trace.feedback),
        year=trace.timestamp.year,
        input_terms=q,
    )


# --------------------------------------------------------------------------- run-wide context

_BRACKET_CITATION = re.compile(r"\[(\d{1,3}|[A-Za-z][\w.-]*[-_#][\w.#-]*)\]")
_CITATION_WORDS = ("source:", "sources:", "source :", "sources :", "reference:", "references:", "according to",
                   "http://", "https://", "(source", "cited", "citation")
_VERSION_SUFFIX = re.compile(r"^(?P<stem>.+?)[-_.](?P<ver>v?\d{1,4}(?:[-_.]\d{1,2}){0,2}|rev\d+|draft|old|archived?|legacy|new|current)$", re.I)
_YEAR = re.compile(r"^(19[89]\d|20\d\d)(?:[-_.]\d{1,2}){0,2}$")
_STALE_STATUS = {"superseded", "deprecated", "archived", "obsolete", "outdated", "old", "expired", "retired", "withdrawn", "replaced", "inactive", "draft"}


def output_cites(output: str, doc_ids: Iterable[str] = ()) -> bool:
    """Whether an answer names a source: a retrieved document id, a URL, ``Sources:``, ``[1]``, ``[doc-id]``."""
    if not output:
        return False
    for d in doc_ids:
        if d and d in output:
            return True
    low = output.lower()
    for w in _CITATION_WORDS:
        if w in low:
            return True
    return "[" in output and _BRACKET_CITATION.search(output) is not None


def _norm_stem(stem: str) -> str:
    """A document id stem with its words singular and lower-case (``email-quotas`` ~ ``email-quota``)."""
    return re.sub(r"[a-z]{3,}", lambda m: _singular(m.group(0)), stem.lower())


def _singular(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


@lru_cache(maxsize=200_000)
def version_key(doc_id: str) -> tuple[str, tuple[int, ...], str]:
    """(stem, version numbers, kind) of a document id; kind: ``dated`` (``leave-2023``), ``v``
    (``leave-v2``), ``old`` (``leave-archived``), ``current`` (``leave-current``), ``seq`` (``leave-001``:
    a plain sequence number, *not* a version: ``-001`` and ``-002`` are different documents) or ``none``."""
    base = doc_id.split("#", 1)[0]
    m = _VERSION_SUFFIX.match(base)
    if not m:
        return _norm_stem(base), (), "none"
    stem, ver = _norm_stem(m.group("stem")), m.group("ver").lower()
    if ver in ("old", "archive", "archived", "legacy", "draft"):
        return stem, (), "old"
    if ver in ("new", "current"):
        return stem, (), "current"
    nums = tuple(int(x) for x in re.findall(r"\d+", ver))
    if _YEAR.match(ver):
        return stem, nums, "dated"
    if ver.startswith(("v", "rev")):
        return stem, nums, "v"
    return stem, nums, "seq"


class TriageContext:
    """What the whole run's traces say, gathered while streaming (`observe`), read by the rules.

    Memory is bounded: at most `max_docs` document ids and `max_chunks` distinct chunks feed
    the vocabulary and version statistics; counts are per task type, tool and prompt version.
    """

    def __init__(self, max_docs: int = 200_000, max_chunks: int = 50_000):
        self.max_docs = max_docs
        self.max_chunks = max_chunks
        self.task_total: Counter[str] = Counter()
        self.task_searched: Counter[str] = Counter()
        self.task_tool: Counter[str] = Counter()
        self.tool_names: Counter[str] = Counter()
        self.doc_ids: set[str] = set()
        self.doc_status: dict[str, str] = {}
        self.doc_effective: dict[str, str] = {}
        self.prompt_answers: Counter[str] = Counter()
        self.prompt_cited: Counter[str] = Counter()
        self._chunks: set[str] = set()
        self._df: Counter[str] = Counter()
        self._domain: frozenset[str] | None = None
        self._versions: dict[str, list[tuple[tuple[int, ...], str, str]]] | None = None
        self._newer: dict[str, str | None] = {}
        self._tool_terms: tuple[tuple[str, ...], set[str]] | None = None

    # -- gathering
    def observe(self, trace: Trace) -> None:
        task = trace.metadata.get("task_type") or "unknown"
        self.task_total[task] += 1
        searched = tool = False
        doc_ids: list[str] = []
        known = self.doc_ids
        chunks = self._chunks
        chunks_open = len(chunks) < self.max_chunks
        docs_open = len(known) < self.max_docs
        for span in trace.spans:
            kind = span.kind
            if kind == "retrieval":
                searched = True
                out = span.output
                if not out:
                    continue
                for d in out:
                    did = d.doc_id
                    doc_ids.append(did)
                    if docs_open and did not in known:
                        self._new_doc(d)
                    if chunks_open:
                        text = d.text
                        if text:
                            extra = d.__pydantic_extra__
                            key = extra.get("chunk_id") if extra else None
                            if key.__class__ is not str:
                                key = f"{did}:{len(text)}:{text[:48]}"
                            if key not in chunks:
                                chunks.add(key)
                                self._df.update(_CHUNKS.get(did, text)[0])
                                self._domain = None
            elif kind == "tool":
                tool = True
                self.tool_names[span.name] += 1
        if searched:
            self.task_searched[task] += 1
            version = trace.versions.get("prompt")
            if version is not None:
                self.prompt_answers[version] += 1
                out = trace.output if isinstance(trace.output, str) else text_of(trace.output)
                if output_cites(out, doc_ids[:8]):
                    self.prompt_cited[version] += 1
        if tool:
            self.task_tool[task] += 1

    def _new_doc(self, d: Any) -> None:
        did = d.doc_id
        self.doc_ids.add(did)
        self._versions = None
        status, effective = _doc_status(d)
        if status:
            self.doc_status[did] = status
        if effective:
            self.doc_effective[did] = effective

    def merge(self, other: TriageContext) -> None:
        """Add what another part of the run observed (the document-frequency counts are summed)."""
        self.task_total.update(other.task_total)
        self.task_searched.update(other.task_searched)
        self.task_tool.update(other.task_tool)
        self.tool_names.update(other.tool_names)
        self.prompt_answers.update(other.prompt_answers)
        self.prompt_cited.update(other.prompt_cited)
        for did in other.doc_ids:
            if len(self.doc_ids) >= self.max_docs:
                break
            self.doc_ids.add(did)
        self.doc_status.update(other.doc_status)
        self.doc_effective.update(other.doc_effective)
        new_chunks = other._chunks - self._chunks
        if new_chunks:
            self._df.update(other._df)
            self._chunks |= other._chunks
        self._domain = None
        self._versions = None

    def prepare(self) -> TriageContext:
        """Compute what the rules read (vocabulary, versions, tool words) and drop what only gathering
        needs, so that the context is small to send to other processes. No `observe` after this."""
        _ = self.domain_terms
        self.tool_terms()
        self.siblings("")
        self._chunks = set()
        self._df = Counter()
        return self

    # -- reading
    def search_rate(self, task_type: str, exclude_self: bool = True) -> tuple[float, int]:
        """Share of the task type's traces that searched (the failing trace itself left out), and their count."""
        n = self.task_total.get(task_type, 0) - (1 if exclude_self else 0)
        if n <= 0:
            return 0.0, 0
        return self.task_searched.get(task_type, 0) / n, n

    def citation_rate(self, prompt_version: str | None) -> tuple[float | None, int]:
        if prompt_version is None:
            return None, 0
        n = self.prompt_answers.get(prompt_version, 0)
        return (self.prompt_cited.get(prompt_version, 0) / n if n else None), n

    @property
    def domain_terms(self) -> frozenset[str]:
        """Words of the knowledge base: in the retrieved texts, not in most of them, not function words."""
        if self._domain is None:
            n = max(1, len(self._chunks))
            limit = max(2, int(0.25 * n))
            terms = {t for t, df in self._df.items() if df <= limit and len(t) > 2 and not t.isdigit() and t not in STOPWORDS}
            for did in self.doc_ids:
                terms.update(w for w in re.split(r"[^a-z]+", did.lower()) if len(w) > 2)
            self._domain = frozenset(terms)
        return self._domain

    def tool_terms(self) -> set[str]:
        key = tuple(sorted(self.tool_names))
        if self._tool_terms is not None and self._tool_terms[0] == key:
            return self._tool_terms[1]
        out: set[str] = set()
        for name in self.tool_names:
            spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
            out.update(content_terms(spaced.replace("_", " ").replace("-", " ").replace(".", " ")))
        self._tool_terms = (key, out)
        return out

    def siblings(self, doc_id: str) -> list[tuple[tuple[int, ...], str, str]]:
        """Other versions of a document seen in the run: (version numbers, kind, doc id)."""
        if self._versions is None:
            groups: dict[str, list[tuple[tuple[int, ...], str, str]]] = {}
            for did in self.doc_ids:
                stem, nums, kind = version_key(did)
                groups.setdefault(stem, []).append((nums, kind, did))
                if kind == "none":
                    continue
            self._versions = {k: v for k, v in groups.items() if len(v) > 1}
        stem = version_key(doc_id)[0]
        return [v for v in self._versions.get(stem, []) if v[2] != doc_id]

    def newer_version(self, doc_id: str) -> str | None:
        if self._versions is None:
            self._newer = {}
        hit = self._newer.get(doc_id, self)
        if hit is self:
            hit = self._newer[doc_id] = self._newer_version(doc_id)
        return hit  # type: ignore[return-value]

    def _newer_version(self, doc_id: str) -> str | None:
        """The current version of `doc_id` when it is an older one (by status, date or version id), else None.

        A dated copy (``leave-2023``) beside an undated or sequence-numbered document of the same
        stem (``leave-001``, ``leave``) is the old snapshot; dates and ``vN`` compare among
        themselves; plain sequence numbers are never versions.
        """
        _, nums, kind = version_key(doc_id)
        if kind not in ("dated", "v", "old"):
            return None
        best: tuple[tuple[int, ...], str] | None = None
        for other_nums, other_kind, other in self.siblings(doc_id):
            if self.doc_status.get(other) in _STALE_STATUS:
                continue
            eff_self, eff_other = self.doc_effective.get(doc_id), self.doc_effective.get(other)
            if eff_self and eff_other:
                newer = eff_other > eff_self
            elif kind == "old":
                newer = other_kind != "old"
            elif other_kind in ("seq", "none", "current"):
                newer = True
            elif other_kind == kind:
                newer = other_nums > nums
            else:
                newer = False
            rank = (1 << 30,) if other_kind in ("seq", "none", "current") else other_nums
            if newer and (best is None or rank > best[0]):
                best = (rank, other)
        return best[1] if best else None


# --------------------------------------------------------------------------- rules


@dataclass(slots=True)
class RuleMatch:
    category: Category
    confidence: float
    rationale: str
    evidence: list[str]


Rule = Callable[[TraceFacts, TriageContext], "RuleMatch | None"]


def _q(text: str, n: int = 90) -> str:
    return repr(clip(text, n))


def r_judge_contradicts_user(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    names = f.signal_names
    if not f.thumb_up or not names or names - {"low_score"}:
        return None
    judged = [s for s in f.signals if s[1] == "low_score"]
    return RuleMatch(
        Category.evaluation, 0.5,
        f"only a judge flags this trace ({judged[0][2]}) while the user gave a thumb up and no other signal is "
        "negative: the scorer may be wrong; check it against the answer",
        [s[3] for s in judged if s[3]],
    )


def r_latency_only(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    if not f.signals or f.signal_names != {"latency_outlier"}:
        return None
    sig = next(s for s in f.signals if s[1] == "latency_outlier")
    ev = [x for x in (f.chain_span_id,) if x]
    where = f" (chain span {f.chain_span_id})" if f.chain_span_id else ""
    return RuleMatch(Category.infrastructure, 0.7, f"the only failure signal is slowness{where}: {sig[2]}", ev)


_ARG_ERROR = re.compile(
    r"\b(invalid|bad request|400|422|does ?n[o']t match|schema|validation|required (property|field|argument|parameter)|"
    r"missing (required )?(argument|parameter|field|property)|unexpected (argument|keyword|property|field)|"
    r"not a valid|malformed|is not of type|additional properties|must (be|match)|unknown (argument|parameter|field)|"
    r"wrong (format|type))\b",
    re.I,
)
_CONTEXT_ERROR = re.compile(r"(context (length|window)|maximum context|too many tokens|token limit|prompt is too long|max_tokens exceeded)", re.I)


def r_tool_arguments(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    for t in f.tools:
        arg_error = bool(t.error and _ARG_ERROR.search(t.error))
        if t.schema_problem or arg_error:
            bits = []
            if t.schema_problem:
                bits.append(f"its arguments {t.args} break the tool's json_schema ({t.schema_problem})")
            if t.error:
                bits.append(f"the tool answered {_q(t.error, 160)}")
            conf = 0.9 if t.schema_problem and arg_error else 0.85 if t.schema_problem else 0.8
            return RuleMatch(
                Category.tool_arguments, conf,
                f"tool span {t.span_id} ({t.name}): " + "; ".join(bits) + ": the call's arguments are wrong, not the tool",
                [t.span_id],
            )
    return None


def r_context_overflow(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    for sid, kind, name, err in [*((t.span_id, "tool", t.name, t.error) for t in f.tools if t.error), *f.errors]:
        if _CONTEXT_ERROR.search(err):
            return RuleMatch(Category.context, 0.8,
                             f"{kind} span {sid} ({name}) failed because the context was too long: {_q(err, 160)}", [sid])
    return None


def r_tool_or_span_error(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    for t in f.tools:
        if t.error:
            return RuleMatch(Category.infrastructure, 0.8,
                             f"tool span {t.span_id} ({t.name}) failed with {_q(t.error, 160)} although its arguments "
                             "pass its schema: the tool or its service failed", [t.span_id])
    if f.errors:
        sid, kind, name, err = f.errors[0]
        return RuleMatch(Category.infrastructure, 0.75, f"{kind} span {sid} ({name}) failed: {_q(err, 160)}", [sid])
    if f.trace_error:
        ev = [x for x in (f.chain_span_id,) if x]
        return RuleMatch(Category.infrastructure, 0.65, f"the request itself failed: {_q(f.trace_error, 160)}", ev)
    return None


_ACTION_REQUEST = re.compile(
    r"^\W*(?:(?:hey|hi|ok|so|please|pls|kindly)[,!]?\s+)*(?:(?:can|could|would|will) you\s+(?:please\s+)?|i (?:want|need) you to\s+|"
    r"i'?d like you to\s+|go ahead and\s+)?"
    r"(?P<verb>book|reserve|reset|unlock|lock|approve|reject|change|update|modify|install|uninstall|give|grant|revoke|add|remove|"
    r"delete|wipe|erase|restore|recover|register|submit|file|enrol|enroll|unenroll|cancel|order|buy|purchase|pay|transfer|send|"
    r"email|schedule|reschedule|set up|setup|enable|disable|activate|deactivate|renew|refund|move|assign|issue|create|open|"
    r"sign me up|sign me|sign in|provision|upgrade|downgrade|replace|ship|print|extend|increase|decrease|switch|put|"
    r"claim|arrange|set|make me|undelete|get me|get my|remote(?:ly)? wipe|unblock|reactivate|apply for|pay out)\b(?P<rest>.*)$",
    re.I,
)
_GENERIC_VERBS = frozenset("create open add get set update list show make do new run check find search lookup look".split())
_ON_BEHALF = re.compile(r"\b(for me|on my behalf|for us|my behalf)\b", re.I)
_DECLINES = re.compile(
    r"\b(can(no|')t|can not|unable to|not able to|don'?t have (the )?(access|ability|permission)|not possible|no way to|"
    r"yourself|on your own|you('ll| will)? need to|you can do (this|that|it)|please use|contact)\b",
    re.I,
)


_DELEGATION = re.compile(
    r"\b(for me|on my behalf|for us|please|pls|plz|can you|could you|would you|will you|i need you to|i want you to|"
    r"do it|right now|now)\b|^\W*[a-z]+(?: [a-z]+)? (me|us)\b",
    re.I,
)
_SCHEDULE = re.compile(
    r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight|today|\d{1,2}(:\d\d)? ?(am|pm)|at \d{1,2})\b",
    re.I,
)
_PERSONAL = re.compile(r"\b(my|mine|i deleted|i lost|i requested|i submitted)\b", re.I)
_DO_IT = re.compile(r"^(?P<rest>.*?)\W*\b(?P<verb>do it|do that)( for me| now| please)?\W*$", re.I)


def r_missing_capability(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    m = _ACTION_REQUEST.match(f.input.strip()) or _DO_IT.match(f.input.strip())
    if not m:
        return None
    verb = m.group("verb").lower()
    rest = m.group("rest")
    if not (_DELEGATION.search(f.input) or _SCHEDULE.search(f.input) or _PERSONAL.search(f.input)):
        return None  # a bare "install software on macbook" is more likely a how-to query than an order
    if is_question(f.input) and not re.match(r"^\W*(can|could|would|will) you\b", f.input, re.I) and not _ON_BEHALF.search(f.input):
        return None
    if any(t.error is None for t in f.tools):
        return None  # a tool did act on the request
    wanted = content_terms(f"{verb} {rest}") - {"me", "my"}
    tool_terms = ctx.tool_terms()
    if (wanted & tool_terms) - _GENERIC_VERBS:
        return None  # the assistant has a tool for this: a routing problem, not a missing capability
    declined = bool(_DECLINES.search(f.output))
    ev = [x for x in ([f.router.span_id] if f.router else []) + list(f.llm_span_ids[:1]) + [r.span_id for r in f.retrievals[:1]] if x]
    tools = ", ".join(sorted(ctx.tool_names)[:6]) or "none"
    how = "the answer declines or explains how to do it instead" if declined else f"the answer {_q(f.output, 70)} does not do it"
    routed = f"; router span {f.router.span_id} chose {f.router.raw_action or '?'!r}" if f.router else ""
    return RuleMatch(
        Category.missing_capability, 0.85 if declined else 0.65,
        f"the user asks the assistant to act ({_q(f.input, 80)}: {verb!r}), but no tool of the assistant does that "
        f"(tools seen in the traces: {tools}){routed}; {how}",
        ev,
    )


def _needs_knowledge(f: TraceFacts, ctx: TriageContext) -> tuple[bool, str, float]:
    rate, n = ctx.search_rate(f.task_type)
    terms = f.input_terms & ctx.domain_terms
    by_rate = n >= 5 and rate >= 0.5
    by_terms = len(terms) >= 2 and is_question(f.input)
    reasons = []
    if by_rate:
        reasons.append(f"{rate:.0%} of the other {n} {f.task_type!r} traces search")
    if by_terms:
        reasons.append("it asks about " + ", ".join(repr(t) for t in sorted(terms)[:4]) + " (terms of the knowledge base)")
    strength = (0.5 if by_rate else 0.0) + (0.35 if by_terms else 0.0)
    return by_rate or by_terms, " and ".join(reasons), strength


def r_answered_without_retrieval(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    if f.retrievals or f.tools:
        return None
    if f.router is not None and f.router.action not in ("answer", None):
        return None
    if f.router is None and not (f.llm_span_ids or f.output):
        return None
    if not ctx.task_searched and not ctx.doc_ids:
        return None  # this assistant never searches: nothing to compare with
    needs, why, strength = _needs_knowledge(f, ctx)
    if not needs:
        return None
    if f.router is not None:
        reason = f" ({f.router.reason!r})" if f.router.reason else ""
        head = f"router span {f.router.span_id} ({f.router.name}) chose {f.router.raw_action or 'to answer'!r}{reason}"
        ev = [f.router.span_id, *f.llm_span_ids[:1]]
        conf = min(0.9, 0.5 + strength)
    else:
        ev = list(f.llm_span_ids[:1]) or [x for x in (f.chain_span_id,) if x]
        head = "the assistant answered directly" + (f" (span {ev[0]})" if ev else "")
        conf = min(0.75, 0.4 + strength)
    return RuleMatch(
        Category.routing, round(conf, 2),
        f"{head} and the trace has no retrieval span, although the request needs enterprise knowledge: {why}",
        [x for x in ev if x],
    )


_CLARIFYING = re.compile(
    r"(could you (please )?(clarify|tell me more|provide more|be more specific)|can you (clarify|be more specific|give me more)|"
    r"need (a bit )?more (detail|information|context)|what do you mean|which (system|device|one|policy|application|app|account)|"
    r"please (clarify|provide more|specify))",
    re.I,
)


def r_needless_clarification(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    asked = (f.router is not None and f.router.action == "clarify") or (
        not f.retrievals and not f.tools and bool(_CLARIFYING.search(f.output))
    )
    if not asked:
        return None
    terms = f.input_terms & ctx.domain_terms
    rate, n = ctx.search_rate(f.task_type)
    clear = len(terms) >= 2 or (len(terms) >= 1 and len(f.input_terms) >= 4) or (n >= 5 and rate >= 0.6)
    if not clear:
        return None
    why = []
    if terms:
        why.append("it names " + ", ".join(repr(t) for t in sorted(terms)[:4]))
    if n >= 5 and rate >= 0.6:
        why.append(f"{rate:.0%} of the other {f.task_type!r} traces are answered by searching")
    if f.router is not None:
        head = f"router span {f.router.span_id} ({f.router.name}) asked for clarification ({f.router.reason!r})"
        ev = [f.router.span_id]
    else:
        head = f"the answer asks the user to clarify ({_q(f.output, 70)})"
        ev = list(f.llm_span_ids[:1])
    return RuleMatch(Category.routing, 0.7, f"{head} although the request was clear: {' and '.join(why)}", ev)


_REFERS_BACK = re.compile(
    r"\b(as i (said|mentioned|told you|asked)|like i said|i already (said|told|mentioned|asked)|"
    r"my (previous|last|earlier) (question|message|request)|you (said|told me) (earlier|before)|as (we|you) discussed)\b",
    re.I,
)


def r_lost_memory(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    if not _REFERS_BACK.search(f.input) or f.llm_saw_history or not f.llm_span_ids:
        return None
    return RuleMatch(
        Category.memory, 0.5,
        f"the request refers to an earlier turn ({_q(f.input, 80)}) but llm span {f.llm_span_ids[0]} received no "
        "earlier messages of the conversation",
        [f.llm_span_ids[0]],
    )


def r_retrieval_empty(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    if not f.retrievals or any(r.docs for r in f.retrievals) or any(r.error for r in f.retrievals):
        return None
    ids = [r.span_id for r in f.retrievals]
    return RuleMatch(Category.retrieval, 0.85,
                     f"retrieval span {ids[0]} ({f.retrievals[0].name}) returned no documents for {_q(f.input, 80)}", ids)


_WANTS_STEPS = re.compile(r"\b(steps?|step[- ]by[- ]step|list|bullet(s| points)?|enumerate|checklist)\b", re.I)
_WANTS_JSON = re.compile(r"\b(json|yaml|csv)\b", re.I)
_WANTS_TABLE = re.compile(r"\b(as a table|in a table|tabular)\b", re.I)
_WANTS_SOURCE_INPUT = re.compile(r"\b(cite|citations?|with (the )?sources?|source links?|link (to )?the (policy|document|source)|which (policy|document) says)\b", re.I)
_HAS_LIST = re.compile(r"(^|\n)\s*(\d+[.)]|[-*•])\s+\S", re.M)


_WANTS_ANY = re.compile(
    "|".join(x.pattern for x in (_WANTS_STEPS, _WANTS_JSON, _WANTS_TABLE, _WANTS_SOURCE_INPUT)), re.I
)


def r_requested_format_missing(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    source_comments = [c for c in f.comments if SOURCE_REQUEST.search(c)]
    wants = _WANTS_ANY.search(f.input) is not None
    if not source_comments and not wants:
        return None
    asked_source = bool(source_comments) or bool(_WANTS_SOURCE_INPUT.search(f.input))
    ev = list(f.llm_span_ids[:1]) + [r.span_id for r in f.retrievals[:1]]
    if asked_source and not output_cites(f.output, f.retrieved_doc_ids):
        rate, n = ctx.citation_rate(f.prompt_version)
        who = f"the user asked {_q(source_comments[0], 60)}" if source_comments else f"the request asks for a source ({_q(f.input, 60)})"
        docs = f"; retrieval span {f.retrievals[0].span_id} had {len(f.retrievals[0].docs)} documents to cite" if f.retrievals and f.retrievals[0].docs else ""
        if rate is not None and n >= 5:
            conf = 0.85 if rate < 0.1 else 0.7 if rate < 0.5 else 0.55
            pv = f"; only {rate:.0%} of the {n} search answers of prompt version {f.prompt_version} name a source"
        else:
            conf, pv = 0.6, ""
        return RuleMatch(Category.prompt, conf,
                         f"{who} and the answer (llm span {f.llm_span_ids[0] if f.llm_span_ids else '?'}) names no source{docs}{pv}: "
                         "the instructions or answer template do not ask for sources", [x for x in ev if x])
    if _WANTS_JSON.search(f.input) and f.output and "{" not in f.output and "[" not in f.output:
        return RuleMatch(Category.prompt, 0.7, f"the request asks for {_WANTS_JSON.search(f.input).group(0)} and the answer "
                         f"({_q(f.output, 60)}) has none", [x for x in ev if x])
    if _WANTS_TABLE.search(f.input) and f.output and "|" not in f.output:
        return RuleMatch(Category.prompt, 0.65, "the request asks for a table and the answer has none", [x for x in ev if x])
    if _WANTS_STEPS.search(f.input) and f.output and not _HAS_LIST.search(f.output) and is_question(f.input) is False:
        return RuleMatch(Category.prompt, 0.6, f"the request asks for steps or a list ({_q(f.input, 60)}) and the answer "
                         "has no list", [x for x in ev if x])
    return None


def r_superseded_document(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A stale document in the retrieved context: marked superseded, an older version of a document the
    run also retrieves, or (weakest) dated years before the request. The more it wins, the surer."""
    weak: RuleMatch | None = None
    for r in f.retrievals:
        ids = [d.doc_id for d in r.docs]
        for rank, d in enumerate(r.docs, 1):
            status = d.status or ctx.doc_status.get(d.doc_id)
            current = ctx.newer_version(d.doc_id)
            cur_rank = ids.index(current) + 1 if current in ids else None
            wins = cur_rank is None or cur_rank > rank
            if status in _STALE_STATUS:
                where = (f"; its current version {current!r} " + (f"ranks {cur_rank}" if cur_rank else "was not retrieved")
                         if current else "")
                return RuleMatch(Category.data_freshness, 0.8 if wins else 0.65,
                                 f"retrieval span {r.span_id} ({r.name}) returned {d.doc_id!r} at rank {rank}, a document "
                                 f"marked {status!r}{where}: stale content is still indexed", [r.span_id])
            if current is not None:
                state = ("the current version was not retrieved" if cur_rank is None
                         else f"the current version ranks {cur_rank}, below it" if wins
                         else f"the current version ranks {cur_rank}, and both reach the model")
                return RuleMatch(Category.data_freshness, 0.7 if wins else 0.55,
                                 f"retrieval span {r.span_id} ({r.name}) returned {d.doc_id!r} at rank {rank}, an older "
                                 f"version of {current!r} (same document, older version id), and {state}: "
                                 "superseded content is still indexed", [r.span_id])
            _, nums, kind = version_key(d.doc_id)
            if (weak is None and kind == "dated" and f.year and nums and f.year - nums[0] >= 2
                    and str(nums[0]) not in f.input):
                weak = RuleMatch(Category.data_freshness, 0.45,
                                 f"retrieval span {r.span_id} ({r.name}) returned {d.doc_id!r} at rank {rank}, a document "
                                 f"dated {nums[0]}, {f.year - nums[0]} years before the request: it may be outdated",
                                 [r.span_id])
    return weak


def r_expected_document_missing(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    if not f.retrievals:
        return None
    wanted = list(f.expected_docs)
    named = []
    for c in f.comments:
        for tok in re.findall(r"[\w.#-]{4,}", c):
            if tok in ctx.doc_ids and tok not in wanted:
                named.append(tok)
    got = {d.doc_id for r in f.retrievals for d in r.docs} | {d.chunk_id for r in f.retrievals for d in r.docs if d.chunk_id}
    got_docs = {g.split("#", 1)[0] for g in got}
    missing = [d for d in [*wanted, *named] if d not in got and d.split("#", 1)[0] not in got_docs]
    if not missing:
        return None
    src = "expected" if missing[0] in wanted else "named by the user"
    r = f.retrievals[0]
    shown = ", ".join(repr(x) for x in list(dict.fromkeys(d.doc_id for d in r.docs))[:4]) or "nothing"
    return RuleMatch(Category.retrieval, 0.85,
                     f"retrieval span {r.span_id} ({r.name}) returned {shown} but not {missing[0]!r}, the document {src}",
                     [x.span_id for x in f.retrievals])


_NOT_FOUND = re.compile(
    r"(couldn'?t find|could not find|can'?t find|cannot find|no information|not (mentioned|specified|stated|covered|included) in|"
    r"doesn'?t (say|mention|specify)|does not (say|mention|specify)|don'?t have (that|this|the|enough|any) information|"
    r"not sure|unable to find|no (details|mention))",
    re.I,
)


def r_fragmentary_retrieval(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    rets = [r for r in f.retrievals if r.docs]
    if not rets:
        return None
    r = rets[0]
    chunked = [d for d in r.docs if d.chunk_id or "#" in d.doc_id]
    chunk_names = [d.chunk_id or d.doc_id for d in chunked]
    says_missing = bool(_NOT_FOUND.search(f.output))
    low_cover = f.coverage is not None and f.coverage < 0.6
    small_k = (r.top_k is not None and r.top_k <= 3) or len(r.docs) <= 2
    reasons = []
    if says_missing:
        m = _NOT_FOUND.search(f.output)
        around = f.output[max(0, m.start() - 40) : m.end() + 30] if m else f.output
        reasons.append(f"the answer says it could not find it (…{_q(around, 90)}…)")
    if low_cover:
        reasons.append(f"the retrieved text covers only {f.coverage:.0%} of the request's words")
    if chunked and (small_k or says_missing or low_cover):
        reasons.append(f"it returned only fragments ({', '.join(chunk_names[:3])}"
                       + (f", top_k={r.top_k}" if r.top_k is not None else "") + ") of documents whose other parts the answer needed")
    elif small_k and not chunked:
        reasons.append(f"it returned only {len(r.docs)} document(s)")
    if not reasons:
        return None
    conf = 0.7 if says_missing else 0.6 if (chunked or low_cover) else 0.5
    return RuleMatch(Category.retrieval, conf,
                     f"retrieval span {r.span_id} ({r.name}): " + "; ".join(reasons), [x.span_id for x in rets])


def r_answer_contradicts_sources(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    if not f.retrievals or f.coverage is None or f.coverage < 0.75 or not f.retrieved_numbers:
        return None
    said = numbers(f.output)
    if not said or said & f.retrieved_numbers:
        return None
    ev = [r.span_id for r in f.retrievals] + list(f.llm_span_ids[:1])
    return RuleMatch(Category.model_limitation, 0.4,
                     f"retrieval span {f.retrievals[0].span_id} covers {f.coverage:.0%} of the request and states "
                     f"{', '.join(sorted(f.retrieved_numbers)[:4])}, yet the answer (llm span "
                     f"{f.llm_span_ids[0] if f.llm_span_ids else '?'}) says {', '.join(sorted(said)[:4])}: "
                     "the model did not follow its sources (low confidence)", ev)


RULES: list[tuple[str, Rule]] = [
    ("judge_contradicts_user", r_judge_contradicts_user),
    ("latency_only", r_latency_only),
    ("tool_arguments_invalid", r_tool_arguments),
    ("context_overflow", r_context_overflow),
    ("tool_or_span_error", r_tool_or_span_error),
    ("missing_capability", r_missing_capability),
    ("answered_without_retrieval", r_answered_without_retrieval),
    ("needless_clarification", r_needless_clarification),
    ("lost_conversation_memory", r_lost_memory),
    ("retrieval_empty", r_retrieval_empty),
    ("requested_format_missing", r_requested_format_missing),
    ("superseded_document", r_superseded_document),
    ("expected_document_missing", r_expected_document_missing),
    ("fragmentary_retrieval", r_fragmentary_retrieval),
    ("answer_contradicts_sources", r_answer_contradicts_sources),
]
"""The rules in the order they are tried; the first that matches wins."""


def apply_rules(facts: TraceFacts, ctx: TriageContext) -> tuple[str, RuleMatch] | None:
    """The first rule that explains the failure, as (rule name, match), or None."""
    for name, rule in RULES:
        m = rule(facts, ctx)
        if m is not None:
            return name, m
    return None


def no_rule_diagnosis(trace_id: str, reason: str = "") -> Diagnosis:
    why = f"; {reason}" if reason else ""
    return Diagnosis(
        trace_id=trace_id, category=Category.unclassified, confidence=0.0,
        rationale=f"no deterministic rule matched the trace's spans{why}", evidence=[], method="none",
    )


def diagnose(trace: Trace, ctx: TriageContext, signals: Iterable[SignalTuple] = ()) -> Diagnosis | None:
    """The rule diagnosis of one failed trace (None when no rule matches). For tests and one-off use."""
    facts = extract_facts(trace, signals)
    hit = apply_rules(facts, ctx)
    if hit is None:
        return None
    name, m = hit
    return Diagnosis(trace_id=trace.trace_id, category=m.category, confidence=m.confidence,
                     rationale=m.rationale, evidence=m.evidence, method="rule", rule=name)

