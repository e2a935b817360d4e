"""Rules on the conversation: a request that refers to an earlier turn the model never saw."""

from __future__ import annotations

from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, quote, rule


@rule("lost_conversation_memory", order=400)
def lost_conversation_memory(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The request refers back to an earlier turn, and no llm call received earlier messages."""
    if not ctx.knowledge.refers_back.search(f.input) or f.llm_saw_history or not f.llm_span_ids:
        return None
    return RuleMatch(category=Category.memory, confidence=0.5,
                     rationale=f"the request refers to an earlier turn ({quote(f.input, 80)}) but llm span "
                     f"{f.llm_span_ids[0]} received no earlier messages of the conversation",
                     evidence=[f.llm_span_ids[0]])
