"""Rules for agents that carry the actions they were expected to take (an evaluation run's reference,
`expected.actions` or `metadata.expected_actions`): the calls made are compared with them."""

from __future__ import annotations

import json
from typing import Any

from autofix.triage.context import TriageContext
from autofix.triage.facts import ExpectedAction, ToolFact, TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, rule


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        return " ".join(v.lower().split())
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


def _differing(expected: Any, actual: Any) -> list[str]:
    """The argument names whose values differ (all of them when either side is not a mapping)."""
    if not isinstance(expected, dict) or not isinstance(actual, dict):
        return [] if _norm(expected) == _norm(actual) else ["arguments"]
    keys = sorted(set(expected) | set(actual))
    return [k for k in keys if _norm(expected.get(k)) != _norm(actual.get(k))]


def _show(v: Any) -> str:
    try:
        return json.dumps(v, ensure_ascii=False, default=str)[:80]
    except (TypeError, ValueError):
        return str(v)[:80]


@rule("actions_differ_from_expected", order=330)
def actions_differ_from_expected(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """An expected action was never called (the plan skipped it) or called with other arguments."""
    if not f.expected_actions:
        return None
    calls: dict[str, list[ToolFact]] = {}
    for t in f.tools:
        calls.setdefault(t.name, []).append(t)
    wrong_args: list[tuple[ExpectedAction, ToolFact, list[str]]] = []
    missing: list[ExpectedAction] = []
    for exp in f.expected_actions:
        made = [t for t in calls.get(exp.name, []) if t.error is None or not t.recovered]
        if not made:
            missing.append(exp)
            continue
        if exp.arguments is None:
            continue
        diffs = [(_differing(exp.arguments, t.arguments), t) for t in made if t.arguments is not None]
        if diffs and all(d for d, _ in diffs):
            d, t = min(diffs, key=lambda x: len(x[0]))
            wrong_args.append((exp, t, d))
    if wrong_args:
        exp, t, diff = wrong_args[0]
        shown = ", ".join(f"{k}={_show(t.arguments.get(k) if isinstance(t.arguments, dict) else t.arguments)} "
                          f"(expected {_show(exp.arguments.get(k) if isinstance(exp.arguments, dict) else exp.arguments)})"
                          for k in diff[:3])
        return RuleMatch(category=Category.tool_arguments, confidence=0.75,
                         rationale=f"tool span {t.span_id} ({t.name}) was the expected action but with other arguments: "
                         f"{shown}", evidence=[t.span_id])
    if missing:
        names = ", ".join(repr(m.name) for m in missing[:4])
        ev = [t.span_id for t in f.tools[-1:]] or list(f.llm_span_ids[-1:])
        made = ", ".join(dict.fromkeys(t.name for t in f.tools)) or "none"
        return RuleMatch(category=Category.routing, confidence=0.7,
                         rationale=f"the expected action(s) {names} were never called (calls made: {made}; last step "
                         f"{ev[0] if ev else '?'}): the plan skipped a required step", evidence=ev)
    return None
