"""The nightly run's state: what the LangGraph channels carry between nodes, and its typed records.

The channels hold JSON-ready dicts (what the SQLite checkpointer stores and a resumed run reads
back); every node validates them into the pydantic records below before use.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, Field


def merge_dicts(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class Job(BaseModel):
    """One (cluster, optimizer) branch of the fan-out."""

    index: int = Field(description="its place in the plan: candidates are numbered from index * 100 + 1")
    cluster: str
    category: str
    optimizer: str
    priority: float
    budget_usd: float | None = None
    max_tokens: int | None = None
    max_metric_calls: int | None = None
    wall_s: float | None = Field(default=None, description="its share of the run's wall time, from its start")

    @property
    def first_n(self) -> int:
        return self.index * 100 + 1


class CandidateOutcome(BaseModel):
    """A candidate an optimizer proposed, and (once gated) its verdict."""

    id: str
    cluster: str
    optimizer: str
    branch: str
    commit: str
    diff: str
    train: dict[str, Any] = Field(default_factory=dict)
    cost_usd: float = 0.0
    metric_calls: int = 0
    lineage: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] | None = Field(default=None, description="{passed, reasons, verdict_id, verdict_path}")


class RunState(TypedDict, total=False):
    run_id: str
    config: str
    run_dir: str
    started_at: str
    budget: dict[str, Any]
    triage: dict[str, Any]
    clusters: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    candidates: Annotated[list[dict[str, Any]], operator.add]
    gated: Annotated[list[dict[str, Any]], operator.add]
    proposals: list[dict[str, Any]]
    skipped: Annotated[list[dict[str, Any]], operator.add]
    errors: Annotated[list[str], operator.add]
    timings: Annotated[dict[str, float], merge_dicts]
    cost_usd: Annotated[float, operator.add]
    report: dict[str, Any]
