"""What an optimizer is given (`OptimizeTask`) and what it gives back (`Proposal`), and the budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from autofix.config import GuardrailsGate, SearchParam
from autofix.replay.records import Case
from autofix.triage.records import Category


class BudgetExhausted(RuntimeError):
    """The optimizer asked for more metric calls, tokens or dollars than its budget has left; nothing was spent."""


class Budget(BaseModel):
    """What one optimizer may spend on one cluster; None means no limit of that kind."""

    max_metric_calls: int | None = Field(
        default=None, ge=0, description="Case replays (each case of each evaluation that the cache did not answer).")
    max_usd: float | None = Field(default=None, ge=0, description="Dollars of model calls: replays and the optimizer's LM.")
    max_tokens: int | None = Field(
        default=None, ge=0, description="Model tokens (prompt + completion): the replays' as the gateway counted "
        "them, and the optimizer LM's.")
    deadline: float | None = Field(
        default=None, description="Unix time after which nothing new starts (a run's wall-time share).")


class Spend:
    """What has been spent against a `Budget`; every charge is checked before the work it pays for."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.metric_calls = 0
        self.usd = 0.0
        self.tokens = 0
        self._lock = threading.Lock()

    def check_deadline(self) -> None:
        if self.budget.deadline is not None and time.time() > self.budget.deadline:
            raise BudgetExhausted("wall-time budget: the time given to this optimizer is spent")

    def reserve_metric_calls(self, n: int) -> None:
        """Take `n` metric calls, or raise BudgetExhausted without taking any."""
        self.check_deadline()
        with self._lock:
            limit = self.budget.max_metric_calls
            if limit is not None and self.metric_calls + n > limit:
                raise BudgetExhausted(f"metric-call budget: {self.metric_calls} of {limit} used, {n} more asked")
            self.metric_calls += n

    def check_usd(self, estimate: float) -> None:
        """Raise BudgetExhausted when `estimate` more dollars would break the budget (or the time is spent)."""
        self.check_deadline()
        limit = self.budget.max_usd
        if limit is not None and self.usd + estimate > limit + 1e-12:
            raise BudgetExhausted(f"dollar budget: ${self.usd:.4f} of ${limit:.4f} used, about ${estimate:.4f} more asked")

    def add_usd(self, usd: float) -> None:
        with self._lock:
            self.usd += usd

    @property
    def usd_left(self) -> float | None:
        return None if self.budget.max_usd is None else max(0.0, self.budget.max_usd - self.usd)

    def check_tokens(self, estimate: int) -> None:
        """Raise BudgetExhausted when `estimate` more tokens would break the budget (or the time is spent)."""
        self.check_deadline()
        limit = self.budget.max_tokens
        if limit is not None and self.tokens + estimate > limit:
            raise BudgetExhausted(f"token budget: {self.tokens} of {limit} used, up to {estimate} more asked")

    def add_tokens(self, tokens: int) -> None:
        with self._lock:
            self.tokens += tokens

    @property
    def tokens_left(self) -> int | None:
        return None if self.budget.max_tokens is None else max(0, self.budget.max_tokens - self.tokens)


class CaseEval(BaseModel):
    """One training case replayed and measured: what an optimizer reflects on."""

    case_id: str
    input: str
    messages: list[dict[str, str]] = Field(default_factory=list)
    output: str | None = None
    error: str | None = None
    spans: list[dict[str, Any]] = Field(default_factory=list)
    score: float | None = Field(description="in [0, 1]; None: no measure applied to the case")
    feedback: str = Field(description="each measure's verdict and detail, as text")
    tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0


class ReplayBatch(BaseModel):
    """A set of surface files replayed on training cases (gepa's `EvaluationBatch`, in autofix's terms)."""

    commit: str = Field(description="the commit the files were replayed at (base plus the files)")
    cases: list[CaseEval]
    score: float | None = Field(description="mean over measured cases; None when none was measured")
    tokens_per_case: float = 0.0
    cost_per_case: float = 0.0
    latency_p95_ms: float = 0.0
    tool_calls_per_case: float = 0.0
    cached: int = Field(default=0, description="cases answered from the replay cache")

    @property
    def scores(self) -> list[float]:
        """Per-case scores in case order, an unmeasured case as 0 (for Pareto bookkeeping)."""
        return [c.score if c.score is not None else 0.0 for c in self.cases]


class SurfaceFile(BaseModel):
    """A file an optimizer may change, with its content at the base commit."""

    path: str = Field(description="relative to the folder holding autofix.yaml, POSIX")
    kind: Literal["prompt", "code", "retrieval"]
    text: str


class ClusterBrief(BaseModel):
    """The failure cluster being fixed, as triage described it."""

    id: str
    category: Category
    name: str = ""
    rationale: str = ""
    size: int = 0
    rules: dict[str, int] = Field(default_factory=dict)


class TestRun(BaseModel):
    """The target's own tests on a set of files."""

    __test__ = False  # not a pytest class

    passed: bool
    exit_code: int | None
    output: str = Field(description="the tail of what the tests printed")


class Proposal(BaseModel):
    """One candidate fix: the new content of the surface files it changes, and how it was found."""

    files: dict[str, str] = Field(description="path relative to autofix.yaml's folder -> new full text")
    description: str = Field(min_length=1, description="one line, for the commit subject")
    rationale: str = ""
    train_score: float | None = None
    base_score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="lineage: parents, trial parameters, ...")


Evaluate = Callable[..., ReplayBatch]
"""`evaluate(files, case_ids=None) -> ReplayBatch`: replay the training cases (or some of them) with
`files` (path -> text, surface files only) over the base commit; charges one metric call per case."""

Complete = Callable[..., str]
"""`complete(messages, *, max_tokens=1024, temperature=0.7) -> str`: the optimizer model (`model.optimizer`)
through litellm; the cost is charged to the budget and a call that could break it is refused."""

RunTests = Callable[[Mapping[str, str]], TestRun]
"""`run_tests(files) -> TestRun`: the target's own tests (autofix.yaml `tests`) in the sandbox."""


@dataclass
class OptimizeTask:
    """Everything an optimizer gets for one cluster. It sees the training cases only: the held-out
    part and the regression set belong to the gate."""

    run_id: str
    cluster: ClusterBrief
    train: list[Case]
    surfaces: list[SurfaceFile]
    base: ReplayBatch
    """The training cases replayed at the base commit: the failures to fix."""
    evaluate: Evaluate
    complete: Complete
    spend: Spend
    measures: list[str]
    """What scores a case (check, label and judge names)."""
    retrieval_space: dict[str, SearchParam] = field(default_factory=dict)
    guardrails: GuardrailsGate = field(default_factory=GuardrailsGate)
    run_tests: RunTests | None = None
    """None when the target declares no tests."""
    target_model: str = ""
    optimizer_model: str = ""
    seed: int = 0
    max_candidates: int = 3
    work_dir: Path = Path(".")
    """A folder of the optimizer's own (kept between runs: a resumed run finds its state there)."""
    log: Callable[[str], None] = lambda message: None

    @property
    def budget(self) -> Budget:
        return self.spend.budget

    def files(self, kind: Literal["prompt", "code", "retrieval"]) -> list[SurfaceFile]:
        return [s for s in self.surfaces if s.kind == kind]
