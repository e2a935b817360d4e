"""`autofix label` on a tiny target: a triage run, then labels written interactively, listed, and read back by slices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import load_config
from autofix.replay.datasets import load_slice

runner = CliRunner()
THUMB = [{"kind": "thumb_down", "value": -1}]

CONFIG = """\
project: label-test
replay:
  command: python -m assistant.replay --cases {cases} --out {out}
  sandbox: local
surfaces:
  prompts: [prompts/*.md]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
LABELS
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
triage:
  llm_classifier: false
"""

LEAVE = "Annual leave: employees may carry over up to 5 days of annual leave until 31 March."
PARKING = "Parking Austin: register your licence plate in FacilitiesDesk to get a parking card."


def _trace(tid: str, question: str, docs: list[tuple[str, str]], answer: str, *, bad: bool, minute: int,
           history: list[dict[str, str]] | None = None, tool: dict | None = None) -> dict:
    spans = [{"span_id": f"{tid}:0", "kind": "chain", "name": "assistant.answer", "input": question, "output": answer},
             {"span_id": f"{tid}:1", "kind": "retrieval", "name": "bm25.search", "input": question,
              "output": [{"doc_id": d, "score": 3.0 - i, "text": text} for i, (d, text) in enumerate(docs)],
              "attributes": {"top_k": 5}}]
    if tool is not None:
        spans.append({"span_id": f"{tid}:2", "kind": "tool", "name": tool["name"], "input": tool["args"],
                      "output": None, "error": tool["error"]})
    llm_input = [{"role": "system", "content": "You are a helpdesk assistant."}, *(history or []),
                 {"role": "user", "content": question}]
    spans.append({"span_id": f"{tid}:9", "kind": "llm", "name": "chat", "input": llm_input, "output": answer})
    return {"trace_id": tid, "session_id": f"s-{tid}", "timestamp": f"2026-11-02T09:{minute:02d}:00+00:00",
            "input": question, "output": answer, "spans": spans, "feedback": THUMB if bad else [],
            "scores": [{"name": "quality", "value": 0.1 if bad else 0.9}], "metadata": {"task_type": "policy_qa"}}


def _traces() -> list[dict]:
    good = [_trace(f"ok{i}", q, [(d, text)], f"See {d}: {text}", bad=False, minute=i)
            for i, (q, d, text) in enumerate([("How many leave days can I carry over?", "hr-leave-001", LEAVE),
                                              ("How do I get a parking card in Austin?", "fac-parking-001", PARKING)] * 4)]
    bad = [
        _trace("bad1", "How many days of annual leave can I carry over?", [("it-vpn-001", "VPN tokens reset in MyAccess.")],
               "You can carry over 10 days.", bad=True, minute=30),
        _trace("bad2", "And how many days of annual leave can I carry over?", [("it-vpn-001", "VPN tokens reset in MyAccess.")],
               "Until the end of the year.", bad=True, minute=31,
               history=[{"role": "user", "content": "Can I carry over leave?"},
                        {"role": "assistant", "content": "Yes, some days."}]),
        _trace("bad3", "How many days of annual leave can I carry over to next year?", [("it-vpn-001", "VPN tokens reset in MyAccess.")],
               "All of them.", bad=True, minute=32),
    ]
    return good + bad


def make_target(root: Path, labels: str | None = "data/labels.jsonl") -> Path:
    files = {
        "autofix.yaml": CONFIG.replace("LABELS\n", f"  labels: {labels}\n" if labels else ""),
        "prompts/system.md": "You are a helpdesk assistant.\n",
        "data/regression.jsonl": '{"case_id": "c1", "input": "hi"}\n',
        "data/traces.jsonl": "".join(json.dumps(t) + "\n" for t in _traces()),
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content, encoding="utf-8")
    return root / "autofix.yaml"


@pytest.fixture
def triaged(tmp_path: Path) -> tuple[Path, str]:
    """A tiny target after `autofix triage`, and the cluster of its three failed traces (bad1, bad2, bad3)."""
    config = make_target(tmp_path)
    result = runner.invoke(app, ["triage", "-c", str(config), "--no-llm", "--json"])
    assert result.exit_code == 0, result.output
    [cluster] = json.loads(result.stdout)["clusters"]
    assert sorted(cluster["trace_ids"]) == ["bad1", "bad2", "bad3"]
    return config, cluster["id"]


def label(config: Path, *args: str, input: str | None = None, user: str = "ann"):
    return runner.invoke(app, ["label", "-c", str(config), *args], input=input, env={"USER": user})


def written(config: Path) -> list[dict]:
    path = config.parent / "data" / "labels.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def order(config: Path, cluster: str) -> list[str]:
    return [c.case_id for c in load_slice(load_config(config), cluster).cases]


def test_a_label_is_written_at_once_and_the_slice_reads_it_back(triaged):
    config, cluster = triaged
    first, second, _ = order(config, cluster)
    answers = ["5 days, 31 March", "10 days", "hr-leave-001, hr-leave-999", "Up to 5 days, until 31 March.",
               "retrieval missed the leave policy", "q"]
    result = label(config, "--cluster", cluster, input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"cluster {cluster}" in out and "retrieval" in out  # the cluster's diagnosis
    assert "How many days of annual leave can I carry over" in out and "answer given:" in out
    assert "it-vpn-001 (3.00)" in out  # the retrieved document ids, with their scores
    assert "warning: no retrieval span of the traces returned 'hr-leave-999'" in out
    assert "returned 'hr-leave-001'" not in out  # seen in a healthy trace's retrieval: no warning
    assert "1 labelled, 0 skipped (quit)" in out
    [row] = written(config)
    assert row["case_id"] == first and row["labeled_by"] == "ann" and row["note"] == "retrieval missed the leave policy"
    assert row["expected"] == {"must_include": ["5 days", "31 March"], "must_not_include": ["10 days"],
                               "doc_ids": ["hr-leave-001", "hr-leave-999"], "answer": "Up to 5 days, until 31 March."}

    cases = {c.case_id: c for c in load_slice(load_config(config), cluster).cases}
    assert cases[first].expected == row["expected"]
    assert cases[second].expected is None

    again = label(config, "--cluster", cluster, "--by", "bob", input="q\n")
    assert "2 of 3 cases without a label" in again.stdout and f"case 1/2 · {second}" in again.stdout


def test_the_case_shows_its_earlier_turns_and_tool_calls(tmp_path):
    config = make_target(tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    rows.append(_trace("bad4", "How many days of annual leave can I carry over to 2027?", [("it-vpn-001", "VPN.")],
                       "Let me check.", bad=True, minute=40, tool={"name": "get_balance", "args": {"user": "ann"},
                                                                  "error": "404 Not Found: no such user"}))
    (tmp_path / "data" / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["triage", "-c", str(config), "--no-llm", "--json"])
    cluster = next(c["id"] for c in json.loads(result.stdout)["clusters"] if "bad2" in c["trace_ids"])
    shown = label(config, "--cluster", cluster, input="s\n" * 4).stdout
    assert "user: Can I carry over leave?" in shown and "assistant: Yes, some days." in shown  # bad2's history
    assert order(config, cluster) == ["bad1", "bad2", "bad3", "bad4"] and "0 labelled, 4 skipped" in shown
    assert 'tool call get_balance({"user": "ann"}) → error: 404 Not Found: no such user' in shown


def test_skip_quit_and_a_case_given_nothing_write_nothing(triaged):
    config, cluster = triaged
    first, second, third = order(config, cluster)
    steps = ["", "", "", "", "",  # nothing at all: skipped, not written
             "Carry-over ends 31 March", "", "", "", "", # the second case: written at once
             "", "", "s"]  # the third: s at the third prompt skips it
    result = label(config, "--cluster", cluster, input="\n".join(steps) + "\n")
    assert result.exit_code == 0, result.output
    assert "1 labelled, 2 skipped;" in result.stdout
    assert [(r["case_id"], r["expected"]) for r in written(config)] == [(second, {"must_include": ["Carry-over ends 31 March"]})]

    quit_midway = label(config, "--cluster", cluster, input="10 days\n\nq\n")  # q after two answers
    assert "0 labelled, 0 skipped (quit)" in quit_midway.stdout and len(written(config)) == 1
    note_only = label(config, "--cluster", cluster, input="\n\n\n\nonly a note\nq\n")
    assert "a note alone gives a check nothing to read: not written" in note_only.stdout
    assert [r["case_id"] for r in written(config)] == [second]
    assert {first, third}.isdisjoint(r["case_id"] for r in written(config))


def test_an_interrupted_session_keeps_each_label_written_and_limit_stops_early(triaged):
    config, cluster = triaged
    first, second, _ = order(config, cluster)
    cut = label(config, "--cluster", cluster, input="5 days\n\n\n\n\n31 March\n")  # input ends mid-case (as Ctrl-C)
    assert cut.exit_code == 130 and "1 labelled, 0 skipped (interrupted)" in cut.stdout
    assert [r["case_id"] for r in written(config)] == [first]
    limited = label(config, "--cluster", cluster, "--limit", "1", input="s\n")
    assert limited.exit_code == 0 and f"case 1/1 · {second}" in limited.stdout


def test_without_datasets_labels_the_message_gives_the_line_to_add(tmp_path):
    config = make_target(tmp_path, labels=None)
    result = label(config, "--cluster", "any")
    assert result.exit_code == 2
    assert "names no labels file" in result.stderr and "datasets:\n  labels: data/labels.jsonl" in result.stderr
    assert label(config, "--import", "x.csv", "--format", "csv").exit_code == 2


def test_a_malformed_line_in_the_labels_file_names_the_file_and_line(triaged):
    config, cluster = triaged
    path = config.parent / "data" / "labels.jsonl"
    path.write_text(json.dumps({"case_id": "bad1", "expected": {"must_include": ["5 days"]}}) + "\n"
                    + json.dumps({"case_id": "bad2", "expected": {"note": "nothing to check"}}) + "\n")
    result = label(config, "--cluster", cluster, "--list")
    assert result.exit_code == 1
    assert f"{path}:2: not a label" in result.stderr and "fix or delete the line" in result.stderr
    from autofix.replay.records import DatasetError

    with pytest.raises(DatasetError, match=f"{path}:2"):
        load_slice(load_config(config), cluster)


def test_list_shows_each_case_and_its_label(triaged):
    config, cluster = triaged
    first, second, third = order(config, cluster)
    (config.parent / "data" / "labels.jsonl").write_text(json.dumps(
        {"case_id": second, "expected": {"doc_ids": ["hr-leave-001"]}, "labeled_by": "cy"}) + "\n")
    listed = json.loads(label(config, "--cluster", cluster, "--list", "--json").stdout)
    assert (listed["cluster"], listed["labelled"], listed["unlabelled"]) == (cluster, 1, 2)
    assert [(c["case_id"], c["labelled"]) for c in listed["cases"]] == [(first, False), (second, True), (third, False)]
    assert listed["cases"][1]["expected"] == {"doc_ids": ["hr-leave-001"]} and listed["cases"][1]["labeled_by"] == "cy"
    table = label(config, "--cluster", cluster, "--list").stdout
    assert "1 of 3 cases labelled" in table and "doc_ids (by cy)" in table
    assert label(config, "--cluster", "nope", "--list").exit_code == 2
    assert label(config, "--cluster", cluster, "--json").exit_code == 2  # --json is not for the interactive mode


# ----------------------------------------------------------------------------- imports


def imported(config: Path, path: Path, fmt: str, *extra: str) -> dict:
    result = label(config, "--import", str(path), "--format", fmt, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_import_jsonl_writes_the_valid_lines_and_reports_the_rest(triaged):
    config, cluster = triaged
    export = config.parent / "export.jsonl"
    export.write_text(json.dumps({"case_id": "bad1", "expected": {"must_include": ["5 days"]}, "labeled_by": "dee"})
                      + "\n{oops\n" + json.dumps({"case_id": "bad3", "expected": {}}) + "\n")
    report = imported(config, export, "jsonl", "--cluster", cluster)
    assert (report["imported"], report["in_cluster"], report["not_in_traces"]) == (1, 1, [])
    assert [(s["where"], s["case_id"]) for s in report["skipped"]] == [("line 2", None), ("line 3", "bad3")]
    assert [(r["case_id"], r["labeled_by"], r["source"]) for r in written(config)] == [("bad1", "dee", "jsonl:export.jsonl")]
    assert load_slice(load_config(config), cluster).cases[order(config, cluster).index("bad1")].expected == {
        "must_include": ["5 days"]}
    again = imported(config, export, "jsonl")  # the same export twice writes nothing new
    assert again["imported"] == 0 and "unchanged" in again["skipped"][-1]["reason"] and len(written(config)) == 1


def test_import_csv_reports_counts_and_skipped_rows(triaged):
    config, _ = triaged
    export = config.parent / "review.csv"
    export.write_text("case_id,must_include,must_not_include,doc_ids,answer,note\n"
                      "bad2,5 days|31 March,,hr-leave-001,,\n"
                      "bad3,,,,,just looked\n"
                      "ghost,5 days,,,,\n")
    result = label(config, "--import", str(export), "--format", "csv", user="eve")
    assert result.exit_code == 0, result.output
    assert "imported 2 labels" in result.stdout and "skipped 1" in result.stdout
    assert "skipped line 3 [bad3]: nothing a check reads" in result.stdout
    assert "1 label(s) name traces not in the trace files: ghost" in result.stdout
    assert [(r["case_id"], r["expected"], r["labeled_by"]) for r in written(config)] == [
        ("bad2", {"must_include": ["5 days", "31 March"], "doc_ids": ["hr-leave-001"]}, "eve"),
        ("ghost", {"must_include": ["5 days"]}, "eve")]


def test_import_langfuse_dataset_items_made_from_traces(triaged):
    config, cluster = triaged
    items = [
        {"id": "i1", "status": "ACTIVE", "sourceTraceId": "bad1", "input": "How many days...?",
         "expectedOutput": "You can carry over up to 5 days until 31 March.", "metadata": {}},
        {"id": "i2", "status": "ACTIVE", "sourceTraceId": "bad2", "expectedOutput": {"must_include": ["31 March"]}},
        {"id": "i3", "status": "ACTIVE", "input": "made by hand", "expectedOutput": "x"},
        {"id": "i4", "status": "ACTIVE", "sourceTraceId": "bad3", "expectedOutput": "All of them."},  # the trace's own
    ]
    export = config.parent / "items.json"
    export.write_text(json.dumps(items))
    report = imported(config, export, "langfuse", "--cluster", cluster)
    assert (report["imported"], report["in_cluster"]) == (2, 2)
    why = {s["where"]: s["reason"] for s in report["skipped"]}
    assert why["item 3 (id i3)"].startswith("no sourceTraceId")
    assert "the trace's own answer" in why["label for bad3 (langfuse:items.json#i4)"]
    cases = {c.case_id: c for c in load_slice(load_config(config), cluster).cases}
    assert cases["bad1"].expected == {"answer": "You can carry over up to 5 days until 31 March."}
    assert cases["bad2"].expected == {"must_include": ["31 March"]} and cases["bad3"].expected is None
    assert [r["source"] for r in written(config)] == ["langfuse:items.json#i1", "langfuse:items.json#i2"]


def test_import_errors_exit_with_the_reason(triaged):
    config, _ = triaged
    assert label(config, "--import", "items.json").exit_code == 2  # no --format
    bad = config.parent / "items.json"
    bad.write_text("{not json\n")
    result = label(config, "--import", str(bad), "--format", "langfuse")
    assert result.exit_code == 1 and f"{bad}:1: neither a JSON array" in result.stderr
