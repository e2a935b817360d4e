"""Rules on the assistant's plan: it answered without searching, asked for a clarification it did not
need, or was asked to act with no tool that acts. Evidence is what the spans recorded (a router's
decision, the absence of a retrieval or tool span) against what the run shows the request needs (the
knowledge base's own words, the logged task type's search rate, the tools the assistant has)."""

from __future__ import annotations

from autofix.triage._text import is_question
from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, quote, rule


def is_action_request(f: TraceFacts, ctx: TriageContext) -> bool:
    """The request asks the assistant to act on the user's behalf, by the target's vocabulary."""
    k = ctx.knowledge
    if not k.delegation.search(f.input):
        return False
    # "can you tell me ..." is a question; "can you reset ..." is not
    return not (k.information_request.search(f.input) and is_question(f.input) and "for me" not in f.input.lower())


@rule("missing_capability", order=300)
def missing_capability(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The user asks the assistant to act and none of its tools does that; it explains or declines instead."""
    if not is_action_request(f, ctx):
        return None
    wanted = f.input_terms - {"me", "my", "us", "our"}
    if wanted & ctx.tool_terms:
        return None  # the assistant has a tool for this: a routing problem, not a missing capability
    # (a successful lookup on the way, e.g. fetching the user's record, is no tool doing what was asked)
    declined = bool(ctx.knowledge.declines.search(f.output))
    ev = [x for x in ([f.router.span_id] if f.router else []) + list(f.llm_span_ids[:1])
          + [r.span_id for r in f.retrievals[:1]] if x]
    tools = ", ".join(sorted(ctx.tool_names)[:6]) or "none"
    how = "the answer declines or tells the user how to do it" if declined else f"the answer {quote(f.output, 70)} does not do it"
    routed = f"; router span {f.router.span_id} chose {f.router.raw_action or '?'!r}" if f.router else ""
    return RuleMatch(
        category=Category.missing_capability, confidence=0.8 if declined else 0.55,
        rationale=f"the user asks the assistant to act ({quote(f.input, 80)}), but no tool of the assistant does that "
        f"(tools seen in the run: {tools}){routed}; {how}",
        evidence=ev,
    )


def needs_knowledge(f: TraceFacts, ctx: TriageContext) -> tuple[str, float] | None:
    """Why the request needs the knowledge base, and how strongly, or None."""
    rate, n = ctx.search_rate(f.task_type)
    terms = sorted(f.input_terms & ctx.domain_terms)
    reasons = []
    strength = 0.0
    if n >= 5 and rate >= 0.5:
        reasons.append(f"{rate:.0%} of the other {n} {f.task_type!r} traces search")
        strength += 0.3 * rate
    if len(terms) >= 2:
        reasons.append("it names " + ", ".join(repr(t) for t in terms[:4]) + " (words of the retrieved documents)")
        strength += min(0.3, 0.1 * len(terms))
    return ("; ".join(reasons), strength) if reasons else None


@rule("answered_without_retrieval", order=310)
def answered_without_retrieval(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """No retrieval and no tool, although the request needs what the knowledge base holds."""
    if f.retrievals or f.tools or not ctx.doc_ids:
        return None  # it searched, acted, or this assistant never searches: nothing to compare with
    if f.router is not None and f.router.action not in ("answer", None):
        return None
    if f.router is None and not (f.llm_span_ids or f.output):
        return None
    need = needs_knowledge(f, ctx)
    if need is None:
        return None
    why, strength = need
    if f.router is not None:
        reason = f" ({f.router.reason!r})" if f.router.reason else ""
        head = f"router span {f.router.span_id} ({f.router.name}) chose {f.router.raw_action or 'to answer'!r}{reason}"
        ev = [f.router.span_id, *f.llm_span_ids[:1]]
        conf = min(0.85, 0.5 + strength)
    else:
        ev = list(f.llm_span_ids[:1]) or [x for x in (f.chain_span_id,) if x]
        head = "the assistant answered directly" + (f" (span {ev[0]})" if ev else "")
        conf = min(0.7, 0.35 + strength)
    return RuleMatch(
        category=Category.routing, confidence=round(conf, 2),
        rationale=f"{head} and the trace has no retrieval span, although the request needs the knowledge base: {why}",
        evidence=[x for x in ev if x],
    )


@rule("needless_clarification", order=320)
def needless_clarification(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The assistant asked the user to clarify a request that names what it is about."""
    asked = (f.router is not None and f.router.action == "clarify") or (
        not f.retrievals and not f.tools and bool(ctx.knowledge.clarifying.search(f.output))
    )
    if not asked:
        return None
    terms = f.input_terms & ctx.domain_terms
    rate, n = ctx.search_rate(f.task_type)
    clear = len(terms) >= 2 or (len(terms) >= 1 and len(f.input_terms) >= 4) or (n >= 5 and rate >= 0.6)
    if not clear:
        return None
    why = []
    if terms:
        why.append("it names " + ", ".join(repr(t) for t in sorted(terms)[:4]))
    if n >= 5 and rate >= 0.6:
        why.append(f"{rate:.0%} of the other {f.task_type!r} traces are answered by searching")
    if f.router is not None:
        head = f"router span {f.router.span_id} ({f.router.name}) asked for clarification ({f.router.reason!r})"
        ev = [f.router.span_id]
    else:
        head = f"the answer asks the user to clarify ({quote(f.output, 70)})"
        ev = list(f.llm_span_ids[:1])
    return RuleMatch(category=Category.routing, confidence=0.7,
                     rationale=f"{head} although the request was clear: {' and '.join(why)}", evidence=ev)
