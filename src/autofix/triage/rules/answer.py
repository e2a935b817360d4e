"""Rules on the answer itself: it lacks what the user asked for (a source, a list, JSON, a table), the
more surely when the answers of its whole prompt version lack it; it contradicts the sources it was
given (the model did not follow them); or the model stopped at its token limit (finish reason
``length``, read from ``finish_reason``, OTel's ``gen_ai.response.finish_reasons`` or the response)."""

from __future__ import annotations

import re

from autofix.triage._text import numbers, words
from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, quote, rule

_HAS_LIST = re.compile(r"(^|\n)\s*(\d+[.)]|[-*•])\s+\S", re.M)
FORMAT_PRESENT = {
    "a list or steps": lambda out: bool(_HAS_LIST.search(out)),
    "JSON": lambda out: "{" in out or "[" in out,
    "a table": lambda out: "|" in out or "\t" in out,
}


@rule("requested_format_missing", order=600)
def requested_format_missing(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The user asked for a source, a list, JSON or a table (in the request or in feedback) and the
    answer has none; for sources, the prompt version's citation rate says whether its instructions ask."""
    k = ctx.knowledge
    source_comments = [c for c in f.comments if k.source_requests.search(c)]
    asked_source = bool(source_comments) or bool(k.source_requests.search(f.input))
    ev = [x for x in [*f.llm_span_ids[:1], *(r.span_id for r in f.retrievals[:1])] if x]
    if asked_source and not k.cites(f.output, f.retrieved_doc_ids):
        rate, n = ctx.citation_rate(f.prompt_version)
        who = (f"the user asked {quote(source_comments[0], 60)}" if source_comments
               else f"the request asks for a source ({quote(f.input, 60)})")
        docs = (f"; retrieval span {f.retrievals[0].span_id} had {len(f.retrievals[0].docs)} documents to cite"
                if f.retrievals and f.retrievals[0].docs else "")
        if rate is not None and n >= 5:
            conf = 0.85 if rate < 0.1 else 0.7 if rate < 0.5 else 0.5
            pv = f"; only {rate:.0%} of the {n} search answers of prompt version {f.prompt_version} name a source"
        else:
            conf, pv = 0.6, ""
        llm = f.llm_span_ids[0] if f.llm_span_ids else "?"
        return RuleMatch(category=Category.prompt, confidence=conf,
                         rationale=f"{who} and the answer (llm span {llm}) names no source{docs}{pv}: the instructions "
                         "or answer template do not ask for sources", evidence=ev)
    if not f.output:
        return None
    for name, rx in k.format_requests.items():
        present = FORMAT_PRESENT.get(name)
        m = rx.search(f.input)
        if present is None or m is None or present(f.output):
            continue
        return RuleMatch(category=Category.prompt, confidence=0.65,
                         rationale=f"the request asks for {name} ({quote(m.group(0), 40)}) and the answer "
                         f"(llm span {f.llm_span_ids[0] if f.llm_span_ids else '?'}) {quote(f.output, 60)} has none",
                         evidence=ev)
    return None


@rule("answer_ignores_sources", order=610)
def answer_ignores_sources(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The retrieved text covers the request, yet the answer states numbers that are not in it, or says it
    found nothing (low confidence: the model, not retrieval, failed)."""
    if not f.retrievals or f.coverage is None or f.coverage < 0.75:
        return None
    ev = [r.span_id for r in f.retrievals] + list(f.llm_span_ids[:1])
    llm = f.llm_span_ids[0] if f.llm_span_ids else "?"
    said = numbers(f.output)
    if f.retrieved_numbers and said and not (said & f.retrieved_numbers):
        return RuleMatch(category=Category.model_limitation, confidence=0.45,
                         rationale=f"retrieval span {f.retrievals[0].span_id} covers {f.coverage:.0%} of the request and "
                         f"states {', '.join(sorted(f.retrieved_numbers)[:4])}, yet the answer (llm span {llm}) says "
                         f"{', '.join(sorted(said)[:4])}: the model did not follow its sources", evidence=ev)
    m = ctx.knowledge.not_found.search(f.output)
    if m:
        return RuleMatch(category=Category.model_limitation, confidence=0.4,
                         rationale=f"retrieval span {f.retrievals[0].span_id} covers {f.coverage:.0%} of the request's "
                         f"words, yet the answer (llm span {llm}) says it found nothing ({quote(m.group(0), 40)}): the model "
                         "did not use its sources", evidence=ev)
    return None


def repetition(text: str) -> float:
    """Share of the text's word trigrams that repeat an earlier one (0: none; near 1: a loop)."""
    w = words(text)
    grams = [tuple(w[i:i + 3]) for i in range(len(w) - 2)]
    return 1 - len(set(grams)) / len(grams) if len(grams) >= 10 else 0.0


@rule("answer_cut_off", order=620)
def answer_cut_off(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The model's answer stopped at its token limit (finish reason ``length``): unfinished, the more surely a
    model limitation when it was going round in circles."""
    if f.cut_off is None:
        return None
    sid, tokens = f.cut_off
    loop = repetition(f.output)
    at = f" after {tokens} tokens" if tokens else ""
    # with sources that lack most of the request, rambling is what a model does with nothing to go on
    starved = f.coverage is not None and f.coverage <= 0.5
    if loop >= 0.3:
        return RuleMatch(category=Category.model_limitation, confidence=0.35 if starved else 0.5,
                         rationale=f"llm span {sid} stopped at its token limit{at} (finish reason 'length') while repeating "
                         f"itself ({loop:.0%} of its word triples recur): the model does not stop on its own",
                         evidence=[sid])
    return RuleMatch(category=Category.model_limitation, confidence=0.3 if starved else 0.35,
                     rationale=f"llm span {sid} stopped at its token limit{at} (finish reason 'length'): the answer is "
                     "unfinished; raise the limit if answers need the room", evidence=[sid])
