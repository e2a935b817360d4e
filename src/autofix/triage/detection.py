"""Failure detection: the signals that say a trace failed, and the triage priority of a failure.

Four families of signals (`Signal.kind`), each with a strength in [0, 1]:

- **explicit**: a thumb down (1.0); a negative comment (0.9): a comment whose value is
  negative/false, or whose text complains ("that's not right", "useless", "outdated"); a
  request for the source (0.8): a comment asking where the answer comes from ("where is this
  from?", "cite the source").
- **behavioural**: the user rephrased (0.7): the explicit ``rephrase`` feedback, or another
  trace of the same session, within ``triage.thresholds.rephrase_window_s``, whose input is
  similar (see `similar_inputs`); the user abandoned (0.6); the user escalated to a human (1.0).
- **judged**: a score on the wrong side of its pass mark. The scale of a score name is, in
  order: its declaration ``triage.scores.<name>: {range: [low, high], pass: <mark>,
  higher_is_better: true}``, else the scale and threshold of the rubric judge of that name, else
  the default scale [0, 1] with pass mark 0.5 (`score_mark`). A boolean score fails when false
  (when true, for a name declared ``higher_is_better: false``). A value outside its scale (a 1-5
  judge score with no declaration) is not read as a verdict; it is counted per score name
  (`Detection.out_of_scale`, `OutOfScaleScores`) and reported once per name as a run warning that
  says what to declare. Strength 0.5-1.0, growing with the distance past the mark.
- **operational**: a tool span error (1.0), any other span error or a trace-level
  ``metadata.error`` (0.9), a latency outlier of its task type (0.5-1.0): a robust z-score
  (median and MAD of the task type's latencies) over ``triage.thresholds.latency_outlier_z``.

A trace with no negative signal is not a failure, whatever else it has (a thumb up alone is
praise). The latency signal needs the task type's distribution, so the pipeline adds it once
the stream is read (`LatencyStats`); everything else is decided per trace by `detect`.

**Priority** (`priority`), used only to rank, never as a quality verdict::

    weights.explicit    * E  +  weights.behavioural * B  +  weights.outcome * O  -  weights.risk_penalty * R

where E, B and O combine the strengths of the explicit, behavioural and outcome (judged and
operational) signals as a noisy-or (``1 - prod(1 - s)``), and R adds the risks of a noisy
verdict: explicit feedback alone contradicted by a passing judge score (1.0 for a lone thumb
down, 0.5 for a comment; not for a request for the source, which a correctness judge does not
contradict), a judge alone contradicted by the user's thumb up (0.5), a judged
failure barely under its pass mark (0.25). Priorities are clipped at 0.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any, NamedTuple

import numpy as np

from autofix.traces.schema import Trace
from autofix.triage._text import content_terms, one_line
from autofix.triage.knowledge import DEFAULT_KNOWLEDGE, TargetKnowledge
from autofix.triage.records import Signal

__all__ = [
    "DEFAULT_SCORE_SCALE",
    "DEFAULT_SCORE_THRESHOLD",
    "Detection",
    "DetectionSettings",
    "LatencyStats",
    "NEGATIVE_COMMENT",
    "OutOfScaleScores",
    "SOURCE_REQUEST",
    "ScoreMark",
    "SignalTuple",
    "detect",
    "is_negative_comment",
    "latency_signal",
    "priority",
    "similar_inputs",
    "to_signals",
    "trace_latency_ms",
]

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_SCORE_SCALE = (0.0, 1.0)

# A signal in its compact form: (kind, name, detail, span_id, strength). The pipeline holds many
# of them for a million traces; `to_signals` turns them into `Signal` records.
SignalTuple = tuple[str, str, str, "str | None", float]

# the neutral defaults; a target's own wording comes with `DetectionSettings.knowledge`
NEGATIVE_COMMENT = DEFAULT_KNOWLEDGE.negative_feedback
SOURCE_REQUEST = DEFAULT_KNOWLEDGE.source_requests
_POSITIVE_ONLY = re.compile(r"^\W*(thanks?|thank you|great|perfect|helpful|nice|good|awesome|cheers)\b", re.I)


class ScoreMark(NamedTuple):
    """How one score name is read: its scale, its pass mark, its direction, and where they come from."""

    low: float
    high: float
    mark: float
    higher_is_better: bool = True
    origin: str = "default"  # "declared" (triage.scores), "judge" (a rubric judge's), "guessed" or "default"

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self, name: str) -> str:
        scale = f"[{self.low:g}, {self.high:g}]"
        if self.origin == "declared":
            return f"its declared scale {scale} (triage.scores.{name}.range)"
        if self.origin == "judge":
            return f"the scale {scale} of the rubric judge {name!r}"
        if self.origin == "guessed":
            return f"the scale {scale} guessed from triage.thresholds.scores.{name}"
        return f"the default scale {scale}"


@dataclass
class DetectionSettings:
    """What the detectors need from `autofix.yaml` (``triage`` section and rubric judges).

    `score_scales`: declared scales, score name -> (low, high, pass mark, higher_is_better)
    (``triage.scores``). `score_thresholds`: pass marks alone, score name -> mark (the deprecated
    ``triage.thresholds.scores``); a mark applies on the rubric judge's scale of that name, else on
    the default [0, 1]; a mark outside both keeps working on the guessed scale [0, 2 x mark] and
    adds a note. `notes`: run warnings about the settings themselves (deprecations), which the
    triage report shows.
    """

    rephrase_window_s: float = 120.0
    latency_outlier_z: float = 3.0
    score_thresholds: dict[str, float] = field(default_factory=dict)
    # rubric judge name -> (lowest, highest, threshold) of its scale
    judge_scales: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    w_explicit: float = 1.0
    w_behavioural: float = 0.6
    w_outcome: float = 0.8
    w_risk: float = 0.5
    score_scales: dict[str, tuple[float, float, float, bool]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    knowledge: TargetKnowledge = DEFAULT_KNOWLEDGE  # the target's wording (triage.vocabulary, ...)

    def __post_init__(self) -> None:
        self._marks: dict[str, ScoreMark] = {}
        for name, (low, high, mark, better) in self.score_scales.items():
            self._marks[name] = ScoreMark(float(low), float(high), float(mark), bool(better), "declared")
        for name, (low, high, thr) in self.judge_scales.items():
            if name not in self._marks:
                self._marks[name] = ScoreMark(float(low), float(high), float(thr), True, "judge")
        for name, raw in self.score_thresholds.items():
            mark = float(raw)
            current = self._marks.get(name)
            if current is not None and current.origin == "declared":
                continue
            low, high = (current.low, current.high) if current is not None else DEFAULT_SCORE_SCALE
            origin = current.origin if current is not None else "default"
            if not low <= mark <= high:
                self.notes.append(
                    f"triage.thresholds.scores.{name} = {mark:g} is outside the scale [{low:g}, {high:g}]: its scores "
                    f"are read on a guessed scale [0, {2 * mark:g}]; declare triage.scores.{name}: "
                    f"{{range: [low, high], pass: {mark:g}}}"
                )
                low, high, origin = min(0.0, mark), 2 * mark, "guessed"
            self._marks[name] = ScoreMark(low, high, mark, True, origin)

    @classmethod
    def from_config(cls, config: Any) -> DetectionSettings:
        """Settings from an `AutofixConfig` (its ``triage`` section and rubric judges)."""
        t = config.triage
        scales = {}
        for j in config.judges:
            if getattr(j, "kind", None) == "rubric" and not getattr(j, "safety", False) and j.threshold is not None:
                scales[j.name] = (float(j.scale[0]), float(j.scale[1]), float(j.threshold))
        declared = {
            name: (float(s.range[0]), float(s.range[1]), float(s.pass_mark), bool(s.higher_is_better))
            for name, s in (getattr(t, "scores", None) or {}).items()
        }
        legacy = dict(getattr(t.thresholds, "scores", {}) or {})
        notes = []
        if legacy:
            shown = ", ".join(f"{n}: {{pass: {m:g}}}" for n, m in legacy.items())
            notes.append(
                f"triage.thresholds.scores is deprecated (it still works): write the pass marks as "
                f"triage.scores: {{{shown}}}, with range: [low, high] where a scale is not [0, 1]"
            )
        return cls(
            rephrase_window_s=t.thresholds.rephrase_window_s,
            latency_outlier_z=t.thresholds.latency_outlier_z,
            score_thresholds=legacy,
            judge_scales=scales,
            w_explicit=t.weights.explicit,
            w_behavioural=t.weights.behavioural,
            w_outcome=t.weights.outcome,
            w_risk=t.weights.risk_penalty,
            score_scales=declared,
            notes=notes,
            knowledge=TargetKnowledge.from_config(t),
        )

    def score_mark(self, name: str) -> ScoreMark:
        """How scores of this name are read: declared, else the rubric judge's, else the default scale."""
        mark = self._marks.get(name)
        if mark is None:
            return ScoreMark(*DEFAULT_SCORE_SCALE, DEFAULT_SCORE_THRESHOLD, True, "default")
        return mark

    def pass_mark(self, name: str, value: float) -> tuple[float, float, float] | None:
        """(low, high, pass mark) of a numeric score, or None when the value is outside its scale."""
        m = self.score_mark(name)
        return (m.low, m.high, m.mark) if m.holds(value) else None


