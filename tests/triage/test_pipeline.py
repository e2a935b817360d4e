"""`run_triage` end to end on a synthetic trace file, and the `autofix triage` command."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import load_config
from autofix.triage import run_triage

runner = CliRunner()
THUMB = [{"kind": "thumb_down", "value": -1}]


def production(tb) -> list:  # noqa: ANN001
    """Background traffic plus failures of three mechanisms, and bad lines."""
    rows: list = [*tb.background(20)]
    at = tb.T0 + timedelta(hours=5)
    for i in range(4):
        rows.append(tb.build(f"tool{i}", "Show my tickets since Monday", route="tool", task_type="ticket_list", feedback=THUMB,
                             at=at + timedelta(minutes=i),
                             tool={"name": "list_tickets", "args": {"requester": "ann", "since": "16/11/2026"},
                                   "schema": tb.LIST_SCHEMA, "error": "400 Bad Request: since does not match"}))
        rows.append(tb.build(f"route{i}", ["How many leave days can I carry over this year?", "Is payroll paid this month in London?",
                                           "how many days of annual leave this year", "When is payday this month for London?"][i],
                             route="answer", reason="time-relative question answered from the clock", answer="Probably 10.",
                             scores=[{"name": "quality", "value": 0.1}], at=at + timedelta(minutes=10 + i)))
    rows.append(tb.build("odd", docs=[tb.doc("hr-leave-001"), tb.doc("hr-leave-002"), tb.doc("fin-x"), tb.doc("it-y")], top_k=10,
                         feedback=THUMB, answer="You can carry over 5 days. Sources: hr-leave-001", at=at + timedelta(hours=1)))
    rows.insert(3, '{"trace_id": "bad-json", ')  # invalid JSON
    rows.insert(7, json.dumps({"trace_id": "bad-kind", "timestamp": "2026-11-02T09:00:00Z", "spans": [{"kind": "nope", "name": "x"}]}))
    rows.insert(9, json.dumps({"timestamp": "2026-11-02T09:00:00Z"}))  # no trace_id
    return rows


@pytest.fixture
def loaded(target: Path, tb, write_jsonl):  # noqa: ANN001, ANN201
    write_jsonl(target / "data" / "traces.jsonl", production(tb))
    return load_config(target)


def test_run_triage_end_to_end(loaded) -> None:  # noqa: ANN001
    report = run_triage(loaded)
    assert report.traces == 29 and report.quarantined == 3 and report.failures == 9
    assert report.quarantined_by_reason == {"invalid_json": 1, "schema": 2}
    cats = {c.category.value: c for c in report.clusters}
    assert cats["tool_arguments"].size == 4 and cats["tool_arguments"].owner == "optimizer:code_patch"
    assert cats["routing"].size == 4 and cats["routing"].owner == "optimizer:code_patch"  # routing lives in router.py
    assert cats["unclassified"].trace_ids == ["odd"]
    assert report.clusters[0].category.value in ("tool_arguments", "routing")
    assert report.clusters[-1].category.value == "unclassified"

    state = loaded.state_path / "triage"
    latest = json.loads((state / "latest.json").read_text())
    stamped = [p for p in state.glob("2*/report.json")]
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == latest
    assert latest["traces"] == 29 and latest["failures"] == 9 and latest["quarantined"] == 3
    assert {c["id"] for c in latest["clusters"]} == {c.id for c in report.clusters}
    details = {d["trace_id"]: d for d in latest["failure_details"]}
    assert len(details) == 9
    assert details["tool0"]["diagnosis"]["category"] == "tool_arguments"
    assert details["tool0"]["cluster"] == cats["tool_arguments"].id
    assert details["odd"]["diagnosis"]["method"] == "none"
    assert all(d["signals"] for d in details.values())

    quarantine = [json.loads(x) for x in (stamped[0].parent / "quarantine.jsonl").read_text().splitlines()]
    assert latest["quarantine_path"] == str(stamped[0].parent / "quarantine.jsonl")
    assert [q["line"] for q in quarantine] == [4, 8, 10]
    assert all(q["file"].endswith("traces.jsonl") for q in quarantine)


def test_each_run_keeps_its_own_report_and_quarantine(loaded) -> None:  # noqa: ANN001
    first = run_triage(loaded)
    second = run_triage(loaded)
    assert Path(first.report_path).parent != Path(second.report_path).parent
    for report in (first, second):
        assert Path(report.quarantine_path).parent == Path(report.report_path).parent
        assert len(Path(report.quarantine_path).read_text().splitlines()) == report.quarantined == 3


def test_since_keeps_only_later_traces(loaded) -> None:  # noqa: ANN001
    report = run_triage(loaded, since=datetime(2026, 11, 2, 14, 30, tzinfo=timezone.utc))
    assert report.traces == 1 and report.failures == 1  # "odd", an hour after the others


def test_missing_trace_file(loaded, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        run_triage(loaded, paths=[tmp_path / "nope.jsonl"])


# ----------------------------------------------------------------------------- CLI


def test_cli_json(loaded) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["triage", "-c", str(loaded.file), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"traces", "failures", "quarantined", "clusters"} <= set(doc)
    assert (doc["traces"], doc["failures"], doc["quarantined"]) == (29, 9, 3)
    for c in doc["clusters"]:
        assert {"id", "category", "size", "priority", "fixable", "owner", "trace_ids", "rationale"} <= set(c)
        assert len(c["trace_ids"]) == c["size"]
        assert isinstance(c["fixable"], bool) and isinstance(c["priority"], float)
    assert sum(c["size"] for c in doc["clusters"]) == 9


def test_cli_limit_clusters(loaded) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["triage", "-c", str(loaded.file), "--json", "--limit-clusters", "1"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["clusters"]) == 1


def test_cli_table(loaded) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["triage", "-c", str(loaded.file)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "29 traces, 9 failures, 3 quarantined" in out
    assert "tool_arguments" in out and "optimizer:code_patch" in out
    assert "report:" in out and "quarantine.jsonl" in out


def test_cli_since(loaded) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["triage", "-c", str(loaded.file), "--json", "--since", "2026-11-02T14:30:00Z"])
    assert result.exit_code == 0 and json.loads(result.stdout)["traces"] == 1
    bad = runner.invoke(app, ["triage", "-c", str(loaded.file), "--since", "last tuesday"])
    assert bad.exit_code != 0 and "ISO 8601" in bad.output


def test_cli_bad_config(tmp_path: Path) -> None:
    (tmp_path / "autofix.yaml").write_text("project: [oops\n")
    result = runner.invoke(app, ["triage", "-c", str(tmp_path / "autofix.yaml")])
    assert result.exit_code == 2
    assert "autofix.yaml" in result.output


def test_cli_garbage_input_is_quarantined_not_fatal(loaded) -> None:  # noqa: ANN001
    good = json.dumps({"trace_id": "ok", "timestamp": "2026-11-02T09:00:00Z", "input": "hi", "output": "hello"})
    loaded.dataset_path("traces").write_bytes(b"\xff\xfe not utf-8\n{}\n" + good.encode() + b"\n")
    result = runner.invoke(app, ["triage", "-c", str(loaded.file), "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["traces"] == 1 and doc["quarantined"] == 2


def test_cli_everything_quarantined_is_an_input_error(loaded) -> None:  # noqa: ANN001
    loaded.dataset_path("traces").write_bytes(b"\xff\xfe not utf-8\n{}\n")
    result = runner.invoke(app, ["triage", "-c", str(loaded.file), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["traces"] == 0 and doc["quarantined"] >= 1
    assert "no trace could be read" in doc["error"] and doc["quarantine"] in doc["error"]


def test_cli_unreadable_input(loaded, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import autofix.cli.triage_cmd as cmd

    def load_then_lose_the_traces(path):  # noqa: ANN001, ANN202
        cfg = load_config(path)
        cfg.dataset_path("traces").unlink()  # gone between validation and reading
        return cfg

    monkeypatch.setattr(cmd, "load_config", load_then_lose_the_traces)
    result = runner.invoke(app, ["triage", "-c", str(loaded.file), "--json"])
    assert result.exit_code == 1
    assert "cannot read the traces" in result.output and "traces.jsonl" in result.output


def test_parallel_readers_give_the_same_result(target: Path, tb, write_jsonl) -> None:  # noqa: ANN001
    """Several reader processes over byte ranges: same failures, diagnoses, quarantine lines as one pass."""
    rows = production(tb)
    # sessions everywhere, some rephrased across any boundary
    at = tb.T0 + timedelta(hours=8)
    for i in range(40):
        rows.append(tb.build(f"a{i}", "How many days of annual leave can I carry over?", session=f"rs{i}",
                             docs=[tb.doc("hr-leave-001")], top_k=10, at=at + timedelta(minutes=3 * i)))
        rows.append(tb.build(f"b{i}", "how many leave days carry over", session=f"rs{i}", docs=[tb.doc("hr-leave-001")],
                             top_k=10, at=at + timedelta(minutes=3 * i, seconds=30)))
    write_jsonl(target / "data" / "traces.jsonl", rows)
    cfg = load_config(target)
    one = run_triage(cfg, workers=1)
    q_one = Path(one.quarantine_path).read_text()
    many = run_triage(cfg, workers=3, parallel_min_bytes=0)
    q_many = Path(many.quarantine_path).read_text()
    assert many.timings_s.get("workers") == 3.0
    assert (many.traces, many.failures, many.quarantined) == (one.traces, one.failures, one.quarantined)
    assert q_many == q_one
    diag = lambda r: sorted((f.trace_id, d.category.value, d.rule, tuple(s.name for s in f.signals))  # noqa: E731
                            for f, d, _ in r.failure_list())
    assert diag(many) == diag(one)
    assert {f.trace_id for f, _, _ in one.failure_list()} >= {f"a{i}" for i in range(40)}  # every rephrase found
    assert [(c.id, c.size) for c in many.clusters] == [(c.id, c.size) for c in one.clusters]


class _ContextClassifier:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def classify(self, failure, trace):  # noqa: ANN001, ANN201
        from autofix.triage.records import Category, Diagnosis

        self.seen.append((trace.trace_id, len(trace.spans)))
        return Diagnosis(trace_id=failure.trace_id, category=Category.context, confidence=0.5, rationale="llm: context",
                         evidence=[], method="llm")


def test_parallel_readers_hand_the_classifier_the_whole_trace(loaded) -> None:  # noqa: ANN001
    fake = _ContextClassifier()
    report = run_triage(loaded, classifier=fake, workers=2, parallel_min_bytes=0)
    assert report.timings_s.get("workers") == 2.0
    assert fake.seen == [("odd", 4)]
    d = report.diagnosis_of("odd")
    assert (d.category.value, d.method) == ("context", "llm")



def test_a_rephrase_across_a_reader_boundary_is_found(tmp_path: Path, tb, write_jsonl) -> None:  # noqa: ANN001
    from autofix.traces.records import ReadLimits
    from autofix.triage import DetectionSettings
    from autofix.triage.pipeline import _merge_context, _pair_edges, _read_shard, _Shard

    a = tb.build("a", "How many days of annual leave can I carry over?", session="s1", docs=[tb.doc("hr-leave-001")],
                 top_k=10, at=tb.T0)
    b = tb.build("b", "how many leave days carry over", session="s1", docs=[tb.doc("hr-leave-001")], top_k=10,
                 at=tb.T0 + timedelta(seconds=40))
    path = write_jsonl(tmp_path / "t.jsonl", [a, b])
    cut = len((json.dumps(a) + "\n").encode())
    size = path.stat().st_size
    settings = DetectionSettings()
    args = (settings, None, str(tmp_path / "q0"), None, 1000, 600.0, ReadLimits())
    first, s0 = _read_shard(_Shard(0, ((str(path), 0, cut),), False), *args)
    second, s1 = _read_shard(_Shard(1, ((str(path), cut, size),), True), *args[:2], str(tmp_path / "q1"), *args[3:])
    assert first.traces == second.traces == 1 and not first.rows and not second.rows
    ctx, latency = _merge_context([s0, s1])
    decisions = _pair_edges([s0, s1], settings.rephrase_window_s)
    assert set(decisions[0]) == {"a"} and not decisions[1]
    rows = first.finalize(ctx, latency, decisions[0]) + second.finalize(ctx, latency, decisions[1])
    assert [r.trace_id for r in rows] == ["a"]
    assert [s[1] for s in rows[0].signals] == ["rephrase"] and "trace b" in rows[0].signals[0][2]
