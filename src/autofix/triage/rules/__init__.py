"""The built-in triage rules, one module per family, and the rule protocol (`base`).

Families: `evaluation` (scorers), `errors` (arguments, business rules, context window,
infrastructure, version regressions), `planning` (search skipped, needless clarification, missing
capability), `agent` (actions against the expected ones), `conversation` (memory), `retrieval`
(nothing, the wrong thing, knowledge not retrieved), `freshness` (stale documents), `answer`
(requested format, sources ignored, cut off at the token limit). `autofix triage rules` lists them with their versions.
"""

from autofix.triage.rules.base import RuleMatch, TriageRule, ordered_rules, quote, rule, rule_registry
from autofix.triage.rules import agent, answer, conversation, errors, evaluation, freshness, planning, retrieval  # noqa: F401  (registers)

__all__ = ["RuleMatch", "TriageRule", "ordered_rules", "quote", "rule", "rule_registry"]
