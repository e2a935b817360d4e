"""What triage must know about one target that no rule may assume: its wording, ids and errors.

`triage.vocabulary` (how its users and its answers phrase things), `triage.documents` (how its
documents say they are chunks, versions, stale) and `triage.tool_errors` (how its tools word
their errors) in `autofix.yaml`. Every list is of case-insensitive regular expressions; the
defaults are neutral, plain English with no target's vocabulary. A team replaces a list by
declaring it, and adds to the defaults by listing ``default`` as one of its entries.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from autofix.config.fields import _Strict

__all__ = ["DocumentConventions", "RuleSettings", "ToolErrorWording", "TriageVocabulary", "with_defaults"]

DEFAULT_MARK = "default"


def with_defaults(patterns: list[str], defaults: list[str]) -> list[str]:
    """`patterns` with the entry ``default`` replaced by the neutral defaults."""
    out: list[str] = []
    for p in patterns:
        out.extend(defaults if p == DEFAULT_MARK else [p])
    return out


def _check_patterns(value: list[str]) -> list[str]:
    for p in value:
        if p == DEFAULT_MARK:
            continue
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"{p!r} is not a valid regular expression ({exc}); escape special characters with \\") from None
    return value


def _patterns(default: list[str], description: str) -> Any:
    return Field(default_factory=lambda: list(default), description=description + " (regular expressions, case-insensitive)")


NEGATIVE_FEEDBACK = [
    r"\b(wrong|incorrect|inaccurate|not (right|correct|true|accurate|helpful|useful|what i (asked|meant|wanted|needed)))\b",
    r"\b(useless|unhelpful|misleading|confusing|nonsense|made up|hallucinat\w*)\b",
    r"\b(does ?n[o']t|did ?n[o']t|does not|did not) (answer|help|work|make sense)\b",
    r"\b(out ?of ?date|outdated|no longer (true|valid|correct)|obsolete)\b",
    r"\b(that'?s|this is|it'?s) not\b|\bno,? (that|this)\b",
    r"\b(incomplete|missing|still (broken|not working))\b",
]
SOURCE_REQUESTS = [
    r"\bwhere (is|does|did|do) (this|that|it|you) (come|get|coming)\b",
    r"\bwhere('?s| is) (this|that) from\b",
    r"\b(cite|citations?|sources?|references?)\b",
    r"\bwhich (document|page|article|doc|file|policy|section)\b",
    r"\b(link|url) (to|for) (the|a|this|that)\b",
    r"\bhow do you know\b",
]
CLARIFYING = [
    r"\bcould you (please )?(clarify|be more specific|provide more|give more|tell me more)\b",
    r"\bcan you (clarify|be more specific|give me more|tell me more)\b",
    r"\b(need|needs) (a bit )?more (detail|details|information|context)\b",
    r"\bwhat do you mean\b",
    r"\bplease (clarify|specify|provide more)\b",
    r"\bwhich (one|of these|of them) do you mean\b",
]
NOT_FOUND = [
    r"\b(could ?n[o']t|can ?n[o']t|cannot|could not|unable to|did not|did ?n[o']t) find\b",
    r"\bno (information|details|mention|results?)\b",
    r"\bnot (mentioned|specified|stated|covered|included|available) in\b",
    r"\b(does ?n[o']t|does not|do not|don'?t) (say|mention|specify|contain)\b",
    r"\bdo ?n[o']t have (that|this|the|enough|any) information\b",
    r"\bi'?m not sure\b|\bi do not know\b|\bi don'?t know\b",
]
REFERS_BACK = [
    r"\bas i (said|mentioned|told you|asked)\b",
    r"\blike i (said|mentioned)\b",
    r"\bi (already|just) (said|told|mentioned|asked)\b",
    r"\bmy (previous|last|earlier|first) (question|message|request)\b",
    r"\byou (said|told me|mentioned) (earlier|before)\b",
    r"\bas (we|you) discussed\b",
]
DELEGATION = [
    r"\b(for me|on my behalf|for us|on our behalf)\b",
    r"^\W*(please |pls |kindly )?(can|could|would|will) you (please )?(?!tell|explain|describe|show|help|clarify|summari[sz]e|list|give me (some )?info)",
    r"^\W*(please|pls|kindly)\b",
    r"\b(i need|i want|i'?d like) you to\b",
    r"\bgo ahead and\b",
    # an imperative whose object is the user: "<verb> me ...", "<verb> my ..."
    r"^\W*(?!(?:tell|show|help|let|explain|remind|teach|give me (?:the |some |an? )?(?:info|information|details|idea|overview|steps|instructions|list|summary|example|link)s?)\b)[a-z]+ (me|my|us|our)\b",
]
INFORMATION_REQUEST = [
    r"^\W*(how|what|whats|what's|when|where|which|who|why|is|are|do|does|did|should|may|am)\b",
    r"\b(how (do|can|should) i|how to|what is|what are|tell me|explain|describe|show me how)\b",
]
DECLINES = [
    r"\b(can ?n[o']t|can not|cannot|unable to|not able to|no way to) (do|perform|make|change|book|complete|process|carry out)\b",
    r"\bdo ?n[o']t have (the )?(access|ability|permission|tools?)\b",
    r"\b(you('ll| will)? need to|you can do (this|that|it)|yourself|on your own)\b",
    r"\b(please (use|contact|submit|open|go to)|contact (the|your))\b",
]
FORMAT_REQUESTS = {
    "a list or steps": r"\b(step[- ]by[- ]step|steps|bullet(s| points)?|as a list|in a list|checklist|enumerate)\b",
    "JSON": r"\b(in|as) json\b|\bjson (format|object)\b",
    "a table": r"\b(as a table|in a table|tabular|a table of)\b",
}
CITATION_MARKS = [
    r"\b(sources?|references?|cited from|according to)\s*[:(]",
    r"\baccording to\b",
    r"https?://",
    r"\[\d{1,3}\]",
]


class TriageVocabulary(_Strict):
    """How the target's users and answers phrase what the rules look for. Replace a list to fit the
    target's language; keep ``default`` in a list to add to the neutral defaults instead."""

    negative_feedback: list[str] = _patterns(NEGATIVE_FEEDBACK, "A feedback comment that says the answer is wrong or useless")
    source_requests: list[str] = _patterns(SOURCE_REQUESTS, "A comment or request that asks where an answer comes from")
    clarifying: list[str] = _patterns(CLARIFYING, "An answer that asks the user to clarify the request")
    not_found: list[str] = _patterns(NOT_FOUND, "An answer that says the information was not found")
    refers_back: list[str] = _patterns(REFERS_BACK, "A request that refers to an earlier turn of the conversation")
    delegation: list[str] = _patterns(DELEGATION, "A request that asks the assistant to act on the user's behalf")
    information_request: list[str] = _patterns(INFORMATION_REQUEST, "A request that asks for information rather than an action")
    declines: list[str] = _patterns(DECLINES, "An answer that declines to act or tells the user to do it themselves")
    citation_marks: list[str] = _patterns(CITATION_MARKS, "An answer that names its source (besides a retrieved document id)")
    format_requests: dict[str, str] = Field(
        default_factory=lambda: dict(FORMAT_REQUESTS),
        description="Formats a request may ask for, by name: the regular expression that asks for it. The answer is "
        "checked for the format by name (a list or steps, JSON, a table) where autofix knows how; others only when "
        "their name is one of those.",
    )

    _v = field_validator(
        "negative_feedback", "source_requests", "clarifying", "not_found", "refers_back", "delegation",
        "information_request", "declines", "citation_marks",
    )(_check_patterns)


