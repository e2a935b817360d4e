"""A deterministic target for the nightly run's tests: no model, so a whole run takes seconds.

Its retrieval returns the right document only when `top_k` >= 3 (`config/retrieval.yaml` starts at 2),
so the production traces show retrieval misses, a reviewer's labels name the documents each request
needs, and the retrieval search optimizer can find the fix. Another cluster (requests for actions the
assistant has no tool for) has no optimizer: it ends as an owned finding.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

TOPICS = ["vacation", "parking", "laptop", "expenses", "badges", "payroll", "printing", "visitors", "wifi",
          "insurance", "training", "relocation", "mileage", "lockers", "canteen", "shuttle", "pension",
          "mentoring", "overtime", "sabbatical", "childcare", "gym", "library", "recycling"]

CONFIG = """\
project: nightly
replay:
  command: python replay.py --cases {cases} --out {out}
  sandbox: local
  batch_size: 50
  timeout_s: 60
surfaces:
  retrieval:
    file: config/retrieval.yaml
    space:
      top_k: {type: int, low: 1, high: 5}
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
  labels: data/labels.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
  - {name: retrieval_recall, kind: check, check: recall_at_k, k: 5}
triage:
  llm_classifier: false
"""

REPLAY = """\
import argparse, json, re
parser = argparse.ArgumentParser()
parser.add_argument("--cases"); parser.add_argument("--out")
args = parser.parse_args()
top_k = int(re.search(r"top_k: *(\\d+)", open("config/retrieval.yaml").read()).group(1))
with open(args.out, "w") as out:
    for line in open(args.cases):
        case = json.loads(line)
        topic = case["input"].split()[-1].strip("?")
        hits = [{"doc_id": "handbook-general", "score": 2.0, "text": "general handbook: offices, teams, holidays"},
                {"doc_id": "handbook-faq", "score": 1.5, "text": "frequently asked questions about the intranet"}]
        if top_k >= 3:
            hits.append({"doc_id": "policy-" + topic, "score": 1.0, "text": "the policy on " + topic + " explains " + topic})
        answer = "See " + ", ".join(h["doc_id"] for h in hits[:top_k]) + ("." if top_k < 3 else " for " + topic + ".")
        spans = [{"kind": "retrieval", "name": "search", "input": case["input"], "output": hits[:top_k]},
                 {"kind": "llm", "name": "answer", "input": case["input"], "output": answer}]
        out.write(json.dumps({"case_id": case["case_id"], "output": answer, "spans": spans, "error": None,
                              "latency_ms": 5.0}) + "\\n")
"""


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True, env=env).stdout.strip()


def trace(i: int, topic: str, *, day: int = 20) -> dict:
    question = f"What does the policy say about {topic}?"
    hits = [{"doc_id": "handbook-general", "score": 2.0, "text": "general handbook: offices, teams, holidays"},
            {"doc_id": "handbook-faq", "score": 1.5, "text": "frequently asked questions about the intranet"}]
    answer = "See handbook-general, handbook-faq."
    return {"trace_id": f"tr-{i:03d}", "session_id": f"s-{i:03d}", "timestamp": f"2026-11-{day:02d}T10:{i % 60:02d}:00Z",
            "input": question, "output": answer,
            "spans": [{"span_id": f"r{i}", "kind": "retrieval", "name": "search", "input": question, "output": hits},
                      {"span_id": f"l{i}", "kind": "llm", "name": "answer", "input": question, "output": answer}],
            "feedback": [{"kind": "thumb_down"}, {"kind": "comment", "comment": "that does not answer my question"}]}


def action(i: int, *, day: int = 20) -> dict:
    question = "Please book meeting room 3 for me tomorrow"
    answer = "I cannot book rooms; use the room booking system."
    return {"trace_id": f"ac-{i:03d}", "session_id": f"a-{i:03d}", "timestamp": f"2026-11-{day:02d}T11:{i:02d}:00Z",
            "input": question, "output": answer,
            "spans": [{"span_id": f"la{i}", "kind": "llm", "name": "answer", "input": question, "output": answer}],
            "feedback": [{"kind": "thumb_down"}, {"kind": "escalation"}]}


def make_target(parent: Path, *, topics: list[str] = TOPICS, actions: int = 6) -> Path:
    root = parent / "nightly"
    (root / "data").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "autofix.yaml").write_text(CONFIG)
    (root / "replay.py").write_text(REPLAY)
    (root / "config" / "retrieval.yaml").write_text("# chunks handed to the model\ntop_k: 2\n")
    (root / ".gitignore").write_text("runs/\n")
    write_traces(root, topics, actions)
    with (root / "data" / "regression.jsonl").open("w") as f:
        for i, topic in enumerate(topics[:12]):
            f.write(json.dumps({"case_id": f"reg-{i:02d}", "input": f"Where is the handbook on {topic}?",
                                "expected": {"must_include": ["handbook-general"]}}) + "\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "nightly toy assistant")
    return root


def write_traces(root: Path, topics: list[str], actions: int, *, day: int = 20, start: int = 0) -> None:
    with (root / "data" / "traces.jsonl").open("a") as f:
        for i, topic in enumerate(topics):
            f.write(json.dumps(trace(start + i, topic, day=day)) + "\n")
        for i in range(actions):
            f.write(json.dumps(action(start + i, day=day)) + "\n")
    with (root / "data" / "labels.jsonl").open("a") as f:
        for i, topic in enumerate(topics):
            f.write(json.dumps({"case_id": f"tr-{start + i:03d}", "expected": {"doc_ids": [f"policy-{topic}"]},
                                "labeled_by": "reviewer"}) + "\n")
