"""The native trace JSONL: one `Trace` per line, read as a stream.

`iter_native(path, quarantine)` reads the file line by line (memory holds one line
and one trace at a time, whatever the file size) and yields every good trace.
Each bad line goes to the quarantine with its 1-based line number and a reason:
`invalid_utf8`, `invalid_json`, `invalid_unicode`, `not_an_object`, `too_large`
(see `records`), or `schema` with the pydantic error summary (field path and
message, e.g. ``schema: spans.0.kind: Input should be 'llm', 'retrieval', ...``).
Blank lines are skipped. Strings over the field cap are truncated (see `schema`).

`write_native(traces, path)` writes traces back in the same format.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from .quarantine import SCHEMA, Quarantine
from .records import RawRecord, ReadLimits, iter_json_document, iter_jsonl
from .schema import Trace, build_trace, summarize_validation_error

__all__ = ["iter_native", "trace_from_record", "write_native"]


def trace_from_record(
    rec: RawRecord, path: str | Path, quarantine: Quarantine, limits: ReadLimits
) -> Trace | None:
    """Validate one raw native record; quarantine it (and return None) when it is bad."""
    try:
        return build_trace(rec.obj, max_field_chars=limits.max_field_chars, source_chars=len(rec.text))
    except ValidationError as e:
        quarantine.add(path, rec.line, SCHEMA, summarize_validation_error(e), rec.text)
    except (TypeError, ValueError, RecursionError) as e:  # defensive: never crash a run
        quarantine.add(path, rec.line, SCHEMA, f"{type(e).__name__}: {e}", rec.text)
    return None


def iter_native(
    path: str | Path,
    quarantine: Quarantine,
    *,
    limits: ReadLimits = ReadLimits(),
    layout: Literal["jsonl", "json"] = "jsonl",
) -> Iterator[Trace]:
    """Stream the good traces of a native file; quarantine the bad lines.

    `layout="json"` reads a JSON array of traces instead (held whole in memory).
    """
    records = (
        iter_jsonl(path, quarantine, limits)
        if layout == "jsonl"
        else iter_json_document(path, quarantine, limits)
    )
    for rec in records:
        trace = trace_from_record(rec, path, quarantine, limits)
        if trace is not None:
            yield trace


def write_native(traces: Iterable[Trace | dict[str, Any]], path: str | Path) -> int:
    """Write traces as native JSONL (one per line); return how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for t in traces:
            trace = t if isinstance(t, Trace) else Trace.model_validate(t)
            fh.write(trace.to_json_line() + "\n")
            n += 1
    return n
