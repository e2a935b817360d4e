"""The native JSONL reader: good lines become traces, bad lines are quarantined, memory stays flat."""

from __future__ import annotations

import json
import os
import tracemalloc

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from autofix.traces import Quarantine, ReadLimits, iter_native, write_native
from autofix.traces.records import iter_jsonl
from autofix.traces.schema import TRUNCATION_MARKER

CODES = {"invalid_utf8", "invalid_json", "invalid_unicode", "not_an_object", "schema", "too_large"}


def good(trace_id: str, **over) -> dict:
    t = {
        "trace_id": trace_id,
        "session_id": "s-1",
        "timestamp": "2024-06-01T10:00:00+00:00",
        "input": "How do I reset my password?",
        "output": "Use the portal.",
        "spans": [
            {"kind": "retrieval", "name": "search", "output": [{"doc_id": "d1", "score": 0.5}]},
            {"kind": "llm", "name": "answer", "start_ms": 1, "end_ms": 2},
        ],
        "feedback": [{"kind": "thumb_down", "value": 0}],
        "scores": [],
        "versions": {"prompt": "v1"},
        "metadata": {"tenant": "acme"},
    }
    t.update(over)
    return t


def write_lines(path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_reads_good_lines_and_quarantines_each_bad_one(tmp_path):
    p = tmp_path / "traces.jsonl"
    write_lines(
        p,
        [
            json.dumps(good("t-1")).encode() + b"\n",
            b"\n",
            b'{"trace_id": "t-3", "timestamp": \n',
            json.dumps(good("t-4", spans=[{"kind": "db", "name": "q"}])).encode() + b"\n",
            b'{"trace_id": "t-5", "input": "caf\xc3"}\n',
            b"[1, 2]\n",
            b'{"trace_id": "t-7", "timestamp": "2024-06-01T10:00:00Z", "input": "\\ud83d"}\n',
            b'{"trace_id": "t-8", "timestamp": NaN}\n',
            json.dumps(good("t-9")).encode() + b"\r\n",
            json.dumps(good("t-10")).encode(),  # no newline at the end of the file
        ],
    )
    q = Quarantine(None)
    traces = list(iter_native(p, q))
    assert [t.trace_id for t in traces] == ["t-1", "t-9", "t-10"]
    got = {r["line"]: r["reason"] for r in q.records}
    assert sorted(got) == [3, 4, 5, 6, 7, 8]
    assert got[3].startswith("invalid_json: Expecting value")
    assert got[4].startswith("schema: spans.0.kind: Input should be 'llm'")
    assert got[5].startswith("invalid_utf8: byte 0xc3")
    assert got[6].startswith("not_an_object")
    assert got[7].startswith("invalid_unicode: lone UTF-16 surrogate escape in input")
    assert got[8].startswith("invalid_json: NaN is not valid JSON")
    assert q.records[0]["file"] == str(p)


def test_too_large_records_are_skipped_without_reading_them_whole(tmp_path):
    p = tmp_path / "t.jsonl"
    huge = json.dumps(good("t-2", input="y" * 50_000)).encode()
    write_lines(p, [json.dumps(good("t-1")).encode() + b"\n", huge + b"\n", json.dumps(good("t-3")).encode() + b"\n"])
    q = Quarantine(None)
    traces = list(iter_native(p, q, limits=ReadLimits(max_record_bytes=4096)))
    assert [t.trace_id for t in traces] == ["t-1", "t-3"]
    assert [(r["line"], r["reason"].split(":")[0]) for r in q.records] == [(2, "too_large")]
    assert f"{len(huge) + 1} bytes" in q.records[0]["reason"]


def test_huge_fields_are_truncated_and_counted_not_quarantined(tmp_path):
    p = tmp_path / "t.jsonl"
    write_lines(p, [json.dumps(good("t-1", output="z" * 3000)).encode() + b"\n"])
    q = Quarantine(None)
    (t,) = iter_native(p, q, limits=ReadLimits(max_field_chars=1000))
    assert t.truncated == ["output"] and len(t.output) < 1100
    assert q.total == 0


def test_byte_order_mark_is_ignored_and_writer_round_trips(tmp_path):
    p = tmp_path / "t.jsonl"
    write_lines(p, [b"\xef\xbb\xbf" + json.dumps(good("t-1")).encode() + b"\n"])
    q = Quarantine(None)
    traces = list(iter_native(p, q))
    out = tmp_path / "out.jsonl"
    assert write_native(traces, out) == 1
    assert list(iter_native(out, q)) == traces and q.total == 0


# --------------------------------------------------------------------------- properties

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def good_trace(draw, trace_id: str) -> dict:
    n_spans = draw(st.integers(0, 3))
    spans = []
    for i in range(n_spans):
        kind = draw(st.sampled_from(["llm", "retrieval", "tool", "router", "chain"]))
        span = {"kind": kind, "name": draw(texts)}
        if kind == "retrieval":
            span["output"] = [{"doc_id": f"d{j}", "score": draw(st.floats(0, 1))} for j in range(draw(st.integers(0, 2)))]
        elif kind == "tool":
            span["input"] = draw(st.dictionaries(st.text(max_size=5), st.integers() | texts, max_size=3))
        if draw(st.booleans()):
            span["start_ms"], span["end_ms"] = i * 10, i * 10 + draw(st.integers(0, 9))
        spans.append(span)
    return {
        "trace_id": trace_id,
        "session_id": draw(st.none() | texts),
        "timestamp": draw(st.sampled_from(["2024-06-01T10:00:00Z", "2024-06-01T10:00:00.123+02:00", "2024-06-01"])),
        "input": draw(texts),
        "output": draw(st.none() | texts | st.lists(st.integers(), max_size=3)),
        "spans": spans,
        "feedback": [{"kind": draw(st.sampled_from(["thumb_down", "thumb_up", "rephrase"])), "value": draw(st.integers(-1, 1))}]
        if draw(st.booleans())
        else [],
        "metadata": draw(st.dictionaries(st.sampled_from(["channel", "region", "tenant"]), texts, max_size=2)),
    }


WRONG_TYPES = [
    ("trace_id", 5),
    ("trace_id", None),
    ("trace_id", ""),
    ("timestamp", True),
    ("timestamp", "yesterday"),
    ("timestamp", [2024, 6, 1]),
    ("spans", "x"),
    ("spans", [{"kind": "database", "name": "q"}]),
    ("spans", [{"kind": "llm", "name": 7}]),
    ("spans", [{"kind": "llm", "name": "a", "start_ms": "fast"}]),
    ("spans", [{"kind": "retrieval", "name": "r", "output": "doc text"}]),
    ("feedback", [{"kind": "love"}]),
    ("feedback", {"kind": "thumb_up"}),
    ("versions", {"model": ["a"]}),
    ("metadata", "tenant-a"),
    ("metadata", {"task_type": 3}),
    ("scores", [{"value": 1}]),
]
BAD_BYTES = [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\x80", b"\xf0\x9f"]
BLANKS = [b"", b"   ", b"\t", b" \r"]


@st.composite
def corrupted_file(draw, max_lines: int = 25):
    """Lines of a native file, each labelled good/bad/blank, with its expected reason code."""
    n = draw(st.integers(1, max_lines))
    lines: list[tuple[bytes, str, str | None, str | None]] = []  # (bytes, label, trace_id, code)
    for i in range(1, n + 1):
        tid = f"t-{i}"
        t = draw(good_trace(tid))
        line = json.dumps(t).encode()
        what = draw(
            st.sampled_from(
                ["good", "good", "good", "huge", "invalid_json", "wrong_type", "missing_id", "utf8", "blank",
                 "not_object", "surrogate", "too_large"]  # fmt: skip
            )
        )
        if what == "good":
            lines.append((line, "good", tid, None))
        elif what == "huge":  # over the field cap: truncated, still a trace
            lines.append((json.dumps({**t, "input": "h" * draw(st.integers(65, 400))}).encode(), "good", tid, None))
        elif what == "invalid_json":
            cut = draw(st.integers(1, len(line) - 1))
            bad = draw(st.sampled_from([line[:cut], line[:cut] + b"}}", b"{'single': 'quotes'}", b"not json", b"{,}"]))
            assume(not parses(bad))
            lines.append((bad, "bad", None, "invalid_json"))
        elif what == "wrong_type":
            key, value = draw(st.sampled_from(WRONG_TYPES))
            lines.append((json.dumps({**t, key: value}).encode(), "bad", None, "schema"))
        elif what == "missing_id":
            lines.append((json.dumps({k: v for k, v in t.items() if k != "trace_id"}).encode(), "bad", None, "schema"))
        elif what == "utf8":
            pos = draw(st.integers(0, len(line)))
            bad = line[:pos] + draw(st.sampled_from(BAD_BYTES)) + line[pos:]
            try:
                bad.decode("utf-8")
                broken = False
            except UnicodeDecodeError:
                broken = True
            assume(broken)
            lines.append((bad, "bad", None, "invalid_utf8"))
        elif what == "blank":
            lines.append((draw(st.sampled_from(BLANKS)), "blank", None, None))
        elif what == "not_object":
            lines.append((draw(st.sampled_from([b"[1, 2]", b"42", b"null", b'"text"', b"true"])), "bad", None, "not_an_object"))
        elif what == "surrogate":
            lines.append((json.dumps({**t, "output": "x\ud800"}).encode(), "bad", None, "invalid_unicode"))
        else:  # a record over max_record_bytes
            lines.append((json.dumps({**t, "input": "L" * 5000}).encode(), "bad", None, "too_large"))
    ends = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in lines]
    if draw(st.booleans()):
        ends[-1] = b""  # the last line may lack its newline
    data = b"".join(line + end for (line, *_), end in zip(lines, ends))
    return data, lines


def parses(data: bytes) -> bool:
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


LIMITS = ReadLimits(max_field_chars=64, max_record_bytes=4096)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(corrupted_file())
def test_property_reading_a_corrupted_file(tmp_path_factory, case):
    data, lines = case
    p = tmp_path_factory.mktemp("native") / "traces.jsonl"
    p.write_bytes(data)
    q = Quarantine(None)
    traces = list(iter_native(p, q, limits=LIMITS))  # never raises

    expected_ids = [tid for _, label, tid, _ in lines if label == "good"]
    assert [t.trace_id for t in traces] == expected_ids
    expected_bad = {i: code for i, (_, label, _, code) in enumerate(lines, 1) if label == "bad"}
    got = {r["line"]: r["reason"] for r in q.records}
    assert len(q.records) == len(expected_bad)  # each bad line exactly once
    assert set(got) == set(expected_bad)
    for line_no, code in expected_bad.items():
        assert got[line_no].split(":")[0] == code, (line_no, got[line_no])
    for t in traces:
        assert all(s.span_id for s in t.spans)
        if isinstance(t.input, str) and len(t.input) > 64:  # cut to the cap, marker appended
            assert t.truncated == ["input"]
            assert t.input == t.input[:64] + TRUNCATION_MARKER.format(n=int(t.input.split(", ")[-1].split()[0]))


# --------------------------------------------------------------------------- streaming


def test_streaming_keeps_memory_flat_on_a_big_file(tmp_path):
    p = tmp_path / "big.jsonl"
    n = 50_000
    template = json.dumps(
        {
            "trace_id": "TID",
            "timestamp": "2024-06-01T10:00:00Z",
            "input": "How do I connect to the VPN from home? " * 10,
            "spans": [{"kind": "llm", "name": "answer", "output": "Install GlobalConnect. " * 5}],
        }
    )
    head, tail = template.split('"TID"')
    with open(p, "w") as fh:
        fh.writelines(f'{head}"t-{i}"{tail}\n' for i in range(n))
    size = os.path.getsize(p)
    assert size > 20_000_000

    q = Quarantine(None)
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_native(p, q))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n and q.total == 0
    assert peak < size / 50, f"peak {peak} bytes while reading {size} bytes"


def test_jsonl_offsets_point_at_their_lines(tmp_path):
    p = tmp_path / "t.jsonl"
    write_lines(p, [b'{"a": 1}\n', b"\n", b'{"b": "\xc3\xa9"}\r\n', b'{"c": 3}'])
    recs = list(iter_jsonl(p, Quarantine(None)))
    assert [(r.line, r.offset) for r in recs] == [(1, 0), (3, 10), (4, 23)]
