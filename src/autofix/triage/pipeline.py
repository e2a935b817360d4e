"""From traces to ranked root-cause clusters: `run_triage`.

One streaming pass over the trace files (`autofix.traces.ingest`, bad records quarantined):

1. every trace feeds the run-wide `TriageContext` (search rates, tools, documents, citations)
   and its task type's latency sample;
2. `detect` gives its signals; a trace with a negative signal becomes a failure and keeps only
   its `TraceFacts` (a few hundred bytes), never the whole trace;
3. the last trace of each session is held until the next one of that session arrives (a
   similar request within ``rephrase_window_s`` marks it rephrased, hence failed) or it falls
   out of the window (with a time-ordered stream, memory holds the sessions active in the
   window; `max_pending` bounds it otherwise);
4. once read, latency outliers are decided with the final per-task-type statistics;
5. the rules (`autofix.triage.rules`) diagnose every failure; what none explains goes to the
   classifier (any object with ``classify(failure, trace) -> Diagnosis | None``, e.g.
   `autofix.triage.classifier.LLMClassifier`), re-reading its trace from a temporary spool;
   without a classifier, or when it gives no answer, the failure is ``unclassified``
   (method ``none``), never dropped;
6. failures are clustered and ranked (`autofix.triage.clustering`);
7. each cluster keeps the id of the previous run's cluster it continues (`autofix.triage.identity`:
   same mechanism, then shared traces or similar requests) or gets a fresh one named by its
   mechanism; ``trend`` and the report's ``changes`` say what is new, growing, shrinking, steady
   or resolved since the previous run (the report ``latest.json`` held before this run).

Native JSONL input of at least `PARALLEL_MIN_BYTES` is read by several processes (one per
core by default), each over a byte range of the files; their results are merged in file
order, and a session cut by a range boundary is paired across it, so the result is the
one a single pass gives (a rephrase is only missed when the later trace of the pair comes
*before* the earlier one in the file and across a boundary). Other formats are read by
one process.

Each triage run keeps its own folder ``<state>/triage/<timestamp>/``: ``report.json`` (the
summary: ``traces``, ``failures``, ``quarantined``, ``clusters`` with their ``trace_ids``, plus
``failure_details``: each failure, its signals, its diagnosis and its cluster) and
``quarantine.jsonl`` (the bad input records with file, line and reason). ``<state>/triage/latest.json``
is a copy of the newest report, which `slice:<cluster>` datasets read, and the next run compares with.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, PrivateAttr

from autofix.traces import IngestStats, Quarantine, Trace, ingest
from autofix.traces.ingest import detect_format, expand_paths
from autofix.traces.native import trace_from_record
from autofix.traces.records import ReadLimits, iter_jsonl, sniff_layout
from autofix.triage._text import clip, content_terms, text_of
from autofix.triage.clustering import (
    FIXABLE,
    ClusterItem,
    cluster_id,
    cluster_items,
    fixability,
    owner_for,
)
from autofix.triage.detection import (
    Detection,
    DetectionSettings,
    LatencyStats,
    OutOfScaleScores,
    SignalTuple,
    detect,
    latency_signal,
    priority,
    rephrase_signal,
    similar_inputs,
    to_signals,
    trace_latency_ms,
)
from autofix.triage.context import TriageContext
from autofix.triage.facts import INPUT_CHARS, OUTPUT_CHARS, TraceFacts, extract_facts
from autofix.triage.identity import (
    ClusterChanges,
    ClusterSnapshot,
    PreviousRun,
    Trend,
    assign_identities,
    load_previous,
    previous_from_report,
)
from autofix.triage.records import Category, Cause, Diagnosis, Failure, Finding
from autofix.triage.scorer_health import ScoreVerdicts
from autofix.triage.voting import diagnose_facts, rule_refs

__all__ = [
    "Classifier",
    "Cluster",
    "ClusterExample",
    "PARALLEL_MIN_BYTES",
    "TriageReport",
    "default_classifier",
    "run_triage",
    "triage_traces",
]

ROW_TEXT_CHARS = 300
ALT_RATIONALE_CHARS = 120  # an alternative cause's rationale, kept short: a million rows hold them
MAX_ALTERNATIVES = 2
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
"""Native JSONL input at least this big is read by several processes."""
Progress = Callable[[str, int, "int | None"], None]


@runtime_checkable
class Classifier(Protocol):
    """Classifies a failure no rule explains; None when it cannot (the failure stays unclassified)."""

    def classify(self, failure: Failure, trace: Trace) -> Diagnosis | None: ...


# --------------------------------------------------------------------------- report records


class ClusterExample(BaseModel):
    trace_id: str
    input: str
    rationale: str
    evidence: list[str] = Field(default_factory=list)


class Cluster(BaseModel):
    """A group of failures with one root cause on similar requests, ranked for fixing."""

    id: str = Field(description="kept from the previous run's cluster of the same mechanism, else "
                                "category-task_type-mechanism[-disambiguator] (valid in git branch names)")
    rank: int
    category: Category
    task_type: str
    name: str
    size: int
    priority: float = Field(description="mean triage priority of the members")
    score: float = Field(description="size x mean priority x fixability: the ranking key")
    fixable: bool = Field(description="an optimizer can act on it")
    fixability: float
    owner: str = Field(description="optimizer:gepa|retrieval|code_patch, or team:<name>")
    confidence: float = Field(description="mean diagnosis confidence")
    rationale: str = Field(description="the rationale of its most telling member")
    evidence: list[str] = Field(default_factory=list, description="span ids of that member's evidence")
    rules: dict[str, int] = Field(default_factory=dict, description="how its members were diagnosed: rule (or method) -> count")
    top_terms: list[str] = Field(default_factory=list)
    mechanism: str = Field(default="", description="its dominant diagnosis signature (rule|key evidence): what its id follows")
    signatures: dict[str, int] = Field(default_factory=dict, description="its members' signatures (the five most frequent)")
    keywords: list[str] = Field(default_factory=list, description="up to ten words of its requests, most distinctive first")
    trend: Trend = Field(default="new", description="against the previous run: new, growing, shrinking or steady")
    previous_size: int | None = Field(default=None, description="the size of the cluster it continues; None when new")
    trace_ids: list[str]
    examples: list[ClusterExample] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TriageReport(BaseModel):
    """What `run_triage` found: counts, ranked clusters, and (via `failures`) every diagnosed failure."""

    generated_at: datetime
    config: str | None = None
    sources: list[str] = Field(default_factory=list)
    since: datetime | None = None
    traces: int
    failures: int
    quarantined: int
    quarantined_by_reason: dict[str, int] = Field(default_factory=dict)
    by_category: dict[str, int] = Field(default_factory=dict)
    by_method: dict[str, int] = Field(default_factory=dict)
    classifier: str | None = None
    classifier_errors: int = 0
    clusters: list[Cluster] = Field(default_factory=list)
    findings: list[Finding] = Field(
        default_factory=list, description="run-level findings (a broken scorer): one each, not per-trace failures"
    )
    changes: ClusterChanges = Field(
        default_factory=ClusterChanges, description="against the previous run: each cluster's trend, the resolved ones"
    )
    retired_ids: list[str] = Field(
        default_factory=list, description="ids of clusters resolved in this run or earlier ones: never given again"
    )
    rules: list[str] = Field(default_factory=list, description="the rules that ran, name@version")
    warnings: list[str] = Field(default_factory=list, description="problems with the input or the rules, once each")
    report_path: str | None = None
    quarantine_path: str | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    ingest: dict[str, Any] = Field(default_factory=dict)

    _rows: list[_Row] = PrivateAttr(default_factory=list)

    def summary(self, limit_clusters: int | None = None) -> dict[str, Any]:
        """The ``autofix triage --json`` document."""
        clusters = self.clusters if limit_clusters is None else self.clusters[:limit_clusters]
        return {
            "traces": self.traces,
            "failures": self.failures,
            "quarantined": self.quarantined,
            "by_category": self.by_category,
            "findings": [f.model_dump(mode="json") for f in self.findings],
            "warnings": self.warnings,
            "report": self.report_path,
            "quarantine": self.quarantine_path,
            "clusters": [c.summary() for c in clusters],
            "changes": self.changes.model_dump(mode="json"),
        }

    def failure_list(self) -> Iterator[tuple[Failure, Diagnosis, str | None]]:
        """Every failure with its diagnosis and cluster id, as records (built on demand)."""
        for row in self._rows:
            yield row.failure(), row.diagnosis(), row.cluster

    def diagnosis_of(self, trace_id: str) -> Diagnosis | None:
        for row in self._rows:
            if row.trace_id == trace_id:
                return row.diagnosis()
        return None

    def cluster_of(self, trace_id: str) -> Cluster | None:
        for row in self._rows:
            if row.trace_id == trace_id:
                return next((c for c in self.clusters if c.id == row.cluster), None)
        return None


# --------------------------------------------------------------------------- internal rows


@dataclass(slots=True)
class _Row:
    """One failure while the run goes on: compact, facts dropped once diagnosed."""

    trace_id: str
    session_id: str | None
    timestamp: datetime | None
    task_type: str
    input: str
    output: str
    signals: list[SignalTuple]
    passing: tuple[tuple[str, float, float], ...]
    thumb_up: bool
    latency: float | None
    facts: TraceFacts | None
    spool: int | None = None
    spool_file: int = 0
    priority: float = 0.0
    category: str = Category.unclassified.value
    confidence: float = 0.0
    rationale: str = ""
    evidence: tuple[str, ...] = ()
    method: str = "none"
    rule: str | None = None
    alternatives: tuple[tuple[str, float, str, str], ...] = ()  # (category, confidence, rule, rationale cut short)
    low_scores: tuple[str, ...] = ()  # the names of its failing scores, in the order of its low_score signals
    light: bool = False  # a latency candidate: its facts hold only what the latency rule reads
    signature: str = ""
    cluster: str | None = None

    def causes(self) -> list[Cause]:
        return [Cause(category=Category(c), confidence=cf, rule=r, rationale=why) for c, cf, r, why in self.alternatives]

    def failure(self) -> Failure:
        return Failure(
            trace_id=self.trace_id, session_id=self.session_id, timestamp=self.timestamp, task_type=self.task_type,
            input=clip(self.input, ROW_TEXT_CHARS), output=clip(self.output, ROW_TEXT_CHARS),
            signals=to_signals(self.signals), priority=self.priority,
        )

    def diagnosis(self) -> Diagnosis:
        return Diagnosis(
            trace_id=self.trace_id, category=Category(self.category), confidence=self.confidence,
            rationale=self.rationale, evidence=list(self.evidence), method=self.method, rule=self.rule,  # type: ignore[arg-type]
            alternatives=self.causes(),
        )

    def detail(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "session_id": self.session_id,
            "timestamp": self.timestamp.isoformat() if self.timestamp is not None else None,
            "task_type": self.task_type,
            "input": clip(self.input, ROW_TEXT_CHARS),
            "output": clip(self.output, ROW_TEXT_CHARS),
            "signals": [
                {"kind": k, "name": n, "detail": d, "span_id": s, "strength": st} for k, n, d, s, st in self.signals
            ],
            "priority": self.priority,
            "cluster": self.cluster,
            "diagnosis": {
                "category": self.category, "confidence": self.confidence, "rationale": self.rationale,
                "evidence": list(self.evidence), "method": self.method, "rule": self.rule,
                "alternatives": [c.model_dump(mode="json") for c in self.causes()],
            },
        }


@dataclass(slots=True)
class _Tail:
    """The last trace seen of a session: a failure's row, or the trace itself while it may still be rephrased."""

    session_id: str
    trace_id: str
    ts: float
    text: str
    terms: set[str] | None
    row: _Row | None
    held: Trace | None
    det: Detection | None
    latency: float | None
    task_type: str
    undated: bool = False  # the trace has no timestamp: `ts` is the last known one (file order)


