"""The LLM root-cause classifier: for what no deterministic rule explains.

A DSPy module over litellm (`RootCause`, run with `dspy.Predict` and the JSON adapter)
reads the evidence text of a failure (`autofix.triage.evidence`) and answers a root-cause
category, a confidence, a rationale and the span ids it rests on. The answer is checked
as structured output (`Verdict`, pydantic):

- the category must be one of the identifiers of `Category`; an unknown one is invalid;
- the confidence must be a number in [0, 1]; anything else is *rejected*, not clamped:
  a model that cannot keep to the stated range is not trusted with the category either;
- the rationale must be non-empty; it is trimmed to one line of at most
  `RATIONALE_CHARS` characters;
- span ids the trace does not hold are dropped (the answer is kept).

An invalid answer is asked again, up to `retries` more times, each retry at a higher
temperature and with a distinct rollout id so that no cache (DSPy's or litellm's)
hands back the same bad answer. When every attempt fails, `classify` returns None and
the pipeline reports the failure as `unclassified`; the classifier never raises on a
model's answer and never makes a category up. The model answering `unclassified`
itself also ends as None (with the model's rationale as the reason).

Outcomes are cached in SQLite, keyed by (model, classifier version, sha256 of the
evidence text): a diagnosis, and also the None outcome with its reason
("unclassifiable"), so a model that cannot answer (the embedded 135M model cannot
produce the JSON) is not asked again on every run. `refresh=True` bypasses the cache
and overwrites the entry. An evidence text too long for the model's context is cached as
unclassifiable too; transient call failures (timeouts, connection errors, rate limits,
authentication, a wrong model name) are *not* cached: the next run asks again.

The prompt is the `RootCause` signature's docstring; it can be optimized against human
labels with any DSPy optimizer over `LLMClassifier.module`, saved with `save(path)` and
loaded with `load(path)` (or `program_path=`). A loaded program changes the cache key.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import re
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import dspy
from pydantic import BaseModel, ValidationError, field_validator

from autofix.traces.schema import Trace
from autofix.triage.evidence import DEFAULT_MAX_CHARS, build_evidence
from autofix.triage.records import Category, Diagnosis, Failure

__all__ = [
    "CLASSIFIER_VERSION",
    "CategoryName",
    "ClassifierCache",
    "LLMClassifier",
    "Outcome",
    "RootCause",
    "Verdict",
]

log = logging.getLogger(__name__)

CLASSIFIER_VERSION = "1"
"""Bump when the signature (its docstring, fields or their descriptions) or the validation changes."""

RATIONALE_CHARS = 600
_TRANSIENT = "transient"
RETRY_TEMPERATURES = (0.7, 1.0)
"""Temperature of the 1st, 2nd, ... retry (the first attempt uses the LM's own, normally 0)."""

CategoryName = Literal[
    "prompt",
    "retrieval",
    "routing",
    "tool_arguments",
    "missing_capability",
    "context",
    "memory",
    "data_freshness",
    "model_limitation",
    "infrastructure",
    "evaluation",
    "unclassified",
]
assert set(CategoryName.__args__) == {c.value for c in Category}, "CategoryName must list every Category"


class RootCause(dspy.Signature):
    """Find the root cause of one failed interaction of an AI assistant, from the evidence of its trace.

    The evidence gives the user's request, the assistant's answer and the spans of the trace, one per
    line, tagged `[span <id> <kind> <name>]` (router decisions, retrieval with the documents it returned,
    tool calls with their arguments and errors, model calls), then why the interaction counts as failed:
    signals, user feedback, judge scores. Choose the ONE category whose owner must act to fix it, cite the
    ids of the spans that show it, and judge only from the evidence. When several steps went wrong, name
    the earliest one in the pipeline (routing, then retrieval, then context, then prompt, then the model):
    a later step cannot do better than the input it was given.

    Categories, each with its telltale evidence:
    - routing: the planner chose the wrong path: answered directly without searching although the request
      needs company or domain knowledge; asked for clarification on a clear request; searched instead of
      calling the tool the request needs; called the wrong tool. A router span whose decision does not fit
      the request; no retrieval span for a knowledge question.
    - retrieval: the search ran but missed: the document or passage holding the answer is absent or ranked
      low, or only part of the needed facts came back. A retrieval span whose documents do not contain the
      answer; an incomplete answer or "I couldn't find".
    - tool_arguments: the right tool was called with wrong, malformed or missing arguments (wrong date or
      id format, a value the tool's schema rejects, arguments that contradict the request). A tool span with
      a 4xx or validation error naming an argument, or arguments that break its schema.
    - missing_capability: the user asks the assistant to DO something no tool or product feature supports
      (change an account, book, approve, buy); it can only explain or refuse, users escalate.
    - context: the right documents were retrieved but the context handed to the model was built badly:
      the relevant passage cut off, dropped, buried or mixed with irrelevant text.
    - prompt: the instructions or answer template are at fault although routing, retrieval and tools were
      right: wrong format, tone or length; missing citations or sources; an instruction ignored; the answer
      not grounded in the excerpts it was given. Format or citation checks fail; users ask where it is from.
    - memory: a multi-turn failure: the assistant forgot, contradicted or re-asked something settled earlier
      in the same session.
    - data_freshness: the knowledge base itself is out of date: the retrieved document is superseded,
      expired or states old numbers, and the answer repeats it faithfully. Document status or dates, or
      users saying the information is outdated.
    - model_limitation: route, documents, tools and instructions were all right, yet the model misread,
      miscalculated or invented content in a way better prompts or data would not fix.
    - infrastructure: an operational fault: timeouts, 5xx or connection errors, rate limits, crashes, empty
      output from a failed service, extreme latency.
    - evaluation: the answer is actually right and the judge, check or score that flagged it is wrong (a
      scorer bug): a low score whose rationale contradicts the evidence, a satisfied user.
    - unclassified: the evidence supports none of the above.
    """

    evidence: str = dspy.InputField(desc="the failed interaction: request, answer, spans tagged with their ids, signals")
    rationale: str = dspy.OutputField(
        desc="two or three sentences a reviewer can check against the cited spans: what went wrong, where, and why "
        "this category rather than the neighbouring ones"
    )
    category: CategoryName = dspy.OutputField(desc="the root-cause category, exactly one of the identifiers")
    confidence: float = dspy.OutputField(desc="probability that the category is right, a number from 0.0 to 1.0")
    evidence_span_ids: list[str] = dspy.OutputField(
        desc="ids of the spans the rationale rests on, copied exactly from the `[span <id> ...]` tags"
    )



# Python 3.11 keeps the docstring's indentation; the model need not read it.
RootCause = RootCause.with_instructions(inspect.cleandoc(RootCause.__doc__ or ""))

class Verdict(BaseModel):
    """The model's answer, validated: the structured output the classifier accepts."""

    category: Category
    confidence: float
    rationale: str
    evidence_span_ids: list[str] = []

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence_in_unit_interval(cls, v: Any) -> float:
        if isinstance(v, bool):
            raise ValueError("confidence must be a number, got a boolean")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"confidence must be a number in [0, 1], got {v!r}") from None
        if not math.isfinite(x) or not 0.0 <= x <= 1.0:
            raise ValueError(f"confidence must be a number in [0, 1], got {v!r}")
        return x

    @field_validator("rationale", mode="before")
    @classmethod
    def _rationale_trimmed(cls, v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError("rationale must be text")
        text = " ".join(v.split())
        if not text:
            raise ValueError("rationale is empty")
        return text if len(text) <= RATIONALE_CHARS else text[: RATIONALE_CHARS - 1] + "…"

    @field_validator("evidence_span_ids", mode="before")
    @classmethod
    def _ids_as_strings(cls, v: Any) -> list[str]:
        if v is None:
            return []
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)):
            raise ValueError("evidence_span_ids must be a list of span ids")
        return [str(x) for x in v if x is not None]


