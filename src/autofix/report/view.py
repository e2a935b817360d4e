"""What the run report shows, read once from a run's final state dict.

The state is what the nightly run's nodes leave (`autofix.graph.nodes`): ``triage`` (its counts, and
``changes`` against the previous run when triage gives them), ``clusters`` (each with its ``trend``),
``findings``, ``jobs``, ``gated`` candidates (``train``, ``lineage``, ``gate`` with the held-out check
as ``target``), ``proposals``, ``skipped``, ``errors``, ``timings`` and ``cost_usd``. Every key may be
missing (a run that wound down early, an older state): the view then has less to show, never fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OWNERS = {
    "prompt": "optimizer (prompt) / assistant team",
    "retrieval": "optimizer (retrieval) / search team",
    "routing": "optimizer (routing) / assistant team",
    "tool_arguments": "optimizer (code) / tool owners",
    "missing_capability": "product",
    "context": "optimizer (retrieval) / assistant team",
    "memory": "assistant team",
    "data_freshness": "knowledge-base owners",
    "model_limitation": "ML platform",
    "infrastructure": "platform",
    "evaluation": "evaluation owners",
    "unclassified": "triage (needs a look)",
}
"""Who owns a category's fix when no optimizer can make it (DESIGN.md: the owner follows from the category)."""

TRENDS = ("new", "growing", "shrinking", "steady")


def owner_of(category: str, tag: str | None = None) -> str:
    """The owner a reader sees: triage's tag (``team:product``, ``optimizer:retrieval``), else the category's."""
    return tag or OWNERS.get(category) or "?"


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class ClusterRow:
    id: str
    rank: Any
    name: str
    category: str
    size: int
    trend: str | None
    previous_size: int | None
    owner: str
    fixable: bool
    optimized: bool
    rationale: str

    @property
    def trend_text(self) -> str:
        if not self.trend:
            return "-"
        if self.previous_size is not None and self.trend != "new":
            return f"{self.trend} ({self.previous_size} → {self.size})"
        return self.trend


@dataclass
class OwnedFinding:
    """A failure no optimizer fixes: a cluster not planned, a triage finding, or an optimizer's finding."""

    category: str
    title: str
    subject: str
    size: int
    owner: str
    rationale: str
    source: str


@dataclass
class CandidateRow:
    id: str
    cluster: str
    optimizer: str
    branch: str
    commit: str
    diff: str
    passed: bool | None
    """None: not gated."""
    reasons: list[str]
    target_reason: str
    train_base: float | None
    train_score: float | None
    heldout_base: float | None
    heldout_score: float | None
    heldout_n: int | None
    p_value: float | None
    metric_calls: int
    cost_usd: float
    lineage: dict[str, Any]
    verdict_path: str | None
    proposal: str | None = None
    queue_note: str | None = None

    @property
    def verdict(self) -> str:
        return "not gated" if self.passed is None else ("PASSED" if self.passed else "refused")

    @property
    def optimizer_short(self) -> str:
        return self.optimizer.rsplit("/", 1)[-1]


@dataclass
class Stage:
    """One timed step: ``triage``, ``optimize <cluster> / <optimizer>``, ``gate <candidate>``."""

    stage: str
    label: str
    seconds: float
    cost_usd: float | None


@dataclass
class ReportView:
    run_id: str
    started_at: str
    config: str | None
    traces: int
    failures: int
    quarantined: int
    clusters: list[ClusterRow]
    trend_counts: dict[str, int]
    previous: dict[str, Any] | None
    resolved: list[dict[str, Any]]
    owned: list[OwnedFinding]
    candidates: list[CandidateRow]
    proposals: list[dict[str, Any]]
    not_queued: list[dict[str, Any]]
    not_reached: list[str]
    errors: list[str]
    warnings: list[str]
    stages: list[Stage]
    cost_usd: float
    budget: dict[str, Any] = field(default_factory=dict)
    compared: bool = False
    """Triage gave its comparison with the previous run (``triage.changes``)."""

    @property
    def passed(self) -> list[CandidateRow]:
        return [c for c in self.candidates if c.passed]

    @property
    def refused(self) -> list[CandidateRow]:
        return [c for c in self.candidates if not c.passed]

    def review_command(self, proposal: str) -> str:
        return f"autofix review show {proposal}" + (f" -c {self.config}" if self.config else "")

    def approve_command(self, proposal: str) -> str:
        return f"autofix approve {proposal} --by YOU" + (f" -c {self.config}" if self.config else "")


