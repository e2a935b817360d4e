"""The bundled helpdesk's production data carries no answers: no gold label reaches what autofix reads.

`examples/helpdesk/data/traces.jsonl` (and the inputs and metadata of `regression.jsonl`; its `expected` is the
regression set's legitimate gold) must hold only what the assistant and its chat front end log. The labels, the
question ids and types, the planted defects and the correctness verdicts live in `*_gold.jsonl` and
`questions_*.jsonl`, which only the example's measuring code reads. This test walks every nested field of every
record, spans' inputs, outputs and attributes included, and fails on:

- a gold label: a defect name, a question id, a question type (read from the gold and question files, so a
  new label is covered without editing this test), or a key of a gold record that is not a shared identifier;
- a root-cause category identifier of autofix (DESIGN.md), as a whole value anywhere, or as a key or value of
  `metadata`.

Ordinary words stay free: "prompt" inside an answer, a span of kind "retrieval", the user's own words.
Labels that cannot be ordinary text (snake_case names, ids such as hr-045) are also looked for inside
longer strings; a label that is an ordinary word (howto, vague) only as a whole value.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "examples" / "helpdesk" / "data"
CATEGORIES = {"prompt", "retrieval", "routing", "tool_arguments", "missing_capability", "context", "memory",
              "data_freshness", "model_limitation", "infrastructure", "evaluation", "unclassified"}
# Fields the trace format itself names with these words: the span and feedback kinds.
PROTOCOL_FIELDS = {("spans", "kind"), ("feedback", "kind")}
# Identifiers a gold record shares with the record it describes; `task_type` is left to the value check (an
# assistant whose own intent classifier produces one may log it, as long as it is not a hand-written label).
SHARED_KEYS = {"trace_id", "session_id", "case_id", "turn", "task_type"}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Labels:
    """What must not appear: built from the gold and question files, plus autofix's category identifiers."""

    def __init__(self, gold_records: list[dict[str, Any]], questions: list[dict[str, Any]]) -> None:
        words: set[str] = set(CATEGORIES)
        for record in gold_records:
            for key in ("defect", "qid", "task_type", "question_type"):
                if isinstance(record.get(key), str):
                    words.add(record[key])
            words.update(d for d in record.get("defects") or [] if isinstance(d, str))
        for q in questions:
            words.update(str(q[k]) for k in ("qid", "task_type", "defect") if q.get(k))
        self.words = {w.lower() for w in words}
        # Distinctive labels (snake_case, ids with a digit) cannot be ordinary words: looked for inside text too.
        distinctive = sorted((w for w in self.words if "_" in w or re.search(r"\d", w)), key=len, reverse=True)
        self.inside = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, distinctive)) + r")(?![\w-])", re.I) \
            if distinctive else None
        self.gold_keys = {k for r in gold_records for k in r} - SHARED_KEYS

    def problems(self, record: dict[str, Any], where: str, skip: set[str] = frozenset()) -> list[str]:
        user_text = {str(record.get("input", "")).strip().lower()}
        for path, key, value in walk(record):
            if path[:1] and path[0] in skip:
                continue
            if isinstance(value, dict) and value.get("role") == "user":  # a user message sent to the model
                user_text.add(str(value.get("content", "")).strip().lower())
        found = []
        for path, key, value in walk(record):
            if path[:1] and path[0] in skip:
                continue
            dotted = ".".join(map(str, path))
            in_metadata = path[:1] == ("metadata",)
            if isinstance(key, str):
                if key in self.gold_keys:
                    found.append(f"{where}: {dotted}: the key {key!r} is a field of the gold file")
                elif in_metadata and key.lower() in self.words:
                    found.append(f"{where}: {dotted}: the metadata key {key!r} is a label")
            if not isinstance(value, str):
                continue
            text = value.strip().lower()
            named = tuple(p for p in path if isinstance(p, str))
            if text in user_text:  # the user's own words
                continue
            if text in self.words and named[-2:] not in PROTOCOL_FIELDS:
                found.append(f"{where}: {dotted} = {value!r} is a label")
            elif self.inside and (m := self.inside.search(value)):
                found.append(f"{where}: {dotted} contains the label {m.group(1)!r}: ...{value[max(0, m.start() - 40):m.end() + 40]!r}...")
        return found


def walk(value: Any, path: tuple = (), key: Any = None) -> Iterator[tuple[tuple, Any, Any]]:
    """Every (path, key, value) of a JSON value, depth first, the value itself included."""
    yield path, key, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, (*path, k), k)
    elif isinstance(value, list):
        for n, v in enumerate(value):
            yield from walk(v, (*path, n), None)