@dataclass(slots=True)
class _Edge:
    """A session at the edge of a part of the input: its first trace near the start (a head) or its
    last one at the end (a tail). `failed`: that trace is a failure already."""

    session_id: str
    trace_id: str
    ts: float
    text: str
    failed: bool
    undated: bool = False


@dataclass
class _ShardSummary:
    """What a reader of one part of the input tells the others: its run-wide observations and its edges."""

    index: int
    traces: int
    heads: list[_Edge]
    tails: list[_Edge]
    ctx: TriageContext
    latency: LatencyStats
    stats: dict[str, Any] = field(default_factory=dict)


class _Spool:
    """Failed traces kept on disk for the classifier (JSONL), read back by offset."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        if path is None:
            self._fh: IO[bytes] = tempfile.TemporaryFile(prefix="autofix-triage-", suffix=".jsonl")
        else:
            self._fh = open(path, "a+b")

    def put(self, trace: Trace) -> int:
        self._fh.seek(0, os.SEEK_END)
        offset = self._fh.tell()
        self._fh.write(trace.model_dump_json().encode("utf-8") + b"\n")
        return offset

    def get(self, offset: int) -> Trace:
        self._fh.flush()
        self._fh.seek(offset)
        return Trace.model_validate_json(self._fh.readline())

    def close(self) -> None:
        self._fh.close()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: the run builds many long-lived, acyclic objects."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Stream:
    """The per-trace work of a triage run (see the module doc)."""

    def __init__(self, settings: DetectionSettings, spool: _Spool | None, max_pending: int, grace_s: float,
                 spool_index: int = 0):
        self.settings = settings
        self.ctx = TriageContext(settings.knowledge)
        self.latency = LatencyStats()
        self.spool = spool
        self.spool_index = spool_index
        self.rows: list[_Row] = []
        self.candidates: list[_Row] = []
        self.sessions: OrderedDict[str, _Tail] = OrderedDict()
        self.heads: list[_Edge] = []
        self.pending: dict[str, _Row] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None  # of the latest trace with a timestamp
        self.out_of_scale = OutOfScaleScores()
        self.max_pending = max_pending
        self.horizon = settings.rephrase_window_s + grace_s
        self.traces = 0

    def _row(self, trace: Trace, det: Detection, latency: float | None, *, spool: bool = True, light: bool = False) -> _Row:
        """A failure's row. `light`: a latency candidate, which only the latency rule can explain, keeps
        only the facts that rule reads."""
        if light:
            chain = next((s.span_id for s in trace.spans if s.kind == "chain"), None)
            facts = TraceFacts(trace.trace_id, trace.task_type or "unknown", text_of(trace.input, INPUT_CHARS),
                               text_of(trace.output, OUTPUT_CHARS), None, (), chain_span_id=chain)
        else:
            facts = extract_facts(trace, (), det.thumb_up, self.settings.knowledge)
        row = _Row(
            trace_id=trace.trace_id, session_id=trace.session_id, timestamp=trace.timestamp,
            task_type=facts.task_type, input=facts.input, output=facts.output, signals=det.signals,
            passing=tuple(det.passing_scores), thumb_up=det.thumb_up, latency=latency, facts=facts,
            low_scores=tuple(det.failed_scores), light=light,
        )
        if spool and self.spool is not None:
            row.spool = self.spool.put(trace)
            row.spool_file = self.spool_index
        return row

    def add(self, trace: Trace) -> None:
        self.traces += 1
        task = trace.task_type or "unknown"
        latency = trace_latency_ms(trace)
        self.latency.add(task, latency)
        self.ctx.observe(trace)
        det = detect(trace, self.settings)
        if det.failed_scores or det.passing_scores:
            self.ctx.scores.observe(ScoreVerdicts(tuple(det.failed_scores), tuple(n for n, _, _ in det.passing_scores),
                                                  det.thumb_up, trace.trace_id))
        for name, value in det.out_of_scale:
            self.out_of_scale.add(name, value)
        # A trace without a timestamp takes the last known time: it keeps its place in file order, and a
        # request that follows it in its session counts as next, however long after.
        undated = trace.timestamp is None
        if undated:
            ts = self.last_ts if self.last_ts is not None else 0.0
        else:
            ts = self.last_ts = trace.timestamp.timestamp()  # type: ignore[union-attr]
        if self.first_ts is None:
            self.first_ts = ts
        sid = trace.session_id
        text = ""
        terms = None
        tail = None
        if sid is not None:
            self._evict(ts)
            tail = self.sessions.pop(sid, None)
            text = text_of(trace.input, 600)
            if tail is not None:
                ordered = undated or tail.undated  # no times to compare: file order says which came first
                gap = 0.0 if ordered else ts - tail.ts
                if abs(gap) <= self.settings.rephrase_window_s:
                    terms = content_terms(text)
                    if tail.terms is None:
                        tail.terms = content_terms(tail.text)
                    if similar_inputs(tail.text, text, tail.terms, terms):
                        if gap >= 0:
                            self._rephrased(tail, trace.trace_id, text, None if ordered else gap)
                        elif not any(s[1] == "rephrase" for s in det.signals):
                            det.signals.append(rephrase_signal(tail.trace_id, tail.text, -gap))
                self._release(tail)
        row = None
        if det.signals:
            row = self._row(trace, det, latency)
            self.rows.append(row)
        if sid is not None:
            if tail is None and ts <= self.first_ts + self.horizon:
                # the session may have begun before this part of the input: remember its first trace here
                self.heads.append(_Edge(sid, trace.trace_id, ts, text, row is not None, undated))
            self.sessions[sid] = _Tail(
                sid, trace.trace_id, ts, text, terms, row, None if row else trace, None if row else det, latency, task,
                undated,
            )
        elif row is None:
            self._latency_candidate(trace, det, latency, task)

    def _rephrased(self, tail: _Tail, later_id: str, later_text: str, gap: float | None) -> None:
        if tail.row is not None:
            if not any(s[1] == "rephrase" for s in tail.row.signals):
                tail.row.signals.append(rephrase_signal(later_id, later_text, gap))
            return
        assert tail.held is not None and tail.det is not None
        tail.det.signals.append(rephrase_signal(later_id, later_text, gap))
        row = self._row(tail.held, tail.det, tail.latency)
        self.rows.append(row)
        tail.row, tail.held, tail.det = row, None, None

    def _release(self, tail: _Tail) -> None:
        if tail.held is not None:
            self._latency_candidate(tail.held, tail.det or Detection([], []), tail.latency, tail.task_type)
            tail.held = None

    def _evict(self, now: float) -> None:
        sessions = self.sessions
        while sessions:
            first = next(iter(sessions.values()))
            if first.ts < now - self.horizon or len(sessions) > self.max_pending:
                sessions.popitem(last=False)
                self._release(first)
            else:
                break

    def _latency_candidate(self, trace: Trace, det: Detection, latency: float | None, task: str) -> None:
        """Keep a trace with no other signal whose latency may prove an outlier once all are read."""
        if latency is None:
            return
        if self.latency.count(task) >= self.latency.min_count:
            z = self.latency.z(task, latency)
            if z is None or z <= 0.75 * self.settings.latency_outlier_z:
                return
        self.candidates.append(self._row(trace, det, latency, spool=False, light=True))

    def summarize(self, index: int = 0, stats: dict[str, Any] | None = None, *, last: bool = True) -> _ShardSummary:
        """End of the reading: the sessions still open become tails (unless this is the `last` part of the
        input, which nothing follows); a tail that did not fail is kept pending, as a rephrase in the next
        part may still make it one."""
        tails = []
        end = max((t.ts for t in self.sessions.values()), default=0.0)
        for sid, tail in self.sessions.items():
            if not last and tail.ts >= end - self.horizon:
                if tail.row is not None:
                    tails.append(_Edge(sid, tail.trace_id, tail.ts, tail.text, True, tail.undated))
                    continue
                if tail.held is not None:
                    self.pending[tail.trace_id] = self._row(tail.held, tail.det or Detection([], []), tail.latency)
                    tail.held = None
                    tails.append(_Edge(sid, tail.trace_id, tail.ts, tail.text, False, tail.undated))
                    continue
            self._release(tail)
        self.sessions.clear()
        return _ShardSummary(index, self.traces, self.heads, tails, self.ctx, self.latency, stats or {})

    def finalize(self, ctx: TriageContext, latency: LatencyStats, rephrased: dict[str, SignalTuple]) -> list[_Row]:
        """Diagnose this part's failures with the run-wide context and latency statistics.

        `rephrased`: rephrase signals found across part edges, by trace id. Adds the latency outliers,
        the priorities and the rule diagnoses (``unclassified`` where no rule matches); drops the facts.
        """
        rows = self.rows
        if rephrased:
            for row in rows:
                sig = rephrased.get(row.trace_id)
                if sig is not None and not any(s[1] == "rephrase" for s in row.signals):
                    row.signals.append(sig)
        for tid, row in self.pending.items():
            sig = rephrased.get(tid)
            if sig is not None:
                row.signals.append(sig)
                rows.append(row)
            else:
                self.candidates.append(row)
        self.pending = {}
        thr = self.settings.latency_outlier_z
        for row in rows:
            sig = latency_signal(row.latency, row.task_type, latency, thr, row.facts.chain_span_id if row.facts else None)
            if sig:
                row.signals.append(sig)
        for row in self.candidates:
            sig = latency_signal(row.latency, row.task_type, latency, thr, row.facts.chain_span_id if row.facts else None)
            if sig:
                row.signals.append(sig)
                rows.append(row)
        self.candidates = []
        broken = ctx.broken_scores
        kept = []
        for row in rows:
            if broken and row.low_scores:
                row.signals = _without_broken_scores(row.signals, row.low_scores, broken)
                if not row.signals:
                    continue  # only a broken scorer said it failed: counted in that scorer's finding
            kept.append(row)
            row.priority = priority(row.signals, self.settings, row.passing, row.thumb_up)
            facts = row.facts
            assert facts is not None
            facts.signals = tuple(row.signals)
            verdict = diagnose_facts(facts, ctx, only=LATENCY_RULES if row.light else None)
            if verdict is not None and verdict.category != Category.unclassified:
                row.category, row.confidence, row.rationale = verdict.category.value, verdict.confidence, verdict.rationale
                row.evidence, row.method, row.rule = tuple(verdict.evidence), "rule", verdict.rule
                row.alternatives = tuple((c.category.value, c.confidence, c.rule, clip(c.rationale, ALT_RATIONALE_CHARS))
                                         for c in verdict.alternatives[:MAX_ALTERNATIVES])
            else:
                row.category, row.confidence, row.method, row.rule = Category.unclassified.value, 0.0, "none", None
                row.rationale = NO_RULE if verdict is None else f"{NO_RULE}; {verdict.rationale}"
                row.evidence = tuple(verdict.evidence) if verdict is not None else ()
            row.signature = _signature(row.rule, row.method, facts)
            row.facts = None  # the row keeps what the report needs
        rows = kept
        self.rows = []
        return rows


def _without_broken_scores(signals: list[SignalTuple], low_scores: tuple[str, ...], broken: dict[str, str]) -> list[SignalTuple]:
    """The signals less the low scores of broken scorers (`low_scores` names the low_score signals in order)."""
    names = iter(low_scores)
    out = []
    for sig in signals:
        if sig[1] == "low_score" and next(names, None) in broken:
            continue
        out.append(sig)
    return out


def _pair_edges(summaries: list[_ShardSummary], window: float) -> dict[int, dict[str, SignalTuple]]:
    """Rephrases across part edges: a tail of one part and a head of a later part of the same session."""
    decisions: dict[int, dict[str, SignalTuple]] = {s.index: {} for s in summaries}
    open_tails: dict[str, tuple[int, _Edge]] = {}
    for s in sorted(summaries, key=lambda x: x.index):
        for head in s.heads:
            hit = open_tails.pop(head.session_id, None)
            if hit is None:
                continue
            k, tail = hit
            ordered = head.undated or tail.undated  # no times to compare: file order
            gap = 0.0 if ordered else head.ts - tail.ts
            if abs(gap) <= window and similar_inputs(tail.text, head.text):
                if gap >= 0:
                    decisions[k][tail.trace_id] = rephrase_signal(head.trace_id, head.text, None if ordered else gap)
                elif head.failed:
                    decisions[s.index][head.trace_id] = rephrase_signal(tail.trace_id, tail.text, -gap)
        for t in s.tails:
            open_tails[t.session_id] = (s.index, t)
    return decisions


def _merge_context(summaries: list[_ShardSummary]) -> tuple[TriageContext, LatencyStats]:
    ordered = sorted(summaries, key=lambda x: x.index)
    ctx = ordered[0].ctx
    for s in ordered[1:]:
        ctx.merge(s.ctx)
    latency = LatencyStats.merged([s.latency for s in ordered])
    latency.finalize()
    return ctx, latency


# --------------------------------------------------------------------------- diagnosis


def _signature(rule: str | None, method: str, facts: TraceFacts | None) -> str:
    if rule is None:
        return method
    if facts is None:
        return rule
    if rule in ("tool_arguments_invalid", "tool_rejected_by_business_rule", "infrastructure_error",
                "tool_fails_since_version") and facts.tools:
        # the key evidence: the first tool call that failed for good (else the first call)
        failed = next((t for t in facts.tools if (t.error or t.schema_problem) and not t.recovered), facts.tools[0])
        return f"{rule}|{failed.name}"
    if rule in ("answered_without_retrieval", "needless_clarification") and facts.router is not None:
        return f"{rule}|{facts.router.reason[:60]}"
    return rule


NO_RULE = "no deterministic rule matched the trace's spans"
LATENCY_RULES = frozenset({"latency_only"})  # all a slow trace with no other signal is diagnosed by


def _classify(rows: list[_Row], classifier: Classifier | None, spools: dict[int, _Spool], progress: Progress | None) -> int:
    """Ask the classifier about the failures no rule explains; returns how many calls failed."""
    unexplained = [r for r in rows if r.method == "none"]
    errors = 0
    for i, row in enumerate(unexplained):
        reason = "no classifier was configured"
        spool = spools.get(row.spool_file)
        if classifier is not None and spool is not None and row.spool is not None:
            try:
                trace = spool.get(row.spool)
                d = classifier.classify(row.failure(), trace)
            except Exception as exc:  # a classifier must never stop the run
                errors += 1
                d = None
                reason = f"the classifier failed ({type(exc).__name__}: {clip(str(exc), 160)})"
            else:
                reason = "the classifier gave no answer"
            if d is not None and d.category != Category.unclassified:
                row.category, row.confidence, row.rationale = d.category.value, d.confidence, d.rationale
                row.evidence, row.method, row.rule = tuple(d.evidence), "llm", None
                row.signature = f"llm|{d.category.value}"
            elif d is not None:
                reason = f"the classifier could not tell ({clip(d.rationale, 160)})"
            if progress is not None:
                progress("classify", i + 1, len(unexplained))
        if row.method == "none":
            # keep what `finalize` wrote: NO_RULE, with a rule's hint (e.g. an unknown tool error) and its spans
            row.category, row.confidence = Category.unclassified.value, 0.0
            row.rationale = f"{row.rationale or NO_RULE}; {reason}"
            row.rule = None
    return errors


def _build_clusters(
    rows: list[_Row], config: Any | None, *, sample_size: int, distance_threshold: float,
    previous: PreviousRun | None = None,
) -> tuple[list[Cluster], ClusterChanges, list[str]]:
    """The ranked clusters, with their ids carried over from `previous` (see `autofix.triage.identity`), the
    comparison with it and the ids retired so far."""
    items = [
        ClusterItem(i, r.category, r.task_type, r.input, r.signature, r.priority) for i, r in enumerate(rows)
    ]
    groups = cluster_items(items, distance_threshold=distance_threshold, sample_size=sample_size)
    clusters: list[Cluster] = []
    for g in groups:
        members = [rows[k] for k in g.members]
        size = len(members)
        mean_p = sum(r.priority for r in members) / size
        fx = fixability(g.category)
        sig = g.dominant_signature
        cid = cluster_id(g.category, g.task_type, sig)  # provisional: `assign_identities` decides
        rules = Counter((r.rule or r.method) for r in members)
        dominant_rule = rules.most_common(1)[0][0]
        best = max(
            (r for r in members if (r.rule or r.method) == dominant_rule),
            key=lambda r: (r.confidence, r.priority, -len(r.trace_id), r.trace_id),
        )
        terms = ", ".join(g.top_terms) if g.top_terms else "(no words)"
        name = f"{g.task_type}: {terms} [{dominant_rule.replace('_', ' ')}]"
        ranked = sorted(members, key=lambda r: (-r.priority, r.trace_id))
        examples = [
            ClusterExample(trace_id=r.trace_id, input=clip(r.input, 160), rationale=r.rationale, evidence=list(r.evidence))
            for r in ranked[:3]
        ]
        clusters.append(
            Cluster(
                id=cid, rank=0, category=Category(g.category), task_type=g.task_type, name=name, size=size,
                priority=round(mean_p, 4), score=round(size * mean_p * fx, 4), fixable=g.category in FIXABLE,
                fixability=fx, owner=owner_for(g.category, config),
                confidence=round(sum(r.confidence for r in members) / size, 3), rationale=best.rationale,
                evidence=list(best.evidence), rules=dict(rules.most_common()), top_terms=list(g.top_terms),
                mechanism=sig, signatures=dict(sorted(g.signatures.items(), key=lambda kv: (-kv[1], kv[0]))[:5]),
                keywords=list(g.keywords), trace_ids=[r.trace_id for r in members], examples=examples,
            )
        )
    identities = assign_identities([ClusterSnapshot.of(c) for c in clusters], previous)
    for g, c, cid, change in zip(groups, clusters, identities.ids, identities.changes.clusters):
        c.id, c.trend, c.previous_size = cid, change.trend, change.previous_size
        for k in g.members:
            rows[k].cluster = cid
    clusters.sort(key=lambda c: (-c.score, -c.size, c.id))
    for i, c in enumerate(clusters, 1):
        c.rank = i
    order = {c.id: c.rank for c in clusters}
    identities.changes.clusters.sort(key=lambda ch: order[ch.id])
    return clusters, identities.changes, identities.retired_ids


# --------------------------------------------------------------------------- reading in parallel


@dataclass(frozen=True)
class _Shard:
    """One reader's part of the input: byte ranges (at line starts) of native JSONL files, in order."""

    index: int
    segments: tuple[tuple[str, int, int], ...]
    last: bool