def build_view(state: Mapping[str, Any]) -> ReportView:
    triage = dict(state.get("triage") or {})
    changes = dict(triage.get("changes") or state.get("changes") or {})
    change_of = {c.get("id"): c for c in changes.get("clusters") or [] if isinstance(c, Mapping)}
    optimized = {j.get("cluster") for j in state.get("jobs") or []}

    clusters = []
    for c in state.get("clusters") or []:
        ch = change_of.get(c.get("id"), {})
        clusters.append(ClusterRow(
            id=str(c.get("id", "")), rank=c.get("rank", ""), name=str(c.get("name") or ""),
            category=str(c.get("category", "unclassified")), size=int(c.get("size") or len(c.get("trace_ids") or [])),
            trend=c.get("trend") or ch.get("trend"),
            previous_size=c.get("previous_size") if c.get("previous_size") is not None else ch.get("previous_size"),
            owner=owner_of(str(c.get("category", "")), c.get("owner")), fixable=bool(c.get("fixable")),
            optimized=c.get("id") in optimized, rationale=str(c.get("rationale") or "")))

    counts = {k: int(v) for k, v in (changes.get("counts") or {}).items() if isinstance(v, (int, float))}
    if not counts and any(c.trend for c in clusters):
        for c in clusters:
            if c.trend:
                counts[c.trend] = counts.get(c.trend, 0) + 1

    owned = [OwnedFinding(category=c.category, title=c.name or c.id, subject=f"cluster {c.id}", size=c.size,
                          owner=c.owner, rationale=c.rationale, source="triage: no optimizer serves it")
             for c in clusters if not c.optimized and not c.fixable]  # a fixable one not reached is listed as such
    for f in state.get("findings") or []:
        owned.append(_finding(f, "triage: a run-level finding"))
    for s in state.get("skipped") or []:
        if isinstance(s.get("finding"), Mapping):
            owned.append(_finding(s["finding"], f"optimizer {s.get('optimizer', '')}: not optimized"))

    proposals_by_candidate = {p.get("candidate"): p for p in state.get("proposals") or []}
    gated = {c["id"]: c for c in state.get("gated") or [] if "id" in c}
    for c in state.get("candidates") or []:  # proposed but never gated (a run that wound down)
        gated.setdefault(c.get("id"), c)
    candidates = [_candidate(c, proposals_by_candidate.get(cid)) for cid, c in sorted(gated.items(), key=lambda kv: str(kv[0]))]

    costs: dict[tuple[str, str], float] = {}
    for c in candidates:  # a candidate's cost is its optimizer run's, shared by the run's candidates
        key = (c.cluster, c.optimizer)
        costs[key] = max(costs.get(key, 0.0), c.cost_usd)
    stages = []
    for key, seconds in (state.get("timings") or {}).items():
        stage, _, label = str(key).partition(" ")
        cost = None
        if stage == "optimize":
            cluster, _, optimizer = label.partition(" / ")
            cost = costs.get((cluster, optimizer))
        stages.append(Stage(stage=stage, label=label or stage, seconds=float(seconds or 0.0), cost_usd=cost))

    not_reached = [f"{s.get('cluster', '')} / {s.get('optimizer', '')}: {s.get('reason', '')}"
                   for s in state.get("skipped") or [] if not isinstance(s.get("finding"), Mapping)]
    not_reached += [f"{c.id}: proposed but not gated" for c in candidates if c.passed is None]
    return ReportView(
        run_id=str(state.get("run_id", "")), started_at=str(state.get("started_at") or "?"),
        config=state.get("config"), traces=int(triage.get("traces") or 0), failures=int(triage.get("failures") or 0),
        quarantined=int(triage.get("quarantined") or 0), clusters=clusters, trend_counts=counts,
        previous=changes.get("previous"), resolved=list(changes.get("resolved") or []), owned=owned,
        candidates=candidates, proposals=[p for p in state.get("proposals") or [] if p.get("proposal")],
        not_queued=[p for p in state.get("proposals") or [] if not p.get("proposal")],
        not_reached=not_reached, errors=[str(e) for e in state.get("errors") or []],
        warnings=[str(w) for w in triage.get("warnings") or []], stages=stages,
        cost_usd=float(state.get("cost_usd") or 0.0),
        budget={k: v for k, v in (state.get("budget") or {}).items()
                if k in ("budget_usd", "max_tokens", "max_metric_calls", "wall_s", "max_jobs") and v is not None},
        compared=bool(changes))


def _finding(f: Mapping[str, Any], source: str) -> OwnedFinding:
    category = str(f.get("category", "unclassified"))
    return OwnedFinding(category=category, title=str(f.get("title") or f.get("subject") or ""),
                        subject=str(f.get("subject") or ""), size=int(f.get("traces") or 0),
                        owner=owner_of(category), rationale=str(f.get("rationale") or ""), source=source)


def _candidate(c: Mapping[str, Any], proposal: Mapping[str, Any] | None) -> CandidateRow:
    gate = c.get("gate")
    train = c.get("train") or {}
    target = (gate or {}).get("target") or {}
    detail = target.get("detail") or {}
    return CandidateRow(
        id=str(c.get("id", "")), cluster=str(c.get("cluster", "")), optimizer=str(c.get("optimizer", "")),
        branch=str(c.get("branch", "")), commit=str(c.get("commit", "")), diff=str(c.get("diff") or ""),
        passed=None if gate is None else bool(gate.get("passed")), reasons=[str(r) for r in (gate or {}).get("reasons") or []],
        target_reason=str(target.get("reason") or ""), train_base=_float(train.get("base_score")),
        train_score=_float(train.get("score")), heldout_base=_float(detail.get("base")),
        heldout_score=_float(detail.get("candidate")),
        heldout_n=int(detail["n"]) if isinstance(detail.get("n"), (int, float)) else None,
        p_value=_float(detail.get("p_value")), metric_calls=int(c.get("metric_calls") or 0),
        cost_usd=float(c.get("cost_usd") or 0.0), lineage=dict(c.get("lineage") or {}),
        verdict_path=(gate or {}).get("verdict_path"),
        proposal=(proposal or {}).get("proposal"), queue_note=(proposal or {}).get("reason"))
