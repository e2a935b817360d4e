"""Span recording in the shape of autofix's replay protocol."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator


class SpanRecorder:
    """Collects the spans of one request; times are milliseconds since the request started."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self.spans: list[dict[str, Any]] = []

    def _now_ms(self) -> float:
        return round((time.perf_counter() - self._t0) * 1000, 2)

    @contextmanager
    def span(self, kind: str, name: str, input: Any = None, **attributes: Any) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {
            "kind": kind, "name": name, "input": input, "output": None, "error": None,
            "start_ms": self._now_ms(), "end_ms": None, "attributes": dict(attributes),
        }
        self.spans.append(record)
        try:
            yield record
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record["end_ms"] = self._now_ms()
