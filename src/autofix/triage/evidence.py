"""Evidence for the LLM classifier: a Trace and its Failure as a compact, size-capped text.

One line per fact, each tagged with where it comes from, so that the model can cite
span ids and a reviewer can check the rationale against the spans::

    [request] How many days can I carry over this year?
    [answer] You can carry over 10 days.
    [signal explicit/thumb_down] user gave a thumb down
    [span t1:1 router route] decision={"action": "direct", ...}
    [span t1:2 retrieval bm25.search] query="..." -> 2 docs: leave-policy#3 (score 4.2) "Employees may ..."; ...
    [span t1:3 tool list_tickets] args={"since": "16/11/2026"} ERROR 400 Bad Request: ...
    [span t1:4 llm chat.completions] system="You answer ..." -> "You can ..."
    [feedback thumb_down span=t1:4] comment="where is this from?"
    [score citation=0.0 source=check] no source named

The text is deterministic for a given trace and failure (the classifier's cache is keyed
by its hash), every field is cut to a per-field cap, and the whole text stays under
`max_chars`: the request and the answer take at most a tenth of it each, the signals,
feedback and scores at most a quarter, the spans the rest; when the spans do not fit,
the least telling ones (plain LLM and chain spans first, later spans before earlier
ones, error spans last) are left out, and a line says how many were.
"""

from __future__ import annotations

import json
from typing import Any

from autofix.traces.schema import Span, Trace
from autofix.triage.records import Failure

__all__ = ["DEFAULT_MAX_CHARS", "build_evidence", "clip"]

DEFAULT_MAX_CHARS = 6000
"""Default cap of the whole evidence text, in characters (about 1,500 tokens)."""

# Per-field caps, in characters.
REQUEST_CHARS = 600
ANSWER_CHARS = 600
DETAIL_CHARS = 240
ARGS_CHARS = 300
ERROR_CHARS = 300
OUTPUT_CHARS = 240
EXCERPT_CHARS = 140
SCHEMA_CHARS = 240
MAX_DOCS = 6

ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis when longer."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def _compact(value: Any, limit: int) -> str:
    """A JSON value as compact one-line text, cut to `limit`; strings are shown as they are."""
    if value is None:
        return ""
    if isinstance(value, str):
        return clip(value, limit)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):
        text = repr(value)
    return clip(text, limit)


def _quoted(value: Any, limit: int) -> str:
    return json.dumps(_compact(value, limit), ensure_ascii=False)


# --------------------------------------------------------------------------- spans


def _system_prompt(messages: Any) -> str | None:
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "system":
                return m.get("content") if isinstance(m.get("content"), str) else None
    return None


def _span_line(span: Span) -> str:
    head = f"[span {span.span_id} {span.kind} {clip(span.name, 60)}]"
    parts: list[str] = []
    if span.kind == "router":
        parts.append(f"decision={_compact(span.output, OUTPUT_CHARS)}")
        if span.attributes.get("matched"):
            parts.append(f"matched={_compact(span.attributes['matched'], 120)}")
    elif span.kind == "retrieval":
        if span.input is not None:
            parts.append(f"query={_quoted(span.input, 200)}")
        docs = span.documents
        if span.output is None:
            parts.append("-> no output")
        else:
            shown = []
            for d in docs[:MAX_DOCS]:
                doc = clip(d.doc_id, 80)
                extra = {k: v for k, v in (d.model_extra or {}).items() if isinstance(v, (str, int, float, bool))}
                if extra:
                    doc += " " + _compact(extra, 100)
                if d.score is not None:
                    doc += f" (score {float(d.score):.3g})"
                if d.text:
                    doc += f" {_quoted(d.text, EXCERPT_CHARS)}"
                shown.append(doc)
            more = f"; +{len(docs) - MAX_DOCS} more" if len(docs) > MAX_DOCS else ""
            parts.append(f"-> {len(docs)} docs: " + "; ".join(shown) + more if docs else "-> 0 docs")
        if "top_k" in span.attributes:
            parts.append(f"top_k={_compact(span.attributes['top_k'], 20)}")
    elif span.kind == "tool":
        parts.append(f"args={_compact(span.input, ARGS_CHARS)}")
        schema = span.attributes.get("json_schema") or span.attributes.get("schema")
        if schema is not None:
            parts.append(f"schema={_compact(schema, SCHEMA_CHARS)}")
        if span.error is None and span.output is not None:
            parts.append(f"-> {_compact(span.output, OUTPUT_CHARS)}")
    elif span.kind == "llm":
        system = _system_prompt(span.input)
        if system:
            parts.append(f"system={_quoted(system, 200)}")
        elif span.input is not None and not isinstance(span.input, list):
            parts.append(f"input={_quoted(span.input, 160)}")
        if span.output is not None:
            parts.append(f"-> {_quoted(span.output, OUTPUT_CHARS)}")
    else:  # chain
        if span.output is not None:
            parts.append(f"-> {_quoted(span.output, 160)}")
    if span.error:
        parts.append(f"ERROR {clip(span.error, ERROR_CHARS)}")
    duration = span.duration_ms
    if duration is not None:
        parts.append(f"{duration:.0f} ms")
    return head + (" " + " ".join(parts) if parts else "")


