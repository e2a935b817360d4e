"""Reading raw JSON records from an export file, with every bad one quarantined.

Two layouts are read, for every format:

- JSONL (one record per line): streamed line by line from the file in binary, so
  memory holds one line at a time. A line is decoded as strict UTF-8 (bad bytes ->
  `invalid_utf8`), parsed as JSON (-> `invalid_json`; NaN/Infinity are not JSON),
  checked for lone surrogate escapes such as ``"\\ud800"`` that could never be
  written back as UTF-8 (-> `invalid_unicode`) and for being an object (->
  `not_an_object`). A line longer than `max_record_bytes` is skipped in chunks
  without being held whole (-> `too_large`). Whitespace-only lines carry no
  record: they are skipped and not quarantined.
- a JSON document: an array of records, or an object holding them under
  ``"data"`` or ``"traces"`` (the Phoenix REST and Langfuse API page shapes), or a
  single record object. A document is read whole (up to `max_document_bytes`);
  records keep the line where they start. Export big data as JSONL.

`sniff_layout` tells the two apart from the first lines of the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from .quarantine import (
    INVALID_JSON,
    INVALID_UNICODE,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    TOO_LARGE,
    Quarantine,
)
from .schema import DEFAULT_MAX_FIELD_CHARS

__all__ = [
    "ReadLimits",
    "RawRecord",
    "iter_records",
    "iter_jsonl",
    "iter_json_document",
    "page_items",
    "read_jsonl_record_at",
    "sniff_layout",
]

CONTAINER_KEYS = ("data", "traces")
RECORD_KEYS = frozenset({"trace_id", "id", "context", "span_id", "context.trace_id"})


def page_items(obj: dict[str, Any]) -> list[Any] | None:
    """The records of an API page (``{"data": [...], "meta"|"next_cursor": ...}``), or None."""
    if RECORD_KEYS & obj.keys():
        return None
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), list):
            return obj[key]
    return None


_CHUNK = 1 << 20


@dataclass(frozen=True)
class ReadLimits:
    """Size limits of a read. `max_field_chars`: strings over it are truncated (see schema)."""

    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
    max_record_bytes: int = 64 * 1024 * 1024
    max_document_bytes: int = 512 * 1024 * 1024


@dataclass(slots=True)
class RawRecord:
    """One parsed JSON object: where it starts (1-based line, byte offset for JSONL) and its text."""

    line: int
    offset: int | None
    obj: dict[str, Any]
    text: str
    index: int | None = None  # position inside an API page line (``{"data": [...]}``)


class _BadRecord(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _find_lone_surrogate(obj: Any, path: str = "") -> str | None:
    if isinstance(obj, str):
        return (path or "<value>") if _LONE_SURROGATE.search(obj) else None
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            if _LONE_SURROGATE.search(k):
                return p
            hit = _find_lone_surrogate(v, p)
            if hit:
                return hit
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            hit = _find_lone_surrogate(v, f"{path}.{i}" if path else str(i))
            if hit:
                return hit
    return None


def _json_error_detail(e: json.JSONDecodeError) -> str:
    return f"{e.msg} (column {e.colno})"


def parse_json_line(text: str) -> dict[str, Any]:
    """Parse one JSONL line's text into an object, or raise `_BadRecord`."""
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise _BadRecord(INVALID_JSON, _json_error_detail(e)) from None
    except (ValueError, RecursionError) as e:
        raise _BadRecord(INVALID_JSON, str(e) or type(e).__name__) from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            where = _find_lone_surrogate(obj)
        except RecursionError:
            raise _BadRecord(INVALID_JSON, "the record is nested too deeply") from None
        if where is not None:
            raise _BadRecord(
                INVALID_UNICODE,
                f"lone UTF-16 surrogate escape in {where}; it cannot be stored as UTF-8",
            )
    if not isinstance(obj, dict):
        raise _BadRecord(NOT_AN_OBJECT, f"a record must be a JSON object, got {type(obj).__name__}")
    return obj


def _decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 1]
        raise _BadRecord(
            INVALID_UTF8,
            f"byte 0x{bad.hex()} at byte {e.start + 1} of the line is not UTF-8 ({e.reason}); "
            "re-export the file as UTF-8",
        ) from None


# --------------------------------------------------------------------------- JSONL


def _read_line(fh: IO[bytes], limit: int) -> tuple[bytes, int, bool]:
    """Read one line of at most `limit` bytes; return (bytes, total length, too_long)."""
    raw = fh.readline(limit + 1)
    if len(raw) <= limit or raw.endswith(b"\n"):
        return raw, len(raw), False
    total = len(raw)
    head = raw[:4096]
    while True:  # skip the rest of an over-long line without holding it
        chunk = fh.readline(_CHUNK)
        total += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return head, total, True