@dataclass
class Outcome:
    """What `LLMClassifier.explain` found: the diagnosis or, when None, why."""

    diagnosis: Diagnosis | None
    reason: str = ""
    cached: bool = False
    calls: int = 0
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- cache


class ClassifierCache:
    """SQLite store of classifier outcomes keyed by (model, version, sha256 of the evidence text)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                """CREATE TABLE IF NOT EXISTS llm_diagnoses (
                    model TEXT NOT NULL,
                    version TEXT NOT NULL,
                    evidence_sha256 TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('diagnosis', 'unclassifiable')),
                    diagnosis TEXT,
                    reason TEXT NOT NULL DEFAULT '',
                    created_at TEXT NOT NULL,
                    PRIMARY KEY (model, version, evidence_sha256)
                )"""
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, model: str, version: str, digest: str) -> tuple[str, dict[str, Any] | None, str] | None:
        """(status, diagnosis fields or None, reason) of a stored outcome, or None when there is none."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT status, diagnosis, reason FROM llm_diagnoses WHERE model=? AND version=? AND evidence_sha256=?",
                (model, version, digest),
            ).fetchone()
        if row is None:
            return None
        status, payload, reason = row
        return status, (json.loads(payload) if payload else None), reason

    def put(self, model: str, version: str, digest: str, diagnosis: Diagnosis | None, reason: str = "") -> None:
        payload = None
        if diagnosis is not None:
            payload = diagnosis.model_dump_json(exclude={"trace_id"})
        with self._lock, closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO llm_diagnoses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    model,
                    version,
                    digest,
                    "diagnosis" if diagnosis is not None else "unclassifiable",
                    payload,
                    reason,
                    datetime.now(timezone.utc).isoformat(timespec="seconds"),
                ),
            )

    def __len__(self) -> int:
        with closing(self._connect()) as db:
            return int(db.execute("SELECT COUNT(*) FROM llm_diagnoses").fetchone()[0])


