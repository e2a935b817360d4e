"""Rules on stale content: a retrieved document whose own metadata says it is no longer current, or
that is an older version (same title, or same stem by the declared id pattern, dated earlier) of a
document the run also retrieves. The more the stale one outranks the current one, the surer."""

from __future__ import annotations

from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, rule


@rule("stale_document", order=520)
def stale_document(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A superseded or older version of a document reached the model."""
    stale = set(ctx.knowledge.documents.stale_statuses)
    for r in f.retrievals:
        ids = [d.doc_id for d in r.docs]
        for rank, d in enumerate(r.docs, 1):
            status = d.status or ctx.doc_status.get(d.doc_id)
            newer = ctx.newer_version(d.doc_id)
            current = newer[0] if newer else None
            cur_rank = ids.index(current) + 1 if current in ids else None
            wins = cur_rank is None or cur_rank > rank
            where = ""
            if current:
                where = f"; its current version {current!r} " + (f"ranks {cur_rank}" if cur_rank else "was not retrieved")
            if status in stale:
                return RuleMatch(category=Category.data_freshness, confidence=0.8 if wins else 0.65,
                                 rationale=f"retrieval span {r.span_id} ({r.name}) returned {d.doc_id!r} at rank {rank}, "
                                 f"a document whose metadata says {status!r}{where}: stale content is still indexed",
                                 evidence=[r.span_id])
            if newer is not None:
                return RuleMatch(category=Category.data_freshness, confidence=0.7 if wins else 0.55,
                                 rationale=f"retrieval span {r.span_id} ({r.name}) returned {d.doc_id!r} at rank {rank}, "
                                 f"an older version of {current!r} ({newer[1]}){where}: superseded content is still "
                                 "indexed", evidence=[r.span_id])
    return None
