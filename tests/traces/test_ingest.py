"""ingest(): every trace file of a run, any format, as one stream of native traces."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from autofix.traces import IngestStats, Quarantine, ReadLimits, detect_format, ingest

FIXTURES = Path(__file__).parent / "fixtures"


def native_line(tid: str, ts: str = "2024-06-07T08:00:00Z", **over) -> str:
    t = {"trace_id": tid, "timestamp": ts, "input": "q", "output": "a",
         "spans": [{"kind": "llm", "name": "answer"}], "metadata": {"tenant": "acme"}}  # fmt: skip
    t.update(over)
    return json.dumps(t)


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("phoenix_spans.jsonl", "openinference"),
        ("phoenix_rest_page.json", "openinference"),
        ("langfuse_traces.jsonl", "langfuse"),
        ("langfuse_api_page.json", "langfuse"),
    ],
)
def test_detects_the_format_from_the_first_records(name, fmt):
    assert detect_format(FIXTURES / name) == fmt


def test_a_folder_of_mixed_exports_becomes_one_stream_with_stats(tmp_path):
    folder = tmp_path / "traces"
    folder.mkdir()
    for name in ("phoenix_spans.jsonl", "langfuse_traces.jsonl"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "native.jsonl").write_text(
        "\n".join([native_line("n-1"), "{not json", native_line("n-3", input="x" * 1500)]) + "\n"
    )
    (folder / "notes.txt").write_text("not a trace file")
    run = tmp_path / "runs" / "2024-06-08"
    stats = IngestStats()

    with Quarantine(run / "quarantine.jsonl") as q:
        traces = list(ingest(folder, quarantine=q, stats=stats, limits=ReadLimits(max_field_chars=1000)))

    assert len(traces) == 3 + 3 + 2
    assert stats.by_format == {"langfuse": 3, "native": 2, "openinference": 3}
    assert stats.files == 3 and stats.traces == 8
    assert stats.quarantined == 1 and stats.quarantined_by_reason == {"invalid_json": 1}
    assert stats.truncated_fields == 1
    (row,) = [json.loads(line) for line in (run / "quarantine.jsonl").read_text().splitlines()]
    assert row["file"] == str(folder / "native.jsonl") and row["line"] == 2
    assert stats.as_dict()["by_format"]["native"] == 2


def test_since_keeps_recent_traces_and_counts_the_rest(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join([native_line("old", "2024-05-01T00:00:00Z"), native_line("new", "2024-06-07T00:00:00+02:00")]))
    stats = IngestStats()
    got = [t.trace_id for t in ingest(p, since=datetime(2024, 6, 1), stats=stats)]
    assert got == ["new"] and stats.skipped_before_since == 1
    got = [t.trace_id for t in ingest([p], since=datetime(2024, 6, 6, 23, 0, tzinfo=timezone.utc))]
    assert got == []  # 2024-06-07T00:00+02:00 is 22:00 UTC on the 6th


def test_explicit_format_overrides_detection():
    traces = list(ingest(FIXTURES / "langfuse_traces.jsonl", fmt="langfuse"))
    assert len(traces) == 3
    q = Quarantine(None)
    assert list(ingest(FIXTURES / "langfuse_traces.jsonl", fmt="native", quarantine=q)) == []
    assert q.counts == {"schema": 3}  # read as native, every line lacks trace_id
    with pytest.raises(ValueError, match="unknown trace format"):
        list(ingest(FIXTURES / "langfuse_traces.jsonl", fmt="otlp"))  # type: ignore[arg-type]


def test_unknown_format_is_quarantined_once_with_the_fix(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text("\n" + json.dumps({"event": "click", "ts": 1}) + "\n" + json.dumps({"event": "view"}) + "\n")
    q = Quarantine(None)
    stats = IngestStats()
    assert list(ingest(p, quarantine=q, stats=stats)) == []
    (r,) = q.records
    assert r["line"] == 2 and r["reason"].startswith("unknown_format:") and "fmt=" in r["reason"]
    assert stats.quarantined == 1


def test_a_file_with_no_readable_record_has_each_line_quarantined(tmp_path):
    p = tmp_path / "broken.jsonl"
    p.write_bytes(b"{oops\n\xff\xfe\n[1\n")
    q = Quarantine(None)
    assert list(ingest(p, quarantine=q)) == []
    assert [(r["line"], r["reason"].split(":")[0]) for r in q.records] == [
        (1, "invalid_json"), (2, "invalid_utf8"), (3, "invalid_json"),
    ]  # fmt: skip


def test_api_pages_dumped_one_per_line_are_unwrapped(tmp_path):
    page = json.loads((FIXTURES / "langfuse_api_page.json").read_text())
    full = [json.loads(line) for line in (FIXTURES / "langfuse_traces.jsonl").read_text().splitlines()]
    p = tmp_path / "pages.jsonl"
    p.write_text(json.dumps({**page, "data": full[:2]}) + "\n" + json.dumps({**page, "data": full[2:]}) + "\n")
    traces = list(ingest(p))
    assert [t.metadata["source"]["line"] for t in traces] == [1, 1, 2]
    assert [len(t.spans) for t in traces] == [2, 3, 3]


def test_missing_path_is_a_configuration_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="datasets.traces"):
        list(ingest(tmp_path / "nope.jsonl"))
