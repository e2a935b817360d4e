"""Rules on the scorers: a judge alone says a trace failed while its user was satisfied. (A score broken
for the whole run is a run-level finding, `autofix.triage.scorer_health`, not a per-trace cause.)"""

from __future__ import annotations

from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, rule


@rule("judge_contradicts_user", order=100)
def judge_contradicts_user(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """Only a judge flags the trace, and the user gave a thumb up."""
    names = f.signal_names
    if not f.thumb_up or not names or names - {"low_score"}:
        return None
    judged = [s for s in f.signals if s[1] == "low_score"]
    return RuleMatch(category=Category.evaluation, confidence=0.5,
                     rationale=f"only a judge flags this trace ({judged[0][2]}) while the user gave a thumb up and no other "
                     "signal is negative: the scorer may be wrong; check it against the answer",
                     evidence=[s[3] for s in judged if s[3]])
