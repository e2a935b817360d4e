"""Regenerate the helpdesk datasets by really running the assistant.

    python examples/helpdesk/scripts/generate_data.py [--sessions 420] [--regression 100] [--work DIR]

1. Questions: the hand-written base questions of data/questions_*.jsonl (with paraphrases, gold answers and gold
   documents) plus ticket-tool questions derived from data/tickets_seed.json.
2. The regression set (data/regression.jsonl): base questions stratified over question types, with expected
   answers under `expected` (its legitimate gold); the case metadata holds only what the assistant reads
   (user, date).
3. Production traces (data/traces.jsonl): user sessions over November 2026. Every turn is replayed through the
   assistant's own replay command against autofix's model gateway (the embedded local model by default), in
   rounds: all first turns, then the second turns of the sessions that go on (with the earlier messages of the
   conversation as the case's `messages`, which the assistant sends to the model), then the third turns.
   A simulated user reacts to each answer (see `User`): mostly silently; sometimes with a thumb, a comment, a
   rephrased question, a new question, leaving, or asking for a human. A trace holds only what the assistant
   and its chat front end log: input, output, spans, the user's feedback events, versions, and the user and
   channel in `metadata`. No question label, defect or correctness verdict is written into it.
4. data/traces_gold.jsonl and data/regression_gold.jsonl map each trace and regression case to its base
   question, its question type and the planted defects it exercises, and say whether the answer was right,
   for measuring triage and fixes; autofix itself never reads them.
5. With --judge-candidates, data/judge_golden_candidates.jsonl: answers sampled for human labelling
   (data/judge_golden.jsonl holds the labels, made on the answers of an earlier assistant version; by default
   the candidates are left as they are so that the labels still describe them).

Resumable: each round's cases and results are kept under --work (default runs/generate_data/ beside
autofix.yaml); a killed run started again with the same arguments replays only the cases it has no result for.
Every random draw comes from a stream seeded by --seed and the session or trace id, so a rerun is reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpdesk.corpus import load_corpus  # noqa: E402
from helpdesk.tools.dates import parse_since  # noqa: E402  (the correct reading of user dates, for gold answers)

USERS = ["alice.meyer", "bob.kowalski", "carol.diaz", "dan.reed", "erin.smith", "farid.aziz", "grace.lee", "hugo.blanc",
         "ines.moreau", "jonas.berg", "kim.nguyen", "leo.rossi"]
CHANNELS = ["web", "web", "slack", "teams"]
MAX_TURNS = 3
APP_VERSION = "helpdesk-0.4.0"
MODEL_VERSION = "smollm2-135m-instruct-q4_1"

# Which planted defect (DEFECTS.md) a gold record names, and the order in which one is chosen as the primary.
DEFECT_ORDER = ["routing_time_relative", "tool_date_format", "missing_capability", "data_freshness", "retrieval_split",
                "prompt_no_sources"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a killed run's results may be cut
                pass
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- questions


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
        user = USERS[n % 8]
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
            "task_type": "ticket_create", "defect": None, "user": USERS[n % 8],
        })
    return questions


def load_questions(rng: random.Random) -> list[dict[str, Any]]:
    questions = [q for path in sorted((ROOT / "data").glob("questions_*.jsonl")) for q in read_jsonl(path)]
    return questions + tool_questions(rng)


def pick_regression(questions: list[dict[str, Any]], size: int, rng: random.Random) -> list[dict[str, Any]]:
    """Stratified by question type and defect label so the regression set covers every behaviour."""
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


def must_include(q: dict[str, Any], text: str, today: date) -> list[str]:
    """What a right answer to `text` (a phrasing of `q`) contains; ticket listings depend on the day and phrasing."""
    if q["task_type"] != "ticket_list":
        return q["must_include"]
    tickets = json.loads((ROOT / "data" / "tickets_seed.json").read_text(encoding="utf-8"))
    since = parse_since(text, today).isoformat()
    mine = [t["id"] for t in tickets if t["requester"] == q["user"] and t["opened"] >= since]
    return mine[:3] or ["no tickets"]


# --------------------------------------------------------------------------- replay


def replay(cases: list[dict[str, Any]], model: str, label: str, work: Path) -> dict[str, dict[str, Any]]:
    """Results of the assistant's replay command on `cases`, through an in-process autofix gateway.

    Results already under `work` for the same cases are reused; the rest are replayed, with progress printed."""
    from autofix.models import local
    from autofix.models.gateway import GatewayServer
    from autofix.models.usage import UsageStore

    # One llama.cpp thread: on a shared 2-core machine two threads wait on each other (measured 3-5 times slower
    # under load); the answers are the same token for token.
    local.N_THREADS = int(os.environ.get("HELPDESK_GENERATE_THREADS", "1"))

    work.mkdir(parents=True, exist_ok=True)
    cases_file = work / f"{label}.cases.jsonl"
    text = "".join(json.dumps(c, ensure_ascii=False, sort_keys=True) + "\n" for c in cases)
    if not cases_file.exists() or cases_file.read_text(encoding="utf-8") != text:
        cases_file.write_text(text, encoding="utf-8")
        for old in work.glob(f"{label}.results*.jsonl"):
            old.unlink()
    done = {r["case_id"]: r for part in sorted(work.glob(f"{label}.results*.jsonl")) for r in read_jsonl(part)}
    todo = [c for c in cases if c["case_id"] not in done]
    if not todo:
        log(f"{label}: all {len(cases)} results already under {work}")
        return done
    part = work / f"{label}.results.{len(list(work.glob(f'{label}.results*.jsonl'))):02d}.jsonl"
    log(f"{label}: replaying {len(todo)} of {len(cases)} cases -> {part}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = UsageStore(tmp_path / "gateway.sqlite3")
        key = store.issue_key(f"generate-data-{label}")
        todo_file = tmp_path / "cases.jsonl"
        write_jsonl(todo_file, todo)
        with GatewayServer(store=store, model=model, host="127.0.0.1", port=0) as gateway:
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "AUTOFIX_MODEL_BASE_URL": gateway.base_url,
                   "AUTOFIX_MODEL_API_KEY": key, "AUTOFIX_MODEL": model}
            started = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "helpdesk.replay", "--cases", str(todo_file), "--out", str(part)],
                                    cwd=ROOT, env=env)
            while proc.poll() is None:
                time.sleep(30)
                n = len(part.read_text(encoding="utf-8").splitlines()) if part.exists() else 0
                elapsed = time.monotonic() - started
                eta = (len(todo) - n) * elapsed / n if n else float("nan")
                log(f"{label}: {n}/{len(todo)} cases in {elapsed / 60:.1f} min, about {eta / 60:.0f} min left")
            if proc.returncode:
                raise SystemExit(f"replay of {label} failed with exit code {proc.returncode}; run again to resume")
    done.update({r["case_id"]: r for r in read_jsonl(part)})
    missing = [c["case_id"] for c in cases if c["case_id"] not in done]
    if missing:
        raise SystemExit(f"replay of {label} left {len(missing)} cases without a result; run again to resume")
    log(f"{label}: done in {(time.monotonic() - started) / 60:.1f} min")
    return done


# --------------------------------------------------------------------------- what the answer was


def router_of(result: dict[str, Any]) -> dict[str, Any]:
    span = next((s for s in result.get("spans") or [] if s["kind"] == "router"), None)
    return (span or {}).get("output") or {}


def is_correct(q: dict[str, Any], result: dict[str, Any], expected: list[str]) -> bool:
    output = (result.get("output") or "").lower()
    if result.get("error") or not output:
        return False
    action = router_of(result).get("action")
    if q["task_type"] == "vague":
        return action == "clarify"
    if q["task_type"] == "smalltalk":
        return action == "answer"
    return all(item.lower() in output for item in expected)


def names_a_source(q: dict[str, Any], output: str) -> bool:
    """Whether the answer shows where it comes from (a document id, or a 'Sources:' line)."""
    return any(doc_id in output for doc_id in q["doc_ids"]) or bool(re.search(r"\bsources?:", output, re.I))


SUPERSEDED = frozenset(d.doc_id for d in load_corpus(ROOT / "corpus") if d.status == "superseded")


def defects_of(q: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """The planted defects (DEFECTS.md) this trace exercises, read from the question and what the assistant did."""
    router = router_of(result)
    spans = result.get("spans") or []
    retrieved = {hit["doc_id"] for s in spans if s["kind"] == "retrieval" for hit in s.get("output") or []}
    found = set()
    if router.get("reason", "").startswith("time-relative") and q["task_type"] != "smalltalk":
        found.add("routing_time_relative")  # a knowledge question answered from the clock
    if any(s["kind"] == "tool" and s["name"] == "list_tickets" and s.get("error") for s in spans):
        found.add("tool_date_format")
    if q.get("defect") == "tool_date_format":
        found.add("tool_date_format")
    if q["task_type"] == "missing_capability":
        found.add("missing_capability")
    if retrieved & SUPERSEDED:
        found.add("data_freshness")  # a superseded policy version reached the model
    if router.get("action") == "search" and q.get("defect") == "retrieval_split":
        found.add("retrieval_split")
    if router.get("action") == "search" and any(s["kind"] == "llm" for s in spans):
        found.add("prompt_no_sources")  # every answer from the policies, none of which names its source
    return [d for d in DEFECT_ORDER if d in found]


# --------------------------------------------------------------------------- simulated users

# What users write in the feedback box. Pools by what the user experienced (never by a defect): an answer they
# think is wrong, a request they made that was not carried out, an error shown to them, an answer that stops
# mid-sentence, wanting to know where a policy answer comes from, and thanks.
UNHAPPY = [
    "that's not right", "no, that's wrong", "wrong", "that's incorrect", "not helpful", "useless",
    "this is not helpful at all", "that's not what I asked", "you didn't answer my question", "??", "hmm, no",
    "that makes no sense", "nope", "this is confusing", "are you sure?", "I don't think that's correct",
    "doesn't help me", "come on...", "that is not true", "meh", "not really",
]
UNHAPPY_WITH_AN_ANSWER = [
    "my manager told me something different", "that's out of date", "I think that changed last year?",
    "pretty sure that's the old rule", "the intranet says otherwise", "that's only half of what I asked",
    "you left out the part I actually asked about", "those numbers don't look right", "way too vague",
    "can you be more specific?", "that's not our policy", "I need the actual number, not a guess",
    "this sounds made up", "that's generic advice, I asked about Northwind", "that was true last year maybe",
]
UNHAPPY_WITH_A_REQUEST = [
    "I asked you to do it, not explain it", "can you just do it for me?", "so you can't do it?",
    "this didn't work", "still not done", "nothing happened", "I don't want instructions, I want it done",
    "that's not what I wanted", "ok so who can actually do this?", "not helpful, I'll call the service desk",
]
SAW_AN_ERROR = [
    "got an error", "it says bad request??", "error again", "it failed", "this didn't work",
    "what does that error even mean", "tried twice, same error",
]
SAW_IT_CUT_OFF = [
    "your answer got cut off", "it stopped mid-sentence", "and then what?", "the rest of the answer is missing",
    "incomplete answer", "you didn't finish",
]
WANTS_A_SOURCE = [
    "where does it say that?", "source?", "can you link me the policy?", "which policy is this from?",
    "is that written down somewhere?", "do you have a link for that?", "according to what?",
    "can you show me where that's from?", "link pls", "where can I read this myself?", "is this official?",
    "which document is that in?",
]
PLEASED = [
    "thanks!", "thank you", "perfect, thanks", "great, that's what I needed", "ok got it", "helpful, thanks",
    "cheers", "that worked", "thx", "nice, thank you", "makes sense, thanks", "👍",
]
ACTION_REQUESTS = {"missing_capability", "ticket_create", "ticket_list", "ticket_status"}


@dataclass(frozen=True)
class Rates:
    """The simulated users' behaviour, as probabilities (see DEFECTS.md for the figures they give)."""

    notices_wrong: float = 0.60       # a wrong answer is noticed (the rest look plausible to the user)
    notices_visible_failure: float = 0.85  # ... when it shows an error or stops mid-sentence
    doubts_right: float = 0.06        # a right answer the user is unhappy with anyway
    # an unhappy user
    thumb_down: float = 0.25
    complains: float = 0.12
    asks_source_unhappy: float = 0.08
    rephrases: float = 0.26
    escalates: float = 0.09
    abandons: float = 0.12
    moves_on_unhappy: float = 0.08
    # a satisfied user
    thumb_up: float = 0.06
    misclicks_down: float = 0.01
    thanks: float = 0.02
    asks_source_happy: float = 0.03
    moves_on: float = 0.15
    rephrases_anyway: float = 0.02
    escalates_anyway: float = 0.01
    abandons_anyway: float = 0.01


