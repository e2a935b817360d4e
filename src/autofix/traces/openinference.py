"""Import OpenInference / OpenTelemetry span exports (as Arize Phoenix writes them).

Input: spans, one JSON object each, as JSONL or a JSON document (an array, or
Phoenix's REST page ``{"data": [...], "next_cursor": ...}``). A span looks like

    {"name": "retrieve", "context": {"trace_id": "...", "span_id": "..."},
     "span_kind": "RETRIEVER", "parent_id": "...", "start_time": "2024-...Z",
     "end_time": "...", "status_code": "OK", "status_message": "",
     "attributes": {...}, "events": [{"name", "timestamp", "attributes"}]}

Also read: the OpenTelemetry console-exporter shape (``"status": {"status_code",
"description"}``, span kind only in ``openinference.span.kind``), Phoenix's
spans-dataframe rows written as JSON records (``"context.trace_id"``,
``"attributes.input.value"`` columns; numeric times are epoch s/ms/us/ns by
magnitude), attributes either flattened (``"retrieval.documents.0.document.id"``)
or nested (``{"retrieval": {"documents": [{"document": {"id": ...}}]}}``), and
span annotations, either standalone records in the same file (Phoenix's
``span_annotations`` shape: ``{"span_id", "name", "annotator_kind", "result":
{"label", "score", "explanation"}}``; with ``trace_id`` instead of ``span_id`` for
trace annotations), inline under a span's ``"annotations"`` key, or as the
OpenInference ``annotations.N.annotation.*`` / ``evaluations.N.evaluation.*``
attributes.

Mapping to the native format:
- span kinds: LLM -> llm; RETRIEVER, RERANKER -> retrieval; TOOL -> tool; CHAIN,
  AGENT and the rest (EMBEDDING, GUARDRAIL, EVALUATOR, PROMPT, UNKNOWN) -> chain;
  a chain/agent named like a router (route, router, routing) -> router; an
  ``autofix.span.kind`` attribute overrides all of this. The original kind stays in
  ``attributes["openinference.span.kind"]``.
- llm input: the ``llm.input_messages`` as ``[{"role", "content", "tool_calls"?}]``
  (else ``input.value``); llm output: ``output.value`` (else the output messages).
- retrieval output: ``retrieval.documents.N.document.{id,score,content}`` (for a
  reranker ``reranker.output_documents``) as ``[{"doc_id", "score", "text"}]``.
- tool input (the call's arguments): ``input.value`` parsed as JSON; when absent,
  ``tool.parameters`` if it is a JSON object that is not a schema (the spec defines it
  as the parameter schema, but some instrumentations put the arguments there).
- tool argument schema: ``tool.json_schema`` (a JSON string, often a whole tool
  definition ``{"type": "function", "function": {"name", "parameters"}}``), else
  ``tool.parameters`` when it is a schema, becomes ``attributes["json_schema"]``: the
  bare JSON schema of the arguments, which triage and the `tool_args_valid` check read
  (`schema.tool_args_schema`). The raw attributes stay as they were.
- ``input.value``/``output.value`` with mime type ``application/json`` are parsed.
- span error: ``status_message`` (else the ``exception`` event's message) when the
  status is ERROR.
- the root span (no parent, or a parent not in the file; the earliest if several)
  gives the trace's input, output and timestamp; ``session.id`` -> session_id;
  ``user.id`` -> metadata.user_id; the root's ``metadata`` attribute -> metadata;
  ``tag.tags`` -> metadata.tags; the first LLM span's ``llm.model_name`` ->
  versions.model, ``llm.prompt_template.version`` -> versions.prompt.
- span times become ``start_ms``/``end_ms``: milliseconds since the trace's
  timestamp (the root span's start).
- annotations from a HUMAN annotator (or none given) that are user feedback
  (thumbs, rephrase, ...; see `schema.feedback_from_signal`) become `Feedback`;
  every other annotation becomes a `Score` (source: the annotator kind, lowercase).

Grouping and memory. Spans of one trace may be spread anywhere in a JSONL file
(exporters write children before parents, and traces interleave). The importer
makes two passes over the file rather than buffering spans: pass 1 streams the
file, quarantines unreadable lines and keeps, per trace, only the byte offsets and
line numbers of its spans (plus annotations, which are small); pass 2 seeks to
each trace's spans, converts and yields it. Memory is O(number of spans) small
integers, never the span contents; the cost is reading the file twice. Traces
come out in the order of their first span in the file. A JSON document is already
in memory, so it is grouped there.

Bad input: an unreadable line (see `records`) or a span that is not a valid
OpenInference span (missing ``context.trace_id``, a time that is not a time,
attributes that are not an object, ...) is quarantined with its line; the other
spans of its trace still come out, with ``metadata.quarantined_spans`` counting
the lost ones. An annotation naming a span that is not in the file is quarantined
as `orphan`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ._convert import (
    ConvertError,
    as_dict,
    fill_doc_ids,
    is_router_name,
    kind_override,
    maybe_json,
    ms_between,
    opt_str,
    parse_time,
    str_field,
)
from .quarantine import ORPHAN, SCHEMA, Quarantine
from .records import (
    RawRecord,
    ReadLimits,
    iter_json_document,
    iter_jsonl,
    page_items,
    read_jsonl_record_at,
    sniff_layout,
)
from .schema import Trace, build_trace, feedback_from_signal, summarize_validation_error, tool_args_schema

__all__ = ["iter_openinference", "looks_like_openinference", "KIND_MAP"]

KIND_MAP: dict[str, str] = {
    "LLM": "llm",
    "RETRIEVER": "retrieval",
    "RERANKER": "retrieval",
    "TOOL": "tool",
    "CHAIN": "chain",
    "AGENT": "chain",
}

# Attributes that are turned into the span's input/output and not repeated in `attributes`.
_CONSUMED_PREFIXES = (
    "retrieval.documents.",
    "llm.input_messages.",
    "llm.output_messages.",
    "reranker.input_documents.",
    "reranker.output_documents.",
)
# Attribute subtrees kept whole when flattening nested attributes.
_KEEP_WHOLE = {"metadata", "llm.invocation_parameters", "tool.parameters", "tool.json_schema"}


def looks_like_openinference(obj: dict[str, Any]) -> bool:
    """Whether a record is an OpenInference/OTel span (or a Phoenix annotation)."""
    if isinstance(obj.get("context"), dict) and "trace_id" in obj["context"]:
        return True
    if "context.trace_id" in obj or "context.span_id" in obj:
        return True
    if "span_kind" in obj and "name" in obj:
        return True
    return _is_annotation(obj)


def _is_annotation(obj: dict[str, Any]) -> bool:
    return ("annotator_kind" in obj or "result" in obj) and "name" in obj and (
        "span_id" in obj or "trace_id" in obj
    ) and "context" not in obj


# --------------------------------------------------------------------------- attributes


def _flatten(d: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {} if out is None else out
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if key in _KEEP_WHOLE:
            out[key] = v
        elif isinstance(v, dict) and v:
            _flatten(v, key, out)
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                if isinstance(x, dict):
                    _flatten(x, f"{key}.{i}", out)
                else:
                    out[f"{key}.{i}"] = x
        else:
            out[key] = v
    return out


def _indexed(flat: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.rest`` keys grouped by N (in index order) as {rest: value}."""
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.(.+)$")
    groups: dict[int, dict[str, Any]] = {}
    for k, v in flat.items():
        if k.startswith(prefix):
            m = pat.match(k)
            if m:
                groups.setdefault(int(m.group(1)), {})[m.group(2)] = v
    return [groups[i] for i in sorted(groups)]


