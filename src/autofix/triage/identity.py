"""Cluster identities that last from one triage run to the next, and what changed since the previous run.

A cluster is known by its **mechanism**: its category, its task type and its dominant diagnosis signature
(the rule that fired and its key evidence, e.g. ``tool_arguments_invalid|list_tickets``), not by a hash of
its current members. Each run, the new clusters are matched to the previous run's (read from the report
that ``latest.json`` held before this run), one to one, only within one category, task type and mechanism:

1. **members**: the pairs that share traces, when at least `MIN_MEMBER_OVERLAP` of the smaller cluster is
   shared, best first (Jaccard of the trace ids, then the shared count);
2. **terms**: for a new cluster whose members are all new traces (nightly windows that do not overlap),
   the cosine of term profiles (its keywords and its examples' requests), at least `MIN_TERM_SIMILARITY`,
   best first;
3. **mechanism**: what is left of a mechanism that had exactly one cluster in each run is the same cluster,
   whatever its requests are about now.

A matched cluster keeps the previous id. Any other gets a fresh id built from its mechanism
(`autofix.triage.clustering.cluster_id`: ``<category>-<task type>-<mechanism>``), with its top word
(then a number) added only where that id is already taken: by an id carried over, a cluster of the
previous run, an id retired earlier (``retired_ids``, handed from report to report) or another new
cluster of the same mechanism. The same inputs give the same ids.

Each cluster's ``trend`` compares its size with the one it was matched to: ``new``, ``growing``,
``shrinking`` or ``steady`` (a change of at most `TREND_TOLERANCE` of the previous size); the previous
clusters left unmatched are ``resolved``. Sizes compare the traces each run read: with a cumulative trace
file every matched cluster grows or stays steady; with nightly windows (``--since``) they compare night
with night.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from autofix.triage._text import content_terms
from autofix.triage.clustering import cluster_id, dominant

__all__ = [
    "MIN_MEMBER_OVERLAP",
    "MIN_TERM_SIMILARITY",
    "TREND_TOLERANCE",
    "ClusterChange",
    "ClusterChanges",
    "ClusterSnapshot",
    "Identities",
    "PreviousReport",
    "PreviousRun",
    "ResolvedCluster",
    "assign_identities",
    "load_previous",
    "previous_from_report",
    "trend_of",
]

MIN_MEMBER_OVERLAP = 0.5
"""Members: at least this share of the smaller cluster's traces must be in both."""
MIN_TERM_SIMILARITY = 0.3
"""Terms: the least cosine of two term profiles for a match when the members are all new."""
TREND_TOLERANCE = 0.1
"""A size within this fraction of the previous one is ``steady``."""

Trend = Literal["new", "growing", "shrinking", "steady"]
Basis = Literal["members", "terms", "mechanism"]


# --------------------------------------------------------------------------- report records


class ClusterChange(BaseModel):
    """One cluster of this run against the previous run."""

    id: str
    trend: Trend
    size: int
    previous_size: int | None = None
    matched_by: Basis | None = Field(default=None, description="how it was linked to the previous cluster")
    similarity: float | None = Field(default=None, description="members: Jaccard of trace ids; terms: cosine")


class ResolvedCluster(BaseModel):
    """A cluster of the previous run that no cluster of this run continues."""

    id: str
    category: str
    task_type: str
    mechanism: str
    name: str = ""
    previous_size: int
    size: int = 0


class PreviousReport(BaseModel):
    """Which report this run was compared with."""

    report: str | None = None
    generated_at: datetime | None = None
    traces: int | None = None
    clusters: int = 0


class ClusterChanges(BaseModel):
    """The comparison with the previous run: the trend of every cluster, and the clusters resolved since."""

    previous: PreviousReport | None = Field(default=None, description="None: no previous run, every cluster is new")
    counts: dict[str, int] = Field(default_factory=dict, description="kept, new, growing, shrinking, steady, resolved")
    clusters: list[ClusterChange] = Field(default_factory=list)
    resolved: list[ResolvedCluster] = Field(default_factory=list)


# --------------------------------------------------------------------------- what matching reads