def _span_rank(span: Span) -> int:
    """Lower is kept first when the text must shrink: errors and decisions before plain generations."""
    if span.error:
        return 0
    return {"router": 1, "tool": 1, "retrieval": 2, "llm": 3, "chain": 4}.get(span.kind, 4)


# --------------------------------------------------------------------------- the text


def _fit(lines: list[str], budget: int) -> tuple[list[str], int]:
    """The leading lines that fit in `budget` characters (newlines counted), and how many did not."""
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    return kept, len(lines) - len(kept)


def _size(lines: list[str]) -> int:
    return sum(len(x) + 1 for x in lines)


def build_evidence(failure: Failure, trace: Trace, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The evidence text of one failure, at most `max_chars` characters, each line tagged with its source.

    Budget: the request and answer take at most a tenth of the cap each, the signals, feedback and
    scores at most a quarter (later ones are counted, not shown, beyond it), the spans the rest
    (the least telling left out first); a last cut guards the cap whatever the lines hold.
    """
    field_cap = max(60, min(REQUEST_CHARS, max_chars // 10))
    head: list[str] = []
    task = trace.task_type or failure.task_type
    if task and task != "unknown":
        head.append(f"[task_type] {clip(task, 60)}")
    request = trace.input if trace.input is not None else failure.input
    answer = trace.output if trace.output is not None else failure.output
    head.append(f"[request] {_compact(request, field_cap)}")
    head.append(f"[answer] {_compact(answer, min(ANSWER_CHARS, field_cap))}")
    if trace.versions:
        head.append(f"[versions] {_compact(trace.versions, 160)}")
    if not trace.spans:
        head.append("[spans] none recorded")

    tail: list[str] = []
    for s in failure.signals:
        where = f" span={s.span_id}" if s.span_id else ""
        tail.append(f"[signal {s.kind}/{clip(s.name, 40)}{where}] {clip(s.detail, DETAIL_CHARS)}".rstrip())
    for f in trace.feedback:
        where = f" span={f.span_id}" if f.span_id else ""
        bits = []
        if f.value is not None and f.value != f.comment:
            bits.append(f"value={_compact(f.value, 60)}")
        if f.comment:
            bits.append(f"comment={_quoted(f.comment, DETAIL_CHARS)}")
        tail.append(f"[feedback {f.kind}{where}] {' '.join(bits)}".rstrip())
    for sc in trace.scores:
        where = f" span={sc.span_id}" if sc.span_id else ""
        src = f" source={clip(sc.source, 40)}" if sc.source else ""
        rationale = f" {clip(sc.rationale, DETAIL_CHARS)}" if sc.rationale else ""
        tail.append(f"[score {clip(sc.name, 60)}={_compact(sc.value, 40)}{src}{where}]{rationale}")
    note_room = 80
    if _size(tail) > max_chars // 4:
        tail, left = _fit(tail, max_chars // 4 - note_room)
        tail.append(f"[signals omitted] {left} more signal, feedback or score lines left out to fit the size cap")

    span_lines = [(i, _span_rank(s), _span_line(s)) for i, s in enumerate(trace.spans)]
    budget = max_chars - _size(head) - _size(tail)
    kept = span_lines
    if _size([x for _, _, x in kept]) > budget:
        # Leave out the least telling spans first, the later ones first within a rank.
        total = _size([x for _, _, x in kept])
        dropped: set[int] = set()
        for i, _, line in sorted(kept, key=lambda t: (-t[1], -t[0])):
            if total <= budget - note_room:
                break
            dropped.add(i)
            total -= len(line) + 1
        kept = [t for t in kept if t[0] not in dropped]
    lines = head + [x for _, _, x in kept]
    if len(kept) < len(span_lines):
        lines.append(f"[spans omitted] {len(span_lines) - len(kept)} of {len(span_lines)} spans left out to fit the size cap")
    lines += tail
    text = "\n".join(lines)
    if len(text) > max_chars:  # a cap too small for even the fixed lines
        marker = "\n[evidence cut to the size cap]"
        text = (text[: max(0, max_chars - len(marker))] + marker)[:max_chars]
    return text