def _docs(flat: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    docs = []
    for g in _indexed(flat, prefix):
        d: dict[str, Any] = {"doc_id": opt_str(g.get("document.id"))}
        score = g.get("document.score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            d["score"] = score
        if isinstance(g.get("document.content"), str):
            d["text"] = g["document.content"]
        meta = as_dict(g.get("document.metadata"))
        if meta is None:
            sub = {k[len("document.metadata."):]: v for k, v in g.items() if k.startswith("document.metadata.")}
            meta = sub or None
        if meta:
            d["metadata"] = meta
        docs.append(d)
    return docs


def _messages(flat: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    msgs = []
    for g in _indexed(flat, prefix):
        m: dict[str, Any] = {"role": g.get("message.role")}
        content = g.get("message.content")
        if content is None:
            parts = _indexed(g, "message.contents")
            texts = [p.get("message_content.text") for p in parts if isinstance(p.get("message_content.text"), str)]
            content = "\n".join(texts) if texts else None
        m["content"] = content
        calls = []
        for c in _indexed(g, "message.tool_calls"):
            calls.append(
                {
                    "id": c.get("tool_call.id"),
                    "name": c.get("tool_call.function.name"),
                    "arguments": maybe_json(c.get("tool_call.function.arguments"), eager=True),
                }
            )
        if calls:
            m["tool_calls"] = calls
        if g.get("message.name") is not None:
            m["name"] = g["message.name"]
        msgs.append(m)
    return msgs


# --------------------------------------------------------------------------- one span


@dataclass
class _Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    oi_kind: str
    start: datetime
    end: datetime | None
    status: str
    status_message: str | None
    attrs: dict[str, Any]
    events: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    line: int


def _ids(obj: dict[str, Any]) -> tuple[Any, Any]:
    ctx = obj.get("context")
    if isinstance(ctx, dict):
        return ctx.get("trace_id"), ctx.get("span_id")
    return obj.get("context.trace_id"), obj.get("context.span_id")


def _parse_span(obj: dict[str, Any], line: int) -> _Span:
    trace_id, span_id = _ids(obj)
    if not isinstance(trace_id, str) or not trace_id:
        raise ConvertError("context.trace_id: missing or not a string")
    if not isinstance(span_id, str) or not span_id:
        raise ConvertError("context.span_id: missing or not a string")
    name = obj.get("name")
    if not isinstance(name, str):
        raise ConvertError("name: missing or not a string")
    raw_attrs = obj.get("attributes", {})
    if raw_attrs is None:
        raw_attrs = {}
    if isinstance(raw_attrs, str):
        raw_attrs = as_dict(raw_attrs)
    if not isinstance(raw_attrs, dict):
        raise ConvertError("attributes: expected an object")
    # Phoenix dataframe rows carry attributes as "attributes.<key>" columns.
    columns = {
        k[len("attributes."):]: v for k, v in obj.items() if k.startswith("attributes.") and v is not None
    }
    attrs = _flatten({**raw_attrs, **columns})
    for key in ("metadata", "llm.invocation_parameters"):
        if isinstance(attrs.get(key), str):
            parsed = as_dict(attrs[key])
            if parsed is not None:
                attrs[key] = parsed
    kind = obj.get("span_kind")
    if kind is None:
        kind = attrs.get("openinference.span.kind", "UNKNOWN")
    if not isinstance(kind, str):
        raise ConvertError("span_kind: expected a string such as 'LLM' or 'RETRIEVER'")
    kind = kind.split(".")[-1].upper()
    parent = obj.get("parent_id", obj.get("parent_span_id"))
    if parent is not None and not isinstance(parent, str):
        raise ConvertError("parent_id: expected a string or null")
    if "start_time" not in obj or obj["start_time"] is None:
        raise ConvertError("start_time: missing")
    start = parse_time(obj["start_time"], "start_time")
    end = parse_time(obj["end_time"], "end_time") if obj.get("end_time") is not None else None
    status_obj = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    status = obj.get("status_code", status_obj.get("status_code", "UNSET"))
    if status is None:
        status = "UNSET"
    if not isinstance(status, str):
        raise ConvertError("status_code: expected 'OK', 'ERROR' or 'UNSET'")
    status = status.split(".")[-1].upper()
    message = obj.get("status_message", status_obj.get("description"))
    if message is not None and not isinstance(message, str):
        raise ConvertError("status_message: expected a string")
    events = obj.get("events") or []
    if isinstance(events, str):
        events = maybe_json(events, eager=True)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ConvertError("events: expected a list of objects")
    annotations = obj.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise ConvertError("annotations: expected a list of objects")
    return _Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent or None,
        name=name,
        oi_kind=kind,
        start=start,
        end=end,
        status=status,
        status_message=message or None,
        attrs=attrs,
        events=events,
        annotations=list(annotations),
        line=line,
    )


def _native_kind(s: _Span) -> str:
    override = kind_override(s.attrs)
    if override:
        return override
    kind = KIND_MAP.get(s.oi_kind, "chain")
    if kind == "chain" and is_router_name(s.name):
        return "router"
    return kind


def _error(s: _Span) -> str | None:
    if s.status != "ERROR":
        return None
    if s.status_message:
        return s.status_message
    for e in s.events:
        if e.get("name") == "exception":
            a = e.get("attributes") or {}
            msg = a.get("exception.message")
            typ = a.get("exception.type")
            if msg or typ:
                return f"{typ}: {msg}" if typ and msg else str(msg or typ)
    return "ERROR"


def _convert_span(s: _Span, t0: datetime) -> dict[str, Any]:
    a = s.attrs
    kind = _native_kind(s)
    in_mime, out_mime = a.get("input.mime_type"), a.get("output.mime_type")
    value_in = maybe_json(a.get("input.value"), mime=in_mime)
    value_out = maybe_json(a.get("output.value"), mime=out_mime)
    consumed = {"input.value", "output.value", "input.mime_type", "output.mime_type"}
    extra: dict[str, Any] = {}
    inp, out = value_in, value_out
    if s.oi_kind == "LLM" or kind == "llm":
        msgs = _messages(a, "llm.input_messages")
        if msgs:
            inp = msgs
        if value_out is None:
            outs = _messages(a, "llm.output_messages")
            if len(outs) == 1 and not outs[0].get("tool_calls"):
                out = outs[0].get("content")
            elif outs:
                out = outs
    if kind == "retrieval":
        prefix = "reranker.output_documents" if s.oi_kind == "RERANKER" else "retrieval.documents"
        docs = _docs(a, prefix)
        if s.oi_kind == "RERANKER":
            inp = {
                "query": a.get("reranker.query"),
                "documents": _docs(a, "reranker.input_documents"),
                "top_k": a.get("reranker.top_k"),
            } if a.get("reranker.query") is not None else value_in
        if docs:
            if fill_doc_ids(docs, s.span_id):
                extra["autofix.synthetic_doc_ids"] = True
            out = docs
        else:
            out = None
            consumed.discard("output.value")  # keep what the retriever said, unconverted
    if kind == "tool":
        schema = tool_args_schema({k: a[k] for k in ("tool.json_schema", "tool.parameters") if k in a})
        if schema is not None and "json_schema" not in a:
            extra["json_schema"] = schema
        params = as_dict(a.get("tool.parameters"))
        if isinstance(a.get("input.value"), str):
            inp = maybe_json(a["input.value"], mime=in_mime, eager=True)
        elif params is not None and tool_args_schema({"parameters": params}) is None:
            inp = params  # the call's arguments, not a schema
        name = a.get("tool.name")
    else:
        name = None
    attributes = {
        k: v
        for k, v in a.items()
        if k not in consumed and not k.startswith(_CONSUMED_PREFIXES)
    }
    attributes["openinference.span.kind"] = s.oi_kind
    attributes["status_code"] = s.status
    if s.events:
        attributes["events"] = s.events
    attributes.update(extra)
    return {
        "span_id": s.span_id,
        "parent_id": s.parent_id,
        "kind": kind,
        "name": name if isinstance(name, str) and name else s.name,
        "input": inp,
        "output": out,
        "error": _error(s),
        "start_ms": ms_between(t0, s.start),
        "end_ms": ms_between(t0, s.end),
        "attributes": attributes,
    }


# --------------------------------------------------------------------------- annotations


def _annotation_parts(ann: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """(name, annotator_kind, label, score, explanation) of a Phoenix annotation."""
    result = ann.get("result") if isinstance(ann.get("result"), dict) else {}
    label = result.get("label", ann.get("label"))
    score = result.get("score", ann.get("score"))
    expl = result.get("explanation", ann.get("explanation"))
    return ann.get("name"), ann.get("annotator_kind"), label, score, expl


def _attr_annotations(flat: dict[str, Any], prefix: str, word: str) -> list[dict[str, Any]]:
    out = []
    for g in _indexed(flat, prefix):
        out.append(
            {
                "name": g.get(f"{word}.name"),
                "annotator_kind": g.get(f"{word}.annotator_kind"),
                "result": {
                    "label": g.get(f"{word}.label"),
                    "score": g.get(f"{word}.score"),
                    "explanation": g.get(f"{word}.explanation"),
                },
            }
        )
    return out


def _signals(annotations: list[tuple[dict[str, Any], str | None]]) -> tuple[list[Any], list[Any]]:
    feedback, scores = [], []
    for ann, span_id in annotations:
        name, annotator, label, score, expl = _annotation_parts(ann)
        if not isinstance(name, str) or not name:
            continue
        annotator = annotator.upper() if isinstance(annotator, str) else None
        expl = expl if isinstance(expl, str) else None
        fb = None
        if annotator in (None, "HUMAN"):
            fb = feedback_from_signal(name, score=score, label=label, comment=expl, span_id=span_id)
        if fb is not None:
            feedback.append(fb.model_dump(exclude_none=True))
            continue
        value = score if isinstance(score, (int, float, bool)) else (label if isinstance(label, str) else None)
        sc: dict[str, Any] = {"name": name, "value": value}
        if expl:
            sc["rationale"] = expl
        if annotator:
            sc["source"] = annotator.lower()
        if span_id:
            sc["span_id"] = span_id
        if isinstance(label, str) and value is not label:
            sc["label"] = label
        scores.append(sc)
    return feedback, scores


# --------------------------------------------------------------------------- one trace


@dataclass
class _Group:
    trace_id: str
    # (byte offset, line, index in a page line, the record when in memory, its text)
    refs: list[tuple[int | None, int, int | None, dict[str, Any] | None, str]] = field(default_factory=list)
    annotations: list[tuple[dict[str, Any], str | None, int]] = field(default_factory=list)


def _assemble(
    trace_id: str,
    spans: list[_Span],
    annotations: list[tuple[dict[str, Any], str | None, int]],
    lost: int,
    path: Path,
    limits: ReadLimits,
) -> Trace:
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None or s.parent_id not in ids]
    root = min(roots or spans, key=lambda s: s.start)
    spans = sorted(spans, key=lambda s: (s is not root, s.start))
    t0 = root.start
    native_spans = [_convert_span(s, t0) for s in spans]
    root_native = native_spans[0]
    ra = root.attrs

    def first_attr(key: str) -> Any:
        for s in [root, *spans]:
            v = s.attrs.get(key)
            if v not in (None, ""):
                return v
        return None

    metadata: dict[str, Any] = {}
    meta = ra.get("metadata")
    if isinstance(meta, dict):
        metadata.update(meta)
    versions: dict[str, Any] = {}
    if isinstance(metadata.get("versions"), dict):
        versions.update(metadata.pop("versions"))
    user = first_attr("user.id")
    if user is not None:
        metadata.setdefault("user_id", user)
    tags = ra.get("tag.tags")
    if isinstance(tags, list):
        metadata.setdefault("tags", tags)
    for s in spans:
        if s.oi_kind == "LLM":
            if isinstance(s.attrs.get("llm.model_name"), str):
                versions.setdefault("model", s.attrs["llm.model_name"])
            pv = s.attrs.get("llm.prompt_template.version")
            if pv is not None:
                versions.setdefault("prompt", str(pv))
            break
    metadata["source"] = {"format": "openinference", "file": str(path), "line": root.line}
    if lost:
        metadata["quarantined_spans"] = lost

    pairs: list[tuple[dict[str, Any], str | None]] = [(a, sid) for a, sid, _ in annotations]
    for s in spans:
        pairs += [(a, s.span_id) for a in s.annotations]
        for prefix, word in (("annotations", "annotation"), ("evaluations", "evaluation")):
            pairs += [(a, s.span_id) for a in _attr_annotations(s.attrs, prefix, word)]
            pairs += [(a, None) for a in _attr_annotations(s.attrs, f"trace.{prefix}", word)]
    feedback, scores = _signals(pairs)

    raw = {
        "trace_id": trace_id,
        "session_id": str_field(first_attr("session.id"), "attributes.session.id"),
        "timestamp": t0,
        "input": root_native["input"],
        "output": root_native["output"],
        "spans": native_spans,
        "feedback": feedback,
        "scores": scores,
        "versions": versions,
        "metadata": metadata,
    }
    return build_trace(raw, max_field_chars=limits.max_field_chars)


def _build(
    group: _Group,
    records: Iterator[tuple[int, dict[str, Any], str]],
    path: Path,
    quarantine: Quarantine,
    limits: ReadLimits,
) -> Trace | None:
    spans: list[_Span] = []
    lost = 0
    first_line, first_text = None, ""
    for line, obj, text in records:
        if first_line is None:
            first_line, first_text = line, text
        try:
            spans.append(_parse_span(obj, line))
        except RecursionError:
            quarantine.add(path, line, SCHEMA, f"span of trace {group.trace_id}: nested too deeply", text)
            lost += 1
        except ConvertError as e:
            quarantine.add(path, line, SCHEMA, f"span of trace {group.trace_id}: {e}", text)
            lost += 1
    if not spans:
        for ann, _sid, line in group.annotations:
            quarantine.add(
                path, line, ORPHAN,
                f"annotation {ann.get('name')!r} of trace {group.trace_id}, none of whose spans could be read",
                repr(ann),
            )  # fmt: skip
        return None
    try:
        return _assemble(group.trace_id, spans, group.annotations, lost, path, limits)
    except ValidationError as e:
        detail = f"trace {group.trace_id}: {summarize_validation_error(e)}"
    except (ConvertError, TypeError, ValueError, RecursionError) as e:
        detail = f"trace {group.trace_id}: {e or type(e).__name__}"
    root_line = min(s.line for s in spans)
    quarantine.add(path, root_line, SCHEMA, detail, first_text if root_line == first_line else "")
    return None


# --------------------------------------------------------------------------- file


def _classify(
    rec: RawRecord,
    groups: dict[str, _Group],
    span_trace: dict[str, str],
    loose: list[tuple[dict[str, Any], int, str]],
    path: Path,
    quarantine: Quarantine,
    keep: bool,
) -> None:
    obj = rec.obj
    if _is_annotation(obj):
        loose.append((obj, rec.line, rec.text))
        return
    trace_id, span_id = _ids(obj)
    if not isinstance(trace_id, str) or not trace_id:
        quarantine.add(
            path, rec.line, SCHEMA,
            "not an OpenInference span: context.trace_id is missing or not a string",
            rec.text,
        )  # fmt: skip
        return
    g = groups.get(trace_id)
    if g is None:
        g = groups[trace_id] = _Group(trace_id)
    g.refs.append((rec.offset, rec.line, rec.index, obj if keep else None, rec.text if keep else ""))
    if isinstance(span_id, str):
        span_trace[span_id] = trace_id


def iter_openinference(
    path: str | Path,
    quarantine: Quarantine,
    *,
    limits: ReadLimits = ReadLimits(),
    layout: Literal["jsonl", "json"] | None = None,
) -> Iterator[Trace]:
    """The traces of an OpenInference/Phoenix span export; bad spans are quarantined."""
    path = Path(path)
    layout = layout or sniff_layout(path)
    in_memory = layout == "json"
    records = (
        iter_json_document(path, quarantine, limits)
        if in_memory
        else iter_jsonl(path, quarantine, limits, unwrap_pages=True)
    )

    groups: dict[str, _Group] = {}
    span_trace: dict[str, str] = {}
    loose: list[tuple[dict[str, Any], int, str]] = []
    for rec in records:  # pass 1
        _classify(rec, groups, span_trace, loose, path, quarantine, keep=in_memory)

    for ann, line, text in loose:
        sid, tid = ann.get("span_id"), ann.get("trace_id")
        target = span_trace.get(sid) if isinstance(sid, str) else None
        if target is None and isinstance(tid, str) and tid in groups and sid is None:
            target = tid
        if target is None:
            quarantine.add(
                path, line, ORPHAN,
                f"annotation {ann.get('name')!r} names span {sid!r} / trace {tid!r}, which is not in the file",
                text,
            )  # fmt: skip
            continue
        groups[target].annotations.append((ann, sid if isinstance(sid, str) else None, line))

    if in_memory:
        for g in groups.values():
            recs = ((line, obj, text) for _off, line, _i, obj, text in g.refs if obj is not None)
            trace = _build(g, recs, path, quarantine, limits)
            if trace is not None:
                yield trace
        return

    with open(path, "rb") as fh:  # pass 2
        last_page: tuple[int, RawRecord] | None = None  # one parsed page line, for its siblings

        def reread(g: _Group) -> Iterator[tuple[int, dict[str, Any], str]]:
            nonlocal last_page
            for off, line, index, _obj, _text in g.refs:
                assert off is not None
                if index is None:
                    rec = read_jsonl_record_at(fh, off, line)
                    yield rec.line, rec.obj, rec.text
                    continue
                if last_page is None or last_page[0] != off:
                    last_page = (off, read_jsonl_record_at(fh, off, line))
                item = page_items(last_page[1].obj)[index]  # type: ignore[index]
                yield line, item, json.dumps(item)[:2000]

        for g in groups.values():

            trace = _build(g, reread(g), path, quarantine, limits)
            if trace is not None:
                yield trace
