"""The optimizer model (`model.optimizer`) through litellm, each call checked against the dollar budget."""

from __future__ import annotations

from typing import Any

from autofix.optimize.records import Complete, Spend


def _worst_case_usd(model: str, messages: list[dict[str, Any]], max_tokens: int) -> float:
    """What the call costs at most: its prompt plus `max_tokens` of answer at litellm's prices (0 if unpriced)."""
    import litellm

    try:
        prompt_tokens = litellm.token_counter(model=model, messages=messages)
        prompt_usd, completion_usd = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                            completion_tokens=max_tokens)
        return float(prompt_usd + completion_usd)
    except Exception:  # noqa: BLE001 - a model litellm has no price for is treated as free, as the gateway does
        return 0.0


def budgeted_completion(model: str, spend: Spend) -> Complete:
    """`complete(messages, *, max_tokens=1024, temperature=0.7) -> str` for `model`, refusing (BudgetExhausted)
    a call whose worst-case cost would break the budget; `messages` may be a plain prompt string."""
    from autofix.models.provider import cost_usd, is_local, register_local_provider

    if is_local(model):
        register_local_provider()

    def complete(messages: str | list[dict[str, Any]], *, max_tokens: int = 1024, temperature: float = 0.7,
                 **kwargs: Any) -> str:
        import litellm

        chat = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        spend.check_usd(_worst_case_usd(model, chat, max_tokens))
        response = litellm.completion(model=model, messages=chat, max_tokens=max_tokens, temperature=temperature,
                                      **kwargs)
        spend.add_usd(cost_usd(response, model))
        return response.choices[0].message.content or ""

    return complete
