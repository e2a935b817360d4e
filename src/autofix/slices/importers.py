"""Reviewers' labels from annotation exports: one reader per format, each giving labels and what it skipped.

- `from_jsonl`: our own `Label` lines (`autofix.slices.labels`), each validated;
- `from_csv`: columns `case_id`, `must_include`, `must_not_include`, `doc_ids`, `answer`, `note` (and optionally
  `pattern`, `format`, `labeled_by`, `labeled_at`), one label a row; lists are separated by `|` (`pattern` is one regex, never split);
- `from_langfuse`: Langfuse dataset items (a JSON array, JSONL, or an API page `{"data": [...]}`) made from traces,
  e.g. through an annotation queue: `id`, `input`, `expectedOutput`, `sourceTraceId`, `metadata`, `status`
  (the Python SDK's snake_case names are read too). The case is the item's source trace; `expectedOutput` is a
  string (the reference `answer`, not checked verbatim: no `exact`) or an object whose keys among the
  expectation fields (`answer`, `must_include`, `must_not_include`, `doc_ids`, `pattern`, `format`) are taken.

An item that cannot become a label (no case id, nothing a check reads, not valid) is never dropped silently: it is
in `skipped` with where it was and why. A file that cannot be read at all raises `LabelImportError`.
`screen` then drops what the labels file already says and answers that are the trace's own (failed) answer.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from autofix.slices.labels import EXPECTATION_FIELDS, Label

LIST_FIELDS = ("must_include", "must_not_include", "doc_ids")
"""Expectation fields that are lists of strings (a single string is read as a list of one)."""

CSV_SEPARATOR = "|"
"""What separates the items of a list in a CSV cell."""


class LabelImportError(ValueError):
    """An export file cannot be read at all; the message names the file (and the line where there is one)."""


@dataclass(frozen=True)
class Skipped:
    """An item of an export that did not become a label: where it is (`line 3`, `item 4 (id x)`) and why."""

    where: str
    reason: str
    case_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"where": self.where, "case_id": self.case_id, "reason": self.reason}


class Imported(NamedTuple):
    """What a reader made of an export: the labels, in file order, and the items it skipped."""

    labels: list[Label]
    skipped: list[Skipped]


def _nothing_to_check(given: Mapping[str, Any] | None = None) -> str:
    keys = f" (it has: {', '.join(sorted(map(str, given)))})" if given else ""
    return f"nothing a check reads: give one of {', '.join(EXPECTATION_FIELDS)}{keys}"


def _expectation(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The expectation fields of `raw`, lists as lists of strings, empty values dropped."""
    out: dict[str, Any] = {}
    for key in EXPECTATION_FIELDS:
        value = raw.get(key)
        if key in LIST_FIELDS and value is not None:
            items = value if isinstance(value, (list, tuple)) else [value]
            value = [str(v).strip() for v in items if v is not None and str(v).strip()]
        elif isinstance(value, str):
            value = value.strip()
        if value not in (None, "", [], {}):
            out[key] = value
    return out


def _invalid(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "label"
    return f"not a label: {where}: {first.get('msg', exc)}"


def _label(where: str, case_id: str | None, **fields: Any) -> Label | Skipped:
    try:
        return Label.model_validate({"case_id": case_id, **{k: v for k, v in fields.items() if v is not None}})
    except ValidationError as exc:
        return Skipped(where, _invalid(exc), case_id or None)


def _collect(results: list[Label | Skipped]) -> Imported:
    return Imported([r for r in results if isinstance(r, Label)], [r for r in results if isinstance(r, Skipped)])


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError) as exc:
        raise LabelImportError(f"{path}: cannot read it ({exc})") from None


