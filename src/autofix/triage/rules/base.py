"""The triage rule protocol, its record and its registry.

A rule reads one failed trace's `TraceFacts` and the run's `TriageContext` and returns a
`RuleMatch` (a category, how sure it is, a rationale naming the spans it rests on) or None.
Rules do not compete by order: every rule that finds evidence votes, and `autofix.triage.voting`
picks the primary cause and keeps the others. Register a rule with `@rule(name, order=, version=)`;
a plugin does the same in the module its ``autofix.rules`` entry point names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, Field

from autofix.plugins import Registry, RegistryEntry
from autofix.triage._text import clip
from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category

__all__ = ["RuleMatch", "TriageRule", "quote", "rule", "rule_registry"]


class RuleMatch(BaseModel):
    """What one rule found: the cause it points to, how sure it is, why, and on which spans.

    A match with category ``unclassified`` is a hint: it explains nothing, but its rationale
    (e.g. "tool X failed with an error of unknown kind") is kept when no other rule matches.
    """

    category: Category
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str
    evidence: list[str] = Field(default_factory=list, description="span ids the rationale rests on")


class TriageRule(Protocol):
    def __call__(self, facts: TraceFacts, ctx: TriageContext) -> RuleMatch | None: ...


rule_registry: Registry[TriageRule] = Registry("rule", "autofix.rules")


def rule(name: str, *, order: int, version: int = 1) -> Callable[[TriageRule], TriageRule]:
    """Register a triage rule. `order` only breaks ties between equally confident causes (lower first);
    bands: 100 evaluation, 200 errors, 300 planning, 400 conversation, 500 retrieval, 600 answer."""

    def register(fn: TriageRule) -> TriageRule:
        rule_registry.add(name, fn, version=version, order=order, doc=(fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return register


def ordered_rules(disabled: frozenset[str] = frozenset()) -> list[RegistryEntry[TriageRule]]:
    """Every registered rule (plugins included) not disabled, by order then name."""
    return sorted((e for e in rule_registry.entries() if e.name not in disabled),
                  key=lambda e: (e.metadata.get("order", 1000), e.name))


def quote(text: str, n: int = 90) -> str:
    return repr(clip(text, n))