STALE_STATUSES = ["superseded", "deprecated", "archived", "obsolete", "outdated", "expired", "retired", "withdrawn",
                  "replaced", "inactive"]
STATUS_FIELDS = ["status", "doc_status", "state", "lifecycle"]
DATE_FIELDS = ["effective", "effective_date", "valid_from", "version_date", "updated_at", "updated", "last_modified",
               "date"]
TITLE_FIELDS = ["title", "name", "source_title"]


class DocumentConventions(_Strict):
    """How the target's retrieved documents say what they are. Read from each retrieved item and its
    ``metadata``; nothing is assumed from how ids look unless declared here."""

    status_fields: list[str] = Field(default_factory=lambda: list(STATUS_FIELDS),
                                     description="Fields naming a document's lifecycle status.")
    stale_statuses: list[str] = Field(default_factory=lambda: list(STALE_STATUSES),
                                      description="Status values that mean the document is no longer current.")
    date_fields: list[str] = Field(default_factory=lambda: list(DATE_FIELDS),
                                   description="Fields dating a document's version (ISO dates compare as text).")
    title_fields: list[str] = Field(default_factory=lambda: list(TITLE_FIELDS),
                                    description="Fields naming a document; two ids with one title are versions of it.")
    chunk_separator: str | None = Field(
        default=None,
        description="The separator between a document id and a chunk number in chunk ids (e.g. '#' for "
        "'leave-001#3'); unset: only an explicit chunk_id field says a hit is a chunk.",
    )
    version_pattern: str | None = Field(
        default=None,
        description="A regular expression over document ids with named groups 'stem' and 'version' (e.g. "
        r"'^(?P<stem>.+)-(?P<version>v\d+)$'); ids with one stem are versions, the larger version numbers newer. "
        "Unset: versions come only from titles and dates.",
    )

    @field_validator("version_pattern")
    @classmethod
    def _version_groups(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"{v!r} is not a valid regular expression ({exc})") from None
        if not {"stem", "version"} <= set(rx.groupindex):
            raise ValueError("version_pattern needs the named groups (?P<stem>...) and (?P<version>...)")
        return v


