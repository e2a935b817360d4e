"""Budgets hold: the optimizer model is refused a call that could break the dollar budget, and
metric calls are reserved before a replay, so neither is ever exceeded."""

from __future__ import annotations

import litellm
import pytest

from autofix.optimize import Budget, BudgetExhausted, Spend
from autofix.optimize.lm import budgeted_completion

PRICE = {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5, "litellm_provider": "scripted", "mode": "chat"}


@pytest.fixture
def priced_model(scripted_model, monkeypatch):
    monkeypatch.setitem(litellm.model_cost, "scripted/optimizer", PRICE)
    scripted_model.script = lambda messages: "a reply"
    return scripted_model


def test_the_optimizer_model_never_spends_past_the_dollar_budget(priced_model) -> None:
    spend = Spend(Budget(max_usd=0.02))
    complete = budgeted_completion("scripted/optimizer", spend)
    calls = 0
    with pytest.raises(BudgetExhausted, match="dollar budget"):
        while True:
            complete("Improve this prompt.", max_tokens=200)
            calls += 1
    # each reply costs 100 * 1e-5 + 50 * 2e-5 = $0.002 (the scripted usage); a call is refused when its
    # worst case (prompt + 200 answer tokens) no longer fits
    assert calls == len(priced_model.calls) and calls > 0
    assert spend.usd <= 0.02
    assert spend.usd == pytest.approx(0.002 * calls)


def test_the_optimizer_model_never_spends_past_the_token_budget(priced_model) -> None:
    spend = Spend(Budget(max_tokens=1000))
    complete = budgeted_completion("scripted/optimizer", spend)
    calls = 0
    with pytest.raises(BudgetExhausted, match="token budget"):
        while True:
            complete("Improve this prompt.", max_tokens=200)
            calls += 1
    # each reply uses 150 tokens (the scripted usage); a call is refused when its prompt plus 200 answer
    # tokens no longer fit, so the 7th is: 900 spent + at least 200 asked > 1000
    assert calls == len(priced_model.calls) == 6
    assert spend.tokens == 150 * calls <= 1000


def test_metric_calls_are_reserved_before_anything_runs_and_a_refusal_takes_nothing() -> None:
    spend = Spend(Budget(max_metric_calls=10))
    spend.reserve_metric_calls(6)
    with pytest.raises(BudgetExhausted, match="6 of 10 used, 5 more asked"):
        spend.reserve_metric_calls(5)
    assert spend.metric_calls == 6  # a refused reservation takes nothing
    spend.reserve_metric_calls(4)
    assert spend.metric_calls == 10


def test_a_cached_answer_asks_the_model_nothing_and_costs_nothing(priced_model, tmp_path) -> None:
    from autofix.optimize.lm import CompletionCache

    cache = CompletionCache(tmp_path / "lm.sqlite3")
    first, second = Spend(Budget(max_usd=1.0)), Spend(Budget(max_usd=1.0))
    assert budgeted_completion("scripted/optimizer", first, cache)("Improve this prompt.") == "a reply"
    assert budgeted_completion("scripted/optimizer", second, cache)("Improve this prompt.") == "a reply"
    assert len(priced_model.calls) == 1 and first.usd > 0 and second.usd == 0
    budgeted_completion("scripted/optimizer", second, cache)("Another question.")
    assert len(priced_model.calls) == 2


def test_a_spent_wall_time_share_stops_replays_and_model_calls(priced_model) -> None:
    import time

    spend = Spend(Budget(deadline=time.time() - 1))
    with pytest.raises(BudgetExhausted, match="wall-time budget"):
        spend.reserve_metric_calls(1)
    with pytest.raises(BudgetExhausted, match="wall-time budget"):
        budgeted_completion("scripted/optimizer", spend)("Improve this prompt.")
    assert spend.metric_calls == 0 and not priced_model.calls
