"""The entry point of `autofix.optimizers`: importing it registers the optimizer (nothing else)."""

from autofix_gepa.optimizer import GEPAPromptOptimizer  # noqa: F401