@dataclass(frozen=True)
class ClusterSnapshot:
    """What identity matching reads of a cluster, this run's or the previous one's."""

    id: str
    category: str
    task_type: str
    mechanism: str
    signatures: frozenset[str]
    size: int
    trace_ids: frozenset[str]
    profile: Mapping[str, float]
    name: str = ""
    keywords: tuple[str, ...] = ()
    legacy: bool = False  # from a report written before mechanisms were recorded: its mechanism is a bare rule

    @classmethod
    def of(cls, cluster: Any) -> ClusterSnapshot:
        """From a `Cluster`, or a cluster of a report's JSON (older reports: the mechanism from ``rules``)."""
        get = cluster.get if isinstance(cluster, Mapping) else (lambda k, d=None: getattr(cluster, k, d))
        category = get("category", "") or ""
        category = str(getattr(category, "value", category))
        rules = {str(k): int(v) for k, v in (get("rules") or {}).items()}
        mechanism = get("mechanism")
        legacy = not mechanism
        signatures = dict(get("signatures") or {}) or ({str(mechanism): 1} if mechanism else dict(rules))
        if legacy:
            mechanism = dominant(rules) if rules else "none"
        trace_ids = frozenset(str(t) for t in (get("trace_ids") or []))
        size = int(get("size") or len(trace_ids))
        top_terms = [str(t) for t in (get("top_terms") or [])]
        keywords = tuple(str(t) for t in (get("keywords") or [])) or tuple(top_terms)
        examples = [e.get("input", "") if isinstance(e, Mapping) else getattr(e, "input", "") for e in (get("examples") or [])]
        return cls(
            id=str(get("id", "")), category=category, task_type=str(get("task_type", "unknown") or "unknown"),
            mechanism=str(mechanism), signatures=frozenset(signatures), size=size, trace_ids=trace_ids,
            profile=term_profile(keywords, examples), name=str(get("name", "") or ""), keywords=keywords, legacy=legacy,
        )


def term_profile(keywords: Sequence[str], examples: Iterable[str] = ()) -> dict[str, float]:
    """What a cluster's requests are about: its keywords (most distinctive first, weighing more) and the
    content words of its example requests; an L2-normalised bag of terms."""
    w: Counter[str] = Counter()
    for rank, word in enumerate(keywords):
        for t in content_terms(word):
            w[t] += 1.0 if rank < 3 else 0.5
    for text in examples:
        for t in content_terms(str(text)):
            w[t] += 0.34
    norm = math.sqrt(sum(v * v for v in w.values()))
    return {t: v / norm for t, v in w.items()} if norm else {}


def _cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items())


def _rule(signature: str) -> str:
    return signature.partition("|")[0]


def same_mechanism(a: ClusterSnapshot, b: ClusterSnapshot) -> bool:
    """Same category, task type and mechanism. A mixed cluster whose dominant signature changed is the same when
    each one's mechanism is among the other's signatures; an older report's bare rule matches that rule."""
    if a.category != b.category or a.task_type != b.task_type:
        return False
    if a.mechanism == b.mechanism:
        return True
    if a.legacy or b.legacy:
        return _rule(a.mechanism) == _rule(b.mechanism)
    return a.mechanism in b.signatures and b.mechanism in a.signatures


# --------------------------------------------------------------------------- the previous run


@dataclass
class PreviousRun:
    """The previous run's clusters and the ids retired before it."""

    clusters: list[ClusterSnapshot]
    retired_ids: list[str] = field(default_factory=list)
    report: str | None = None
    generated_at: datetime | None = None
    traces: int | None = None

    def ref(self) -> PreviousReport:
        return PreviousReport(report=self.report, generated_at=self.generated_at, traces=self.traces,
                              clusters=len(self.clusters))


def _from_document(doc: Mapping[str, Any], path: str | None) -> PreviousRun:
    clusters = doc.get("clusters")
    if not isinstance(clusters, list) or not all(isinstance(c, Mapping) for c in clusters):
        raise ValueError("its 'clusters' is not a list of clusters")
    snaps = [ClusterSnapshot.of(c) for c in clusters]
    if any(not s.id for s in snaps):
        raise ValueError("a cluster has no 'id'")
    generated = doc.get("generated_at")
    try:
        when = datetime.fromisoformat(str(generated).replace("Z", "+00:00")) if generated else None
    except ValueError:
        when = None
    traces = doc.get("traces")
    report = doc.get("report_path")  # latest.json is a copy: name the run's own report
    return PreviousRun(clusters=snaps, retired_ids=[str(x) for x in (doc.get("retired_ids") or [])],
                       report=str(report) if isinstance(report, str) and report else path,
                       generated_at=when, traces=traces if isinstance(traces, int) else None)