def _expand(paths: Iterable[Path]) -> list[Path]:
    return expand_paths(list(paths))  # the files ingest reads, in the same order


def _line_start_after(path: Path, pos: int, size: int) -> int:
    with open(path, "rb") as fh:
        fh.seek(pos)
        fh.readline()
        return min(fh.tell(), size)


def _plan_shards(paths: list[Path], workers: int, min_bytes: int) -> list[_Shard] | None:
    """Split native JSONL input into `workers` parts of about equal size; None to read it in one pass."""
    if workers < 2:
        return None
    files = _expand(paths)
    sizes = [f.stat().st_size for f in files]
    total = sum(sizes)
    if not files or total < max(1, min_bytes):
        return None
    for f in files:
        if sniff_layout(f) != "jsonl" or detect_format(f) != "native":
            return None
    # cut points in the concatenated byte space, moved to line starts
    target = total / workers
    shards: list[list[tuple[str, int, int]]] = [[]]
    filled = 0.0
    for f, size in zip(files, sizes):
        start = 0
        while start < size:
            room = target - filled
            if len(shards) < workers and size - start > room:
                cut = _line_start_after(f, start + max(0, int(room)), size) if room > 0 else start
                if cut > start:
                    shards[-1].append((str(f), start, cut))
                shards.append([])
                filled = 0.0
                start = cut
                continue
            shards[-1].append((str(f), start, size))
            filled += size - start
            start = size
    shards = [s for s in shards if s]
    return [_Shard(i, tuple(segs), i == len(shards) - 1) for i, segs in enumerate(shards)]


