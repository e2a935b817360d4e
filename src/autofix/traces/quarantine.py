"""Quarantine: where bad input records go, one JSON line each, instead of crashing a run.

A run keeps it at ``runs/<id>/quarantine.jsonl``. Each line is

    {"file": "data/traces.jsonl", "line": 17, "reason": "invalid_json: Expecting ',' ...",
     "excerpt": "{\"trace_id\": \"t-17\" ..."}

`reason` always starts with a stable code (`invalid_utf8`, `invalid_json`,
`invalid_unicode`, `not_an_object`, `schema`, `too_large`, `unknown_format`,
`orphan`), then ``": "`` and the detail; `counts` tallies the codes. `excerpt`
is at most 500 characters of the offending record, with undecodable bytes and lone
surrogates written as backslash escapes, so the quarantine file itself is always
valid UTF-8 JSON.

`Quarantine(None)` keeps the records in memory (`records`) instead of a file: for
library use and tests.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Any

__all__ = [
    "EXCERPT_CHARS",
    "INVALID_JSON",
    "INVALID_UNICODE",
    "INVALID_UTF8",
    "NOT_AN_OBJECT",
    "ORPHAN",
    "Quarantine",
    "SCHEMA",
    "TOO_LARGE",
    "UNKNOWN_FORMAT",
    "safe_text",
]

EXCERPT_CHARS = 500

INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
INVALID_UNICODE = "invalid_unicode"
NOT_AN_OBJECT = "not_an_object"
SCHEMA = "schema"
TOO_LARGE = "too_large"
UNKNOWN_FORMAT = "unknown_format"
ORPHAN = "orphan"


def safe_text(data: bytes | str | None, limit: int | None = None) -> str:
    """Text that is always encodable as UTF-8: bad bytes and lone surrogates become escapes."""
    if data is None:
        return ""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if limit is not None:
            raw = raw[: limit * 4]  # enough bytes for `limit` characters
        text = raw.decode("utf-8", errors="backslashreplace")
    else:
        text = data if limit is None else data[: limit * 2]
        text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[:limit]
    return text


class Quarantine:
    """Collects bad records: appends one JSON line per record to `path`, counts by reason code."""

    def __init__(self, path: str | Path | None = None, *, excerpt_chars: int = EXCERPT_CHARS):
        self.path = Path(path) if path is not None else None
        self.excerpt_chars = excerpt_chars
        self.counts: Counter[str] = Counter()
        self.records: list[dict[str, Any]] = []  # only filled when path is None
        self._fh: IO[str] | None = None

    # -- lifecycle
    def open(self) -> Quarantine:
        """Create the file (and its folder) now; `add` also opens it on first use."""
        if self.path is not None and self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", newline="\n")
        return self

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Quarantine:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recording
    def add(
        self,
        file: str | Path,
        line: int | None,
        code: str,
        detail: str = "",
        excerpt: bytes | str | None = None,
    ) -> dict[str, Any]:
        """Quarantine one record: `line` is 1-based; `code` one of the reason codes."""
        reason = f"{code}: {detail}" if detail else code
        record = {
            "file": safe_text(str(file)),
            "line": line,
            "reason": safe_text(reason, 2000),
            "excerpt": safe_text(excerpt, self.excerpt_chars),
        }
        self.counts[code] += 1
        if self.path is None:
            self.records.append(record)
        else:
            self.open()
            assert self._fh is not None
            self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._fh.flush()  # a killed run keeps what it quarantined
        return record

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __len__(self) -> int:
        return self.total

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return f"Quarantine({where}, {dict(self.counts)})"