def _read_head(path: Path) -> dict[str, Any] | None:
    """The summary of a report as `_write_report` lays it out (one key per line, one cluster per line), read
    up to ``failure_details`` so that a run with a million failures does not parse them all; None when the
    file is laid out otherwise."""
    doc: dict[str, Any] = {}
    with open(path, encoding="utf-8") as fh:
        if fh.readline() != "{\n":
            return None
        clusters: list[Any] | None = None
        for line in fh:
            if clusters is not None:
                if line.startswith("  ]"):
                    doc["clusters"], clusters = clusters, None
                    continue
                clusters.append(json.loads(line.strip().rstrip(",")))
                continue
            if not line.startswith('  "'):
                return None if line.strip() != "}" else doc
            key, sep, rest = line.strip().partition(": ")
            if not sep:
                return None
            key = json.loads(key)
            rest = rest.rstrip(",")
            if key == "failure_details":
                return doc
            if key == "clusters" and rest == "[":
                clusters = []
                continue
            doc[key] = json.loads(rest)
    return None


def load_previous(path: str | Path) -> PreviousRun | None:
    """The previous run from a triage report file (e.g. ``<state>/triage/latest.json``); None when there is
    no such file. Raises ValueError naming the file when it cannot be read as a report."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        try:
            doc = _read_head(path)
        except (ValueError, UnicodeError):
            doc = None
        if doc is None or "clusters" not in doc:
            doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, Mapping):
            raise ValueError("it is not a JSON object")
        return _from_document(doc, str(path))
    except (OSError, UnicodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: the previous triage report cannot be read ({exc}); every cluster is compared "
                         f"as new: delete or fix the file") from None


def previous_from_report(report: Any) -> PreviousRun:
    """The previous run from an in-memory `TriageReport` (or any object with ``clusters``)."""
    return PreviousRun(
        clusters=[ClusterSnapshot.of(c) for c in report.clusters],
        retired_ids=list(getattr(report, "retired_ids", None) or []),
        report=getattr(report, "report_path", None),
        generated_at=getattr(report, "generated_at", None),
        traces=getattr(report, "traces", None),
    )


# --------------------------------------------------------------------------- matching and naming


def trend_of(size: int, previous_size: int | None, tolerance: float = TREND_TOLERANCE) -> Trend:
    """``new`` without a previous size; ``steady`` within `tolerance` of it; else ``growing`` or ``shrinking``."""
    if previous_size is None:
        return "new"
    delta = size - previous_size
    if abs(delta) <= tolerance * previous_size:
        return "steady"
    return "growing" if delta > 0 else "shrinking"


@dataclass
class Identities:
    """The outcome: one id per new cluster (in the order given), the comparison, the ids retired so far."""

    ids: list[str]
    changes: ClusterChanges
    retired_ids: list[str]


def _match(new: Sequence[ClusterSnapshot], prev: Sequence[ClusterSnapshot], min_overlap: float,
           min_similarity: float) -> dict[int, tuple[int, Basis, float]]:
    """new index -> (previous index, basis, similarity), one to one."""
    owner: dict[str, int] = {}
    for j, p in enumerate(prev):
        for t in p.trace_ids:
            owner.setdefault(t, j)
    shared: list[Counter[int]] = []
    for n in new:
        c: Counter[int] = Counter()
        for t in n.trace_ids:
            j = owner.get(t)
            if j is not None:
                c[j] += 1
        shared.append(c)
    by_group: dict[tuple[str, str], list[int]] = {}
    for j, p in enumerate(prev):
        by_group.setdefault((p.category, p.task_type), []).append(j)
    compatible = {(i, j) for i, n in enumerate(new) for j in by_group.get((n.category, n.task_type), ())
                  if same_mechanism(n, prev[j])}
    mates: dict[int, list[int]] = {}
    for i, j in sorted(compatible):
        mates.setdefault(i, []).append(j)
    suitors = Counter(j for _, j in compatible)
    done: dict[int, tuple[int, Basis, float]] = {}
    taken: set[int] = set()

    def claim(pairs: list[tuple[tuple[Any, ...], int, int, Basis, float]]) -> None:
        for _, i, j, basis, sim in sorted(pairs, key=lambda x: x[0]):
            if i not in done and j not in taken:
                done[i] = (j, basis, sim)
                taken.add(j)

    # 1. members in common
    pairs: list[tuple[tuple[Any, ...], int, int, Basis, float]] = []
    for i, c in enumerate(shared):
        a = len(new[i].trace_ids)
        for j, k in c.items():
            if (i, j) not in compatible:
                continue
            b = len(prev[j].trace_ids)
            if k / max(1, min(a, b)) >= min_overlap:
                jac = k / (a + b - k)
                pairs.append(((-jac, -k, i, prev[j].id), i, j, "members", round(jac, 4)))
    claim(pairs)
    # 2. the members are all new: what the requests are about
    pairs = []
    for i, n in enumerate(new):
        if i in done or shared[i]:
            continue
        for j in mates.get(i, ()):
            if j in taken:
                continue
            p = prev[j]
            sim = _cosine(n.profile, p.profile)
            if sim >= min_similarity:
                pairs.append(((-round(sim, 9), i, p.id), i, j, "terms", round(sim, 4)))
    claim(pairs)
    # 3. a mechanism with one cluster in each run
    for i in range(len(new)):
        only = mates.get(i, [])
        if i in done or len(only) != 1 or only[0] in taken or suitors[only[0]] != 1:
            continue
        j = only[0]
        done[i] = (j, "mechanism", round(_cosine(new[i].profile, prev[j].profile), 4))
        taken.add(j)
    return done


def _fresh_ids(new: Sequence[ClusterSnapshot], order: list[int], taken: set[str]) -> dict[int, str]:
    """Ids for the unmatched clusters (`order`: who chooses first): the mechanism's id where it is free, else
    with the cluster's top word, else a number."""
    out: dict[int, str] = {}
    later: list[int] = []
    for i in order:
        n = new[i]
        base = cluster_id(n.category, n.task_type, n.mechanism)
        if base in taken:
            later.append(i)
        else:
            out[i] = base
            taken.add(base)
    for i in later:
        n = new[i]
        base = cluster_id(n.category, n.task_type, n.mechanism)
        choice = next((cid for cid in (cluster_id(n.category, n.task_type, n.mechanism, w) for w in n.keywords[:3])
                       if cid not in taken), None)
        k = 2
        while choice is None:
            cid = f"{base}-{k}"
            choice = cid if cid not in taken else None
            k += 1
        out[i] = choice
        taken.add(choice)
    return out