@dataclass
class Reaction:
    feedback: list[dict[str, Any]] = field(default_factory=list)
    next: str | None = None      # "rephrase", "new_question" or None (the session ends)
    unhappy: bool = False


class User:
    """A simulated user reacting to one answer, from the trace's own random stream.

    What drives the reaction: whether the answer was right (known to the simulation, as a user knows whether
    an answer helped them, and never written into the trace), whether it visibly failed (an error message, an
    answer cut off mid-sentence), whether a policy answer names its source, and whether the user asked a
    question or for something to be done. Whether a user notices anything at all, and what they do, is drawn."""

    def __init__(self, seed: int, rates: Rates = Rates()) -> None:
        self.seed = seed
        self.rates = rates

    def react(self, trace_id: str, q: dict[str, Any], correct: bool, cut_off: bool, error_shown: bool,
              shows_source: bool, turn: int) -> Reaction:
        rng = random.Random(f"{self.seed}:user:{trace_id}")
        r, p = rng.random, self.rates
        visible = cut_off or error_shown
        unhappy = r() < (p.notices_visible_failure if visible else p.notices_wrong) if not correct else r() < p.doubts_right
        reaction = Reaction(unhappy=unhappy)
        fb = reaction.feedback
        policy_answer = bool(q["doc_ids"]) and not shows_source and q["task_type"] not in ACTION_REQUESTS
        if unhappy:
            if r() < p.thumb_down:
                fb.append({"kind": "thumb_down", "value": -1, "comment": None})
            if r() < p.complains:
                pool = list(UNHAPPY)
                pool += UNHAPPY_WITH_A_REQUEST if q["task_type"] in ACTION_REQUESTS else UNHAPPY_WITH_AN_ANSWER
                pool += SAW_AN_ERROR if error_shown else []
                pool += SAW_IT_CUT_OFF if cut_off else []
                fb.append({"kind": "comment", "value": None, "comment": rng.choice(pool)})
            if policy_answer and r() < p.asks_source_unhappy:
                fb.append({"kind": "comment", "value": None, "comment": rng.choice(WANTS_A_SOURCE)})
            roll = r()
            steps = [("rephrase", p.rephrases), ("escalation", p.escalates), ("abandon", p.abandons),
                     ("new_question", p.moves_on_unhappy)]
        else:
            if r() < p.thumb_up:
                fb.append({"kind": "thumb_up", "value": 1, "comment": None})
            elif r() < p.misclicks_down:
                fb.append({"kind": "thumb_down", "value": -1, "comment": None})
            if r() < p.thanks:
                fb.append({"kind": "comment", "value": None, "comment": rng.choice(PLEASED)})
            if policy_answer and r() < p.asks_source_happy:
                fb.append({"kind": "comment", "value": None, "comment": rng.choice(WANTS_A_SOURCE)})
            roll = r()
            steps = [("new_question", p.moves_on), ("rephrase", p.rephrases_anyway), ("escalation", p.escalates_anyway),
                     ("abandon", p.abandons_anyway)]
        for step, chance in steps:
            if roll < chance:
                if step in ("escalation", "abandon"):  # logged by the chat front end: "talk to a person", closed unresolved
                    fb.append({"kind": step, "value": None, "comment": None})
                else:
                    reaction.next = step if turn < MAX_TURNS else None
                break
            roll -= chance
        return reaction


