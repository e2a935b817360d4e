"""Import Langfuse trace exports.

Input: Langfuse traces with their observations and scores, the shape of the
public API's ``GET /api/public/traces/{id}`` (``TraceWithFullDetails``), as JSONL
(one trace per line), a JSON array, or an API page ``{"data": [...], "meta": {...}}``:

    {"id", "timestamp", "name", "input", "output", "sessionId", "userId", "release",
     "version", "metadata", "tags", "environment", "latency", "totalCost", "htmlPath",
     "observations": [{"id", "traceId", "type", "name", "startTime", "endTime",
                       "parentObservationId", "input", "output", "level", "statusMessage",
                       "model", "modelParameters", "usage"/"usageDetails", "metadata",
                       "promptName", "promptVersion", ...}],
     "scores": [{"id", "name", "value", "stringValue", "dataType", "source",
                 "comment", "observationId", ...}]}

A trace listing (``TraceWithDetails``) only carries observation and score *ids*;
such a trace still imports, without spans, and ``metadata.observations_not_exported``
says how many were left behind.

Mapping to the native format:
- observation types: GENERATION -> llm; RETRIEVER -> retrieval; TOOL -> tool;
  AGENT, CHAIN, EVENT, EMBEDDING, EVALUATOR, GUARDRAIL -> chain (router-named
  ones -> router); a plain SPAN is a retrieval when its output is a list of
  documents or its name says so (retrieve, vector search, knowledge base ...), a
  tool when its name or ``metadata.type`` says tool, a router when named like one,
  else a chain. ``metadata["autofix.span.kind"]`` overrides. The Langfuse type
  stays in ``attributes["langfuse.type"]``.
- a retrieval's ``top_k`` (how many documents it asked for) -> ``attributes["top_k"]``,
  from its input (``top_k``, ``topK``, ``k``, ``similarity_top_k``, ``n_results``,
  ``top_n``, ``limit``; the ``kwargs`` of an ``@observe`` capture and LangChain's
  ``search_kwargs`` are opened), else from its metadata, else its modelParameters.
- a retrieval's output becomes ``[{"doc_id", "score", "text"}]`` from doc-like
  objects (``id``/``doc_id``/``metadata.id``, ``score``, ``page_content``/``content``/
  ``text``; a ``{"documents": [...]}`` wrapper is opened); documents without an id
  get ``"<span_id>#<index>"`` and ``attributes["autofix.synthetic_doc_ids"]``; an
  output with no documents at all is kept in ``attributes["raw_output"]``.
- a tool's input is the call's arguments (the ``kwargs`` of an ``@observe``
  capture ``{"args": [], "kwargs": {...}}`` are unwrapped).
- ``level: ERROR`` gives the span error ``statusMessage`` (or "ERROR").
- times become ``start_ms``/``end_ms``: milliseconds since the trace's timestamp.
- sessionId -> session_id; userId, tags, environment, name, latency, totalCost ->
  metadata (user_id, tags, environment, trace_name, latency_s, total_cost_usd); the
  latency (seconds) also as ``metadata.latency_ms``, the trace latency triage reads;
  release/version -> versions.release/version; the first generation's model ->
  versions.model, its promptName:promptVersion -> versions.prompt.
- scores: user feedback (name ``user-feedback``/``feedback``/``thumbs`` with 0/1,
  -1/1 or a boolean; labels like ``thumbs_down``; rephrase/abandon/escalation;
  see `schema.feedback_from_signal`) from a non-EVAL source -> `Feedback`; all
  others -> `Score` (source: the Langfuse source, lowercase; span_id: the
  observation id). The comment becomes the feedback comment / score rationale.

Each trace is one record, so a record that does not convert (no ``id``, a time
that is not a time, observations that are not objects, ...) is quarantined whole,
with its line and the field at fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ._convert import (
    RETRIEVAL_NAME,
    TOOL_NAME,
    ConvertError,
    docs_from_output,
    fill_doc_ids,
    is_router_name,
    kind_override,
    ms_between,
    parse_time,
    str_field,
)
from .quarantine import SCHEMA, Quarantine
from .records import RawRecord, ReadLimits, iter_json_document, iter_jsonl, sniff_layout
from .schema import Trace, build_trace, feedback_from_signal, summarize_validation_error

__all__ = ["iter_langfuse", "looks_like_langfuse", "TYPE_MAP", "trace_from_langfuse"]

TYPE_MAP: dict[str, str] = {
    "GENERATION": "llm",
    "RETRIEVER": "retrieval",
    "TOOL": "tool",
    "AGENT": "chain",
    "CHAIN": "chain",
    "EVENT": "chain",
    "EMBEDDING": "chain",
    "EVALUATOR": "chain",
    "GUARDRAIL": "chain",
}

_LANGFUSE_KEYS = {"observations", "htmlPath", "sessionId", "userId", "totalCost", "scores", "latency"}


def looks_like_langfuse(obj: dict[str, Any]) -> bool:
    """Whether a record is a Langfuse trace (or a stray Langfuse observation)."""
    if "id" in obj and "timestamp" in obj and (_LANGFUSE_KEYS & obj.keys()):
        return True
    return "traceId" in obj and "type" in obj and "startTime" in obj


def _observation_kind(obs: dict[str, Any], typ: str, name: str) -> str:
    meta = obs.get("metadata") if isinstance(obs.get("metadata"), dict) else {}
    override = kind_override({"metadata": meta, **meta})
    if override:
        return override
    if typ in TYPE_MAP:
        kind = TYPE_MAP[typ]
        return "router" if kind == "chain" and is_router_name(name) else kind
    # SPAN (or a type this importer does not know): decide from what it did.
    if docs_from_output(obs.get("output")) is not None or RETRIEVAL_NAME.search(name):
        return "retrieval"
    if TOOL_NAME.search(name) or str(meta.get("type", "")).lower() == "tool":
        return "tool"
    if is_router_name(name):
        return "router"
    return "chain"


def _all_zero(v: Any) -> bool:
    return isinstance(v, dict) and all(
        x in (0, None) or isinstance(x, str) for x in v.values()
    )


def _tool_args(value: Any) -> Any:
    if isinstance(value, dict) and set(value) <= {"args", "kwargs"} and "kwargs" in value:
        if not value.get("args") and isinstance(value.get("kwargs"), dict):
            return value["kwargs"]
    return value


_TOP_K_KEYS = ("top_k", "topK", "k", "similarity_top_k", "n_results", "top_n", "limit")


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and value > 0 else None


def _top_k(obs: dict[str, Any]) -> int | None:
    """How many documents a retrieval observation asked for, from its input, metadata or modelParameters."""
    for source in (_tool_args(obs.get("input")), obs.get("metadata"), obs.get("modelParameters")):
        if not isinstance(source, dict):
            continue
        for where in (source, source.get("search_kwargs"), source.get("retriever")):
            if isinstance(where, dict):
                for key in _TOP_K_KEYS:
                    k = _count(where.get(key))
                    if k is not None:
                        return k
    return None


def _retrieval_output(output: Any, span_id: str, attributes: dict[str, Any]) -> Any:
    if output is None:
        return None
    docs = docs_from_output(output)
    if docs is None and isinstance(output, list) and output and all(isinstance(x, str) for x in output):
        docs = [{"doc_id": None, "text": x} for x in output]
    if docs is None:
        attributes["raw_output"] = output
        return None
    if fill_doc_ids(docs, span_id):
        attributes["autofix.synthetic_doc_ids"] = True
    return docs


def _span(obs: Any, i: int, t0: datetime) -> dict[str, Any]:
    where = f"observations.{i}"
    if not isinstance(obs, dict):
        raise ConvertError(f"{where}: expected an object, got {type(obs).__name__}")
    obs_id = obs.get("id")
    if not isinstance(obs_id, str) or not obs_id:
        raise ConvertError(f"{where}.id: missing or not a string")
    typ = obs.get("type")
    if not isinstance(typ, str):
        raise ConvertError(f"{where}.type: missing or not a string (GENERATION, SPAN, EVENT, ...)")
    typ = typ.upper()
    name = obs.get("name")
    if name is None:
        name = typ.lower()
    if not isinstance(name, str):
        raise ConvertError(f"{where}.name: expected a string")
    if obs.get("startTime") is None:
        raise ConvertError(f"{where}.startTime: missing")
    start = parse_time(obs["startTime"], f"{where}.startTime")
    end = parse_time(obs["endTime"], f"{where}.endTime") if obs.get("endTime") is not None else None
    if typ == "EVENT" and end is None:
        end = start
    parent = obs.get("parentObservationId")
    if parent is not None and not isinstance(parent, str):
        raise ConvertError(f"{where}.parentObservationId: expected a string or null")
    level = obs.get("level")
    status = obs.get("statusMessage")
    if status is not None and not isinstance(status, str):
        raise ConvertError(f"{where}.statusMessage: expected a string or null")
    kind = _observation_kind(obs, typ, name)
    attributes: dict[str, Any] = {"langfuse.type": typ}
    for key in (
        "level", "model", "modelParameters", "usage", "usageDetails", "costDetails",
        "calculatedTotalCost", "metadata", "promptName", "promptVersion",
        "completionStartTime", "version",
    ):  # fmt: skip
        v = obs.get(key)
        if key in ("usage", "usageDetails", "costDetails") and _all_zero(v):
            continue  # Langfuse fills usage with zeros on non-generations
        if v not in (None, {}, []):
            attributes[key] = v
    error = None
    if isinstance(level, str) and level.upper() == "ERROR":
        error = status or "ERROR"
    elif status:
        attributes["statusMessage"] = status
    inp, out = obs.get("input"), obs.get("output")
    if kind == "tool":
        inp = _tool_args(inp)
    if kind == "retrieval":
        out = _retrieval_output(out, obs_id, attributes)
        top_k = _top_k(obs)
        if top_k is not None:
            attributes["top_k"] = top_k
    return {
        "span_id": obs_id,
        "parent_id": parent,
        "kind": kind,
        "name": name,
        "input": inp,
        "output": out,
        "error": error,
        "start_ms": ms_between(t0, start),
        "end_ms": ms_between(t0, end),
        "attributes": attributes,
        "_start": start,
    }


def _signals(scores: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    feedback, out = [], []
    for i, sc in enumerate(scores):
        if not isinstance(sc, dict):
            raise ConvertError(f"scores.{i}: expected an object, got {type(sc).__name__}")
        name = sc.get("name")
        if not isinstance(name, str) or not name:
            raise ConvertError(f"scores.{i}.name: missing or not a string")
        value, label = sc.get("value"), sc.get("stringValue")
        dtype = str(sc.get("dataType") or "").upper()
        source = sc.get("source")
        source = source.upper() if isinstance(source, str) else None
        comment = sc.get("comment") if isinstance(sc.get("comment"), str) else None
        span_id = str_field(sc.get("observationId"), f"scores.{i}.observationId")
        if dtype == "BOOLEAN" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = bool(value)
        if value is not None and not isinstance(value, (int, float, str)):
            raise ConvertError(f"scores.{i}.value: expected a number, a string or null")
        if label is not None and not isinstance(label, str):
            raise ConvertError(f"scores.{i}.stringValue: expected a string or null")
        if isinstance(value, str):  # some exports put categorical values in `value`
            value, label = None, label or value
        fb = None
        if source != "EVAL":
            fb = feedback_from_signal(name, score=value, label=label, comment=comment, span_id=span_id)
        if fb is not None:
            feedback.append(fb.model_dump(exclude_none=True))
            continue
        s: dict[str, Any] = {
            "name": name,
            "value": label if dtype == "CATEGORICAL" and label is not None else value,
        }
        if s["value"] is None and label is not None:
            s["value"] = label
        if comment:
            s["rationale"] = comment
        if source:
            s["source"] = source.lower()
        if span_id:
            s["span_id"] = span_id
        if dtype:
            s["data_type"] = dtype
        out.append(s)
    return feedback, out


def trace_from_langfuse(
    obj: dict[str, Any], *, path: str | Path = "", line: int | None = None, limits: ReadLimits = ReadLimits()
) -> Trace:
    """Convert one Langfuse trace object; raises `ConvertError` or `ValidationError`."""
    if "observations" not in obj and "traceId" in obj and "type" in obj:
        raise ConvertError(
            "a Langfuse observation outside its trace; export whole traces "
            "(GET /api/public/traces/{id}) so observations come with their trace"
        )
    trace_id = obj.get("id")
    if not isinstance(trace_id, str) or not trace_id:
        raise ConvertError("id: missing or not a string")
    if obj.get("timestamp") is None:
        raise ConvertError("timestamp: missing")
    t0 = parse_time(obj["timestamp"], "timestamp")

    observations = obj.get("observations") or []
    if not isinstance(observations, list):
        raise ConvertError("observations: expected a list")
    metadata: dict[str, Any] = {}
    raw_meta = obj.get("metadata")
    if isinstance(raw_meta, dict):
        metadata.update(raw_meta)
    elif raw_meta is not None:
        metadata["metadata"] = raw_meta
    versions: dict[str, Any] = {}
    if isinstance(metadata.get("versions"), dict):
        versions.update(metadata.pop("versions"))

    if observations and all(isinstance(o, str) for o in observations):
        metadata["observations_not_exported"] = len(observations)
        observations = []
    spans = [_span(o, i, t0) for i, o in enumerate(observations)]
    spans.sort(key=lambda s: s["_start"])
    for s in spans:
        del s["_start"]

    scores = obj.get("scores") or []
    if not isinstance(scores, list):
        raise ConvertError("scores: expected a list")
    if scores and all(isinstance(s, str) for s in scores):
        metadata["scores_not_exported"] = len(scores)
        scores = []
    feedback, native_scores = _signals(scores)

    for key, target in (
        ("userId", "user_id"), ("tags", "tags"), ("environment", "environment"),
        ("name", "trace_name"), ("latency", "latency_s"), ("totalCost", "total_cost_usd"),
        ("htmlPath", "html_path"),
    ):  # fmt: skip
        if obj.get(key) not in (None, [], ""):
            metadata.setdefault(target, obj[key])
    latency = obj.get("latency")
    if isinstance(latency, (int, float)) and not isinstance(latency, bool) and latency >= 0:
        metadata.setdefault("latency_ms", round(float(latency) * 1000.0, 3))
    for key in ("release", "version"):
        if obj.get(key) is not None:
            versions.setdefault(key, obj[key])
    for s in spans:
        if s["kind"] == "llm":
            a = s["attributes"]
            if isinstance(a.get("model"), str):
                versions.setdefault("model", a["model"])
            if a.get("promptName") is not None:
                pv = a.get("promptVersion")
                versions.setdefault("prompt", f"{a['promptName']}:{pv}" if pv is not None else str(a["promptName"]))
            break
    metadata["source"] = {"format": "langfuse", "file": str(path), "line": line}

    inp, out = obj.get("input"), obj.get("output")
    roots = [s for s in spans if s["parent_id"] is None]
    if inp is None and roots:
        inp = roots[0]["input"]
    if out is None and roots:
        out = roots[0]["output"]
    raw = {
        "trace_id": trace_id,
        "session_id": str_field(obj.get("sessionId"), "sessionId"),
        "timestamp": t0,
        "input": inp,
        "output": out,
        "spans": spans,
        "feedback": feedback,
        "scores": native_scores,
        "versions": versions,
        "metadata": metadata,
    }
    return build_trace(raw, max_field_chars=limits.max_field_chars)


def trace_from_record(rec: RawRecord, path: Path, quarantine: Quarantine, limits: ReadLimits) -> Trace | None:
    try:
        return trace_from_langfuse(rec.obj, path=path, line=rec.line, limits=limits)
    except ValidationError as e:
        detail = summarize_validation_error(e)
    except (ConvertError, TypeError, ValueError, RecursionError) as e:
        detail = str(e)
    quarantine.add(path, rec.line, SCHEMA, detail, rec.text)
    return None


def iter_langfuse(
    path: str | Path,
    quarantine: Quarantine,
    *,
    limits: ReadLimits = ReadLimits(),
    layout: Literal["jsonl", "json"] | None = None,
) -> Iterator[Trace]:
    """The traces of a Langfuse export (streamed when JSONL); bad records are quarantined."""
    path = Path(path)
    layout = layout or sniff_layout(path)
    records = (
        iter_json_document(path, quarantine, limits)
        if layout == "json"
        else iter_jsonl(path, quarantine, limits, unwrap_pages=True)
    )
    for rec in records:
        trace = trace_from_record(rec, path, quarantine, limits)
        if trace is not None:
            yield trace