def _line_number_at(path: str, offset: int) -> int:
    """The 1-based number of the line starting at byte `offset`."""
    n = 1
    with open(path, "rb") as fh:
        left = offset
        while left > 0:
            chunk = fh.read(min(left, 1 << 22))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def _read_shard(
    shard: _Shard, settings: DetectionSettings, since: datetime | None, quarantine_part: str, spool_path: str | None,
    max_pending: int, grace_s: float, limits: ReadLimits, counters: Any = None,
) -> tuple[_Stream, _ShardSummary]:
    """Triage-stream the lines of one part of the input (in a reader process)."""
    spool = _Spool(spool_path) if spool_path else None
    skipped = truncated = undated = 0
    stream = _Stream(settings, spool, max_pending, grace_s, spool_index=shard.index)
    with Quarantine(quarantine_part) as quarantine:
        for path, start, end in shard.segments:
            start_line = _line_number_at(path, start) if start else 1
            for rec in iter_jsonl(path, quarantine, limits, start_line=start_line, start_offset=start, end_offset=end):
                trace = trace_from_record(rec, path, quarantine, limits)
                if trace is None:
                    continue
                if trace.timestamp is None:
                    undated += 1
                elif since is not None and trace.timestamp < since:
                    skipped += 1
                    continue
                truncated += len(trace.truncated)
                stream.add(trace)
                if counters is not None and stream.traces % 2000 == 0:
                    counters[shard.index] = stream.traces
        if counters is not None:
            counters[shard.index] = stream.traces
        counts = dict(quarantine.counts)
    stats = {"skipped_before_since": skipped, "truncated_fields": truncated, "quarantined_by_reason": counts,
             "undated": undated, "out_of_scale": stream.out_of_scale.by_name}
    summary = stream.summarize(shard.index, stats, last=shard.last)  # may still spool pending traces
    if spool is not None:
        spool.close()
        stream.spool = None
    return stream, summary