def iter_jsonl(
    path: str | Path,
    quarantine: Quarantine,
    limits: ReadLimits = ReadLimits(),
    *,
    start_line: int = 1,
    unwrap_pages: bool = False,
    start_offset: int = 0,
    end_offset: int | None = None,
) -> Iterator[RawRecord]:
    """Stream the JSON objects of a JSONL file; quarantine every bad line, skip blank ones.

    `unwrap_pages`: a line holding an API page (``{"data": [...], ...}``, a dump of
    paginated API responses) yields each of its records, all with that line's number.
    `start_offset`, `end_offset`: read only the lines starting in that byte range
    (`start_offset` must be the start of a line, whose number is `start_line`), so that
    several workers can share one big file.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        if start_offset:
            fh.seek(start_offset)
        line_no = start_line - 1
        offset = start_offset
        while True:
            if end_offset is not None and offset >= end_offset:
                break
            raw, length, too_long = _read_line(fh, limits.max_record_bytes)
            if not length:
                break
            line_no += 1
            line_offset = offset
            offset += length
            if too_long:
                quarantine.add(
                    path,
                    line_no,
                    TOO_LARGE,
                    f"the record is {length} bytes, over the limit of {limits.max_record_bytes}"
                    " (raise max_record_bytes to read it)",
                    raw,
                )
                continue
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # UTF-8 byte order mark
            if not raw.strip():
                continue
            try:
                text = _decode_utf8(raw).rstrip("\r\n")
                obj = parse_json_line(text)
            except _BadRecord as bad:
                quarantine.add(path, line_no, bad.code, bad.detail, raw)
                continue
            items = page_items(obj) if unwrap_pages else None
            if items is None:
                yield RawRecord(line_no, line_offset, obj, text)
                continue
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    yield RawRecord(line_no, line_offset, item, json.dumps(item)[:2000], i)
                else:
                    quarantine.add(
                        path, line_no, NOT_AN_OBJECT,
                        f"item {i} of the page: a record must be a JSON object, got {type(item).__name__}",
                        json.dumps(item)[:600],
                    )  # fmt: skip


def read_jsonl_record_at(fh: IO[bytes], offset: int, line: int, index: int | None = None) -> RawRecord:
    """Re-read the (already validated) JSONL record starting at byte `offset`."""
    fh.seek(offset)
    raw = fh.readline()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = raw.decode("utf-8").rstrip("\r\n")
    obj = parse_json_line(text)
    if index is not None:
        obj = page_items(obj)[index]  # type: ignore[index]
        text = json.dumps(obj)[:2000]
    return RawRecord(line, offset, obj, text, index)


# --------------------------------------------------------------------------- JSON documents


class _Lines:
    """Turns increasing character positions of a text into 1-based line numbers."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            return self.text.count("\n", 0, pos) + 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


_WS = re.compile(r"[ \t\n\r]*")


def _ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


class _DocError(Exception):
    def __init__(self, pos: int, detail: str):
        super().__init__(detail)
        self.pos = pos
        self.detail = detail


def _decode_value(text: str, i: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, i)
    except json.JSONDecodeError as e:
        raise _DocError(e.pos, e.msg) from None
    except (ValueError, RecursionError) as e:
        raise _DocError(i, str(e) or type(e).__name__) from None


def _array_elements(text: str, i: int) -> Iterator[tuple[int, int, Any]]:
    """Elements (start, end, value) of the JSON array starting at text[i] == '['."""
    i = _ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return
    while True:
        start = i
        value, end = _decode_value(text, i)
        yield start, end, value
        i = _ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            return
        raise _DocError(i, "Expecting ',' or ']' between array elements")


def _check_element(obj: Any) -> None:
    try:
        where = _find_lone_surrogate(obj)
    except RecursionError:
        raise _BadRecord(INVALID_JSON, "the record is nested too deeply") from None
    if where is not None:
        raise _BadRecord(
            INVALID_UNICODE, f"lone UTF-16 surrogate escape in {where}; it cannot be stored as UTF-8"
        )
    if not isinstance(obj, dict):
        raise _BadRecord(NOT_AN_OBJECT, f"a record must be a JSON object, got {type(obj).__name__}")


