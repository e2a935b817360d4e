"""The native trace format: pydantic v2 records, validation summaries, field caps.

One production trace (one line of the native JSONL) is a `Trace`:

    {"trace_id", "session_id", "timestamp", "input", "output", "spans": [Span],
     "feedback": [Feedback], "scores": [Score], "versions": {str: str},
     "metadata": {"task_type", "tenant", ...}}

Validation is strict where a wrong type would mislead the later rooms (ids and
names must be strings, span kinds and feedback kinds come from fixed sets, a
timestamp must be a time, a retrieval span's output must be a list of documents
with ids, span timings must be numbers) and lenient elsewhere: `input`/`output`
are any JSON value, `metadata` and span `attributes` take any keys, and unknown
keys on a trace, span, document, feedback or score are kept (pydantic
``extra="allow"``), never dropped.

Normalisations, each documented on its field:
- `timestamp` is optional (None when the trace has none; readers then keep the
  traces in file order); it is an ISO 8601 string or a number since the epoch:
  seconds, or milliseconds when it is over 1e11 (1e11 seconds is the year 5138);
  a timestamp without a zone is taken as UTC;
- a span without `span_id` gets ``"<trace_id>:<index>"`` so evidence can cite it;
- `versions` values that are numbers become strings (``"prompt": 3`` -> ``"3"``);
- a document id that is an integer becomes a string (OpenInference allows both).

Huge fields: any string longer than `max_field_chars` (default 1,000,000
characters, about 1 MB of text) anywhere in a record is *truncated*, not
quarantined: the head is kept, a marker naming the original length is appended,
and the dotted path of the field is recorded in `Trace.truncated`. The reasoning:
one oversized tool output or prompt should not hide the rest of an otherwise good
trace from detection, and the marker plus `truncated` make the cut visible.
Records too large to even parse (a line over the reader's `max_record_bytes`)
are quarantined by the readers instead.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_MAX_FIELD_CHARS",
    "FEEDBACK_KINDS",
    "SPAN_KINDS",
    "Feedback",
    "RetrievedDoc",
    "Score",
    "Span",
    "Trace",
    "TRUNCATION_MARKER",
    "build_trace",
    "feedback_from_signal",
    "summarize_validation_error",
    "TOOL_SCHEMA_ATTRIBUTES",
    "tool_args_schema",
    "truncate_long_strings",
]

SpanKind = Literal["llm", "retrieval", "tool", "router", "chain"]
FeedbackKind = Literal["thumb_down", "thumb_up", "comment", "rephrase", "abandon", "escalation"]
SPAN_KINDS: tuple[str, ...] = ("llm", "retrieval", "tool", "router", "chain")
FEEDBACK_KINDS: tuple[str, ...] = (
    "thumb_down",
    "thumb_up",
    "comment",
    "rephrase",
    "abandon",
    "escalation",
)

DEFAULT_MAX_FIELD_CHARS = 1_000_000
# Appended to a truncated string; `{n}` is the original length in characters.
TRUNCATION_MARKER = "…[autofix: truncated, {n} chars in total]"

Number = Union[StrictInt, StrictFloat]
ScalarValue = Union[StrictBool, StrictInt, StrictFloat, StrictStr, None]


EPOCH_MS_ABOVE = 1e11
"""A numeric timestamp over this is in milliseconds since the epoch, else in seconds."""
_EPOCH_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def epoch_to_datetime(value: float) -> datetime:
    """An aware UTC datetime from seconds since the epoch, or milliseconds when over `EPOCH_MS_ABOVE`."""
    x = float(value)
    if abs(x) > EPOCH_MS_ABOVE:
        x /= 1000.0
    try:
        return datetime.fromtimestamp(x, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"timestamp {value!r} is not a time (seconds or milliseconds since the epoch)") from None


class _Record(BaseModel):
    # Unknown keys are kept (not silently dropped) and round-trip through model_dump.
    model_config = ConfigDict(extra="allow", validate_assignment=False)


class RetrievedDoc(_Record):
    """One document a retrieval span returned."""

    doc_id: StrictStr = Field(min_length=1)
    score: Number | None = None
    text: StrictStr | None = None

    @field_validator("doc_id", mode="before")
    @classmethod
    def _int_ids_are_strings(cls, v: Any) -> Any:
        # OpenInference's document.id is "String/Integer"; bools are not ids.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v


class Span(_Record):
    """One step of a trace: an LLM call, a retrieval, a tool call, a routing decision, glue."""

    span_id: StrictStr | None = Field(default=None, min_length=1)
    parent_id: StrictStr | None = None
    kind: SpanKind
    name: StrictStr
    input: Any = None
    output: Any = None
    error: StrictStr | None = None
    start_ms: Number | None = None
    end_ms: Number | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _retrieval_output_is_documents(self) -> Span:
        # The contract: a retrieval span's output is a list of {"doc_id", "score", "text"?}.
        if self.kind == "retrieval" and self.output is not None:
            if not isinstance(self.output, list):
                raise ValueError(
                    "a retrieval span's output must be a list of "
                    '{"doc_id", "score", "text"?} or null'
                )
            self.output = [
                d if isinstance(d, RetrievedDoc) else RetrievedDoc.model_validate(d)
                for d in self.output
            ]
        return self

    @property
    def documents(self) -> list[RetrievedDoc]:
        """The retrieved documents of a retrieval span (empty for other kinds)."""
        if self.kind == "retrieval" and isinstance(self.output, list):
            return list(self.output)
        return []

    @property
    def args_schema(self) -> dict[str, Any] | None:
        """The JSON schema of a tool span's arguments (see `tool_args_schema`); None when it declares none."""
        return tool_args_schema(self.attributes)

    @property
    def duration_ms(self) -> float | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return float(self.end_ms) - float(self.start_ms)


