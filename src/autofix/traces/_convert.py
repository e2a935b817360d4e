"""Helpers the importers share: times, JSON-in-strings, documents, routers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from .schema import SPAN_KINDS, as_dict

ROUTER_NAME = re.compile(r"rout(e|er|ing)\b|rout(e|er|ing)[_\-.]|classif(y|ier)_?intent|intent_?router", re.I)
RETRIEVAL_NAME = re.compile(
    r"retriev|vector[_\-. ]?(store|search|db)|similarity[_\-. ]?search|semantic[_\-. ]?search"
    r"|knowledge[_\-. ]?(base|search)|kb[_\-. ]?search|search[_\-. ]?(docs|documents|kb|index)"
    r"|bm25|rerank|fetch[_\-. ]?docs|get[_\-. ]?relevant[_\-. ]?documents",
    re.I,
)
TOOL_NAME = re.compile(r"(^|[_\-. :])tool([_\-. :]|s?$)|function[_\-. ]?call", re.I)

# Override attribute: a span whose attributes carry this key with one of our kinds gets it.
KIND_OVERRIDE_KEYS = ("autofix.span.kind", "autofix.kind")


class ConvertError(ValueError):
    """A record that cannot be converted; the message names the field and what was wrong."""


def parse_time(value: Any, field: str) -> datetime:
    """An aware datetime from an ISO 8601 string or a number since the epoch.

    Numbers are read by magnitude (s, ms, us, ns): pandas writes ms, OTLP ns.
    A time without a zone is taken as UTC.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConvertError(f"{field}: {value[:60]!r} is not an ISO 8601 time") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
        for scale in (1e9, 1e6, 1e3):
            if abs(x) > scale * 1e8:  # past ~1973 in that unit
                x /= scale
                break
        try:
            dt = datetime.fromtimestamp(x, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise ConvertError(f"{field}: {value!r} is not a time") from None
    else:
        raise ConvertError(f"{field}: expected an ISO 8601 time, got {type(value).__name__}")
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def ms_between(start: datetime, t: datetime | None) -> float | None:
    if t is None:
        return None
    return round((t - start).total_seconds() * 1000.0, 3)


def maybe_json(value: Any, *, mime: Any = None, eager: bool = False) -> Any:
    """Parse a string holding JSON when its mime type says so (or `eager` and it looks like it)."""
    if not isinstance(value, str):
        return value
    looks = value[:1] in ("{", "[")
    if (isinstance(mime, str) and "json" in mime.lower()) or (eager and looks):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def str_field(value: Any, field: str) -> str | None:
    """Like `opt_str`, but a value that is neither a string, a number nor null is an error."""
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return opt_str(value)
    raise ConvertError(f"{field}: expected a string, got {type(value).__name__}")


def kind_override(attributes: dict[str, Any]) -> str | None:
    for key in KIND_OVERRIDE_KEYS:
        v = attributes.get(key)
        if isinstance(v, str) and v.lower() in SPAN_KINDS:
            return v.lower()
    meta = attributes.get("metadata")
    if isinstance(meta, dict):
        v = meta.get("autofix.span.kind") or meta.get("span_kind")
        if isinstance(v, str) and v.lower() in SPAN_KINDS:
            return v.lower()
    return None


def is_router_name(name: str) -> bool:
    return bool(ROUTER_NAME.search(name))


_DOC_ID_KEYS = ("doc_id", "document_id", "id", "document.id", "source_id", "chunk_id", "source")
_DOC_SCORE_KEYS = ("score", "document.score", "relevance_score", "similarity", "distance")
_DOC_TEXT_KEYS = ("text", "content", "page_content", "document.content", "pageContent", "chunk")


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def doc_from_obj(obj: Any) -> dict[str, Any] | None:
    """A native document dict from a doc-like object (LangChain, LlamaIndex, plain), or None."""
    if not isinstance(obj, dict):
        return None
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    doc_id = _first(obj, _DOC_ID_KEYS)
    if doc_id is None:
        doc_id = _first(meta, _DOC_ID_KEYS)
    score = _first(obj, _DOC_SCORE_KEYS)
    if score is None:
        score = _first(meta, _DOC_SCORE_KEYS)
    text = _first(obj, _DOC_TEXT_KEYS)
    if doc_id is None and text is None:
        return None
    out: dict[str, Any] = {"doc_id": opt_str(doc_id)}
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        out["score"] = score
    if isinstance(text, str):
        out["text"] = text
    if meta:
        out["metadata"] = meta
    return out


def docs_from_output(output: Any) -> list[dict[str, Any]] | None:
    """Documents from a retrieval step's output: a list of doc-likes, or {"documents": [...]}."""
    items = output
    if isinstance(output, dict):
        for key in ("documents", "docs", "results", "chunks", "matches", "nodes"):
            if isinstance(output.get(key), list):
                items = output[key]
                break
        else:
            return None
    if not isinstance(items, list) or not items:
        return None
    docs = [doc_from_obj(x.get("node", x) if isinstance(x, dict) else x) for x in items]
    if any(d is None for d in docs):
        return None
    return docs  # type: ignore[return-value]


def fill_doc_ids(docs: list[dict[str, Any]], span_id: str) -> bool:
    """Give documents without an id a synthetic `<span_id>#<index>`; True if any was needed."""
    synthetic = False
    for i, d in enumerate(docs):
        if not d.get("doc_id"):
            d["doc_id"] = f"{span_id}#{i}"
            synthetic = True
    return synthetic
