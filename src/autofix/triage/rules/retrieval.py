"""Rules on what retrieval returned: nothing, not the document the trace expects or the user names, or
text that does not hold what the request asks (the answer says so, and the retrieved words do not
cover the request, or the best score is among the retriever's lowest of the run). Nothing here fires
on how many documents came back or how their ids look."""

from __future__ import annotations

import re

from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, quote, rule

LOW_COVERAGE = 0.5  # at most half of the request's content words in the retrieved text
LOW_SCORE_PERCENTILE = 0.1


@rule("retrieval_empty", order=500)
def retrieval_empty(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """Retrieval returned no documents."""
    if not f.retrievals or any(r.docs for r in f.retrievals) or any(r.error for r in f.retrievals):
        return None
    ids = [r.span_id for r in f.retrievals]
    return RuleMatch(category=Category.retrieval, confidence=0.85,
                     rationale=f"retrieval span {ids[0]} ({f.retrievals[0].name}) returned no documents for "
                     f"{quote(f.input, 80)}", evidence=ids)


@rule("expected_document_missing", order=510)
def expected_document_missing(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A document the trace expects, or one the user names in feedback, was not retrieved."""
    if not f.retrievals:
        return None
    wanted = list(f.expected_docs)
    named = [tok for c in f.comments for tok in re.findall(r"[\w.#/-]{4,}", c) if tok in ctx.doc_ids and tok not in wanted]
    parent = ctx.knowledge.chunk_parent
    got = {d.doc_id for r in f.retrievals for d in r.docs} | {d.chunk_id for r in f.retrievals for d in r.docs if d.chunk_id}
    got_docs = {parent(g) for g in got}
    missing = [d for d in [*wanted, *named] if d not in got and parent(d) not in got_docs]
    if not missing:
        return None
    src = "the trace expects" if missing[0] in wanted else "the user names"
    r = f.retrievals[0]
    shown = ", ".join(repr(x) for x in list(dict.fromkeys(d.doc_id for d in r.docs))[:4]) or "nothing"
    return RuleMatch(category=Category.retrieval, confidence=0.85,
                     rationale=f"retrieval span {r.span_id} ({r.name}) returned {shown} but not {missing[0]!r}, the "
                     f"document {src}", evidence=[x.span_id for x in f.retrievals])


@rule("retrieval_misses_request", order=520)
def retrieval_misses_request(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The retrieved text does not hold what the request asks: it lacks at least half of the request's words
    (surer when the answer says it found nothing or the best score is among the retriever's lowest in the run)."""
    rets = [r for r in f.retrievals if r.docs]
    if not rets:
        return None
    r = rets[0]
    m = ctx.knowledge.not_found.search(f.output)
    low_cover = f.coverage is not None and f.coverage <= LOW_COVERAGE and len(f.input_terms) >= 2
    best = max((d.score for d in r.docs if d.score is not None), default=None)
    pct = ctx.score_percentile(r.name, best) if best is not None else None
    low_score = pct is not None and pct[0] < LOW_SCORE_PERCENTILE
    reasons = []
    if m:
        around = f.output[max(0, m.start() - 40): m.end() + 30]
        reasons.append(f"the answer says it could not find it (…{quote(around, 90)}…)")
    if low_cover:
        reasons.append(f"the retrieved text holds only {f.coverage:.0%} of the request's words")
    if low_score:
        reasons.append(f"its best score {best:g} is lower than {1 - pct[0]:.0%} of this retriever's best scores in the "
                       f"run ({pct[1]} calls)")
    # a "not found" or a low score alone is weak: a model may say it with the answer in front of it, and a
    # low score may still be the right passage; text that lacks most of what was asked is evidence on its own
    if not (low_cover or (m and low_score)):
        return None
    conf = 0.75 if len(reasons) == 3 else 0.65 if len(reasons) == 2 else 0.5
    return RuleMatch(category=Category.retrieval, confidence=conf,
                     rationale=f"retrieval span {r.span_id} ({r.name}) returned "
                     f"{', '.join(repr(d.chunk_id or d.doc_id) for d in r.docs[:3])}: " + "; ".join(reasons),
                     evidence=[x.span_id for x in rets])


@rule("knowledge_not_retrieved", order=530)
def knowledge_not_retrieved(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The request's words missing from the retrieved text sit together in a passage the run retrieved for
    other requests: the knowledge exists, this retrieval did not bring it (chunking, ranking or top-k)."""
    rets = [r for r in f.retrievals if r.docs]
    if not rets or len(f.unretrieved_terms) < 2:
        return None
    got = {d.chunk_id or d.doc_id for r in rets for d in r.docs}
    hit = ctx.chunk_holding(frozenset(f.unretrieved_terms) & ctx.domain_terms, got)
    if hit is None:
        return None
    key, doc, words = hit
    same_doc = doc in {d.doc_id for r in rets for d in r.docs}
    shown = key if ":" not in key else doc
    where = (f"another passage of {doc!r} that retrieval did not return ({shown!r})" if same_doc
             else f"{shown!r}, a passage retrieval returned for other requests of the run")
    r = rets[0]
    return RuleMatch(category=Category.retrieval, confidence=0.7 if same_doc else 0.6,
                     rationale=f"retrieval span {r.span_id} ({r.name}) returned "
                     f"{', '.join(repr(d.chunk_id or d.doc_id) for d in r.docs[:3])}, which lack the request's words "
                     f"{', '.join(repr(w) for w in sorted(words)[:4])}; they sit together in {where}",
                     evidence=[x.span_id for x in rets])