class Feedback(_Record):
    """A user signal on the trace. `span_id` (optional) names the span it was given on."""

    kind: FeedbackKind
    value: Any = None
    comment: StrictStr | None = None
    span_id: StrictStr | None = None


class Score(_Record):
    """A score from an evaluator, a judge or a human label. `source`: who produced it."""

    name: StrictStr = Field(min_length=1)
    value: ScalarValue = None
    rationale: StrictStr | None = None
    source: StrictStr | None = None
    span_id: StrictStr | None = None


class Trace(_Record):
    """One production interaction of the assistant, with what the user and judges said of it."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=False)

    trace_id: StrictStr = Field(min_length=1)
    session_id: StrictStr | None = None
    timestamp: datetime | None = None
    input: Any = None
    output: Any = None
    spans: list[Span] = Field(default_factory=list)
    feedback: list[Feedback] = Field(default_factory=list)
    scores: list[Score] = Field(default_factory=list)
    versions: dict[str, StrictStr] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Dotted paths of the fields that were cut to the size cap when read (see module doc).
    truncated: list[str] = Field(default_factory=list)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp_is_a_time(cls, v: Any) -> Any:
        # ISO 8601 strings, or seconds since the epoch (milliseconds over EPOCH_MS_ABOVE).
        if v is None or isinstance(v, datetime):
            return v
        if isinstance(v, str) and _EPOCH_NUMBER.fullmatch(v.strip()):
            v = float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return epoch_to_datetime(v)
        if not isinstance(v, str):
            raise ValueError(
                "timestamp must be an ISO 8601 string (2024-05-01T12:00:00Z), seconds or milliseconds since "
                "the epoch, or null"
            )
        return v

    @field_validator("timestamp", mode="after")
    @classmethod
    def _timestamp_is_aware(cls, v: datetime | None) -> datetime | None:
        # A timestamp without a zone is taken as UTC, so every trace compares with every other.
        if v is None:
            return None
        return v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)

    @field_validator("versions", mode="before")
    @classmethod
    def _version_numbers_are_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {
                k: (str(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x)
                for k, x in v.items()
            }
        return v

    @field_validator("metadata", mode="after")
    @classmethod
    def _known_metadata_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in ("task_type", "tenant"):
            if v.get(key) is not None and not isinstance(v[key], str):
                raise ValueError(f"metadata.{key} must be a string")
        return v

    @model_validator(mode="after")
    def _span_ids(self) -> Trace:
        seen: set[str] = set()
        for i, span in enumerate(self.spans):
            sid = span.span_id
            if sid is None:
                # Plain __dict__ write: no assignment validation needed for a str we built.
                sid = span.__dict__["span_id"] = f"{self.trace_id}:{i}"
            if sid in seen:
                raise ValueError(f"duplicate span_id {sid!r} (spans.{i})")
            seen.add(sid)
        return self

    @property
    def task_type(self) -> str | None:
        return self.metadata.get("task_type")

    @property
    def tenant(self) -> str | None:
        return self.metadata.get("tenant")

    def span(self, span_id: str) -> Span | None:
        """The span with this id, or None."""
        for s in self.spans:
            if s.span_id == span_id:
                return s
        return None

    def to_json_line(self) -> str:
        """The trace as one native JSONL line (no trailing newline)."""
        return self.model_dump_json(exclude_defaults=False)


# --------------------------------------------------------------------------- tool schemas

TOOL_SCHEMA_ATTRIBUTES: tuple[str, ...] = ("json_schema", "schema", "parameters", "tool.json_schema", "tool.parameters")
"""Span attributes that may hold a tool's argument schema, in the order they are tried."""
_SCHEMA_WORDS = frozenset({"$schema", "type", "properties", "required", "items", "anyOf", "oneOf", "allOf", "$ref"})