# --------------------------------------------------------------------------- sessions


def versions() -> dict[str, str]:
    def digest(*paths: Path) -> str:
        h = hashlib.sha256()
        for path in paths:
            h.update(path.read_bytes())
        return h.hexdigest()[:12]
    return {"prompt": digest(*sorted((ROOT / "prompts").glob("*.md"))), "retrieval": digest(ROOT / "config" / "retrieval.yaml"),
            "model": MODEL_VERSION, "app": APP_VERSION}


@dataclass
class Turn:
    trace_id: str
    qid: str
    text: str
    at: datetime
    result: dict[str, Any] | None = None
    reaction: Reaction | None = None
    correct: bool = False


@dataclass
class Session:
    session_id: str
    user: str
    channel: str
    turns: list[Turn]

    def history(self) -> list[dict[str, str]]:
        messages = []
        for turn in self.turns[:-1]:
            messages.append({"role": "user", "content": turn.text})
            if turn.result and turn.result.get("output"):
                messages.append({"role": "assistant", "content": turn.result["output"]})
        return messages

    def case(self) -> dict[str, Any]:
        turn = self.turns[-1]
        case = {"case_id": turn.trace_id, "input": turn.text, "metadata": {"user": self.user, "now": turn.at.isoformat()}}
        if len(self.turns) > 1:
            case["messages"] = self.history()
        return case


