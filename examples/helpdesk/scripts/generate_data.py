"""Regenerate the helpdesk datasets by really running the assistant.

    python examples/helpdesk/scripts/generate_data.py [--sessions 330] [--regression 100]

1. Questions: the hand-written base questions of data/questions_*.jsonl (with paraphrases, gold answers and gold
   documents) plus ticket-tool questions derived from data/tickets_seed.json.
2. The regression set (data/regression.jsonl): base questions stratified over task types, with expected answers.
3. Production traces (data/traces.jsonl): user sessions over November 2026, each query replayed through the
   assistant's own replay command against autofix's model gateway (the embedded local model by default); a
   simulated user population reacts to each answer according to the gold answer (thumbs, comments, rephrasing in
   the same session, abandonment, escalation) and an online judge scores it. A user who rephrases asks again in
   the same session, and that follow-up is replayed too.
4. data/traces_gold.jsonl and data/regression_gold.jsonl map each trace and regression case to its base question
   and planted defect, for measuring triage and fixes; autofix itself never reads them.
5. data/judge_golden_candidates.jsonl: answers sampled for human labelling (data/judge_golden.jsonl holds the labels).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpdesk.tools.dates import parse_since  # noqa: E402  (the correct reading of user dates, for gold answers)

USERS = ["alice.meyer", "bob.kowalski", "carol.diaz", "dan.reed", "erin.smith", "farid.aziz", "grace.lee", "hugo.blanc"]
NEGATIVE_COMMENTS = [
    "that's not right", "wrong answer, the policy says something else", "this doesn't answer my question",
    "useless", "no, that's outdated", "that's not what I asked",
]
NO_SOURCE_COMMENTS = ["where is this from? please link the policy", "can you cite the source?", "which document says that?"]
SOURCE_QUESTION_WHEN_WRONG = 0.20  # share of users asking for the source of an unsourced policy answer they doubt
SOURCE_QUESTION_WHEN_RIGHT = 0.10  # ... and of one that looks right


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def tool_questions(rng: random.Random) -> list[dict[str, Any]]:
    """Ticket lookups, listings and creations, with gold answers computed from the seed database."""
    tickets = json.loads((ROOT / "data" / "tickets_seed.json").read_text(encoding="utf-8"))
    questions: list[dict[str, Any]] = []
    status_templates = ["What's the status of {id}?", "any update on {id}", "is {id} resolved yet?", "{id} status pls",
                        "Can you check ticket {id} for me?"]
    for n, ticket in enumerate(rng.sample(tickets, 15)):
        templates = rng.sample(status_templates, 4)
        questions.append({
            "qid": f"tk-status-{n:02d}", "question": templates[0].format(**ticket),
            "paraphrases": [t.format(**ticket) for t in templates[1:]],
            "answer": f"Ticket {ticket['id']} is {ticket['status'].replace('_', ' ')}.",
            "must_include": [ticket["id"], ticket["status"].replace("_", " ")], "doc_ids": [],
            "task_type": "ticket_status", "defect": None, "user": ticket["requester"],
        })
    list_templates = ["Show my tickets since {weekday}", "which tickets did I open in the last {days} days?",
                      "list my tickets from this week", "my tickets since {iso}", "What are my tickets from the past week?"]
    for n in range(15):
        user = USERS[n % len(USERS)]
        now = date(2026, 11, 10) + timedelta(days=rng.randint(0, 12))
        values = {"weekday": rng.choice(["Monday", "Tuesday", "Wednesday"]), "days": rng.choice([7, 10, 14, 21]),
                  "iso": (now - timedelta(days=rng.randint(5, 25))).isoformat()}
        templates = [t.format(**values) for t in rng.sample(list_templates, 4)]
        since = parse_since(templates[0], now).isoformat()
        mine = [t["id"] for t in tickets if t["requester"] == user and t["opened"] >= since]
        questions.append({
            "qid": f"tk-list-{n:02d}", "question": templates[0], "paraphrases": templates[1:],
            "answer": f"Your tickets since {since}: {', '.join(mine) or 'none'}.",
            "must_include": mine[:3] or ["no tickets"], "doc_ids": [], "task_type": "ticket_list",
            "defect": "tool_date_format", "user": user, "now": now.isoformat(),
        })
    create_items = ["my monitor flickers when docked", "the badge reader on floor 2 is broken",
                    "my expense claim was rejected twice", "MeetSpace keeps dropping audio", "the printer on floor 3 jams",
                    "I can't access the finance share", "my laptop keyboard is missing keys", "the VPN is down for me"]
    for n, item in enumerate(create_items):
        phrasings = [f"Please open a ticket: {item}", f"can you create a ticket, {item}", f"raise a ticket for me - {item}",
                     f"I want to log a ticket because {item}"]
        questions.append({
            "qid": f"tk-create-{n:02d}", "question": phrasings[0], "paraphrases": phrasings[1:],
            "answer": "The assistant opens a ticket and gives its id.", "must_include": ["opened ticket"], "doc_ids": [],
            "task_type": "ticket_create", "defect": None, "user": USERS[n % len(USERS)],
        })
    return questions


def load_questions(rng: random.Random) -> list[dict[str, Any]]:
    questions = [q for path in sorted((ROOT / "data").glob("questions_*.jsonl")) for q in read_jsonl(path)]
    return questions + tool_questions(rng)


def pick_regression(questions: list[dict[str, Any]], size: int, rng: random.Random) -> list[dict[str, Any]]:
    """Stratified by task type and defect label so the regression set covers every behaviour."""
    strata: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for q in questions:
        strata.setdefault((q["task_type"], str(q.get("defect"))), []).append(q)
    chosen: list[dict[str, Any]] = []
    pools = [rng.sample(pool, len(pool)) for _, pool in sorted(strata.items())]
    while len(chosen) < size and any(pools):
        for pool in pools:
            if pool and len(chosen) < size:
                chosen.append(pool.pop())
    return chosen


def expected_of(q: dict[str, Any]) -> dict[str, Any]:
    return {"answer": q["answer"], "must_include": q["must_include"], "doc_ids": q["doc_ids"], "task_type": q["task_type"]}


def case_metadata(q: dict[str, Any], user: str, now: str) -> dict[str, Any]:
    return {"user": q.get("user", user), "now": q.get("now", now), "task_type": q["task_type"]}


def replay(cases: list[dict[str, Any]], model: str, label: str) -> dict[str, dict[str, Any]]:
    """Run the assistant's replay command on `cases` through an in-process autofix gateway."""
    from autofix.models.gateway import GatewayServer
    from autofix.models.usage import UsageStore

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = UsageStore(tmp_path / "gateway.sqlite3")
        key = store.issue_key(f"generate-data-{label}")
        cases_file, out_file = tmp_path / "cases.jsonl", tmp_path / "results.jsonl"
        write_jsonl(cases_file, cases)
        with GatewayServer(store=store, model=model, host="127.0.0.1", port=0) as gateway:
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "AUTOFIX_MODEL_BASE_URL": gateway.base_url,
                   "AUTOFIX_MODEL_API_KEY": key, "AUTOFIX_MODEL": model}
            print(f"replaying {len(cases)} {label} cases ...", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "helpdesk.replay", "--cases", str(cases_file), "--out", str(out_file)],
                           cwd=ROOT, env=env, check=True)
        return {r["case_id"]: r for r in read_jsonl(out_file)}


