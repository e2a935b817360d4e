"""Decides what to do with a request: search the corpus, answer directly, ask for clarification, or call a tool."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["search", "answer", "clarify", "tool"]

TICKET_ID = re.compile(r"\b(INC|REQ)-\d{4}\b", re.I)
MY_TICKETS = re.compile(r"\b(my (tickets|requests|incidents)|tickets (did )?i (open|opened|raised|created|logged|filed))\b", re.I)
NEW_TICKET = re.compile(r"\b(open|create|raise|log|file|submit) (a |an |new )*(ticket|incident|request)\b", re.I)
SMALLTALK = re.compile(
    r"^\W*(hi|hello|hey|good (morning|afternoon|evening)|thanks?( you)?|thank you|cheers|ok(ay)?|bye)\b[\w\s!.,']{0,30}$", re.I
)
# Questions about the date or time are answered from the clock, not from the knowledge base.
TIME_RELATIVE = re.compile(
    r"\b(today|tonight|tomorrow|right now|currently|this (week|month|year)|next (week|month))\b", re.I
)
VAGUE = re.compile(
    r"\b(it'?s|it is|its|thing|stuff|this|that)\b.*\b(broken|not working|doesn'?t work|won'?t work|fix|help)\b"
    r"|^\W*(help|help me|fix it|can you fix it|it'?s broken|not working)\W*$",
    re.I,
)

# Words of complaints that say nothing about which system or policy is meant.
GENERIC_WORDS = frozenset("work working works broken fix help thing things stuff issue problem not".split())


@dataclass(frozen=True)
class Route:
    action: Action
    reason: str
    tool: str | None = None
    matched: list[str] = field(default_factory=list)


def route(question: str, topic_terms: frozenset[str]) -> Route:
    """Rules in priority order; `topic_terms` are the words of the corpus titles, used to tell vague requests."""
    if m := TICKET_ID.search(question):
        return Route("tool", "mentions a ticket id", tool="lookup_ticket", matched=[m.group(0)])
    if m := MY_TICKETS.search(question):
        return Route("tool", "asks about the user's own tickets", tool="list_tickets", matched=[m.group(0)])
    if m := NEW_TICKET.search(question):
        return Route("tool", "asks to open a ticket", tool="create_ticket", matched=[m.group(0)])
    if SMALLTALK.match(question):
        return Route("answer", "small talk")
    if m := TIME_RELATIVE.search(question):
        return Route("answer", "time-relative question answered from the clock", matched=[m.group(0)])
    words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]+", question)} - GENERIC_WORDS
    if VAGUE.search(question) and not (words & topic_terms):
        return Route("clarify", "request names no system or policy")
    return Route("search", "needs enterprise knowledge")