def from_jsonl(path: Path, labeled_by: str) -> Imported:
    """Our own label lines (`{"case_id", "expected", "labeled_by"?, "labeled_at"?, "note"?, "source"?}`).

    A line without `labeled_by` gets `labeled_by`; one without `source` gets `jsonl:<file name>`."""
    results: list[Label | Skipped] = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            results.append(Skipped(where, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(raw, dict):
            results.append(Skipped(where, f"not a JSON object but {type(raw).__name__}"))
            continue
        case_id = raw.get("case_id") if isinstance(raw.get("case_id"), str) else None
        if not case_id:
            results.append(Skipped(where, "no case_id (the trace id the label is for)"))
            continue
        expected = raw.get("expected")
        if not isinstance(expected, dict) or not _expectation(expected):
            results.append(Skipped(where, _nothing_to_check(expected if isinstance(expected, dict) else None), case_id))
            continue
        fields = {k: v for k, v in raw.items() if k != "case_id"}
        results.append(_label(where, case_id, **{**fields, "expected": _expectation(expected),
                                                 "labeled_by": raw.get("labeled_by") or labeled_by,
                                                 "source": raw.get("source") or f"jsonl:{path.name}"}))
    return _collect(results)


def from_csv(path: Path, labeled_by: str) -> Imported:
    """Rows of `case_id, must_include, must_not_include, doc_ids, answer, note` (lists separated by `|`)."""
    rows = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    columns = [c.strip() for c in rows.fieldnames or []]
    if "case_id" not in columns:
        raise LabelImportError(f"{path}:1: no case_id column (columns: {', '.join(columns) or 'none'}); the header "
                               f"is case_id,must_include,must_not_include,doc_ids,answer,note")
    if not set(columns) & set(EXPECTATION_FIELDS):
        raise LabelImportError(f"{path}:1: no expectation column: give one of {', '.join(EXPECTATION_FIELDS)}")
    results: list[Label | Skipped] = []
    for row in rows:
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        if not any(cells.values()):
            continue
        where = f"line {rows.line_num}"
        case_id = cells.get("case_id")
        if not case_id:
            results.append(Skipped(where, "no case_id (the trace id the label is for)"))
            continue
        raw: dict[str, Any] = {k: cells.get(k) for k in EXPECTATION_FIELDS}
        for key in LIST_FIELDS:
            raw[key] = (raw[key] or "").split(CSV_SEPARATOR)
        if raw.get("format") and CSV_SEPARATOR in raw["format"]:
            raw["format"] = [f.strip() for f in raw["format"].split(CSV_SEPARATOR) if f.strip()]
        expected = _expectation(raw)
        if not expected:
            results.append(Skipped(where, _nothing_to_check(), case_id))
            continue
        results.append(_label(where, case_id, expected=expected, labeled_by=cells.get("labeled_by") or labeled_by,
                              labeled_at=cells.get("labeled_at") or None, note=cells.get("note") or None,
                              source=f"csv:{path.name}"))
    return _collect(results)


def _langfuse_items(path: Path) -> list[Any]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        items = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LabelImportError(f"{path}:{n}: neither a JSON array of dataset items nor JSONL ({exc.msg}); "
                                       f"export the dataset items as JSON") from None
        return items
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # one page of GET /api/public/dataset-items
        return data["data"]
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise LabelImportError(f"{path}: not Langfuse dataset items (a JSON {type(data).__name__}); export the items as JSON")


def _first(item: Mapping[str, Any], *keys: str) -> Any:
    return next((item[k] for k in keys if item.get(k) is not None), None)


def _langfuse_item(n: int, item: Any, path: Path, labeled_by: str) -> Label | Skipped:
    if not isinstance(item, dict):
        return Skipped(f"item {n}", f"not a dataset item (a JSON {type(item).__name__})")
    item_id = _first(item, "id")
    where = f"item {n}" + (f" (id {item_id})" if item_id else "")
    trace_id = _first(item, "sourceTraceId", "source_trace_id")
    if not isinstance(trace_id, str) or not trace_id.strip():
        return Skipped(where, "no sourceTraceId: the item was not made from a trace, so no case to label")
    trace_id = trace_id.strip()
    if str(item.get("status") or "").upper() == "ARCHIVED":
        return Skipped(where, "archived in Langfuse", trace_id)
    output = _first(item, "expectedOutput", "expected_output")
    if isinstance(output, str):
        expected = _expectation({"answer": output})
    elif isinstance(output, dict):
        expected = _expectation(output)
        if not expected:
            return Skipped(where, "expectedOutput has " + _nothing_to_check(output), trace_id)
    elif output is None:
        expected = {}
    else:
        return Skipped(where, f"expectedOutput is a JSON {type(output).__name__}: give a string (the reference "
                              f"answer) or an object with {', '.join(EXPECTATION_FIELDS)}", trace_id)
    if not expected:
        return Skipped(where, "no expectedOutput: " + _nothing_to_check(), trace_id)
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    note = _first(metadata, "note", "comment")
    at = _first(item, "updatedAt", "updated_at", "createdAt", "created_at")
    return _label(where, trace_id, expected=expected, labeled_by=labeled_by,
                  labeled_at=at if isinstance(at, str) and at else None,
                  note=note if isinstance(note, str) and note.strip() else None,
                  source=f"langfuse:{path.name}" + (f"#{item_id}" if item_id else ""))


def from_langfuse(path: Path, labeled_by: str) -> Imported:
    """Langfuse dataset items made from traces: the case is `sourceTraceId`, the expectation `expectedOutput`."""
    return _collect([_langfuse_item(n, item, path, labeled_by)
                     for n, item in enumerate(_langfuse_items(path), start=1)])


IMPORTERS: dict[str, Callable[[Path, str], Imported]] = {
    "langfuse": from_langfuse,
    "jsonl": from_jsonl,
    "csv": from_csv,
}
"""The readers by `--format` name."""


def import_labels(path: Path, fmt: str, labeled_by: str) -> Imported:
    """The labels of export `path` in format `fmt` (a key of `IMPORTERS`)."""
    reader = IMPORTERS.get(fmt)
    if reader is None:
        raise LabelImportError(f"unknown label format {fmt!r}: use one of {', '.join(IMPORTERS)}")
    return reader(path, labeled_by)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):  # an assistant message
        return value["content"]
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def screen(imported: Imported, existing: Mapping[str, Label],
           trace_answers: Mapping[str, Any] | None = None) -> Imported:
    """`imported` less the labels that would change nothing and those whose reference answer is the trace's own.

    A label whose expectation and note are what the labels file already holds for its case (`existing`) is
    skipped as unchanged, so importing an export twice writes nothing. One whose `answer` is the answer the trace
    gave (`trace_answers`: the output by trace id) is skipped too: an item made from a trace starts with the trace's
    output as its expected output, and an unedited one would make the failure the reference.
    """
    labels: list[Label] = []
    skipped = list(imported.skipped)
    for label in imported.labels:
        where = f"label for {label.case_id}" + (f" ({label.source})" if label.source else "")
        before = existing.get(label.case_id)
        if before is not None and before.expected == label.expected and before.note == label.note:
            skipped.append(Skipped(where, "unchanged: the labels file already holds this expectation", label.case_id))
            continue
        given = _text((trace_answers or {}).get(label.case_id)).strip()
        answer = str(label.expected.get("answer") or "").strip()
        if given and answer == given:
            skipped.append(Skipped(where, "its answer is the trace's own answer (the expected output copied from the "
                                          "trace and never edited): write the right answer or what it must include",
                                   label.case_id))
            continue
        labels.append(label)
    return Imported(labels, skipped)