def iter_json_document(
    path: str | Path, quarantine: Quarantine, limits: ReadLimits = ReadLimits()
) -> Iterator[RawRecord]:
    """The records of a JSON document (array, {"data": [...]} page, or one object)."""
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_document_bytes:
        quarantine.add(
            path,
            1,
            TOO_LARGE,
            f"a JSON document is read whole and this one is {size} bytes, over the limit of "
            f"{limits.max_document_bytes}; export it as JSONL (one record per line) instead",
        )
        return
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        quarantine.add(
            path,
            line,
            INVALID_UTF8,
            f"byte 0x{raw[e.start:e.start + 1].hex()} is not UTF-8 ({e.reason}); the JSON "
            "document cannot be read past it; re-export the file as UTF-8",
            raw[max(0, e.start - 200) : e.start + 300],
        )
        return
    lines = _Lines(text)

    def element(start: int, end: int, obj: Any) -> RawRecord | None:
        line = lines.at(start)
        try:
            _check_element(obj)
        except _BadRecord as bad:
            quarantine.add(path, line, bad.code, bad.detail, text[start : min(end, start + 600)])
            return None
        return RawRecord(line, None, obj, text[start : min(end, start + 2000)])

    i = _ws(text, 0)
    if i >= len(text):
        return
    try:
        if text[i] == "[":
            for start, end, obj in _array_elements(text, i):
                rec = element(start, end, obj)
                if rec is not None:
                    yield rec
            return
        if text[i] != "{":
            value, end = _decode_value(text, i)
            quarantine.add(
                path,
                lines.at(i),
                NOT_AN_OBJECT,
                f"a JSON document must hold an array or object of records, got {type(value).__name__}",
                text[i : i + 600],
            )
            return
        # An object: a page holding records under "data"/"traces", or one record itself.
        obj: dict[str, Any] = {}
        held: list[tuple[int, int, Any]] | None = None
        j = _ws(text, i + 1)
        if j < len(text) and text[j] == "}":
            return
        while True:
            key, j = _decode_value(text, j)
            if not isinstance(key, str):
                raise _DocError(j, "Expecting property name enclosed in double quotes")
            j = _ws(text, j)
            if j >= len(text) or text[j] != ":":
                raise _DocError(j, "Expecting ':' delimiter")
            j = _ws(text, j + 1)
            if key in CONTAINER_KEYS and held is None and j < len(text) and text[j] == "[":
                held = []
                end = j
                for start, end_el, value in _array_elements(text, j):
                    held.append((start, end_el, value))
                    end = end_el
                j = _ws(text, end)
                j = j + 1 if text[j] == "]" else j
                obj[key] = [v for _, _, v in held]
            else:
                obj[key], j = _decode_value(text, j)
            j = _ws(text, j)
            if j < len(text) and text[j] == ",":
                j = _ws(text, j + 1)
                continue
            if j < len(text) and text[j] == "}":
                break
            raise _DocError(j, "Expecting ',' delimiter or '}' in object")
        if held is not None and not (RECORD_KEYS & obj.keys()):
            for start, end, value in held:
                rec = element(start, end, value)
                if rec is not None:
                    yield rec
            return
        rec = element(i, j + 1, obj)
        if rec is not None:
            yield rec
    except _DocError as e:
        quarantine.add(
            path,
            lines.at(e.pos),
            INVALID_JSON,
            f"{e.detail}; the JSON document cannot be read past this point",
            text[max(0, e.pos - 200) : e.pos + 300],
        )


# --------------------------------------------------------------------------- layout


def sniff_layout(path: str | Path, *, whole_doc_probe_bytes: int = 64 * 1024 * 1024) -> Literal["jsonl", "json"]:
    """"json" for a JSON document (an array, or a pretty-printed object), else "jsonl".

    A first non-blank line that is a JSON object by itself means JSONL; a one-line
    array alone in the file is a document. Otherwise (a pretty-printed document, or a
    JSONL file with a broken first line) the whole file is tried as one document when
    it is at most `whole_doc_probe_bytes`; if that fails it is read as JSONL, so each
    bad line is quarantined on its own (a larger file is a document only when its
    first line is a lone ``{`` or ``[``).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        first = b""
        while True:
            raw = fh.readline(1 << 20)
            if not raw:
                return "jsonl"
            if not first and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            first = raw.strip()
            if first:
                break
        more = any(line.strip() for line in iter(lambda: fh.readline(1 << 16), b""))
    if first.startswith(b"["):
        # A one-line array is a document; an array line followed by more lines is a
        # (bad) JSONL record.
        try:
            json.loads(first.decode("utf-8"))
            return "jsonl" if more else "json"
        except (ValueError, UnicodeDecodeError):
            pass
    elif not first.startswith(b"{"):
        return "jsonl"  # not JSON at all: the JSONL reader quarantines it line by line
    else:
        try:
            if isinstance(json.loads(first.decode("utf-8")), dict):
                return "jsonl"
        except (ValueError, UnicodeDecodeError):
            pass
    # The first line is not a record by itself: a pretty-printed document, or a JSONL
    # file whose first line is broken. Only a whole parse tells them apart.
    if path.stat().st_size <= whole_doc_probe_bytes:
        try:
            json.loads(path.read_bytes().decode("utf-8-sig"))
            return "json"
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "jsonl"
    return "json" if first in (b"{", b"[") else "jsonl"


def iter_records(
    path: str | Path, quarantine: Quarantine, limits: ReadLimits = ReadLimits()
) -> Iterator[RawRecord]:
    """The JSON objects of an export file, either layout; bad records are quarantined."""
    if sniff_layout(path) == "json":
        yield from iter_json_document(path, quarantine, limits)
    else:
        yield from iter_jsonl(path, quarantine, limits)
