"""The quarantine file a run keeps at runs/<id>/quarantine.jsonl."""

from __future__ import annotations

import json

from autofix.traces import Quarantine


def test_writes_one_json_line_per_bad_record_and_counts_by_reason(tmp_path):
    path = tmp_path / "runs" / "r1" / "quarantine.jsonl"
    with Quarantine(path) as q:
        q.add("data/traces.jsonl", 3, "invalid_json", "Expecting value (column 1)", b"{oops")
        q.add("data/traces.jsonl", 9, "schema", "trace_id: Field required", '{"spans": []}')
        q.add("data/traces.jsonl", 12, "invalid_json", "Unterminated string", "{")
    assert path.exists()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [3, 9, 12]
    assert rows[0] == {
        "file": "data/traces.jsonl",
        "line": 3,
        "reason": "invalid_json: Expecting value (column 1)",
        "excerpt": "{oops",
    }
    assert q.counts == {"invalid_json": 2, "schema": 1}
    assert q.total == 3


def test_appends_across_openings(tmp_path):
    path = tmp_path / "q.jsonl"
    with Quarantine(path) as q:
        q.add("a", 1, "schema")
    with Quarantine(path) as q:
        q.add("a", 2, "schema")
    assert len(path.read_text().splitlines()) == 2


def test_excerpt_is_capped_and_safe_for_broken_unicode(tmp_path):
    path = tmp_path / "q.jsonl"
    with Quarantine(path) as q:
        q.add("f", 1, "invalid_utf8", "bad byte", b'{"x": "caf\xc3"}' + b"y" * 2000)
        q.add("f", 2, "invalid_unicode", "lone surrogate", '{"x": "\ud800"}')
    raw = path.read_bytes()
    raw.decode("utf-8")  # the quarantine file itself is valid UTF-8
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    assert len(rows[0]["excerpt"]) == 500
    assert rows[0]["excerpt"].startswith('{"x": "caf\\xc3"}')
    assert rows[1]["excerpt"] == '{"x": "\\ud800"}'


def test_in_memory_quarantine_keeps_records():
    q = Quarantine(None)
    q.add("f", 7, "too_large", "record is 99 bytes")
    assert q.records == [{"file": "f", "line": 7, "reason": "too_large: record is 99 bytes", "excerpt": ""}]
    assert len(q) == 1
