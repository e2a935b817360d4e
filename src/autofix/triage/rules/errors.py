"""Rules on errors the spans recorded: the call's arguments, the tool's business rules, the context
window, the infrastructure. Which kind an error is comes from the target's declared wording
(`triage.tool_errors`) or, for arguments, from the tool's own JSON schema. Errors the assistant
recovered from (a later call of the same tool succeeded) are not causes."""

from __future__ import annotations

from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts
from autofix.triage.records import Category
from autofix.triage.rules.base import RuleMatch, quote, rule


@rule("latency_only", order=200)
def latency_only(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """The only failure signal is slowness."""
    if not f.signals or f.signal_names != {"latency_outlier"}:
        return None
    sig = next(s for s in f.signals if s[1] == "latency_outlier")
    ev = [x for x in (f.chain_span_id,) if x]
    where = f" (chain span {f.chain_span_id})" if f.chain_span_id else ""
    return RuleMatch(category=Category.infrastructure, confidence=0.7,
                     rationale=f"the only failure signal is slowness{where}: {sig[2]}", evidence=ev)


@rule("tool_arguments_invalid", order=210)
def tool_arguments_invalid(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A tool call's arguments break the tool's JSON schema, or the tool says they are wrong."""
    for t in f.tools:
        if t.recovered:
            continue
        arg_error = t.error_kind == "arguments"
        if not (t.schema_problem or arg_error):
            continue
        bits = []
        if t.schema_problem:
            bits.append(f"its arguments {t.args} break the tool's json_schema ({t.schema_problem})")
        if t.error:
            bits.append(f"the tool answered {quote(t.error, 160)}")
        conf = 0.9 if t.schema_problem and arg_error else 0.85 if t.schema_problem else 0.75
        return RuleMatch(category=Category.tool_arguments, confidence=conf,
                         rationale=f"tool span {t.span_id} ({t.name}): " + "; ".join(bits)
                         + ": the call's arguments are wrong, not the tool", evidence=[t.span_id])
    return None


@rule("tool_rejected_by_business_rule", order=220)
def tool_rejected_by_business_rule(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A tool refused a well-formed call on the business's own rules: the assistant attempted an action
    those rules forbid, so its instructions must state the rule (or tell it to check first)."""
    for t in f.tools:
        if t.recovered or t.error_kind != "business" or t.schema_problem:
            continue
        return RuleMatch(
            category=Category.prompt, confidence=0.55,
            rationale=f"tool span {t.span_id} ({t.name}) refused the call {t.args} on a business rule "
            f"({quote(t.error or '', 160)}): the arguments are well formed and the service is up, so the assistant "
            "attempted an action the rules do not allow; its instructions should state the rule or have it check first",
            evidence=[t.span_id],
        )
    return None


@rule("tool_fails_since_version", order=230)
def tool_fails_since_version(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A tool fails on (nearly) every call under this trace's version and works under the others."""
    for t in f.tools:
        if t.recovered or not t.error:
            continue
        hit = ctx.tool_failure_by_version(t.name, f.versions)
        if hit is None:
            continue
        vk, vv, fails, calls, ofails, ocalls = hit
        return RuleMatch(
            category=Category.tool_arguments, confidence=0.75,
            rationale=f"tool span {t.span_id} ({t.name}) failed ({quote(t.error, 120)}); the tool fails on {fails} of "
            f"{calls} calls under {vk} {vv!r} and on {ofails} of {ocalls} under other {vk} versions: the calls "
            f"changed with that version, the service did not",
            evidence=[t.span_id],
        )
    return None


@rule("context_overflow", order=240)
def context_overflow(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A span failed because the model's context window was exceeded."""
    spans = [*((t.span_id, "tool", t.name, t.error) for t in f.tools if t.error and not t.recovered), *f.errors]
    for sid, kind, name, err in spans:
        if ctx.knowledge.error_kind(err) == "context":
            return RuleMatch(category=Category.context, confidence=0.8,
                             rationale=f"{kind} span {sid} ({name}) failed because the context was too long: "
                             f"{quote(err, 160)}", evidence=[sid])
    return None


@rule("infrastructure_error", order=250)
def infrastructure_error(f: TraceFacts, ctx: TriageContext) -> RuleMatch | None:
    """A tool, model call or the request failed in a way the target's wording says is an outage,
    timeout or server error; an error of unknown wording is only a hint."""
    for t in f.tools:
        if t.error and not t.recovered and t.error_kind == "infrastructure":
            return RuleMatch(category=Category.infrastructure, confidence=0.8,
                             rationale=f"tool span {t.span_id} ({t.name}) failed with {quote(t.error, 160)}: "
                             "the tool or its service failed, not the call", evidence=[t.span_id])
    for sid, kind, name, err in f.errors:
        err_kind = ctx.knowledge.error_kind(err)
        if err_kind in ("infrastructure", None):
            conf = 0.8 if err_kind else 0.55
            return RuleMatch(category=Category.infrastructure, confidence=conf,
                             rationale=f"{kind} span {sid} ({name}) failed: {quote(err, 160)}", evidence=[sid])
    if f.trace_error:
        ev = [x for x in (f.chain_span_id,) if x]
        return RuleMatch(category=Category.infrastructure, confidence=0.6,
                         rationale=f"the request itself failed: {quote(f.trace_error, 160)}", evidence=ev)
    unknown = next((t for t in f.tools if t.error and not t.recovered and t.error_kind is None and not t.schema_problem), None)
    if unknown is not None:
        return RuleMatch(category=Category.unclassified, confidence=0.0,
                         rationale=f"tool span {unknown.span_id} ({unknown.name}) failed with {quote(unknown.error or '', 160)}, "
                         "whose wording matches no declared kind of tool error (declare it in triage.tool_errors: "
                         "arguments, business, infrastructure)", evidence=[unknown.span_id])
    return None
