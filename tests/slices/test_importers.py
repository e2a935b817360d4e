"""Labels from annotation exports: each format's reader, what it skips and why, and the screen against the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autofix.slices.importers import (
    Imported,
    LabelImportError,
    from_csv,
    from_jsonl,
    from_langfuse,
    import_labels,
    screen,
)
from autofix.slices.labels import Label


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def reasons(imported) -> dict[str, str]:
    return {s.where: s.reason for s in imported.skipped}


def test_jsonl_lines_are_validated_and_the_bad_ones_skipped_with_their_line(tmp_path):
    path = write(tmp_path / "labels.jsonl", "\n".join([
        json.dumps({"case_id": "t1", "expected": {"must_include": "27 days", "doc_ids": "hr-leave-001"}, "note": "n"}),
        '{"case_id": "t2", ',
        json.dumps({"case_id": "t3", "expected": {"format": None, "exact": True}}),
        json.dumps({"expected": {"answer": "x"}}),
        "",
        json.dumps({"case_id": "t4", "expected": {"answer": "Five days."}, "labeled_by": "ann",
                    "labeled_at": "2026-12-01T10:00:00Z", "source": "review-3"}),
        "[1, 2]",
    ]) + "\n")
    labels, skipped = from_jsonl(path, labeled_by="bob")
    assert [(x.case_id, x.expected, x.labeled_by) for x in labels] == [
        ("t1", {"must_include": ["27 days"], "doc_ids": ["hr-leave-001"]}, "bob"),
        ("t4", {"answer": "Five days."}, "ann"),
    ]
    assert labels[0].source == "jsonl:labels.jsonl" and labels[0].note == "n"
    assert (labels[1].labeled_at, labels[1].source) == ("2026-12-01T10:00:00Z", "review-3")
    why = reasons(from_jsonl(path, labeled_by="bob"))
    assert why["line 2"].startswith("not JSON")
    assert why["line 3"].startswith("nothing a check reads") and "exact" in why["line 3"]
    assert why["line 4"].startswith("no case_id")
    assert why["line 7"] == "not a JSON object but list"
    assert [s.case_id for s in skipped] == [None, "t3", None, None]


def test_csv_rows_split_lists_on_bars_and_skipped_rows_say_why(tmp_path):
    path = write(tmp_path / "review.csv",
                 "case_id,must_include,must_not_include,doc_ids,answer,note\n"
                 "t1,27 days|31 March,10 days,hr-leave-001|hr-leave-002,,carry-over rule\n"
                 ',,,,"You get 27 days.",no id\n'
                 "t2,,,,,only a note\n"
                 '"t3","","","","Book it in DeskFinder,\nup to 14 days ahead.",""\n')
    labels, skipped = from_csv(path, labeled_by="ann")
    assert [x.case_id for x in labels] == ["t1", "t3"]
    assert labels[0].expected == {"must_include": ["27 days", "31 March"], "must_not_include": ["10 days"],
                                  "doc_ids": ["hr-leave-001", "hr-leave-002"]}
    assert (labels[0].note, labels[0].labeled_by, labels[0].source) == ("carry-over rule", "ann", "csv:review.csv")
    assert labels[1].expected == {"answer": "Book it in DeskFinder,\nup to 14 days ahead."}  # a quoted newline kept
    assert [(s.where, s.case_id) for s in skipped] == [("line 3", None), ("line 4", "t2")]
    assert skipped[0].reason.startswith("no case_id") and skipped[1].reason.startswith("nothing a check reads")


def test_a_csv_without_a_case_id_column_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path / "bad.csv", "trace,must_include\nt1,x\n")
    with pytest.raises(LabelImportError, match=r"bad\.csv:1: no case_id column \(columns: trace, must_include\)"):
        from_csv(path, labeled_by="ann")


ITEMS = [
    {"id": "it-1", "datasetId": "ds", "status": "ACTIVE", "input": "How many days?", "sourceTraceId": "t1",
     "sourceObservationId": None, "expectedOutput": "You can carry over 5 days until 31 March.",
     "metadata": {"note": "from the queue"}, "createdAt": "2026-12-01T09:00:00.000Z",
     "updatedAt": "2026-12-02T09:00:00.000Z"},
    {"id": "it-2", "status": "ACTIVE", "sourceTraceId": "t2",
     "expectedOutput": {"must_include": ["DeskFinder"], "doc_ids": "fac-desk-001", "answer": "", "comment": "x"}},
    {"id": "it-3", "status": "ACTIVE", "input": "typed by hand", "expectedOutput": "anything"},
    {"id": "it-4", "status": "ACTIVE", "sourceTraceId": "t4", "expectedOutput": {"output": "Probably 10."}},
    {"id": "it-5", "status": "ACTIVE", "sourceTraceId": "t5", "expectedOutput": None},
    {"id": "it-6", "status": "ARCHIVED", "sourceTraceId": "t6", "expectedOutput": "old"},
    {"id": "it-7", "status": "ACTIVE", "sourceTraceId": "t7", "expectedOutput": [1, 2]},
]


def check_langfuse(imported) -> None:
    labels, skipped = imported
    assert [(x.case_id, x.expected) for x in labels] == [
        ("t1", {"answer": "You can carry over 5 days until 31 March."}),  # no `exact`: a reference, not verbatim
        ("t2", {"must_include": ["DeskFinder"], "doc_ids": ["fac-desk-001"]}),
    ]
    assert (labels[0].source, labels[0].note, labels[0].labeled_at) == (
        "langfuse:items.json#it-1", "from the queue", "2026-12-02T09:00:00.000Z")
    why = reasons(imported)
    assert why["item 3 (id it-3)"].startswith("no sourceTraceId")
    assert why["item 4 (id it-4)"].startswith("expectedOutput has nothing a check reads") and "(it has: output)" in why["item 4 (id it-4)"]
    assert why["item 5 (id it-5)"].startswith("no expectedOutput")
    assert why["item 6 (id it-6)"] == "archived in Langfuse"
    assert why["item 7 (id it-7)"].startswith("expectedOutput is a JSON list")
    assert len(skipped) == 5


def test_langfuse_items_as_a_json_array_jsonl_or_an_api_page(tmp_path):
    check_langfuse(from_langfuse(write(tmp_path / "items.json", json.dumps(ITEMS)), labeled_by="ann"))
    check_langfuse(from_langfuse(write(tmp_path / "items.json", "\n".join(map(json.dumps, ITEMS))), labeled_by="ann"))
    page = {"data": ITEMS, "meta": {"page": 1, "limit": 50, "totalItems": 7, "totalPages": 1}}
    check_langfuse(import_labels(write(tmp_path / "items.json", json.dumps(page)), "langfuse", labeled_by="ann"))


def test_langfuse_items_in_the_python_sdks_snake_case(tmp_path):
    item = {"id": "x", "source_trace_id": "t9", "expected_output": {"must_not_include": "10 days"}}
    labels, skipped = from_langfuse(write(tmp_path / "sdk.jsonl", json.dumps(item) + "\n"), labeled_by="ann")
    assert [(x.case_id, x.expected, x.labeled_by) for x in labels] == [("t9", {"must_not_include": ["10 days"]}, "ann")]
    assert skipped == []


def test_a_langfuse_file_that_is_not_json_names_the_line(tmp_path):
    path = write(tmp_path / "items.jsonl", json.dumps(ITEMS[0]) + "\nnot json\n")
    with pytest.raises(LabelImportError, match=r"items\.jsonl:2: neither a JSON array"):
        from_langfuse(path, labeled_by="ann")
    with pytest.raises(LabelImportError, match="unknown label format 'xml'"):
        import_labels(path, "xml", labeled_by="ann")


def test_screen_skips_unchanged_labels_and_answers_copied_from_the_trace():
    new = [Label(case_id="t1", expected={"must_include": ["27 days"]}, note="n"),
           Label(case_id="t2", expected={"answer": "Probably 10."}, source="langfuse:x.json#it-2"),
           Label(case_id="t3", expected={"answer": "27 days."})]
    existing = {"t1": Label(case_id="t1", expected={"must_include": ["27 days"]}, note="n", labeled_by="someone")}
    answers = {"t2": {"role": "assistant", "content": "Probably 10. "}, "t3": "Probably 10."}
    labels, skipped = screen(Imported(new, []), existing, answers)
    assert [x.case_id for x in labels] == ["t3"]
    assert [(s.case_id, s.where) for s in skipped] == [("t1", "label for t1"), ("t2", "label for t2 (langfuse:x.json#it-2)")]
    assert skipped[0].reason.startswith("unchanged") and "trace's own answer" in skipped[1].reason
    assert [x.case_id for x in screen(Imported(new, []), {}, None).labels] == ["t1", "t2", "t3"]