@dataclass(slots=True)
class Detection:
    """The local verdict on one trace: its negative signals and the evidence that speaks against them."""

    signals: list[SignalTuple]
    passing_scores: list[tuple[str, float, float]]  # (name, value, margin in [0, 1] above the pass mark)
    thumb_up: bool = False
    out_of_scale: list[tuple[str, float]] = field(default_factory=list)  # (name, value) not read: off its scale
    failed_scores: list[str] = field(default_factory=list)  # names of the failing scores, in signal order

    @property
    def failed(self) -> bool:
        return bool(self.signals)


def is_negative_comment(comment: str | None, value: Any = None, knowledge: TargetKnowledge = DEFAULT_KNOWLEDGE) -> bool:
    """A comment that complains about the answer or asks where it comes from (by the target's vocabulary)."""
    if isinstance(value, bool):
        if value is False:
            return True
    elif isinstance(value, (int, float)) and value < 0:
        return True
    if not comment:
        return False
    return bool(knowledge.negative_feedback.search(comment) or knowledge.source_requests.search(comment))


def detect(trace: Trace, settings: DetectionSettings) -> Detection:
    """Explicit, behavioural (from feedback), judged and operational (errors) signals of one trace."""
    signals: list[SignalTuple] = []
    thumb_up = False
    seen_behaviour: set[str] = set()
    negative, source = settings.knowledge.negative_feedback, settings.knowledge.source_requests
    for fb in trace.feedback:
        kind = fb.kind
        if kind == "thumb_down":
            detail = "user gave a thumb down" + (f": {one_line(fb.comment)[:160]!r}" if fb.comment else "")
            signals.append(("explicit", "thumb_down", detail, fb.span_id, 1.0))
        elif kind == "thumb_up":
            thumb_up = True
        elif kind == "comment":
            text = fb.comment if fb.comment else (fb.value if isinstance(fb.value, str) else None)
            if is_negative_comment(text, fb.value, settings.knowledge) and not (
                text and _POSITIVE_ONLY.match(text) and not negative.search(text)
            ):
                shown = f": {one_line(text)[:160]!r}" if text else ""
                if text and source.search(text) and not negative.search(text):
                    signals.append(("explicit", "source_request", f"user asked for the source{shown}", fb.span_id, 0.8))
                else:
                    signals.append(("explicit", "negative_comment", f"user commented{shown}", fb.span_id, 0.9))
        elif kind in ("rephrase", "abandon", "escalation") and kind not in seen_behaviour:
            seen_behaviour.add(kind)
            strength = {"rephrase": 0.7, "abandon": 0.6, "escalation": 1.0}[kind]
            what = {
                "rephrase": "user rephrased the request",
                "abandon": "user abandoned the conversation",
                "escalation": "user escalated to a human",
            }[kind]
            if fb.comment:
                what += f": {one_line(fb.comment)[:120]!r}"
            signals.append(("behavioural", kind, what, fb.span_id, strength))

    passing: list[tuple[str, float, float]] = []
    out_of_scale: list[tuple[str, float]] = []
    failed_scores: list[str] = []
    for sc in trace.scores:
        v = sc.value
        if isinstance(v, bool):
            good = v if settings.score_mark(sc.name).higher_is_better else not v
            if not good:
                signals.append(("judged", "low_score", f"score {sc.name} is {str(v).lower()}", sc.span_id, 1.0))
                failed_scores.append(sc.name)
            else:
                passing.append((sc.name, 1.0, 1.0))
            continue
        if not isinstance(v, (int, float)) or v != v:  # a label, or NaN
            continue
        m = settings.score_mark(sc.name)
        if not m.holds(v):
            out_of_scale.append((sc.name, float(v)))
            continue
        low, high, thr = m.low, m.high, m.mark
        failed = v < thr if m.higher_is_better else v > thr
        if failed:
            span = (thr - low) if m.higher_is_better else (high - thr)
            depth = abs(thr - v) / span if span > 0 else 1.0
            strength = round(0.5 + 0.5 * min(1.0, max(0.0, depth)), 3)
            src = f" ({sc.source})" if sc.source else ""
            side = "under its pass mark" if m.higher_is_better else "over its pass mark"
            tail = "" if m.higher_is_better else " (lower is better)"
            signals.append(("judged", "low_score", f"score {sc.name}={v:g}{src} is {side} {thr:g}{tail}", sc.span_id, strength))
            failed_scores.append(sc.name)
        else:
            room = (high - thr) if m.higher_is_better else (thr - low)
            margin = abs(v - thr) / room if room > 0 else 1.0
            passing.append((sc.name, float(v), min(1.0, max(0.0, margin))))

    # an error the assistant recovered from (a later call of the same span succeeded) is not a failure
    last_ok = {(sp.kind, sp.name): i for i, sp in enumerate(trace.spans) if not sp.error}
    for i, span in enumerate(trace.spans):
        if span.error and last_ok.get((span.kind, span.name), -1) < i:
            if span.kind == "tool":
                signals.append(("operational", "tool_error", f"tool {span.name} failed: {one_line(span.error)[:200]}", span.span_id, 1.0))
            else:
                signals.append(("operational", "span_error", f"{span.kind} span {span.name} failed: {one_line(span.error)[:200]}", span.span_id, 0.9))
    err = trace.metadata.get("error")
    if isinstance(err, str) and err.strip():
        signals.append(("operational", "trace_error", f"the request failed: {one_line(err)[:200]}", None, 0.9))
    if passing and not failed_scores and signals and all(sig[1] == "tool_error" for sig in signals):
        signals = []  # the outcome passed: the assistant handled the tool's refusal (told the user, chose otherwise)
    return Detection(signals, passing, thumb_up, out_of_scale, failed_scores)