def _reader_process(conn: Any, shard: _Shard, args: tuple[Any, ...], counters: Any) -> None:
    """A reader: read its part, send its summary, wait for the run-wide context, send its diagnosed failures."""
    import traceback

    gc.disable()
    try:
        stream, summary = _read_shard(shard, *args, counters=counters)
        conn.send(("summary", summary))
        kind, ctx, latency, rephrased = conn.recv()
        if kind != "finalize":
            return
        rows = stream.finalize(ctx, latency, rephrased)
        conn.send(("rows", (rows, ctx.rule_errors)))  # a rule that failed here must reach the report
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        try:
            conn.send(("error", traceback.format_exc()))
        except Exception:
            pass
    finally:
        conn.close()


def _receive(conns: list[Any], procs: list[Any], what: str, progress: Callable[[], None] | None) -> list[Any]:
    from multiprocessing.connection import wait

    out: list[Any] = [None] * len(conns)
    left = set(range(len(conns)))
    while left:
        ready = wait([conns[i] for i in left], timeout=0.25)
        if progress is not None:
            progress()
        for c in ready:
            i = conns.index(c)
            try:
                kind, *payload = c.recv()
            except EOFError:
                raise RuntimeError(f"triage reader {i} stopped (exit code {procs[i].exitcode})") from None
            if kind == "error":
                raise RuntimeError(f"triage reader {i} failed:\n{payload[0]}")
            if kind != what:
                raise RuntimeError(f"triage reader {i} sent {kind!r}, expected {what!r}")
            out[i] = payload[0]
            left.discard(i)
        for i in list(left):
            if not procs[i].is_alive() and not conns[i].poll():
                raise RuntimeError(f"triage reader {i} stopped (exit code {procs[i].exitcode})")
    return out