ARGUMENT_ERRORS = [
    r"\b(invalid|malformed|bad request|unprocessable)\b",
    r"\b(400|422)\b",
    r"\bdoes ?n[o']t match\b|\bdoes not match\b",
    r"\b(schema|validation)\b",
    r"\b(missing|required|unexpected|unknown|extra) (required )?(argument|parameter|field|property|key)s?\b",
    r"\bis not (of type|a valid|one of)\b|\bnot a valid\b|\badditional properties\b|\bwrong (format|type)\b",
    r"\b(not found|no such|does not exist|doesn'?t exist)\b",
    r"\b(does ?n[o']t|does not) add up\b|\bmismatch\w*\b",
]
BUSINESS_ERRORS = [
    r"\b(not (allowed|permitted|eligible|authori[sz]ed)|forbidden|prohibited|refused|denied|declined)\b",
    r"\b(cannot|can ?n[o']t|unable to) (be )?(cancel|modif|change|refund|exchange|return|book|approve|update)\w*\b",
    r"\b(exceeds?|over) (the )?(limit|maximum|quota|allowance)\b|\binsufficient\b",
    r"\b(already|no longer) (been )?\w+\b",
    r"\b(policy|business rule|rule) (violation|does not allow)\b|\bviolat\w+\b",
    r"\b(non-?\w+ status|status (is|was) \w+)\b",
    r"\bnot enough\b|\bno (seats|capacity|availability|slots?) left\b|\bnot available (on|for|at|in)\b|\bsold out\b",
    r"\b(403|409)\b",
]
INFRASTRUCTURE_ERRORS = [
    r"\b(time ?out|timed out|deadline exceeded)\b",
    r"\b(50[0-4]|internal server error|service unavailable|bad gateway|gateway timeout)\b",
    r"\b(connection (refused|reset|error|aborted)|network (error|unreachable)|unreachable|dns)\b",
    r"\b(rate limit|too many requests|429|throttl\w+|overloaded|capacity)\b",
    r"\b(unavailable|down for maintenance|out of memory|oom|crash\w*|segfault)\b",
    # exception class names, as Python tools and SDKs record them (TimeoutError, ConnectionResetError,
    # httpx.ReadTimeout, RateLimitError, APIConnectionError, ServiceUnavailableError)
    r"\b\w*(Timeout|Connection(Reset|Refused|Aborted)?|RateLimit|ServiceUnavailable)(Error|Exception)\b",
    r"\b\w*(Read|Connect|Pool|Write)Timeout\b",
]
CONTEXT_ERRORS = [
    r"\bcontext (length|window)\b|\bmaximum context\b|\btoo many tokens\b|\btoken limit\b|\bprompt is too long\b",
]


class ToolErrorWording(_Strict):
    """How the target's tools and services word their errors. An error that matches none is reported
    as a tool error of unknown kind (``unclassified``), not guessed."""

    arguments: list[str] = _patterns(ARGUMENT_ERRORS, "The call's arguments were wrong (schema, type, unknown id)")
    business: list[str] = _patterns(BUSINESS_ERRORS, "The tool refused the call on a business rule (not an error of form)")
    infrastructure: list[str] = _patterns(INFRASTRUCTURE_ERRORS, "The tool or its service failed (timeouts, 5xx, outages)")
    context: list[str] = _patterns(CONTEXT_ERRORS, "The model's context window was exceeded")

    _v = field_validator("arguments", "business", "infrastructure", "context")(_check_patterns)


class RuleSettings(_Strict):
    """Which triage rules run."""

    disable: list[str] = Field(default_factory=list, description="Rule names not to run (see `autofix triage rules`).")
