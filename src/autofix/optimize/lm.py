"""The optimizer model (`model.optimizer`) through litellm, each call checked against the dollar budget.

Answers are cached by (model, messages, parameters) in `<state>/optimizer-lm.sqlite3`: a night that
meets the same failures again asks the model nothing (and spends nothing), as the replay cache
answers the same replays.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from autofix.optimize.records import Complete, Spend


def _prompt_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    """The prompt's tokens by litellm's counter (the model's tokenizer where known, else an estimate)."""
    import litellm

    try:
        return int(litellm.token_counter(model=model, messages=messages))
    except Exception:  # noqa: BLE001 - no tokenizer for this model: about four characters a token
        return sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1


def _worst_case_usd(model: str, prompt_tokens: int, max_tokens: int) -> float:
    """What the call costs at most: its prompt plus `max_tokens` of answer at litellm's prices (0 if unpriced)."""
    import litellm

    try:
        prompt_usd, completion_usd = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                            completion_tokens=max_tokens)
        return float(prompt_usd + completion_usd)
    except Exception:  # noqa: BLE001 - a model litellm has no price for is treated as free, as the gateway does
        return 0.0


class CompletionCache:
    """Answers of the optimizer model by a hash of the request; safe to share between threads."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._conn.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
        self._conn.commit()

    @staticmethod
    def key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
        payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, answer: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, answer))
            self._conn.commit()


def budgeted_completion(model: str, spend: Spend, cache: CompletionCache | None = None) -> Complete:
    """`complete(messages, *, max_tokens=1024, temperature=0.7) -> str` for `model`, refusing (BudgetExhausted)
    a call whose worst case (its prompt plus `max_tokens` of answer, in tokens and in dollars) would break the
    budget; `messages` may be a plain prompt string. A cached answer costs nothing."""
    from autofix.models.provider import cost_usd, is_local, register_local_provider

    if is_local(model):
        register_local_provider()

    def complete(messages: str | list[dict[str, Any]], *, max_tokens: int = 1024, temperature: float = 0.7,
                 **kwargs: Any) -> str:
        import litellm

        chat = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        key = CompletionCache.key(model, chat, {"max_tokens": max_tokens, "temperature": temperature, **kwargs})
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        prompt_tokens = _prompt_tokens(model, chat)
        spend.check_tokens(prompt_tokens + max_tokens)
        spend.check_usd(_worst_case_usd(model, prompt_tokens, max_tokens))
        response = litellm.completion(model=model, messages=chat, max_tokens=max_tokens, temperature=temperature,
                                      **kwargs)
        spend.add_usd(cost_usd(response, model))
        usage = getattr(response, "usage", None)
        spend.add_tokens(int(getattr(usage, "total_tokens", 0) or 0) if usage else prompt_tokens + max_tokens)
        answer = response.choices[0].message.content or ""
        if cache is not None:
            cache.put(key, answer)
        return answer

    return complete
