"""Model access: the embedded local model, its litellm provider, the gateway and its ledger.

- :mod:`autofix.models.local`: SmolLM2-135M-Instruct in-process via llama.cpp (``chat``).
- :mod:`autofix.models.provider`: ``autofix-local/<name>`` as a litellm provider
  (``register_local_provider``, ``LOCAL_MODEL``, ``cost_usd``).
- :mod:`autofix.models.usage`: ``UsageStore``, per-run API keys and per-call records.
- :mod:`autofix.models.gateway`: ``create_app`` and ``GatewayServer``, the
  OpenAI-compatible endpoint the sandbox calls.

Names are imported lazily: importing litellm takes seconds, and ``local`` does not need it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LOCAL_MODEL": "autofix.models.provider",
    "PROVIDER": "autofix.models.provider",
    "register_local_provider": "autofix.models.provider",
    "cost_usd": "autofix.models.provider",
    "is_local": "autofix.models.provider",
    "UsageStore": "autofix.models.usage",
    "CallRecord": "autofix.models.usage",
    "create_app": "autofix.models.gateway",
    "GatewayServer": "autofix.models.gateway",
    "CASE_HEADER": "autofix.models.gateway",
    "LocalModelUnavailable": "autofix.models.local",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autofix.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
