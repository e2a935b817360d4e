"""The target's own wording and conventions, compiled once for the rules and the detectors.

Built from `autofix.yaml`'s ``triage.vocabulary``, ``triage.documents``, ``triage.tool_errors``
and ``triage.rules`` (`autofix.config.triage_knowledge`), or from the neutral defaults.
Picklable: parallel readers receive it with the detection settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from autofix.config.triage_knowledge import (
    ARGUMENT_ERRORS,
    BUSINESS_ERRORS,
    CITATION_MARKS,
    CLARIFYING,
    CONTEXT_ERRORS,
    DECLINES,
    DELEGATION,
    INFORMATION_REQUEST,
    INFRASTRUCTURE_ERRORS,
    NEGATIVE_FEEDBACK,
    NOT_FOUND,
    REFERS_BACK,
    SOURCE_REQUESTS,
    DocumentConventions,
    ToolErrorWording,
    TriageVocabulary,
    with_defaults,
)

__all__ = ["TargetKnowledge", "ToolErrorKind"]

ToolErrorKind = str  # "context" | "infrastructure" | "business" | "arguments"
ERROR_KIND_ORDER = ("context", "infrastructure", "business", "arguments")


def _any(patterns: list[str], defaults: list[str]) -> re.Pattern[str]:
    pats = with_defaults(patterns, defaults)
    if not pats:
        return re.compile(r"(?!x)x")  # matches nothing: the target declared the list empty
    return re.compile("|".join(f"(?:{p})" for p in pats), re.I | re.M)


@dataclass(frozen=True)
class TargetKnowledge:
    """Compiled vocabulary, document conventions, tool-error wording and disabled rules."""

    negative_feedback: re.Pattern[str]
    source_requests: re.Pattern[str]
    clarifying: re.Pattern[str]
    not_found: re.Pattern[str]
    refers_back: re.Pattern[str]
    delegation: re.Pattern[str]
    information_request: re.Pattern[str]
    declines: re.Pattern[str]
    citation_marks: re.Pattern[str]
    format_requests: dict[str, re.Pattern[str]]
    tool_errors: dict[str, re.Pattern[str]]
    documents: DocumentConventions
    version_rx: re.Pattern[str] | None
    disabled_rules: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, triage: Any | None = None) -> TargetKnowledge:
        """From an `autofix.yaml` ``triage`` section (`TriageConfig`), or the neutral defaults when None."""
        v = getattr(triage, "vocabulary", None) or TriageVocabulary()
        d = getattr(triage, "documents", None) or DocumentConventions()
        e = getattr(triage, "tool_errors", None) or ToolErrorWording()
        rules = getattr(triage, "rules", None)
        return cls(
            negative_feedback=_any(v.negative_feedback, NEGATIVE_FEEDBACK),
            source_requests=_any(v.source_requests, SOURCE_REQUESTS),
            clarifying=_any(v.clarifying, CLARIFYING),
            not_found=_any(v.not_found, NOT_FOUND),
            refers_back=_any(v.refers_back, REFERS_BACK),
            delegation=_any(v.delegation, DELEGATION),
            information_request=_any(v.information_request, INFORMATION_REQUEST),
            declines=_any(v.declines, DECLINES),
            citation_marks=_any(v.citation_marks, CITATION_MARKS),
            format_requests={name: re.compile(p, re.I) for name, p in v.format_requests.items()},
            tool_errors={
                "context": _any(e.context, CONTEXT_ERRORS),
                "infrastructure": _any(e.infrastructure, INFRASTRUCTURE_ERRORS),
                "business": _any(e.business, BUSINESS_ERRORS),
                "arguments": _any(e.arguments, ARGUMENT_ERRORS),
            },
            documents=d,
            version_rx=re.compile(d.version_pattern) if d.version_pattern else None,
            disabled_rules=frozenset(rules.disable) if rules is not None else frozenset(),
        )

    def error_kind(self, error: str | None) -> ToolErrorKind | None:
        """Which kind of error a tool's or span's error text is, by the target's wording; None if unknown."""
        if not error:
            return None
        for kind in ERROR_KIND_ORDER:
            if self.tool_errors[kind].search(error):
                return kind
        return None

    def cites(self, output: str, doc_ids: list[str] | tuple[str, ...] = ()) -> bool:
        """Whether an answer names a source: a retrieved document id, or a citation mark of the vocabulary."""
        if not output:
            return False
        if any(d and d in output for d in doc_ids):
            return True
        return self.citation_marks.search(output) is not None

    def chunk_parent(self, doc_id: str) -> str:
        """The document a chunk id belongs to (the id itself unless a chunk separator is declared)."""
        sep = self.documents.chunk_separator
        return doc_id.split(sep, 1)[0] if sep and sep in doc_id else doc_id

    def version_of(self, doc_id: str) -> tuple[str, tuple[int, ...]] | None:
        """(stem, version numbers) of an id by the declared `version_pattern`, or None."""
        if self.version_rx is None:
            return None
        m = self.version_rx.match(self.chunk_parent(doc_id))
        if not m:
            return None
        return m.group("stem").lower(), tuple(int(x) for x in re.findall(r"\d+", m.group("version")))


DEFAULT_KNOWLEDGE = TargetKnowledge.from_config(None)