def start_sessions(n: int, questions: list[dict[str, Any]], seed: int) -> list[Session]:
    """First turns: a base question in one of its phrasings, at a working-hours time in November 2026."""
    sessions = []
    for k in range(n):
        sid = f"s-{k:04d}"
        rng = random.Random(f"{seed}:session:{sid}")
        q = rng.choice(questions)
        if q.get("now"):  # a ticket listing is asked on the day its gold answer was computed for
            day = date.fromisoformat(q["now"])
        else:
            day = date(2026, 11, 2) + timedelta(days=rng.randint(0, 19))
        if day.weekday() >= 5:
            day -= timedelta(days=day.weekday() - 4)
        at = datetime(day.year, day.month, day.day, 8, tzinfo=timezone.utc) + timedelta(minutes=rng.randint(0, 600),
                                                                                         seconds=rng.randint(0, 59))
        user = q.get("user") or rng.choice(USERS)
        text = rng.choice([q["question"], *q["paraphrases"]])
        sessions.append(Session(sid, user, rng.choice(CHANNELS), [Turn(f"tr-{sid}-1", q["qid"], text, at)]))
    return sessions


def next_turn(session: Session, step: str, questions: list[dict[str, Any]], by_qid: dict[str, dict[str, Any]],
              seed: int) -> Turn:
    last = session.turns[-1]
    n = len(session.turns) + 1
    rng = random.Random(f"{seed}:next:{session.session_id}:{n}")
    latency_s = ((last.result or {}).get("latency_ms") or 0) / 1000
    if step == "rephrase":
        q = by_qid[last.qid]
        phrasings = [p for p in [q["question"], *q["paraphrases"]] if p != last.text] or [last.text]
        text = rng.choice(phrasings)
        gap = rng.randint(15, 100)
    else:  # another question of the same user (not one tied to someone else's tickets or to a given day)
        q = rng.choice([x for x in questions if not x.get("user") and not x.get("now") and x["qid"] != last.qid])
        text = rng.choice([q["question"], *q["paraphrases"]])
        gap = rng.randint(40, 600)
    at = last.at + timedelta(seconds=round(latency_s) + gap)
    return Turn(f"tr-{session.session_id}-{n}", q["qid"], text, at)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=420, help="user sessions to simulate")
    parser.add_argument("--regression", type=int, default=100, help="size of the regression set")
    parser.add_argument("--judge-candidates", type=int, default=0,
                        help="resample this many answers for judge labelling (default 0: keep the labelled ones)")
    parser.add_argument("--model", default="autofix-local/smollm2-135m-instruct", help="litellm model behind the gateway")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the rounds' cases and results (default runs/generate_data/<seed>)")
    args = parser.parse_args()
    started = time.monotonic()
    rng = random.Random(args.seed)
    work = args.work or ROOT / "runs" / "generate_data" / str(args.seed)

    questions = load_questions(rng)
    by_qid = {q["qid"]: q for q in questions}
    by_input = {q["question"]: q for q in questions}
    log(f"{len(questions)} base questions; work folder {work}")

    regression = [{"case_id": f"reg-{n:03d}", "input": q["question"], "expected": expected_of(q),
                   "metadata": {"user": q.get("user", USERS[n % 8]), "now": q.get("now", "2026-11-23")}}
                  for n, q in enumerate(pick_regression(questions, args.regression, rng))]
    write_jsonl(ROOT / "data" / "regression.jsonl", regression)
    write_jsonl(ROOT / "data" / "regression_gold.jsonl", [
        {"case_id": case["case_id"], "qid": q["qid"], "defect": q.get("defect"), "task_type": q["task_type"]}
        for case, q in zip(regression, (by_input[c["input"]] for c in regression))])

    user = User(args.seed)
    sessions = start_sessions(args.sessions, questions, args.seed)
    open_sessions = sessions
    for turn_no in range(1, MAX_TURNS + 1):
        if not open_sessions:
            break
        results = replay([s.case() for s in open_sessions], args.model, f"turn{turn_no}", work)
        going_on = []
        for s in open_sessions:
            turn = s.turns[-1]
            q = by_qid[turn.qid]
            turn.result = results[turn.trace_id]
            output = turn.result.get("output") or ""
            turn.correct = is_correct(q, turn.result, must_include(q, turn.text, turn.at.date()))
            spans = turn.result.get("spans") or []
            cut_off = any(s_["kind"] == "llm" and s_["attributes"].get("finish_reason") == "length" for s_ in spans)
            error_shown = bool(turn.result.get("error")) or not output or any(s_.get("error") for s_ in spans)
            turn.reaction = user.react(turn.trace_id, q, turn.correct, cut_off, error_shown,
                                       names_a_source(q, output), turn_no)
            if turn.reaction.next:
                s.turns.append(next_turn(s, turn.reaction.next, questions, by_qid, args.seed))
                going_on.append(s)
        open_sessions = going_on

    version = versions()
    traces: list[dict[str, Any]] = []
    gold: list[dict[str, Any]] = []
    for s in sessions:
        for n, turn in enumerate(s.turns, 1):
            q, result = by_qid[turn.qid], turn.result
            metadata: dict[str, Any] = {"user": s.user, "channel": s.channel}
            if result.get("error"):
                metadata["error"] = result["error"]
            traces.append({
                "trace_id": turn.trace_id, "session_id": s.session_id, "timestamp": turn.at.isoformat(),
                "input": turn.text, "output": result.get("output") or "", "spans": result["spans"],
                "feedback": turn.reaction.feedback, "scores": [], "versions": version, "metadata": metadata,
            })
            defects = defects_of(q, result)
            gold.append({
                "trace_id": turn.trace_id, "session_id": s.session_id, "turn": n, "qid": q["qid"],
                "question_type": q["task_type"], "defect": defects[0] if defects else None, "defects": defects,
                "correct": turn.correct, "user_unhappy": turn.reaction.unhappy,
                "user_next": turn.reaction.next if n < len(s.turns) else None,
            })
    order = sorted(range(len(traces)), key=lambda i: (traces[i]["timestamp"], traces[i]["trace_id"]))
    write_jsonl(ROOT / "data" / "traces.jsonl", [traces[i] for i in order])
    write_jsonl(ROOT / "data" / "traces_gold.jsonl", [gold[i] for i in order])

    if args.judge_candidates:
        sample = random.Random(f"{args.seed}:judge").sample(regression, min(args.judge_candidates, len(regression)))
        answered = replay([{k: c[k] for k in ("case_id", "input", "metadata")} for c in sample], args.model, "judge", work)
        candidates = []
        for case in sample:
            result = answered[case["case_id"]]
            retrieved = [hit for s in result["spans"] if s["kind"] == "retrieval" for hit in (s["output"] or [])]
            candidates.append({"case_id": case["case_id"], "input": case["input"], "expected": case["expected"],
                               "output": result.get("output") or "", "evidence": retrieved})
        write_jsonl(ROOT / "data" / "judge_golden_candidates.jsonl", candidates)

    summary(traces, gold)
    log(f"wrote {len(regression)} regression cases and {len(traces)} traces of {len(sessions)} sessions "
        f"in {(time.monotonic() - started) / 60:.1f} min")
    return 0