def as_dict(value: Any) -> dict[str, Any] | None:
    """A dict from a dict or a JSON-object string; None otherwise."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip()[:1] == "{":
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _unwrap_tool_definition(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The argument schema inside a tool definition, or the object itself when it is a bare schema.

    Tool definitions wrap it: OpenAI ``{"type": "function", "function": {"name", "parameters"}}``
    (the shape OpenInference's ``tool.json_schema`` carries), a bare function ``{"name",
    "parameters"}``, Anthropic ``{"name", "input_schema"}``, MCP ``{"name", "inputSchema"}``.
    A definition that names no schema (``{"type": "function", "function": {"name": "x"}}``) gives None.
    """
    fn = obj.get("function")
    wrapped = isinstance(fn, dict)
    if wrapped:
        obj = fn
    for key in ("input_schema", "inputSchema"):
        if key in obj:
            return as_dict(obj[key])
    if "parameters" in obj and (wrapped or "name" in obj or "description" in obj):
        return as_dict(obj["parameters"])
    if wrapped or obj.get("type") == "function" or ("name" in obj and not _SCHEMA_WORDS & obj.keys()):
        return None  # a tool definition that declares no argument schema
    return obj


def tool_args_schema(attributes: Any) -> dict[str, Any] | None:
    """The JSON schema a tool span's arguments must follow, from its attributes; None when there is none.

    Tried in order (`TOOL_SCHEMA_ATTRIBUTES`): ``json_schema``, ``schema``, ``parameters`` and the raw
    OpenInference names ``tool.json_schema``, ``tool.parameters``. A value may be an object or a JSON
    string, and a bare schema or a tool definition wrapping one (see `_unwrap_tool_definition`).
    ``parameters`` and ``tool.parameters`` are also used for the call's arguments by some
    instrumentations, so they count only when they look like a schema (``type``, ``properties``, ...).
    The triage rules and the `tool_args_valid` check both read schemas through this function.
    """
    if not isinstance(attributes, dict):
        return None
    for key in TOOL_SCHEMA_ATTRIBUTES:
        obj = as_dict(attributes.get(key))
        if obj is None:
            continue
        schema = _unwrap_tool_definition(obj)
        if schema is None:
            continue
        if key.endswith("parameters") and not (_SCHEMA_WORDS & schema.keys()):
            continue  # the call's arguments, not a schema
        return schema
    return None


# --------------------------------------------------------------------------- field caps


def truncate_long_strings(obj: Any, max_chars: int, path: str = "") -> tuple[Any, list[str]]:
    """Cut every string longer than `max_chars` in a JSON value; return it and the cut paths.

    Walks dicts and lists iteratively-deep (recursion depth is bounded by the JSON
    nesting, which the json module itself limits). Returns the same object when
    nothing was cut, so the common case allocates nothing.
    """
    cut: list[str] = []
    out = _truncate(obj, max_chars, path, cut)
    return out, cut


def _truncate(obj: Any, cap: int, path: str, cut: list[str]) -> Any:
    if isinstance(obj, str):
        if len(obj) > cap:
            cut.append(path or "<root>")
            return obj[:cap] + TRUNCATION_MARKER.format(n=len(obj))
        return obj
    if isinstance(obj, dict):
        changed = None
        for k, v in obj.items():
            if isinstance(v, (str, dict, list)):
                nv = _truncate(v, cap, f"{path}.{k}" if path else str(k), cut)
                if nv is not v:
                    if changed is None:
                        changed = dict(obj)
                    changed[k] = nv
        return obj if changed is None else changed
    if isinstance(obj, list):
        changed_l = None
        for i, v in enumerate(obj):
            if isinstance(v, (str, dict, list)):
                nv = _truncate(v, cap, f"{path}.{i}" if path else str(i), cut)
                if nv is not v:
                    if changed_l is None:
                        changed_l = list(obj)
                    changed_l[i] = nv
        return obj if changed_l is None else changed_l
    return obj


# --------------------------------------------------------------------------- validation


