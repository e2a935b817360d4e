"""From the rules' votes to one diagnosis: every rule that finds evidence votes; the strongest cause
is primary and the others are kept.

Per category, the confidences of the rules that point to it combine as independent evidence
(``1 - prod(1 - c)``, capped at 0.95); the category with the highest combined confidence is the
primary cause, ties going to the lower rule order. Its rationale is its strongest rule's, its
evidence the union of its rules' spans. Hints (matches of category ``unclassified``) only speak
when nothing else does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from autofix.plugins import RegistryEntry
from autofix.traces.schema import Trace
from autofix.triage.context import TriageContext
from autofix.triage.detection import SignalTuple
from autofix.triage.facts import TraceFacts, extract_facts
from autofix.triage.records import Category, Cause, Diagnosis
from autofix.triage.rules import RuleMatch, TriageRule, ordered_rules, rule_registry

__all__ = ["Verdict", "decide", "diagnose", "diagnose_facts", "rule_refs"]

MAX_COMBINED = 0.95


@dataclass(slots=True)
class Verdict:
    category: Category
    confidence: float
    rationale: str
    evidence: list[str]
    rule: str  # the strongest rule of the primary category
    alternatives: list[Cause] = field(default_factory=list)


@lru_cache(maxsize=8)
def _ordered(disabled: frozenset[str], registered: int) -> tuple[RegistryEntry[TriageRule], ...]:
    return tuple(ordered_rules(disabled))


def _rules(disabled: frozenset[str]) -> tuple[RegistryEntry[TriageRule], ...]:
    """The rules that run, in order; recomputed when a rule is registered (the count is part of the key)."""
    rule_registry.load_plugins()
    return _ordered(disabled, len(rule_registry))


def rule_refs(disabled: frozenset[str] = frozenset()) -> list[str]:
    """``name@version`` of every rule that runs, in order (for reports and caches)."""
    return [e.ref for e in _rules(disabled)]


def decide(matches: Iterable[tuple[RegistryEntry[TriageRule], RuleMatch]]) -> Verdict | None:
    """The primary cause and the alternatives from the rules' matches (in rule order)."""
    by_cat: dict[Category, list[tuple[int, str, RuleMatch]]] = {}
    hints: list[tuple[str, RuleMatch]] = []
    for entry, m in matches:
        if m.category == Category.unclassified:
            hints.append((entry.name, m))
            continue
        by_cat.setdefault(m.category, []).append((entry.metadata.get("order", 1000), entry.name, m))
    if not by_cat:
        if not hints:
            return None
        name, m = hints[0]
        return Verdict(Category.unclassified, 0.0, m.rationale, list(m.evidence), name)
    scored = []
    for cat, votes in by_cat.items():
        miss = 1.0
        for _, _, m in votes:
            miss *= 1.0 - m.confidence
        combined = min(MAX_COMBINED, 1.0 - miss) if len(votes) > 1 else votes[0][2].confidence
        strongest = max(votes, key=lambda v: (v[2].confidence, -v[0]))
        scored.append((round(combined, 3), -min(v[0] for v in votes), cat, strongest, votes))
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    conf, _, cat, (_, name, best), votes = scored[0]
    evidence = list(dict.fromkeys(e for _, _, m in votes for e in m.evidence))
    alternatives = [Cause(category=c, confidence=cf, rule=n, rationale=m.rationale) for cf, _, c, (_, n, m), _ in scored[1:]]
    return Verdict(cat, conf, best.rationale, evidence, name, alternatives)


def diagnose_facts(facts: TraceFacts, ctx: TriageContext, only: frozenset[str] | None = None) -> Verdict | None:
    """Run every enabled rule (or those named in `only`) on one failure and decide; None when none found anything."""
    matches = []
    for entry in _rules(ctx.knowledge.disabled_rules):
        if only is not None and entry.name not in only:
            continue
        try:
            m = entry.obj(facts, ctx)
        except Exception as exc:  # a broken (plugin) rule must not stop the run
            ctx.rule_errors[entry.name] = f"{type(exc).__name__}: {exc}"
            continue
        if m is not None:
            matches.append((entry, m))
    return decide(matches)


def diagnose(trace: Trace, ctx: TriageContext, signals: Iterable[SignalTuple] = ()) -> Diagnosis | None:
    """The rule diagnosis of one failed trace (None when no rule matches). For tests and one-off use."""
    facts = extract_facts(trace, signals, knowledge=ctx.knowledge)
    v = diagnose_facts(facts, ctx)
    if v is None:
        return None
    return Diagnosis(trace_id=trace.trace_id, category=v.category, confidence=v.confidence, rationale=v.rationale,
                     evidence=v.evidence, method="rule" if v.category != Category.unclassified else "none", rule=v.rule,
                     alternatives=v.alternatives)