@pytest.fixture(scope="module")
def labels() -> Labels:
    gold = read_jsonl(DATA / "traces_gold.jsonl") + read_jsonl(DATA / "regression_gold.jsonl")
    questions = [q for path in sorted(DATA.glob("questions_*.jsonl")) for q in read_jsonl(path)]
    return Labels(gold, questions)


@pytest.fixture(scope="module")
def traces() -> list[dict[str, Any]]:
    return read_jsonl(DATA / "traces.jsonl")


def test_no_trace_carries_a_gold_label_or_a_category(labels: Labels, traces: list[dict[str, Any]]) -> None:
    found = [p for t in traces for p in labels.problems(t, f"traces.jsonl {t['trace_id']}")]
    assert not found, f"{len(found)} labels in the production traces, e.g.:\n" + "\n".join(found[:15])


def test_no_regression_input_or_metadata_carries_a_gold_label(labels: Labels) -> None:
    cases = read_jsonl(DATA / "regression.jsonl")
    found = [p for c in cases for p in labels.problems(c, f"regression.jsonl {c['case_id']}", skip={"expected"})]
    assert not found, f"{len(found)} labels in the regression cases, e.g.:\n" + "\n".join(found[:15])


def test_every_trace_has_its_gold_record_and_no_other(traces: list[dict[str, Any]]) -> None:
    gold = read_jsonl(DATA / "traces_gold.jsonl")
    assert traces and sorted(t["trace_id"] for t in traces) == sorted(g["trace_id"] for g in gold)


def test_the_check_tells_labels_from_ordinary_words(labels: Labels) -> None:
    def flagged(**fields: Any) -> list[str]:
        trace = {"trace_id": "t", "input": "how do I change the prompt?", "output": "", "spans": [], "feedback": [],
                 "metadata": {"user": "alice"}, **fields}
        return labels.problems(trace, "t")

    assert flagged(metadata={"user": "alice", "task_type": "missing_capability"})
    assert flagged(metadata={"category": "Retrieval"})
    assert flagged(metadata={"routing": True})
    assert flagged(spans=[{"kind": "llm", "attributes": {"why": "tool_date_format"}}])
    assert flagged(feedback=[{"kind": "comment", "comment": "see hr-045 for this one"}])
    assert flagged(spans=[{"kind": "router", "output": {"label": "prompt"}}])
    assert flagged(gold={"correct": False}) or "correct" not in labels.gold_keys
    assert not flagged(output="Update the prompt in your settings; retrieval of old documents is slow.")
    assert not flagged(spans=[{"kind": "retrieval", "output": [{"doc_id": "hr-leave-annual-001", "text": "Memory upgrades need approval."}]}])
    assert not flagged(feedback=[{"kind": "comment", "comment": "that's out of date, the context changed"}])
    assert not flagged(spans=[{"kind": "router", "input": "how do I change the prompt?"}])


def test_users_are_not_an_oracle(traces: list[dict[str, Any]]) -> None:
    """Feedback is sparse and noisy: most answers get none, wrong ones often go unremarked, right ones get
    the odd thumb down, and users write in many words."""
    gold = {g["trace_id"]: g for g in read_jsonl(DATA / "traces_gold.jsonl")}
    explicit = [t for t in traces if any(f["kind"] in ("thumb_up", "thumb_down", "comment") for f in t["feedback"])]
    assert 0.6 <= 1 - len(explicit) / len(traces) <= 0.9
    wrong = [t for t in traces if not gold[t["trace_id"]]["correct"]]
    assert sum(not t["feedback"] for t in wrong) >= 0.3 * len(wrong)
    assert any(gold[t["trace_id"]]["correct"] and any(f["kind"] == "thumb_down" for f in t["feedback"]) for t in traces)
    comments = {f["comment"] for t in traces for f in t["feedback"] if f.get("comment")}
    assert len(comments) >= 20


def test_later_turns_send_the_earlier_messages_and_every_answer_says_how_it_ended(traces: list[dict[str, Any]]) -> None:
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in sorted(traces, key=lambda t: t["timestamp"]):
        sessions[t["session_id"]].append(t)
    later = 0
    for turns in sessions.values():
        for n, t in enumerate(turns):
            for span in (s for s in t["spans"] if s["kind"] == "llm"):
                assert span["attributes"].get("finish_reason") in ("stop", "length"), t["trace_id"]
                sent = [m["content"] for m in span["input"] if m["role"] == "user"]
                if n:
                    later += 1
                    assert turns[n - 1]["input"] in sent[:-1], f"{t['trace_id']}: the earlier question was not sent"
                else:
                    assert sent == [t["input"]], t["trace_id"]
    assert later, "no session has a later turn answered by the model"
