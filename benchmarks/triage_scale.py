"""Triage at scale: ingestion + detection + rule triage + clustering over 1,000,000 native traces.

    .venv/bin/python benchmarks/triage_scale.py                 # 1,000,000 traces
    .venv/bin/python benchmarks/triage_scale.py --traces 50000  # a quick check

Generates realistic native traces into a temporary file (not timed; about 3.5 KB a trace, the
size of the bundled helpdesk example's production traces): an enterprise helpdesk
assistant over a corpus of policy documents, with sessions of 1-3 requests, a mix of task
types (policy questions, how-tos, ticket tools, small talk, action requests), spans as the
span contract has them (chain, router, retrieval with chunk texts, tool calls with their
JSON schema, model calls with the prompt and context), user feedback, an online judge's score,
and planted failure modes (answers without retrieval, malformed tool dates, superseded
documents, answers without sources, action requests without a tool, fragmentary retrieval,
slow and failing calls), plus a few malformed lines that must be quarantined.

Then times `run_triage` with no LLM classifier (rules only) and prints the throughput, the
phases, and the peak memory: tracemalloc's peak of Python allocations with `--tracemalloc`
(slower), else the process's peak resident set (ru_maxrss) measured from before the run.
Target on a 2-core machine: under 120 s and under 2 GiB for 1,000,000 traces.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from autofix.triage.detection import DetectionSettings  # noqa: E402
from autofix.triage.pipeline import run_triage  # noqa: E402

VOCAB = (
    "leave annual carry over days approve manager expense claim receipt badge office visitor register payroll "
    "salary bank pension insurance health parental notice weeks policy desk booking parking floor laptop vpn "
    "password reset account unlock mfa phone device software install request portal travel flight hotel "
    "mileage allowance stipend equipment internet meal limit client entertainment card corporate benefits "
    "enrolment deadline march december quarter team neighbourhood building access security training "
    "onboarding offboarding resign notice period contract probation review bonus overtime shift holiday"
).split()
TOPICS = [
    ("hr", ["leave-annual", "leave-sick", "leave-parental", "pension", "payroll", "offboarding", "probation", "overtime", "training", "bonus"]),
    ("fin", ["expense-policy", "mileage", "meal-limits", "corporate-card", "equipment-stipend", "internet-allowance", "bank-details", "travel"]),
    ("fac", ["desk-booking", "parking", "visitors", "badges", "meeting-rooms", "lost-found", "mail", "event-spaces"]),
    ("it", ["vpn", "password", "mfa", "laptop", "software", "printing", "wifi", "email", "backup", "security"]),
]
REGIONS = ["berlin", "london", "austin", "global"]
USERS = [f"user{n:04d}" for n in range(2000)]
SCHEMA_LIST = {
    "type": "object",
    "properties": {
        "requester": {"type": "string", "minLength": 1},
        "since": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "status": {"enum": ["open", "in_progress", "resolved", "any"]},
    },
    "required": ["requester", "since"],
    "additionalProperties": False,
}
SCHEMA_LOOKUP = {"type": "object", "properties": {"ticket_id": {"type": "string", "pattern": r"^(INC|REQ)-\d{4}$"}},
                 "required": ["ticket_id"], "additionalProperties": False}
SYSTEM = ("You are the Northwind Labs helpdesk assistant. You help employees with IT and HR questions. Answer the "
          "question using the policy excerpts below. Be brief: two or three sentences. Give the exact numbers, names and "
          "deadlines from the excerpts.\n\nPolicy excerpts:\n")


def make_corpus(rng: random.Random) -> list[dict]:
    docs = []
    for area, topics in TOPICS:
        for topic in topics:
            for region in REGIONS:
                base = f"{area}-{topic}-{region}" if region != "global" else f"{area}-{topic}"
                words = [topic.split("-")[0], region, *rng.sample(VOCAB, 12)]
                chunks = [" ".join(rng.choice(words) if rng.random() < 0.3 else rng.choice(VOCAB) for _ in range(32))
                          + f" {rng.randint(2, 30)} days" for _ in range(6)]
                docs.append({"doc_id": f"{base}-001", "terms": words, "chunks": chunks})
                if rng.random() < 0.25:
                    docs.append({"doc_id": f"{base}-2023", "terms": words, "chunks": chunks[:4], "old": True})
    return docs


class Generator:
    def __init__(self, seed: int = 7):
        self.rng = random.Random(seed)
        self.docs = make_corpus(self.rng)
        self.current = [d for d in self.docs if not d.get("old")]
        self.old_of = {d["doc_id"].replace("-2023", "-001"): d for d in self.docs if d.get("old")}
        self.start = datetime(2026, 10, 1, tzinfo=timezone.utc)

    def question(self, doc: dict, time_relative: bool = False) -> str:
        r = self.rng
        t = doc["terms"]
        q = r.choice([
            f"How many days of {t[0]} {t[2]} can I get in {t[1]}?",
            f"what is the {t[0]} {t[3]} rule for {t[1]}",
            f"How do I {r.choice(['request', 'submit', 'check'])} {t[0]} {t[4]} in {t[1]}?",
            f"When is the {t[0]} {t[2]} deadline and who approves it?",
            f"{t[0]} {t[3]} {t[1]} limit?",
        ])
        if time_relative:
            q = q.rstrip("?") + r.choice([" this year?", " today?", " this month?"])
        return q

    def trace(self, n: int, sid: str, at: datetime, mode: str, user: str, text: str | None = None) -> tuple[dict, str]:
        r = self.rng
        tid = f"tr-{n:08d}"
        spans: list[dict] = []
        feedback: list[dict] = []
        meta = {"task_type": "policy_qa", "tenant": "northwind", "user": user, "channel": r.choice(["web", "slack", "teams"])}
        latency = r.lognormvariate(6.8, 0.35)
        fail = False
        cited = True
        doc = r.choice(self.current)
        q = text or self.question(doc, time_relative=mode == "routing")
        output = ""
        spans.append({"span_id": f"{tid}:0", "kind": "chain", "name": "helpdesk.answer", "input": q, "output": None,
                      "error": None, "start_ms": 0, "end_ms": None, "attributes": {}})

        def router(action: str, reason: str, tool: str | None = None) -> None:
            spans.append({"span_id": f"{tid}:1", "kind": "router", "name": "route", "input": q,
                          "output": {"action": action, "tool": tool, "reason": reason}, "error": None,
                          "start_ms": 1, "end_ms": 2, "attributes": {"matched": []}})

        def retrieve(docs: list[tuple[dict, int]], k: int = 3) -> None:
            out = [{"doc_id": d["doc_id"], "chunk_id": f"{d['doc_id']}#{c}", "score": round(9 - i * 1.3, 3),
                    "text": d["chunks"][c % len(d["chunks"])]} for i, (d, c) in enumerate(docs[:k])]
            spans.append({"span_id": f"{tid}:2", "kind": "retrieval", "name": "bm25.search", "input": q, "output": out,
                          "error": None, "start_ms": 2, "end_ms": 9, "attributes": {"top_k": k}})

        def llm(answer: str, context: str = "") -> None:
            spans.append({"span_id": f"{tid}:3", "kind": "llm", "name": "chat.completions",
                          "input": [{"role": "system", "content": SYSTEM + context}, {"role": "user", "content": q}],
                          "output": answer, "error": None, "start_ms": 9, "end_ms": int(latency) - 2,
                          "attributes": {"model": "smollm2", "usage": {"prompt_tokens": 420, "completion_tokens": 60}}})

        if mode in ("ok", "prompt", "freshness", "retrieval", "model", "slow", "infra"):
            task = r.choice(["policy_qa", "policy_qa", "howto"])
            meta["task_type"] = task
            router("search", "needs enterprise knowledge")
            if mode == "freshness" and doc["doc_id"] in self.old_of:
                picks = [(self.old_of[doc["doc_id"]], 1), (doc, 2), (r.choice(self.current), 0)]
            else:
                picks = [(doc, r.randint(0, 5)), (doc, r.randint(0, 5)), (r.choice(self.current), r.randint(0, 5))]
            k = 2 if mode in ("retrieval", "freshness") or r.random() < 0.8 else 3
            retrieve(picks, k=k)
            ctx = "\n\n".join(f"[{d['doc_id']}] {d['chunks'][c % len(d['chunks'])]}" for d, c in picks[:k])
            answer = " ".join(r.choice(VOCAB) for _ in range(r.randint(25, 50))) + f" It is {r.randint(2, 30)} days."
            if mode == "retrieval":
                answer = "I couldn't find the approver in the policy excerpts. " + answer
            cited = mode != "prompt" and r.random() < 0.9
            output = answer + (f"\n\nSources: {doc['doc_id']}" if cited else "")
            llm(answer, ctx)
            fail = mode in ("freshness", "retrieval", "model")
            if mode == "slow":
                latency *= r.uniform(4, 8)
            if mode == "infra":
                spans[-1]["error"] = "TimeoutError: upstream model timed out after 30s"
                fail = True
        elif mode == "routing":
            router("answer", "time-relative question answered from the clock")
            output = f"Today is {at.date().isoformat()}; " + " ".join(r.choice(VOCAB) for _ in range(20))
            llm(output)
            fail = True
        elif mode in ("tool_ok", "tool_bad"):
            meta["task_type"] = "ticket_list"
            q = text or r.choice(["Show my tickets since Monday", "which tickets did I open in the last 10 days?", "my tickets from this week"])
            spans[0]["input"] = q
            router("tool", "asks about the user's own tickets", tool="list_tickets")
            day = at.date() - timedelta(days=r.randint(1, 12))
            since = day.strftime("%d/%m/%Y") if mode == "tool_bad" else day.isoformat()
            span = {"span_id": f"{tid}:2", "kind": "tool", "name": "list_tickets", "input": {"requester": user, "since": since},
                    "output": None, "error": None, "start_ms": 2, "end_ms": 40, "attributes": {"json_schema": SCHEMA_LIST}}
            if mode == "tool_bad":
                span["error"] = f"400 Bad Request: since: '{since}' does not match '^\\d{{4}}-\\d{{2}}-\\d{{2}}$'"
                output = f"Sorry, I couldn't complete that in the ticket system ({span['error']})."
                fail = True
            else:
                span["output"] = [{"id": f"INC-{r.randint(1000, 9999)}", "status": "open"}]
                output = "You have 1 ticket(s)."
            spans.append(span)
        elif mode == "lookup":
            meta["task_type"] = "ticket_status"
            tk = f"INC-{r.randint(1000, 9999)}"
            q = text or f"What's the status of {tk}?"
            spans[0]["input"] = q
            router("tool", "mentions a ticket id", tool="lookup_ticket")
            spans.append({"span_id": f"{tid}:2", "kind": "tool", "name": "lookup_ticket", "input": {"ticket_id": tk},
                          "output": {"id": tk, "status": "open"}, "error": None, "start_ms": 2, "end_ms": 30,
                          "attributes": {"json_schema": SCHEMA_LOOKUP}})
            output = f"Ticket {tk} is open."
        elif mode == "capability":
            meta["task_type"] = "action"
            q = text or r.choice(["Reset my password for me.", "Book meeting room 3 for Thursday at 10am.", "Approve my leave request.",
                                  "Change my bank account in payroll for me.", "Unlock my account now."])
            spans[0]["input"] = q
            router("search", "needs enterprise knowledge")
            retrieve([(doc, 0), (r.choice(self.current), 1)])
            output = "I can't do that for you. You can do it yourself in the self-service portal."
            llm(output)
            fail = True
        else:  # smalltalk
            meta["task_type"] = "smalltalk"
            q = text or r.choice(["hi", "thanks that helped!", "good morning", "hello there"])
            spans[0]["input"] = q
            router("answer", "small talk")
            output = "Hello! How can I help you today?"
            llm(output)

        spans[0]["output"] = output
        spans[0]["end_ms"] = int(latency)
        meta["latency_ms"] = round(latency, 1)
        judge = round(r.uniform(0.0, 0.45), 2) if (fail and r.random() > 0.08) else round(r.uniform(0.6, 1.0), 2)
        follow = None
        if fail:
            if r.random() < 0.45:
                feedback.append({"kind": "thumb_down", "value": -1, "comment": None})
            if r.random() < 0.2:
                feedback.append({"kind": "comment", "value": -1, "comment": r.choice(["that's not right", "useless", "no, that's outdated"])})
            roll = r.random()
            if roll < 0.3:
                follow = "rephrase"
            elif roll < 0.45:
                feedback.append({"kind": "escalation", "value": -1, "comment": "asked for a human agent"})
            elif roll < 0.6:
                feedback.append({"kind": "abandon", "value": -1, "comment": None})
        else:
            if r.random() < 0.15:
                feedback.append({"kind": "thumb_up", "value": 1, "comment": None})
            if mode == "prompt" and not cited:
                feedback.append({"kind": "comment", "value": -1, "comment": r.choice(["where is this from? please link the policy", "can you cite the source?"])})
        trace = {"trace_id": tid, "session_id": sid, "timestamp": at.isoformat(), "input": q, "output": output, "spans": spans,
                 "feedback": feedback, "scores": [{"name": "answer_quality", "value": judge, "rationale": None, "source": "online_judge"}],
                 "versions": {"prompt": "p-3f2a", "retrieval": "r-91c0", "model": "smollm2-135m", "app": "helpdesk-0.3.0"},
                 "metadata": meta}
        return trace, follow or ""

    # (mode, share): about 15% of the traces fail, as in a production assistant that needs fixing
    MODES = [("ok", 0.655), ("smalltalk", 0.04), ("lookup", 0.06), ("tool_ok", 0.05), ("tool_bad", 0.02),
             ("routing", 0.025), ("prompt", 0.03), ("freshness", 0.02), ("retrieval", 0.03), ("capability", 0.015),
             ("slow", 0.003), ("infra", 0.003), ("model", 0.007)]

    def write(self, path: Path, n_traces: int) -> int:
        r = self.rng
        modes, weights = zip(*self.MODES)
        n = 0
        s = 0
        gap = 30 * 24 * 3600 / max(1, n_traces)  # spread over 30 days
        with open(path, "w", encoding="utf-8") as fh:
            while n < n_traces:
                at = self.start + timedelta(seconds=n * gap)
                sid = f"s-{s:07d}"
                s += 1
                user = r.choice(USERS)
                mode = r.choices(modes, weights)[0]
                tr, follow = self.trace(n, sid, at, mode, user)
                if follow == "rephrase" and r.random() < 0.5:
                    tr["feedback"].append({"kind": "rephrase", "value": -1, "comment": None})
                fh.write(json.dumps(tr) + "\n")
                n += 1
                if follow == "rephrase" and n < n_traces:
                    again = tr["input"].lower().rstrip("?") + " please"
                    tr2, _ = self.trace(n, sid, at + timedelta(seconds=r.randint(20, 100)), mode if r.random() < 0.5 else "ok", user, again)
                    fh.write(json.dumps(tr2) + "\n")
                    n += 1
                if n % 50_000 == 0 and n < n_traces:  # a few bad lines, as real exports have
                    fh.write('{"trace_id": "broken", "timestamp": \n')
                    fh.write(json.dumps({"trace_id": 12, "timestamp": "2026-11-01T00:00:00Z"}) + "\n")
        return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the traces here (and keep them) instead of a temp file")
    parser.add_argument("--reuse", action="store_true", help="reuse the --keep file when it exists")
    parser.add_argument("--workers", type=int, default=None, help="reader processes (default: one per core)")
    parser.add_argument("--tracemalloc", action="store_true", help="measure Python allocations with tracemalloc (slower)")
    args = parser.parse_args()

    tmpdir = tempfile.TemporaryDirectory(prefix="autofix-triage-scale-")
    path = args.keep or Path(tmpdir.name) / "traces.jsonl"
    if not (args.reuse and path.exists()):
        t = time.perf_counter()
        n = Generator().write(path, args.traces)
        print(f"generated {n:,} traces ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f}s (not timed)",
              flush=True)
    size = path.stat().st_size
    state = Path(tmpdir.name) / "state"
    config = SimpleNamespace(
        triage=SimpleNamespace(
            weights=SimpleNamespace(explicit=1.0, behavioural=0.6, outcome=0.8, risk_penalty=0.5),
            thresholds=SimpleNamespace(rephrase_window_s=120.0, latency_outlier_z=3.0, scores={}),
            llm_classifier=False,
        ),
        judges=[],
        surfaces=SimpleNamespace(code=["src/helpdesk/router.py", "src/helpdesk/tools/*.py"], prompts=["prompts/*.md"]),
        surface_files=lambda kind: [],
        state_path=state,
        file=path.parent / "autofix.yaml",
        dataset_path=lambda name: path,
    )
    assert DetectionSettings.from_config(config).rephrase_window_s == 120.0

    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    report = run_triage(config, classifier=None, workers=args.workers)
    elapsed = time.perf_counter() - t0
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    workers = int(report.timings_s.get("workers", 1))
    print(f"traces       {report.traces:,} read, {report.quarantined} quarantined, {report.failures:,} failures "
          f"({report.failures / max(1, report.traces):.1%})")
    print(f"time         {elapsed:.1f}s total: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings_s.items()))
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime
           + kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime)
    print(f"throughput   {report.traces / elapsed:,.0f} traces/s, {size / elapsed / 1e6:.1f} MB/s")
    print(f"cpu          {cpu:.1f} CPU-seconds in all processes ({1e6 * cpu / max(1, report.traces):.0f} us a trace); "
          f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after (other work on the machine slows the wall time)")
    if args.tracemalloc:
        import tracemalloc

        _, peak = tracemalloc.get_traced_memory()
        print(f"memory       tracemalloc peak {peak / 2**30:.2f} GiB")
    print(f"memory       peak RSS {rss_peak / 2**20:.2f} GiB in the main process (before the run: {rss_before / 2**20:.2f} GiB)"
          + (f", {child_peak / 2**20:.2f} GiB in the largest of {workers} reader processes" if workers > 1 else ""))
    total_peak = rss_peak + (workers * child_peak if workers > 1 else 0)
    print(f"clusters     {len(report.clusters)}; by category: {report.by_category}")
    for c in report.clusters[:10]:
        print(f"  #{c.rank:<3} {c.id:<48} {c.category.value:<18} size {c.size:>7,} priority {c.priority:.2f}  {c.owner}")
    ok = elapsed < 120 and total_peak / 2**20 < 2
    print(f"memory       at most {total_peak / 2**20:.2f} GiB together (main peak + readers' peaks)")
    print("target (<120 s, <2 GiB): " + ("met" if ok else "NOT met") + f" on {os.cpu_count()} cores")
    tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
