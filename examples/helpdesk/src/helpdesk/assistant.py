"""The helpdesk assistant: route the request, then search and answer, answer directly, clarify, or call a tool."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from helpdesk import project_root
from helpdesk.corpus import load_corpus
from helpdesk.llm import ModelEndpoint
from helpdesk.retrieval import RetrievalConfig, Retriever
from helpdesk.router import Route, route
from helpdesk.spans import SpanRecorder
from helpdesk.text import tokenize
from helpdesk.tools.dates import parse_since, to_tool_date
from helpdesk.tools.tickets import SCHEMAS, TicketSystem, ToolError

# Title words that name no topic of their own.
GENERIC_TITLE_WORDS = frozenset("policy guide faq how using new".split())
# Room for a whole answer: the embedded model's answers that end on their own take up to about 140 tokens;
# one that loops is cut here, and its llm span says so (`finish_reason: length`).
ANSWER_MAX_TOKENS = 256
# Earlier messages of the conversation sent with a new question (the last two turns).
HISTORY_MESSAGES = 4


@dataclass
class Reply:
    output: str
    spans: list[dict[str, Any]]


class Assistant:
    def __init__(self, root: Path | None = None, model: ModelEndpoint | None = None) -> None:
        self.root = root or project_root()
        self.prompts = {p.stem: p.read_text(encoding="utf-8").strip() for p in (self.root / "prompts").glob("*.md")}
        documents = [d for d in load_corpus(self.root / "corpus")]
        self.retriever = Retriever(documents, RetrievalConfig.load(self.root / "config" / "retrieval.yaml"))
        self.topic_terms = frozenset(
            w for d in documents for w in tokenize(d.title, drop_stopwords=True) if len(w) > 2 and w not in GENERIC_TITLE_WORDS
        )
        self.tickets = TicketSystem(self.root / "data" / "tickets_seed.json")
        self.model = model or ModelEndpoint.from_env()

    def answer(self, question: str, metadata: dict[str, Any] | None = None, case_id: str | None = None,
               history: list[dict[str, str]] | None = None) -> Reply:
        """Answer `question`; `history` holds the earlier messages of the conversation ({"role", "content"},
        oldest first), of which the last few are sent to the model with the question."""
        metadata = metadata or {}
        earlier = [{"role": m["role"], "content": m["content"]} for m in (history or [])][-HISTORY_MESSAGES:]
        today = date.fromisoformat(metadata["now"][:10]) if metadata.get("now") else date.today()
        recorder = SpanRecorder()
        with recorder.span("chain", "helpdesk.answer", input=question) as chain:
            with recorder.span("router", "route", input=question) as router_span:
                decision = route(question, self.topic_terms)
                router_span["output"] = {"action": decision.action, "tool": decision.tool, "reason": decision.reason}
                router_span["attributes"]["matched"] = decision.matched
            if decision.action == "search":
                output = self._search_and_answer(question, earlier, recorder, case_id)
            elif decision.action == "tool":
                output = self._use_tool(decision, question, metadata, today, recorder)
            elif decision.action == "clarify":
                output = self.prompts["clarify"]
            else:
                output = self._generate(
                    [{"role": "system", "content": self.prompts["direct"].format(today=today.isoformat())},
                     *earlier, {"role": "user", "content": question}],
                    recorder, case_id,
                )
            chain["output"] = output
        return Reply(output=output, spans=recorder.spans)

    def _search_and_answer(self, question: str, earlier: list[dict[str, str]], recorder: SpanRecorder,
                           case_id: str | None) -> str:
        with recorder.span("retrieval", "bm25.search", input=question, top_k=self.retriever.config.top_k) as span:
            hits = self.retriever.search(question)
            span["output"] = [{"doc_id": h.doc_id, "chunk_id": h.chunk_id, "score": h.score, "text": h.text,
                               "metadata": h.metadata} for h in hits]
        if not hits:
            return "I couldn't find anything about that in the Northwind Labs policies. Please contact the service desk."
        context = "\n\n".join(f"[{h.doc_id}] {h.text}" for h in hits)
        answer = self._generate(
            [{"role": "system", "content": self.prompts["system"].format(context=context)},
             *earlier, {"role": "user", "content": question}],
            recorder, case_id,
        )
        sources = ", ".join(dict.fromkeys(h.doc_id for h in hits))
        return self.prompts["answer_format"].format(answer=answer, sources=sources)

    def _generate(self, messages: list[dict[str, str]], recorder: SpanRecorder, case_id: str | None) -> str:
        with recorder.span("llm", "chat.completions", input=messages, model=self.model.model,
                           max_tokens=ANSWER_MAX_TOKENS) as span:
            payload = self.model.chat(messages, case_id=case_id, max_tokens=ANSWER_MAX_TOKENS)
            choice = payload["choices"][0]
            text = (choice["message"].get("content") or "").strip()
            span["output"] = text
            span["attributes"]["usage"] = payload.get("usage", {})
            # "length": the answer was cut at max_tokens, mid-sentence; "stop": the model ended it.
            span["attributes"]["finish_reason"] = choice.get("finish_reason")
        return text

    def _use_tool(self, decision: Route, question: str, metadata: dict[str, Any], today: date, recorder: SpanRecorder) -> str:
        user = metadata.get("user", "anonymous")
        if decision.tool == "lookup_ticket":
            arguments: dict[str, Any] = {"ticket_id": decision.matched[0].upper()}
        elif decision.tool == "list_tickets":
            arguments = {"requester": user, "since": to_tool_date(parse_since(question, today))}
        else:
            arguments = {"requester": user, "summary": question.strip()[:200], "category": _category(question),
                         "priority": "high" if re.search(r"\b(urgent|asap|down|outage|cannot work)\b", question, re.I) else "medium"}
        with recorder.span("tool", decision.tool, input=arguments, json_schema=SCHEMAS[decision.tool]) as span:
            try:
                result = self.tickets.call(decision.tool, arguments, today=today.isoformat())
            except ToolError as exc:
                span["error"] = str(exc)
                return self.prompts["tool_error"].format(error=exc)
            span["output"] = result
        return _describe_tool_result(decision.tool, result)


def _category(text: str) -> str:
    lowered = text.lower()
    for category, words in {
        "hr": ("leave", "holiday", "payroll", "benefit", "manager", "contract"),
        "finance": ("expense", "invoice", "reimburse", "card"),
        "facilities": ("badge", "room", "desk", "parking", "office"),
    }.items():
        if any(w in lowered for w in words):
            return category
    return "it"


def _describe_tool_result(tool: str, result: Any) -> str:
    if tool == "lookup_ticket":
        t = result
        return (f"Ticket {t['id']} ({t['summary']}) is {t['status'].replace('_', ' ')}, priority {t['priority']}, "
                f"opened {t['opened']}, last updated {t['updated']}.")
    if tool == "list_tickets":
        if not result:
            return "You have no tickets opened in that period."
        lines = [f"- {t['id']}: {t['summary']} ({t['status'].replace('_', ' ')}, opened {t['opened']})" for t in result]
        return f"You have {len(result)} ticket(s):\n" + "\n".join(lines)
    return f"I opened ticket {result['id']} for you ({result['category']}, priority {result['priority']})."