def _read_parallel(
    shards: list[_Shard], settings: DetectionSettings, since: datetime | None, quarantine_path: Path | None,
    spool_dir: Path | None, max_pending: int, grace_s: float, limits: ReadLimits,
    progress: Progress | None, stats: IngestStats, out_of_scale: OutOfScaleScores | None = None,
) -> tuple[list[_Row], int, float, TriageContext]:
    """Read the shards in reader processes; return the diagnosed failures, the trace count, the read time and
    the run-wide context. `out_of_scale` gathers the readers' scores that were off their scale."""
    mp = multiprocessing.get_context("spawn")
    counters = mp.Array("q", len(shards), lock=False)
    parts_dir = Path(tempfile.mkdtemp(prefix="autofix-triage-q-"))
    conns: list[Any] = []
    procs: list[Any] = []
    t0 = time.perf_counter()
    try:
        for s in shards:
            args = (settings, since, str(parts_dir / f"{s.index:05d}.jsonl"),
                    str(spool_dir / f"{s.index:05d}.jsonl") if spool_dir is not None else None, max_pending, grace_s, limits)
            parent, child = mp.Pipe()
            proc = mp.Process(target=_reader_process, args=(child, s, args, counters), daemon=True,
                              name=f"autofix-triage-reader-{s.index}")
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        tick = (lambda: progress("read", int(sum(counters)), None)) if progress is not None else None
        summaries: list[_ShardSummary] = _receive(conns, procs, "summary", tick)
        read_s = time.perf_counter() - t0
        traces = sum(s.traces for s in summaries)
        if progress is not None:
            progress("read", traces, traces)
        ctx, latency = _merge_context(summaries)
        decisions = _pair_edges(summaries, settings.rephrase_window_s)
        ctx.prepare()
        for s in summaries:  # merged into `ctx`: the parts' own observations and edges are no longer needed
            s.ctx, s.heads, s.tails = ctx, [], []
        for s, conn in zip(summaries, conns):
            conn.send(("finalize", ctx, latency, decisions[s.index]))
        answers: list[tuple[list[_Row], dict[str, str]]] = _receive(conns, procs, "rows", None)
        parts = [rows for rows, _ in answers]
        for _, errors in answers:
            ctx.rule_errors.update(errors)
        for proc in procs:
            proc.join(timeout=30)
        if quarantine_path is not None:  # the quarantine, in input order
            with open(quarantine_path, "ab") as out:
                for s in shards:
                    part = parts_dir / f"{s.index:05d}.jsonl"
                    if part.exists():
                        with open(part, "rb") as src:
                            shutil.copyfileobj(src, out)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for conn in conns:
            conn.close()
        shutil.rmtree(parts_dir, ignore_errors=True)
    stats.files = len({path for s in shards for path, _, _ in s.segments})
    for sm in summaries:
        stats.traces += sm.traces
        stats.by_format["native"] += sm.traces
        stats.skipped_before_since += sm.stats.get("skipped_before_since", 0)
        stats.truncated_fields += sm.stats.get("truncated_fields", 0)
        stats.undated += sm.stats.get("undated", 0)
        if out_of_scale is not None:
            out_of_scale.merge(sm.stats.get("out_of_scale", {}))
        q = Counter(sm.stats.get("quarantined_by_reason", {}))
        stats.quarantined += sum(q.values())
        stats.quarantined_by_reason.update(q)
    rows = [r for part in parts for r in part]
    return rows, traces, read_s, ctx


