"""Ingest: every trace file of a run, whatever its format, as one stream of native traces.

    stats = IngestStats()
    with Quarantine(run_dir / "quarantine.jsonl") as q:
        for trace in ingest(["data/traces.jsonl", "exports/phoenix.jsonl"], quarantine=q,
                            since=last_run, stats=stats):
            ...

`fmt="auto"` tells each file's format from its first readable records: an
OpenInference/Phoenix span (``context.trace_id``, ``span_kind``), a Langfuse trace
(``id`` + ``timestamp`` + ``observations``/``sessionId``/...), or a native trace
(``trace_id``). A file whose records match none of them is quarantined once, as
`unknown_format`, with the fix (pass `fmt`); a file with no readable record at all is
read as native so each of its bad lines is quarantined on its own. A folder stands
for every ``*.jsonl``, ``*.ndjson`` and ``*.json`` file under it, subfolders included,
sorted by their path inside the folder (names starting with a dot are skipped); each
quarantined record names its own file and line. A path that does not exist is a
configuration error and raises `FileNotFoundError`.

`since` keeps traces whose timestamp is at or after it (a naive `since` is UTC);
the others are counted in `stats.skipped_before_since`, not quarantined. A trace
without a timestamp cannot be placed in time: it is kept, and counted in
`stats.undated`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from .langfuse import iter_langfuse, looks_like_langfuse
from .native import iter_native
from .openinference import iter_openinference, looks_like_openinference
from .quarantine import UNKNOWN_FORMAT, Quarantine
from .records import ReadLimits, iter_json_document, iter_jsonl, sniff_layout
from .schema import Trace

__all__ = ["FORMATS", "Format", "IngestStats", "detect_format", "expand_paths", "ingest", "record_format"]

Format = Literal["auto", "native", "openinference", "langfuse"]
FORMATS: tuple[str, ...] = ("native", "openinference", "langfuse")
TRACE_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass
class IngestStats:
    """What an ingest read: traces out, quarantined records, truncated fields, per format."""

    files: int = 0
    traces: int = 0
    quarantined: int = 0
    truncated_fields: int = 0
    skipped_before_since: int = 0
    undated: int = 0  # traces without a timestamp (kept, whatever `since` says)
    by_format: Counter[str] = field(default_factory=Counter)
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_format"] = dict(self.by_format)
        d["quarantined_by_reason"] = dict(self.quarantined_by_reason)
        return d


def record_format(obj: dict[str, Any]) -> str | None:
    """The format one parsed record belongs to, or None when it matches none."""
    if looks_like_openinference(obj):
        return "openinference"
    if looks_like_langfuse(obj):
        return "langfuse"
    if "trace_id" in obj:
        return "native"
    return None


def detect_format(path: str | Path, *, probe_records: int = 20, limits: ReadLimits = ReadLimits()) -> str | None:
    """The format of a file from its first readable records; None if it cannot be told.

    Reads only the first records of a JSONL file (a JSON document is parsed whole).
    Nothing is quarantined here: the reader does that.
    """
    scratch = Quarantine(None)
    layout = sniff_layout(path)
    records = (
        iter_json_document(path, scratch, limits)
        if layout == "json"
        else iter_jsonl(path, scratch, limits, unwrap_pages=True)
    )
    seen = False
    for rec in islice(records, probe_records):
        seen = True
        fmt = record_format(rec.obj)
        if fmt is not None:
            return fmt
    return None if seen else "native"


def _folder_files(folder: Path) -> list[Path]:
    """The trace files under a folder, subfolders included, sorted by their path inside it."""
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath)
        for name in filenames:
            f = base / name
            if not name.startswith(".") and f.suffix.lower() in TRACE_SUFFIXES and f.is_file():
                found.append((f.relative_to(folder).parts, f))
    return [f for _, f in sorted(found)]


def expand_paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The trace files of files and folders (a folder: every trace file under it, sorted), in order given."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += _folder_files(p)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(
                f"{p}: no such trace file; check the path (datasets.traces in autofix.yaml)"
            )
    return files


def _first_line(path: Path) -> int:
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if raw.strip():
                return n
    return 1


def ingest(
    paths: str | Path | Iterable[str | Path],
    fmt: Format = "auto",
    quarantine: Quarantine | None = None,
    since: datetime | None = None,
    *,
    limits: ReadLimits = ReadLimits(),
    stats: IngestStats | None = None,
) -> Iterator[Trace]:
    """Yield the native traces of every file; quarantine bad records; fill `stats` if given."""
    if fmt not in ("auto", *FORMATS):
        raise ValueError(f"unknown trace format {fmt!r}; use one of: auto, {', '.join(FORMATS)}")
    quarantine = quarantine if quarantine is not None else Quarantine(None)
    stats = stats if stats is not None else IngestStats()
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)

    for path in expand_paths(paths):
        stats.files += 1
        before = Counter(quarantine.counts)
        try:
            file_fmt = fmt if fmt != "auto" else detect_format(path, limits=limits)
            if file_fmt is None:
                quarantine.add(
                    path,
                    _first_line(path),
                    UNKNOWN_FORMAT,
                    "its records are neither native traces (trace_id), OpenInference spans "
                    "(context.trace_id) nor Langfuse traces (id, timestamp, observations); "
                    "convert it, or pass fmt= to read it as one of them",
                )
                continue
            layout = sniff_layout(path)
            if file_fmt == "native":
                traces: Iterator[Trace] = iter_native(path, quarantine, limits=limits, layout=layout)
            elif file_fmt == "openinference":
                traces = iter_openinference(path, quarantine, limits=limits, layout=layout)
            else:
                traces = iter_langfuse(path, quarantine, limits=limits, layout=layout)
            for trace in traces:
                if trace.timestamp is None:
                    stats.undated += 1
                elif since is not None and trace.timestamp < since:
                    stats.skipped_before_since += 1
                    continue
                stats.traces += 1
                stats.by_format[file_fmt] += 1
                stats.truncated_fields += len(trace.truncated)
                yield trace
        finally:
            delta = Counter(quarantine.counts)
            delta.subtract(before)
            delta = +delta
            stats.quarantined += sum(delta.values())
            stats.quarantined_by_reason.update(delta)