class OutOfScaleScores:
    """Scores not read because their value is off their scale: per score name, how many, lowest, highest.

    Filled from `Detection.out_of_scale` over a run (parts of a run `merge`); `warnings` says, once per
    score name, what was seen and what to declare in ``autofix.yaml``.
    """

    def __init__(self) -> None:
        self.by_name: dict[str, list[float]] = {}  # name -> [count, lowest, highest]

    def add(self, name: str, value: float) -> None:
        seen = self.by_name.get(name)
        if seen is None:
            self.by_name[name] = [1, value, value]
        else:
            seen[0] += 1
            seen[1] = min(seen[1], value)
            seen[2] = max(seen[2], value)

    def merge(self, other: OutOfScaleScores | Mapping[str, list[float]]) -> None:
        items = other.by_name if isinstance(other, OutOfScaleScores) else other
        for name, (count, low, high) in items.items():
            seen = self.by_name.get(name)
            if seen is None:
                self.by_name[name] = [count, low, high]
            else:
                self.by_name[name] = [seen[0] + count, min(seen[1], low), max(seen[2], high)]

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def warnings(self, settings: DetectionSettings) -> list[str]:
        """One line per score name, e.g. ``score 'faithfulness' has values up to 5 (12 scores), outside
        the default scale [0, 1], so they were not read: declare triage.scores.faithfulness.range``."""
        out = []
        for name in sorted(self.by_name):
            count, low, high = self.by_name[name]
            m = settings.score_mark(name)
            if low < m.low and high > m.high:
                values = f"values from {low:g} to {high:g}"
            elif high > m.high:
                values = f"values up to {high:g}"
            else:
                values = f"values down to {low:g}"
            n = int(count)
            fix = (
                f"fix triage.scores.{name}.range in autofix.yaml, or the scorer"
                if m.origin == "declared"
                else f"declare triage.scores.{name}.range in autofix.yaml (e.g. {{range: [low, high], pass: <mark>}})"
            )
            counted = f"{n} scores" if n != 1 else "1 score"
            unread = "they were" if n != 1 else "it was"
            out.append(f"score {name!r} has {values} ({counted}), outside {m.describe(name)}, so {unread} not read: {fix}")
        return out