def is_correct(q: dict[str, Any], result: dict[str, Any]) -> bool:
    output = (result.get("output") or "").lower()
    if result.get("error") or not output:
        return False
    router = next((s for s in result["spans"] if s["kind"] == "router"), None)
    action = (router or {}).get("output", {}).get("action")
    if q["task_type"] == "vague":
        return action == "clarify"
    if q["task_type"] == "smalltalk":
        return action == "answer"
    return all(item.lower() in output for item in q["must_include"])


def cites_gold(q: dict[str, Any], result: dict[str, Any]) -> bool:
    output = result.get("output") or ""
    return any(doc_id in output for doc_id in q["doc_ids"])


def versions() -> dict[str, str]:
    def digest(*paths: Path) -> str:
        h = hashlib.sha256()
        for path in paths:
            h.update(path.read_bytes())
        return h.hexdigest()[:12]
    return {"prompt": digest(*sorted((ROOT / "prompts").glob("*.md"))), "retrieval": digest(ROOT / "config" / "retrieval.yaml"),
            "model": "smollm2-135m-instruct-q4_1", "app": "helpdesk-0.3.0"}


class Population:
    """Simulated users: how they react to an answer, given whether it was right (driven by the gold answer)."""

    def __init__(self, rng: random.Random, seed: int) -> None:
        self.rng = rng
        self.seed = seed

    def react(self, q: dict[str, Any], correct: bool, cited: bool) -> tuple[list[dict[str, Any]], str | None]:
        """Feedback on the trace, and the follow-up behaviour: 'rephrase', 'abandon', 'escalation' or None."""
        r = self.rng.random
        feedback: list[dict[str, Any]] = []
        follow_up = None
        if correct:
            if r() < 0.18:
                feedback.append({"kind": "thumb_up", "value": 1, "comment": None})
            elif r() < 0.02:  # some users click the wrong button
                feedback.append({"kind": "thumb_down", "value": -1, "comment": None})
            return feedback, None
        if r() < 0.45:
            feedback.append({"kind": "thumb_down", "value": -1, "comment": None})
        if r() < 0.25:
            feedback.append({"kind": "comment", "value": -1, "comment": self.rng.choice(NEGATIVE_COMMENTS)})
        roll = r()
        if roll < 0.35:
            follow_up = "rephrase"
        elif roll < 0.50:
            follow_up = "escalation"
        elif roll < 0.65:
            follow_up = "abandon"
        if follow_up in ("escalation", "abandon"):
            feedback.append({"kind": follow_up, "value": -1, "comment": "asked for a human agent" if follow_up == "escalation" else None})
        return feedback, follow_up

    def source_question(self, trace_id: str, q: dict[str, Any], correct: bool, cited: bool) -> dict[str, Any] | None:
        """The comment of a user who wants to know where an answer on a policy comes from, or None.

        Users ask when the answer names no source, more often when they doubt it (a wrong answer) than
        when it looks right. Drawn from the trace's own random stream, so that this reaction can be
        refreshed on existing traces (--refresh-source-questions) without replaying anything."""
        if not q["doc_ids"] or cited:
            return None
        rng = random.Random(f"{self.seed}:sources:{trace_id}")
        if rng.random() >= (SOURCE_QUESTION_WHEN_WRONG if not correct else SOURCE_QUESTION_WHEN_RIGHT):
            return None
        return {"kind": "comment", "value": -1, "comment": rng.choice(NO_SOURCE_COMMENTS)}

    def judge_scores(self, q: dict[str, Any], result: dict[str, Any], correct: bool) -> list[dict[str, Any]]:
        """The production online judge: mostly right, sometimes wrong, as real judges are."""
        noisy = correct if self.rng.random() > 0.08 else not correct
        value = round(self.rng.uniform(0.7, 1.0) if noisy else self.rng.uniform(0.0, 0.45), 2)
        return [{"name": "answer_quality", "value": value, "rationale": None, "source": "online_judge"}]