# --------------------------------------------------------------------------- entry points


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _complete(
    rows: list[_Row], traces: int, timings: dict[str, float], classifier: Classifier | None, spools: dict[int, _Spool],
    config: Any | None, progress: Progress | None, sample_size: int, distance_threshold: float, ctx: TriageContext,
    settings: DetectionSettings, previous: PreviousRun | None = None,
) -> TriageReport:
    """The classifier for what no rule explained, then clustering; the report."""
    t = time.perf_counter()
    errors = _classify(rows, classifier, spools, progress)
    timings["classify"] = round(time.perf_counter() - t, 3)
    if progress is not None:
        progress("diagnose", len(rows), len(rows))
        progress("cluster", 0, None)
    t = time.perf_counter()
    clusters, changes, retired = _build_clusters(rows, config, sample_size=sample_size,
                                                 distance_threshold=distance_threshold, previous=previous)
    timings["cluster"] = round(time.perf_counter() - t, 3)
    if progress is not None:
        progress("cluster", len(clusters), len(clusters))
    report = TriageReport(
        generated_at=_utcnow(),
        traces=traces,
        failures=len(rows),
        quarantined=0,
        by_category=dict(Counter(r.category for r in rows).most_common()),
        by_method=dict(Counter(r.method for r in rows).most_common()),
        classifier=type(classifier).__name__ if classifier is not None else None,
        classifier_errors=errors,
        clusters=clusters,
        changes=changes,
        retired_ids=retired,
        findings=ctx.scores.findings(),
        rules=rule_refs(ctx.knowledge.disabled_rules),
        warnings=[*settings.notes, *(f"rule {n} failed and was skipped: {e}" for n, e in sorted(ctx.rule_errors.items()))],
        timings_s=timings,
    )
    report._rows = rows
    return report


def triage_traces(
    traces: Iterable[Trace],
    settings: DetectionSettings | None = None,
    *,
    classifier: Classifier | None = None,
    config: Any | None = None,
    progress: Progress | None = None,
    max_pending: int = 200_000,
    grace_s: float = 600.0,
    sample_size: int = 1000,
    distance_threshold: float = 0.6,
    previous: TriageReport | PreviousRun | None = None,
) -> TriageReport:
    """Triage an iterable of traces in one pass (no files written): detection, rules, classifier, clustering.

    `previous`: the run to carry cluster ids over from and compare with (None: every cluster is new)."""
    settings = settings or DetectionSettings()
    prev = previous_from_report(previous) if isinstance(previous, TriageReport) else previous
    spool = _Spool() if classifier is not None else None
    try:
        with _gc_paused():
            t0 = time.perf_counter()
            stream = _Stream(settings, spool, max_pending, grace_s)
            for trace in traces:
                stream.add(trace)
                if progress is not None and stream.traces % 1000 == 0:
                    progress("read", stream.traces, None)
            summary = stream.summarize(0, last=True)
            t1 = time.perf_counter()
            if progress is not None:
                progress("read", stream.traces, stream.traces)
            ctx, latency = _merge_context([summary])
            ctx.prepare()
            rows = stream.finalize(ctx, latency, {})
            timings = {"read_detect": round(t1 - t0, 3), "diagnose": round(time.perf_counter() - t1, 3)}
            report = _complete(rows, stream.traces, timings, classifier, {0: spool} if spool else {}, config, progress,
                               sample_size, distance_threshold, ctx, settings, prev)
            report.warnings += stream.out_of_scale.warnings(settings)
            return report
    finally:
        if spool is not None:
            spool.close()


def default_classifier(config: Any) -> Classifier | None:
    """The LLM classifier of the config (``triage.llm_classifier``, ``model.judge``), when it can be built.

    Its answers are cached in ``<state>/triage/classifier_cache.sqlite3``.
    """
    if not getattr(config.triage, "llm_classifier", True):
        return None
    try:
        from autofix.triage.classifier import LLMClassifier
    except Exception:  # the classifier (dspy, litellm) is optional for triage
        return None
    try:
        return LLMClassifier(model=config.model.judge or config.model.name,
                             cache_path=config.state_path / "triage" / "classifier_cache.sqlite3")
    except Exception:
        return None


def _stamp(dt: datetime) -> str:
    return dt.strftime("%Y%m%dT%H%M%S") + f"{dt.microsecond // 1000:03d}Z"


def _new_run_dir(out_dir: Path) -> Path:
    """A new, empty folder for one triage run, named by its start time."""
    stamp = _stamp(_utcnow())
    for n in range(1, 1000):
        path = out_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{out_dir}: cannot make a new triage run folder for {stamp}")