def priority(
    signals: Iterable[SignalTuple],
    settings: DetectionSettings,
    passing_scores: Iterable[tuple[str, float, float]] = (),
    thumb_up: bool = False,
) -> float:
    """Weighted sum of explicit, behavioural and outcome strengths minus risk penalties (>= 0)."""
    e: list[float] = []
    b: list[float] = []
    o: list[float] = []
    judged: list[float] = []
    names: list[str] = []
    for kind, name, _detail, _span, strength in signals:
        names.append(name)
        (e if kind == "explicit" else b if kind == "behavioural" else o).append(strength)
        if kind == "judged":
            judged.append(strength)
    noisy_or = lambda xs: 1.0 - prod(1.0 - x for x in xs) if xs else 0.0  # noqa: E731
    E, B, O = noisy_or(e), noisy_or(b), noisy_or(o)
    risk = 0.0
    best_pass = max((m for _, _, m in passing_scores), default=None)
    if e and not b and not o and best_pass is not None and best_pass >= 0.4 and set(names) != {"source_request"}:
        # explicit feedback alone, and a judge found the answer good: maybe a misclick (a request for the
        # source is about the form of the answer, which a correctness judge does not contradict)
        risk += 1.0 if names == ["thumb_down"] else 0.5
    if judged and len(judged) == len(names):  # judged alone
        if thumb_up:
            risk += 0.5  # the user liked it; the judge did not
        if max(judged) < 0.6:
            risk += 0.25  # barely under the pass mark
    p = settings.w_explicit * E + settings.w_behavioural * B + settings.w_outcome * O - settings.w_risk * risk
    return round(max(0.0, p), 4)


