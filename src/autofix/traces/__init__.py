"""Traces: the native trace format, its streaming reader, importers, and the quarantine.

- `schema`: the pydantic records (`Trace`, `Span`, `RetrievedDoc`, `Feedback`, `Score`).
- `native`: `iter_native(path, quarantine)` streams the native JSONL.
- `openinference`: `iter_openinference` imports OpenInference/OTel spans (Phoenix exports).
- `langfuse`: `iter_langfuse` imports Langfuse trace exports.
- `quarantine`: `Quarantine(path)`, one JSON line per bad record.
- `ingest`: `ingest(paths, fmt="auto", quarantine, since)` over all of them, with `IngestStats`.
"""

from .ingest import FORMATS, IngestStats, detect_format, ingest
from .langfuse import iter_langfuse
from .native import iter_native, write_native
from .openinference import iter_openinference
from .quarantine import Quarantine
from .records import ReadLimits
from .schema import (
    DEFAULT_MAX_FIELD_CHARS,
    FEEDBACK_KINDS,
    SPAN_KINDS,
    Feedback,
    RetrievedDoc,
    Score,
    Span,
    Trace,
    build_trace,
    summarize_validation_error,
)

__all__ = [
    "DEFAULT_MAX_FIELD_CHARS",
    "FEEDBACK_KINDS",
    "FORMATS",
    "Feedback",
    "IngestStats",
    "Quarantine",
    "ReadLimits",
    "RetrievedDoc",
    "Score",
    "SPAN_KINDS",
    "Span",
    "Trace",
    "build_trace",
    "detect_format",
    "ingest",
    "iter_langfuse",
    "iter_native",
    "iter_openinference",
    "summarize_validation_error",
    "write_native",
]