def summary(traces: list[dict[str, Any]], gold: list[dict[str, Any]]) -> None:
    """Print the figures DEFECTS.md reports: feedback rates, failure signals, defects."""
    from collections import Counter

    n = len(traces)
    kinds = Counter(f["kind"] for t in traces for f in t["feedback"])
    explicit = sum(any(f["kind"] in ("thumb_up", "thumb_down", "comment") for f in t["feedback"]) for t in traces)
    any_feedback = sum(bool(t["feedback"]) for t in traces)
    next_of = {g["trace_id"]: g["user_next"] for g in gold}
    wrong = sum(not g["correct"] for g in gold)
    signal: Counter = Counter()
    failing = 0
    for t, g in zip(traces, gold):
        has = set()
        if any(f["kind"] == "thumb_down" for f in t["feedback"]):
            has.add("thumb_down")
        if any(f["kind"] == "comment" and f["comment"] not in PLEASED for f in t["feedback"]):
            has.add("comment")
        for kind in ("escalation", "abandon"):
            if any(f["kind"] == kind for f in t["feedback"]):
                has.add(kind)
        if next_of[t["trace_id"]] == "rephrase":
            has.add("rephrase")
        if t["metadata"].get("error") or any(s.get("error") for s in t["spans"]):
            has.add("error")
        signal.update(has)
        failing += bool(has)
    cut = sum(any(s["kind"] == "llm" and s["attributes"].get("finish_reason") == "length" for s in t["spans"]) for t in traces)
    llm = sum(any(s["kind"] == "llm" for s in t["spans"]) for t in traces)
    log(f"{n} traces in {len({t['session_id'] for t in traces})} sessions; {wrong} wrong answers (gold)")
    log(f"feedback: none on {n - any_feedback} ({(n - any_feedback) / n:.0%}), no thumb or comment on {n - explicit} "
        f"({(n - explicit) / n:.0%}); events {dict(kinds)}")
    log(f"traces with a failure signal: {failing}; by signal {dict(signal)}")
    log(f"answers cut at max_tokens: {cut} of {llm} model answers")
    wrong_down = sum(1 for t, g in zip(traces, gold) if not g["correct"] and any(f["kind"] == "thumb_down" for f in t["feedback"]))
    right_down = sum(1 for t, g in zip(traces, gold) if g["correct"] and any(f["kind"] == "thumb_down" for f in t["feedback"]))
    wrong_up = sum(1 for t, g in zip(traces, gold) if not g["correct"] and any(f["kind"] == "thumb_up" for f in t["feedback"]))
    wrong_silent = sum(1 for t, g in zip(traces, gold) if not g["correct"] and not t["feedback"] and next_of[t["trace_id"]] != "rephrase")
    log(f"noise: thumb down on {right_down} right answers, thumb up on {wrong_up} wrong ones; "
        f"{wrong_silent} of {wrong} wrong answers got no reaction at all")
    per = Counter(d for g in gold for d in g["defects"])
    primary = Counter(g["defect"] for g in gold)
    log(f"defects exercised (any): {dict(per)}; primary: {dict(primary)}")


if __name__ == "__main__":
    sys.exit(main())