def to_signals(items: Iterable[SignalTuple]) -> list[Signal]:
    return [Signal(kind=k, name=n, detail=d, span_id=s, strength=st) for k, n, d, s, st in items]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- latency


def trace_latency_ms(trace: Trace) -> float | None:
    """The trace's latency: ``metadata.latency_ms``, else ``metadata.latency_s`` (seconds, as Langfuse
    reports it), else the span extent (latest end - earliest start)."""
    for key, scale in (("latency_ms", 1.0), ("latency_s", 1000.0)):
        v = trace.metadata.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
            return float(v) * scale
    starts = [s.start_ms for s in trace.spans if s.start_ms is not None]
    ends = [s.end_ms for s in trace.spans if s.end_ms is not None]
    if starts and ends:
        return float(max(ends)) - float(min(starts))
    return None


class LatencyStats:
    """Per task type robust latency statistics over a stream: median and MAD of a uniform sample.

    Memory is bounded by `reservoir` values per task type (reservoir sampling, seeded). `z` is
    the robust z-score ``(x - median) / (1.4826 * MAD)`` (the mean absolute deviation stands in
    when the MAD is 0); it is None while a task type has fewer than `min_count` latencies, or
    when its latencies do not vary.
    """

    def __init__(self, reservoir: int = 20_000, min_count: int = 30, seed: int = 0):
        self.reservoir = reservoir
        self.min_count = min_count
        self._rng = random.Random(seed)
        self._samples: dict[str, list[float]] = {}
        self._counts: dict[str, int] = {}
        self._stats: dict[str, tuple[float, float] | None] = {}
        self._fresh_at: dict[str, int] = {}

    def add(self, task_type: str, latency: float | None) -> None:
        if latency is None:
            return
        n = self._counts.get(task_type, 0) + 1
        self._counts[task_type] = n
        sample = self._samples.setdefault(task_type, [])
        if len(sample) < self.reservoir:
            sample.append(latency)
        else:
            j = self._rng.randrange(n)
            if j < self.reservoir:
                sample[j] = latency

    def count(self, task_type: str) -> int:
        return self._counts.get(task_type, 0)

    def _compute(self, task_type: str) -> tuple[float, float] | None:
        sample = self._samples.get(task_type) or []
        if len(sample) < self.min_count:
            return None
        arr = np.asarray(sample, dtype=np.float64)
        med = float(np.median(arr))
        dev = np.abs(arr - med)
        scale = 1.4826 * float(np.median(dev))
        if scale <= 0:
            scale = 1.2533 * float(dev.mean())
        if scale <= 0:
            return None
        return med, scale

    def stats(self, task_type: str) -> tuple[float, float] | None:
        """(median, scale) of the task type, refreshed as the sample grows (about every 12%)."""
        n = self._counts.get(task_type, 0)
        last = self._fresh_at.get(task_type)
        if last is None or n - last >= max(64, last // 8):
            self._stats[task_type] = self._compute(task_type)
            self._fresh_at[task_type] = n
        return self._stats.get(task_type)

    def z(self, task_type: str, latency: float | None) -> float | None:
        if latency is None:
            return None
        st = self.stats(task_type)
        if st is None:
            return None
        med, scale = st
        return (latency - med) / scale

    def median(self, task_type: str) -> float | None:
        st = self.stats(task_type)
        return st[0] if st else None

    @classmethod
    def merged(cls, parts: list[LatencyStats]) -> LatencyStats:
        """One statistic over several parts of a stream: counts add up, samples mix in proportion."""
        if len(parts) == 1:
            return parts[0]
        out = cls(parts[0].reservoir, parts[0].min_count)
        tasks = {t for p in parts for t in p._counts}
        for t in sorted(tasks):
            total = sum(p._counts.get(t, 0) for p in parts)
            out._counts[t] = total
            sample: list[float] = []
            for p in parts:
                mine = p._samples.get(t, [])
                share = p._counts.get(t, 0) / total if total else 0.0
                k = min(len(mine), round(out.reservoir * share)) if total > out.reservoir else len(mine)
                sample += mine if k >= len(mine) else out._rng.sample(mine, k)
            out._samples[t] = sample
        return out

    def finalize(self) -> None:
        """Recompute every task type's statistics from its whole sample."""
        for t in self._samples:
            self._stats[t] = self._compute(t)
            self._fresh_at[t] = self._counts.get(t, 0)


def latency_signal(latency: float | None, task_type: str, stats: LatencyStats, threshold_z: float, span_id: str | None = None) -> SignalTuple | None:
    """The operational ``latency_outlier`` signal when the latency's robust z-score is over the threshold."""
    z = stats.z(task_type, latency)
    if z is None or z <= threshold_z or latency is None:
        return None
    med = stats.median(task_type) or 0.0
    strength = round(min(1.0, 0.5 + 0.5 * (z - threshold_z) / threshold_z), 3)
    detail = f"latency {latency:.0f} ms is an outlier for task type {task_type} (median {med:.0f} ms, robust z={z:.1f} > {threshold_z:g})"
    return ("operational", "latency_outlier", detail, span_id, strength)


# --------------------------------------------------------------------------- rephrase


def _trigrams(text: str) -> set[str]:
    t = " ".join(text.lower().split())
    return {t[i : i + 3] for i in range(max(0, len(t) - 2))}


def similar_inputs(a: str, b: str, a_terms: set[str] | None = None, b_terms: set[str] | None = None) -> bool:
    """Two requests that ask the same thing: the same text, content words with Jaccard >= 0.3, or
    character trigrams with Jaccard >= 0.45 (catches re-typed short requests)."""
    na, nb = " ".join(a.lower().split()), " ".join(b.lower().split())
    if not na or not nb:
        return False
    if na == nb:
        return True
    ta = a_terms if a_terms is not None else content_terms(a)
    tb = b_terms if b_terms is not None else content_terms(b)
    if ta and tb:
        inter = len(ta & tb)
        if inter and inter / len(ta | tb) >= 0.3:
            return True
    ga, gb = _trigrams(na), _trigrams(nb)
    if ga and gb and len(ga & gb) / len(ga | gb) >= 0.45:
        return True
    return False


def rephrase_signal(later_trace_id: str, later_input: str, seconds: float | None) -> SignalTuple:
    """The ``rephrase`` signal; `seconds` None: the traces have no timestamp, so the later request is the
    next one of the session in file order."""
    when = f"{seconds:.0f}s later" if seconds is not None else "next (in file order: no timestamps)"
    return (
        "behavioural",
        "rephrase",
        f"the user asked again {when} in the same session (trace {later_trace_id}): {later_input[:100]!r}",
        None,
        0.7,
    )


def settings_from_mapping(data: Mapping[str, Any]) -> DetectionSettings:
    """Settings from a plain mapping of `DetectionSettings` fields (tests, scripts)."""
    return DetectionSettings(**dict(data))