def summarize_validation_error(err: ValidationError, limit: int = 5) -> str:
    """`spans.0.kind: Input should be 'llm', ...; trace_id: Field required (+2 more)`."""
    parts = []
    errors = err.errors(include_url=False, include_input=False)
    for e in errors[:limit]:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "<record>"
        msg = e.get("msg", "invalid")
        parts.append(f"{loc}: {msg}")
    more = len(errors) - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def build_trace(
    raw: Any, *, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS, source_chars: int | None = None
) -> Trace:
    """Cap the huge strings of a raw trace dict, then validate it into a `Trace`.

    `source_chars`: the length of the JSON text `raw` was parsed from, when known; no
    string in it can be longer, so a record shorter than the cap skips the scan.
    Raises `pydantic.ValidationError` (summarise it with `summarize_validation_error`)
    or `TypeError` when `raw` is not a JSON object.
    """
    if not isinstance(raw, dict):
        raise TypeError(f"a trace must be a JSON object, got {type(raw).__name__}")
    if source_chars is not None and source_chars <= max_field_chars:
        return Trace.model_validate(raw)
    capped, cut = truncate_long_strings(raw, max_field_chars)
    if cut:
        capped = dict(capped)
        prior = capped.get("truncated")
        capped["truncated"] = (list(prior) if isinstance(prior, list) else []) + cut
    return Trace.model_validate(capped)


# --------------------------------------------------------------------------- feedback mapping

_NEG_LABELS = {
    "thumbs_down", "thumb_down", "thumbsdown", "down", "negative", "bad", "dislike",
    "unhelpful", "not_helpful", "no", "false", "👎",
}  # fmt: skip
_POS_LABELS = {
    "thumbs_up", "thumb_up", "thumbsup", "up", "positive", "good", "like", "helpful",
    "yes", "true", "👍",
}  # fmt: skip
_THUMB_NAMES = {
    "user_feedback", "feedback", "thumbs", "thumb", "thumbs_up_down", "thumbs_up",
    "thumbs_down", "user_rating", "rating", "user_score", "helpful", "helpfulness_user",
    "end_user_feedback", "user_thumbs",
}  # fmt: skip
_DIRECT_KINDS = {
    "rephrase": "rephrase", "rephrased": "rephrase", "user_rephrase": "rephrase",
    "abandon": "abandon", "abandoned": "abandon", "abandonment": "abandon",
    "escalation": "escalation", "escalated": "escalation", "escalate": "escalation",
    "handoff": "escalation", "human_handoff": "escalation",
    "comment": "comment", "user_comment": "comment",
}  # fmt: skip


def _norm(s: Any) -> str:
    return re.sub(r"[\s\-/.]+", "_", str(s).strip().lower()) if s is not None else ""


def feedback_from_signal(
    name: str | None,
    *,
    score: Any = None,
    label: Any = None,
    comment: str | None = None,
    span_id: str | None = None,
) -> Feedback | None:
    """Map a named signal (a Langfuse score, a Phoenix annotation) to user `Feedback`.

    Returns None when the signal is not user feedback (an evaluator's score, say);
    the importers then keep it as a `Score`. Rules, in order:
    - a name or label that *is* a feedback kind (rephrase, abandon, escalation,
      comment) gives that kind;
    - a thumbs label (thumbs_down/up, negative/positive, 👎/👍 ...) gives a thumb;
    - a feedback-like name (user-feedback, feedback, thumbs, user_rating ...) with a
      numeric or boolean value gives thumb_up for > 0 / true and thumb_down for
      <= 0 / false, so both the 0/1 and the -1/1 conventions work.
    """
    n, lab = _norm(name), _norm(label)
    comment = comment if isinstance(comment, str) and comment else None
    value = score if score is not None else label
    for key in (n, lab):
        if key in _DIRECT_KINDS:
            kind = _DIRECT_KINDS[key]
            v = value if kind != "comment" else (comment or value)
            return Feedback(kind=kind, value=v, comment=comment, span_id=span_id)
    if lab in _NEG_LABELS and (n in _THUMB_NAMES or lab.startswith("thumb") or lab == "👎"):
        return Feedback(kind="thumb_down", value=value, comment=comment, span_id=span_id)
    if lab in _POS_LABELS and (n in _THUMB_NAMES or lab.startswith("thumb") or lab == "👍"):
        return Feedback(kind="thumb_up", value=value, comment=comment, span_id=span_id)
    if n in _THUMB_NAMES:
        if lab in _NEG_LABELS:
            return Feedback(kind="thumb_down", value=value, comment=comment, span_id=span_id)
        if lab in _POS_LABELS:
            return Feedback(kind="thumb_up", value=value, comment=comment, span_id=span_id)
        if isinstance(score, bool):
            kind = "thumb_up" if score else "thumb_down"
            return Feedback(kind=kind, value=score, comment=comment, span_id=span_id)
        if isinstance(score, (int, float)):
            kind = "thumb_up" if score > 0 else "thumb_down"
            return Feedback(kind=kind, value=score, comment=comment, span_id=span_id)
        if score is None and label is None and comment:
            return Feedback(kind="comment", value=comment, comment=comment, span_id=span_id)
    return None