def assign_identities(
    new: Sequence[ClusterSnapshot],
    previous: PreviousRun | None,
    *,
    tolerance: float = TREND_TOLERANCE,
    min_overlap: float = MIN_MEMBER_OVERLAP,
    min_similarity: float = MIN_TERM_SIMILARITY,
) -> Identities:
    """The ids of this run's clusters, their trends against `previous` (None: no previous run, all ``new``) and
    the clusters resolved since; see the module doc."""
    prev = list(previous.clusters) if previous is not None else []
    matched = _match(new, prev, min_overlap, min_similarity)
    ids: dict[int, str] = {i: prev[j].id for i, (j, _, _) in matched.items()}
    taken = set(ids.values()) | {p.id for p in prev} | set(previous.retired_ids if previous is not None else [])
    unmatched = [i for i in range(len(new)) if i not in matched]
    unmatched.sort(key=lambda i: (-new[i].size, new[i].keywords, min(new[i].trace_ids, default=""), i))
    ids.update(_fresh_ids(new, unmatched, taken))

    changes: list[ClusterChange] = []
    for i, n in enumerate(new):
        if i in matched:
            j, basis, sim = matched[i]
            was: int | None = prev[j].size
            changes.append(ClusterChange(id=ids[i], trend=trend_of(n.size, was, tolerance), size=n.size,
                                         previous_size=was, matched_by=basis, similarity=sim))
        else:
            changes.append(ClusterChange(id=ids[i], trend="new", size=n.size))
    kept = {j for j, _, _ in matched.values()}
    resolved = [
        ResolvedCluster(id=p.id, category=p.category, task_type=p.task_type, mechanism=p.mechanism, name=p.name,
                        previous_size=p.size)
        for j, p in enumerate(prev) if j not in kept
    ]
    resolved.sort(key=lambda r: (-r.previous_size, r.id))
    counts = Counter(c.trend for c in changes)
    summary = {"kept": len(matched), "new": counts["new"], "growing": counts["growing"],
               "shrinking": counts["shrinking"], "steady": counts["steady"], "resolved": len(resolved)}
    retired = sorted(set(previous.retired_ids if previous is not None else []) | {r.id for r in resolved})
    return Identities(
        ids=[ids[i] for i in range(len(new))],
        changes=ClusterChanges(previous=previous.ref() if previous is not None else None, counts=summary,
                               clusters=changes, resolved=resolved),
        retired_ids=retired,
    )