def _write_report(report: TriageReport, path: Path) -> None:
    """Write the report JSON (summary, then one failure per line of the `failure_details` array)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = report.model_dump(mode="json", exclude={"clusters"})
    tmp = path.with_suffix(".json.tmp")
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("{\n")
        for key, value in head.items():
            fh.write(f"  {json.dumps(key)}: {dumps(value)},\n")
        fh.write('  "clusters": [\n')
        for i, c in enumerate(report.clusters):
            fh.write("    " + dumps(c.summary()) + (",\n" if i < len(report.clusters) - 1 else "\n"))
        fh.write("  ],\n")
        fh.write('  "failure_details": [\n')
        n = len(report._rows)
        for i, row in enumerate(report._rows):
            fh.write("    " + dumps(row.detail()) + (",\n" if i < n - 1 else "\n"))
        fh.write("  ]\n}\n")
    os.replace(tmp, path)


def _previous_run(previous: str | Path | TriageReport | PreviousRun | bool | None,
                  latest: Path) -> tuple[PreviousRun | None, str | None]:
    """The previous run `run_triage` compares with, and a warning when its report cannot be read."""
    if previous is False:
        return None, None
    if isinstance(previous, PreviousRun):
        return previous, None
    if isinstance(previous, TriageReport):
        return previous_from_report(previous), None
    path = latest if previous is None or previous is True else Path(previous)
    try:
        found = load_previous(path)
    except ValueError as exc:
        return None, str(exc)
    if found is None and previous not in (None, True):
        return None, f"{path}: no such previous triage report; every cluster is compared as new"
    return found, None


def run_triage(
    config: Any,
    since: datetime | None = None,
    classifier: Classifier | None = None,
    quarantine_path: str | Path | None = None,
    *,
    paths: Iterable[str | Path] | None = None,
    fmt: str = "auto",
    progress: Progress | None = None,
    write: bool = True,
    report_dir: str | Path | None = None,
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    max_pending: int = 200_000,
    sample_size: int = 1000,
    limits: ReadLimits = ReadLimits(),
    previous: str | Path | TriageReport | PreviousRun | bool | None = None,
) -> TriageReport:
    """Triage the config's production traces (or `paths`); write the report and the quarantine.

    `config`: an `AutofixConfig`. `since`: keep traces at or after it. `classifier`: for failures
    no rule explains (None: they are reported ``unclassified``; the CLI passes
    `default_classifier(config)`). `quarantine_path`: default ``<state>/triage/<timestamp>/quarantine.jsonl``
    (each run its own, beside its ``report.json``). `workers`: reader processes for native JSONL input of at least
    `parallel_min_bytes` (default: one per core). Raises FileNotFoundError when a trace file
    is missing, PermissionError when it cannot be read.

    `previous`: the run whose cluster ids carry over and that ``changes`` compares with; None: the report
    ``<state>/triage/latest.json`` held before this run (none on a first run: every cluster is new); a report
    file, a `TriageReport` or a `PreviousRun`; False: compare with nothing. A previous report that cannot be read
    is named in ``warnings`` and every cluster is new.
    """
    out_dir = Path(report_dir) if report_dir is not None else config.state_path / "triage"
    prev, prev_warning = _previous_run(previous, out_dir / "latest.json")
    sources = [Path(p) for p in paths] if paths is not None else [config.dataset_path("traces")]
    for src in sources:
        if not src.exists():
            raise FileNotFoundError(f"{src}: no such trace file; check datasets.traces in {config.file}")
        if src.is_file():
            try:
                with open(src, "rb") as fh:
                    fh.read(1)
            except OSError as exc:
                raise PermissionError(f"{src}: the trace file cannot be read ({exc.strerror or exc})") from None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    run_dir = _new_run_dir(out_dir) if write else out_dir / _stamp(_utcnow())
    qpath = Path(quarantine_path) if quarantine_path is not None else run_dir / "quarantine.jsonl"
    if write:
        qpath.parent.mkdir(parents=True, exist_ok=True)
        qpath.unlink(missing_ok=True)
    settings = DetectionSettings.from_config(config)
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    shards = _plan_shards(sources, workers, parallel_min_bytes) if fmt in ("auto", "native") else None
    stats = IngestStats()
    out_of_scale = OutOfScaleScores()
    if shards is None:
        with Quarantine(qpath if write else None) as quarantine:
            traces = ingest(sources, fmt=fmt, quarantine=quarantine, since=since, stats=stats, limits=limits)  # type: ignore[arg-type]
            report = triage_traces(traces, settings, classifier=classifier, config=config, progress=progress,
                                   max_pending=max_pending, sample_size=sample_size, previous=prev)
    else:
        spool_dir = Path(tempfile.mkdtemp(prefix="autofix-triage-spool-")) if classifier is not None else None
        try:
            with _gc_paused():
                t0 = time.perf_counter()
                rows, n_traces, read_s, ctx = _read_parallel(shards, settings, since, qpath if write else None, spool_dir,
                                                             max_pending, 600.0, limits, progress, stats, out_of_scale)
                timings = {"read_detect": round(read_s, 3), "diagnose": round(time.perf_counter() - t0 - read_s, 3),
                           "workers": float(len(shards))}
                spools = {s.index: _Spool(spool_dir / f"{s.index:05d}.jsonl") for s in shards} if spool_dir else {}
                try:
                    report = _complete(rows, n_traces, timings, classifier, spools, config, progress, sample_size, 0.6,
                                       ctx, settings, prev)
                    report.warnings += out_of_scale.warnings(settings)
                finally:
                    for sp in spools.values():
                        sp.close()
        finally:
            if spool_dir is not None:
                shutil.rmtree(spool_dir, ignore_errors=True)
    report.config = str(config.file)
    report.sources = [str(s) for s in sources]
    report.since = since
    report.quarantined = stats.quarantined
    report.quarantined_by_reason = dict(stats.quarantined_by_reason)
    report.ingest = stats.as_dict()
    report.quarantine_path = str(qpath) if write else None
    if prev_warning:
        report.warnings.append(prev_warning)
    if stats.undated:
        report.warnings.append(
            f"{stats.undated} trace{'s have' if stats.undated != 1 else ' has'} no timestamp: "
            + ("--since cannot place them, so they were kept; " if since is not None else "")
            + "rephrases within their sessions were found in file order"
        )
    if write:
        t = time.perf_counter()
        path = run_dir / "report.json"
        report.report_path = str(path)
        _write_report(report, path)
        latest = out_dir / "latest.json"
        tmp = latest.with_suffix(".json.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, latest)
        report.timings_s["write"] = round(time.perf_counter() - t, 3)
    return report