def refresh_source_questions(population: Population, by_qid: dict[str, dict[str, Any]]) -> int:
    """Redraw, on data/traces.jsonl as it is, the comments of users asking where an answer comes from."""
    gold = {g["trace_id"]: g for g in read_jsonl(ROOT / "data" / "traces_gold.jsonl")}
    traces = read_jsonl(ROOT / "data" / "traces.jsonl")
    asked = 0
    for trace in traces:
        g = gold[trace["trace_id"]]
        q = by_qid[g["qid"]]
        feedback = [f for f in trace["feedback"] if f.get("comment") not in NO_SOURCE_COMMENTS]
        comment = population.source_question(trace["trace_id"], q, g["correct"], cites_gold(q, trace))
        if comment:  # where generation puts it: after the reaction to the answer, before a rephrase
            at = next((n for n, f in enumerate(feedback) if f["kind"] == "rephrase"), len(feedback))
            feedback.insert(at, comment)
            asked += 1
        trace["feedback"] = feedback
    write_jsonl(ROOT / "data" / "traces.jsonl", traces)
    print(f"{asked} of {len(traces)} traces now carry a question about sources", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=330, help="user sessions to simulate")
    parser.add_argument("--regression", type=int, default=100, help="size of the regression set")
    parser.add_argument("--golden", type=int, default=70, help="answers sampled for judge labelling")
    parser.add_argument("--model", default="autofix-local/smollm2-135m-instruct", help="litellm model behind the gateway")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--refresh-source-questions", action="store_true",
                        help="only redraw the users' questions about sources on the existing traces (no replay)")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    questions = load_questions(rng)
    by_qid = {q["qid"]: q for q in questions}
    if args.refresh_source_questions:
        return refresh_source_questions(Population(rng, args.seed), by_qid)
    by_input = {q["question"]: q for q in questions}
    print(f"{len(questions)} base questions", file=sys.stderr)

    regression = [{"case_id": f"reg-{n:03d}", "input": q["question"], "expected": expected_of(q),
                   "metadata": case_metadata(q, USERS[n % len(USERS)], "2026-11-23")}
                  for n, q in enumerate(pick_regression(questions, args.regression, rng))]
    write_jsonl(ROOT / "data" / "regression.jsonl", regression)
    write_jsonl(ROOT / "data" / "regression_gold.jsonl", [
        {"case_id": case["case_id"], "qid": q["qid"], "defect": q.get("defect"), "task_type": q["task_type"]}
        for case, q in zip(regression, (by_input[c["input"]] for c in regression))])

    # First queries of every session: a base question in one of its phrasings, at a working-hours time in November.
    sessions = []
    for n in range(args.sessions):
        q = rng.choice(questions)
        start = datetime(2026, 11, 2, 8, tzinfo=timezone.utc) + timedelta(days=rng.randint(0, 19), minutes=rng.randint(0, 600))
        sessions.append({"session_id": f"s-{n:04d}", "qid": q["qid"], "user": q.get("user", rng.choice(USERS)),
                         "start": start, "text": rng.choice([q["question"], *q["paraphrases"]])})
    first_cases = [{"case_id": f"t-{s['session_id']}-1", "input": s["text"],
                    "metadata": case_metadata(by_qid[s["qid"]], s["user"], s["start"].date().isoformat())} for s in sessions]
    results = replay(first_cases, args.model, "traces")

    population = Population(rng, args.seed)
    traces: list[dict[str, Any]] = []
    gold: list[dict[str, Any]] = []
    follow_ups: list[tuple[dict[str, Any], dict[str, Any]]] = []
    version = versions()

    def make_trace(session: dict[str, Any], case: dict[str, Any], at: datetime) -> tuple[dict[str, Any], str | None]:
        q = by_qid[session["qid"]]
        result = results[case["case_id"]]
        correct = is_correct(q, result)
        feedback, follow_up = population.react(q, correct, cites_gold(q, result))
        trace_id = case["case_id"].replace("t-", "tr-")
        asked = population.source_question(trace_id, q, correct, cites_gold(q, result))
        feedback += [asked] if asked else []
        trace = {
            "trace_id": trace_id, "session_id": session["session_id"],
            "timestamp": at.isoformat(), "input": case["input"], "output": result.get("output") or "",
            "spans": result["spans"], "feedback": feedback, "scores": population.judge_scores(q, result, correct),
            "versions": version,
            "metadata": {"task_type": q["task_type"], "tenant": "northwind", "user": case["metadata"]["user"],
                         "channel": rng.choice(["slack", "web", "web", "teams"]), "latency_ms": result["latency_ms"],
                         "error": result.get("error")},
        }
        gold.append({"trace_id": trace["trace_id"], "qid": q["qid"], "defect": q.get("defect"), "correct": correct})
        return trace, follow_up

    for session, case in zip(sessions, first_cases):
        trace, follow_up = make_trace(session, case, session["start"])
        traces.append(trace)
        if follow_up == "rephrase":
            q = by_qid[session["qid"]]
            alternatives = [p for p in [q["question"], *q["paraphrases"]] if p != case["input"]] or [case["input"]]
            follow_ups.append((session, {"case_id": f"t-{session['session_id']}-2", "input": rng.choice(alternatives),
                                         "metadata": case["metadata"]}))
            trace["feedback"].append({"kind": "rephrase", "value": -1, "comment": None})

    results.update(replay([case for _, case in follow_ups], args.model, "rephrased") if follow_ups else {})
    for session, case in follow_ups:
        at = session["start"] + timedelta(seconds=rng.randint(20, 100))
        trace, _ = make_trace(session, case, at)
        traces.append(trace)

    traces.sort(key=lambda t: t["timestamp"])
    write_jsonl(ROOT / "data" / "traces.jsonl", traces)
    write_jsonl(ROOT / "data" / "traces_gold.jsonl", gold)

    # Answers to label for judge calibration: regression questions answered by the assistant.
    sample = rng.sample(regression, min(args.golden, len(regression)))
    answered = replay([{k: c[k] for k in ("case_id", "input", "metadata")} for c in sample], args.model, "golden")
    candidates = []
    for case in sample:
        result = answered[case["case_id"]]
        retrieved = [hit for s in result["spans"] if s["kind"] == "retrieval" for hit in (s["output"] or [])]
        candidates.append({"case_id": case["case_id"], "input": case["input"], "expected": case["expected"],
                           "output": result.get("output") or "", "evidence": retrieved})
    write_jsonl(ROOT / "data" / "judge_golden_candidates.jsonl", candidates)

    failed = sum(not g["correct"] for g in gold)
    print(f"wrote {len(regression)} regression cases, {len(traces)} traces ({failed} failed answers), "
          f"{len(candidates)} judge candidates", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