# --------------------------------------------------------------------------- classifier


def _error_kind(exc: BaseException) -> Literal["invalid", "permanent", "transient"]:
    """How a failed attempt ends: `invalid` answer (ask again), `permanent` (cache it), `transient` (don't)."""
    from dspy.utils import exceptions as dx

    if isinstance(exc, (dx.AdapterParseError, ValidationError)):
        return "invalid"
    if isinstance(exc, dx.ContextWindowExceededError) or _PERMANENT_MESSAGE.search(str(exc)):
        # The evidence does not fit the model's context, or the provider refuses its content:
        # the same evidence fails the same way on every run.
        return "permanent"
    # Timeouts, rate limits, authentication, transport, server errors, a wrong model name, a missing
    # local model: not the evidence's fault; the next run asks again.
    return "transient"


_PERMANENT_MESSAGE = re.compile(
    r"exceed\w* (the )?context|context (window|length)|maximum context|content.?(policy|filter)", re.I
)


def _clip_reason(text: object, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_ID_NOISE = re.compile(r"^\s*[\[\(`'\"]*\s*(span\s+)?|[\]\)`'\"]*\s*$", re.I)


class LLMClassifier:
    """Root-cause classification by a language model, validated, retried and cached.

    `model`: a litellm model string (`model.judge` of autofix.yaml); the embedded
    `autofix-local/smollm2-135m-instruct` works but cannot produce the structured answer,
    so its failures end as None (`unclassified`), cached. `cache_path`: the SQLite file,
    or None for no cache. `retries`: how many more times an invalid answer is asked again.
    `timeout`: seconds per model call (passed to litellm). `lm`: a ready `dspy.BaseLM` to
    use instead of building one from `model` (tests, custom clients); `model` still names
    it in the cache key. `program_path`: an optimized program saved with `save`.
    """

    def __init__(
        self,
        model: str,
        cache_path: Path | str | None = None,
        retries: int = 2,
        timeout: float | None = 120.0,
        *,
        max_evidence_chars: int = DEFAULT_MAX_CHARS,
        max_tokens: int = 400,
        lm: dspy.BaseLM | None = None,
        program_path: Path | str | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.model = model
        self.retries = retries
        self.timeout = timeout
        self.max_evidence_chars = max_evidence_chars
        self.max_tokens = max_tokens
        self._lm = lm
        self._lm_lock = threading.Lock()
        self.cache = ClassifierCache(cache_path) if cache_path is not None else None
        self.adapter = dspy.JSONAdapter()
        self.module = dspy.Predict(RootCause)
        self.version = CLASSIFIER_VERSION
        if program_path is not None:
            self.load(program_path)

    # ----------------------------------------------------------------- program

    def save(self, path: Path | str) -> Path:
        """Save the module's state (instructions, demos) as JSON, e.g. after optimizing it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.module.save(str(path))
        return path

    def load(self, path: Path | str) -> None:
        """Load an optimized program saved by `save`; the cache key then names its content."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no optimized classifier program there (save one with LLMClassifier.save)")
        self.module.load(str(path))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.version = f"{CLASSIFIER_VERSION}+{digest}"

    @property
    def lm(self) -> dspy.BaseLM:
        """The DSPy LM, built on first use (building the local one registers its litellm provider)."""
        with self._lm_lock:
            if self._lm is None:
                from autofix.models.lm import dspy_lm

                self._lm = dspy_lm(self.model, max_tokens=self.max_tokens)
            return self._lm

    # ----------------------------------------------------------------- classify

    def evidence(self, failure: Failure, trace: Trace) -> str:
        """The evidence text the model reads for this failure."""
        return build_evidence(failure, trace, max_chars=self.max_evidence_chars)

    def classify(self, failure: Failure, trace: Trace, *, refresh: bool = False) -> Diagnosis | None:
        """The diagnosis of `failure`, or None when the model gave no valid answer (report it `unclassified`)."""
        return self.explain(failure, trace, refresh=refresh).diagnosis

    def explain(self, failure: Failure, trace: Trace, *, refresh: bool = False) -> Outcome:
        """Like `classify`, with the reason of a None, whether the cache answered, and how many calls were made."""
        text = self.evidence(failure, trace)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        span_ids = {s.span_id for s in trace.spans if s.span_id}

        if self.cache is not None and not refresh:
            hit = self.cache.get(self.model, self.version, digest)
            if hit is not None:
                status, fields, reason = hit
                if status == "diagnosis" and fields is not None:
                    fields["evidence"] = [i for i in fields.get("evidence", []) if i in span_ids]
                    try:
                        return Outcome(Diagnosis(trace_id=failure.trace_id, **fields), reason, cached=True)
                    except ValidationError:
                        log.warning("ignoring an invalid cached diagnosis for trace %s", failure.trace_id)
                else:
                    return Outcome(None, reason, cached=True)

        outcome = self._ask(failure, text, span_ids)
        if self.cache is not None and outcome.reason != _TRANSIENT:
            self.cache.put(self.model, self.version, digest, outcome.diagnosis, outcome.reason)
        if outcome.reason == _TRANSIENT:
            outcome.reason = "the model call failed (not cached): " + "; ".join(outcome.errors[-1:])
        return outcome

    def _ask(self, failure: Failure, text: str, span_ids: set[str]) -> Outcome:
        errors: list[str] = []
        calls = 0
        lm = self.lm
        for attempt in range(self.retries + 1):
            config: dict[str, Any] = {}
            if self.timeout is not None:
                config["timeout"] = self.timeout
            if attempt > 0:
                config["temperature"] = RETRY_TEMPERATURES[min(attempt - 1, len(RETRY_TEMPERATURES) - 1)]
                config["rollout_id"] = attempt
            calls += 1
            try:
                with dspy.context(lm=lm, adapter=self.adapter):
                    prediction = self.module(evidence=text, config=config)
                verdict = Verdict.model_validate(
                    {
                        "category": prediction.category,
                        "confidence": prediction.confidence,
                        "rationale": prediction.rationale,
                        "evidence_span_ids": prediction.evidence_span_ids,
                    }
                )
            except Exception as exc:  # noqa: BLE001 - every failure of the model ends as None, never a crash
                kind = _error_kind(exc)
                message = f"attempt {attempt + 1}: {type(exc).__name__}: {_clip_reason(exc)}"
                errors.append(message)
                log.info("LLM classifier, trace %s (%s): %s", failure.trace_id, kind, message)
                if kind == "permanent":
                    return Outcome(None, f"the model cannot take this evidence: {message}", calls=calls, errors=errors)
                if kind == "transient":
                    return Outcome(None, _TRANSIENT, calls=calls, errors=errors)
                continue
            if verdict.category is Category.unclassified:
                return Outcome(
                    None, f"the model found no supported root cause: {verdict.rationale}", calls=calls, errors=errors
                )
            evidence = self._known_ids(verdict.evidence_span_ids, span_ids)
            diagnosis = Diagnosis(
                trace_id=failure.trace_id,
                category=verdict.category,
                confidence=verdict.confidence,
                rationale=verdict.rationale,
                evidence=evidence,
                method="llm",
            )
            return Outcome(diagnosis, "", calls=calls, errors=errors)
        return Outcome(
            None,
            f"no valid answer from {self.model} in {calls} attempt(s); last: {errors[-1] if errors else '?'}",
            calls=calls,
            errors=errors,
        )

    @staticmethod
    def _known_ids(cited: list[str], span_ids: set[str]) -> list[str]:
        """The cited ids the trace holds, in citation order, without repeats; light cleanup of `[span x]` forms."""
        out: list[str] = []
        for raw in cited:
            for candidate in (raw, raw.strip(), _ID_NOISE.sub("", raw)):
                if candidate in span_ids:
                    if candidate not in out:
                        out.append(candidate)
                    break
        return out

