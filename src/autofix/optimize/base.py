"""The `Optimizer` protocol and its registry: built-ins and plugins register the same way.

A plugin is an installed distribution whose entry point in the group `autofix.optimizers` names a
module that does nothing but import its decorated optimizers:

    @optimizer("my_search", categories=["retrieval"], version=1)
    class MySearch:
        def propose(self, task: OptimizeTask) -> list[Proposal]: ...

The name is namespaced `distribution/name` (`autofix-opt-retrieval/retrieval_search`); routing reads
`categories` to choose the optimizers of a cluster, so no central table lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar, runtime_checkable

from autofix.optimize.records import OptimizeTask, Proposal
from autofix.plugins import Registry, RegistryEntry
from autofix.triage.records import Category


@runtime_checkable
class Optimizer(Protocol):
    """Proposes candidate fixes for one failure cluster from its training cases.

    A per-case failure is a low score, never an exception; an exception means the optimizer itself
    failed (the engine records it and goes on with the other optimizers). It must stop when
    `task.evaluate` or `task.complete` raises `BudgetExhausted`, returning what it has found so far.
    """

    def propose(self, task: OptimizeTask) -> list[Proposal]: ...


OptimizerFactory = Callable[[], Optimizer]
F = TypeVar("F", bound=Callable[[], Optimizer])

optimizer_registry: Registry[OptimizerFactory] = Registry("optimizer", "autofix.optimizers")


def optimizer(name: str, *, categories: Iterable[Category | str], version: int = 1,
              writes_with_model: bool = False) -> Callable[[F], F]:
    """Register an optimizer factory (a class, or a function returning an instance) under `name`.

    `writes_with_model`: its proposals are written by the optimizer model (prompts, patches), so a run
    whose `model.optimizer` is the embedded 135M model skips it, saying why, instead of spending its
    time on proposals that model cannot write (measured: optimizers/*/RESULTS.md).
    """
    cats = frozenset(Category(c) for c in categories)
    if not cats:
        raise ValueError(f"optimizer {name!r}: name the root-cause categories it serves")

    def register(factory: F) -> F:
        doc = (factory.__doc__ or "").strip().splitlines()
        optimizer_registry.add(name, factory, version=version, categories=cats, doc=doc[0] if doc else "",
                               writes_with_model=writes_with_model)
        return factory

    return register


def optimizer_categories(entry: RegistryEntry[OptimizerFactory]) -> frozenset[Category]:
    return frozenset(entry.metadata.get("categories", ()))


def optimizers_for(category: Category | str) -> list[RegistryEntry[OptimizerFactory]]:
    """The registered optimizers (plugins included) that serve `category`, by name."""
    cat = Category(category)
    return sorted((e for e in optimizer_registry.entries() if cat in optimizer_categories(e)), key=lambda e: e.name)


def find_optimizer(name: str) -> RegistryEntry[OptimizerFactory]:
    """The optimizer named `name`, or the only one whose short name (after `dist/`) is `name`."""
    entries = optimizer_registry.entries()
    exact = [e for e in entries if e.name == name]
    if exact:
        return exact[0]
    short = [e for e in entries if e.name.rsplit("/", 1)[-1] == name]
    if len(short) == 1:
        return short[0]
    known = ", ".join(sorted(e.name for e in entries)) or "none installed"
    if len(short) > 1:
        raise KeyError(f"{name!r} is ambiguous: {', '.join(e.name for e in short)}; give the full name")
    raise KeyError(f"no optimizer named {name!r}; installed: {known}")
