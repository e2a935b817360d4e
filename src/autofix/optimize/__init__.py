"""Optimizers: the protocol a plugin implements, its task and proposal records, and the engine.

A plugin imports only this module:

    from autofix.optimize import OptimizeTask, Proposal, optimizer

    @optimizer("my_search", categories=["retrieval"])
    class MySearch:
        def propose(self, task: OptimizeTask) -> list[Proposal]:
            batch = task.evaluate({"config/retrieval.yaml": "top_k: 4\n"})
            ...
"""

from autofix.optimize.base import (
    Optimizer,
    find_optimizer,
    optimizer,
    optimizer_categories,
    optimizer_registry,
    optimizers_for,
)
from autofix.optimize.records import (
    Budget,
    BudgetExhausted,
    CaseEval,
    ClusterBrief,
    OptimizeTask,
    Proposal,
    ReplayBatch,
    Spend,
    SurfaceFile,
    TestRun,
)

__all__ = [
    "Budget",
    "BudgetExhausted",
    "CaseEval",
    "ClusterBrief",
    "OptimizeTask",
    "Optimizer",
    "Proposal",
    "ReplayBatch",
    "Spend",
    "SurfaceFile",
    "TestRun",
    "find_optimizer",
    "optimizer",
    "optimizer_categories",
    "optimizer_registry",
    "optimizers_for",
]
