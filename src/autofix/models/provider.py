"""The local model as a litellm provider, so that every model call goes through litellm.

After :func:`register_local_provider`, ``litellm.completion(model="autofix-local/<anything>", ...)``
(and ``acompletion``, and anything built on litellm such as ``dspy.LM``) is answered by the
embedded SmolLM2 model. Any other litellm model string goes to its usual provider.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import litellm
from litellm import CustomLLM, ModelResponse, Usage

from autofix.models import local

PROVIDER = "autofix-local"
"""litellm provider prefix of the embedded model."""
LOCAL_MODEL = f"{PROVIDER}/{local.MODEL_ID}"
"""The default model string: the embedded SmolLM2-135M-Instruct."""

_register_lock = threading.Lock()


class LocalChatLLM(CustomLLM):
    """litellm custom provider answering chat completions with the embedded local model."""

    def completion(  # type: ignore[override]
        self,
        model: str,
        messages: list,
        api_base: str | None = None,
        custom_prompt_dict: dict | None = None,
        model_response: ModelResponse | None = None,
        print_verbose: Any = None,
        encoding: Any = None,
        api_key: Any = None,
        logging_obj: Any = None,
        optional_params: dict | None = None,
        acompletion: Any = None,
        litellm_params: Any = None,
        logger_fn: Any = None,
        headers: Any = None,
        timeout: Any = None,
        client: Any = None,
    ) -> ModelResponse:
        params = dict(optional_params or {})
        max_tokens = params.get("max_tokens", params.get("max_completion_tokens", 256))
        raw = local.chat(
            messages,
            max_tokens=max_tokens,
            temperature=params.get("temperature", 0.0),
            top_p=params.get("top_p"),
            stop=params.get("stop"),
            seed=params.get("seed"),
        )
        return _to_model_response(raw, model, model_response)

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        # llama.cpp blocks; run it in a worker thread so the event loop keeps serving.
        return await asyncio.to_thread(self.completion, *args, **kwargs)


def _to_model_response(raw: dict[str, Any], model: str, model_response: ModelResponse | None) -> ModelResponse:
    response = model_response if model_response is not None else ModelResponse()
    choice = (raw.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    response.choices[0].message.content = message.get("content") or ""  # type: ignore[union-attr]
    response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
    response.created = int(raw.get("created") or 0) or response.created
    response.model = f"{PROVIDER}/{model}"
    usage = raw.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    setattr(
        response,
        "usage",
        Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )
    return response


_handler = LocalChatLLM()


def register_local_provider() -> None:
    """Register the ``autofix-local/`` provider with litellm. Safe to call any number of times."""
    with _register_lock:
        entries = [e for e in litellm.custom_provider_map if e.get("provider") == PROVIDER]
        if entries and all(e.get("custom_handler") is _handler for e in entries):
            return
        litellm.custom_provider_map[:] = [
            e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER
        ] + [{"provider": PROVIDER, "custom_handler": _handler}]
        # litellm also does this at the start of each call; doing it now lets
        # get_llm_provider() recognise the prefix before the first call.
        from litellm.utils import custom_llm_setup

        custom_llm_setup()


def is_local(model: str | None) -> bool:
    """Whether a litellm model string names the embedded local model."""
    return bool(model) and str(model).startswith(PROVIDER + "/")


def cost_usd(response: Any, model: str) -> float:
    """Cost in USD of one completion: 0 for the local model and for models litellm has no price for."""
    if is_local(model):
        return 0.0
    try:
        cost = litellm.completion_cost(completion_response=response, model=model)
    except Exception:  # unknown model or missing price: the guardrails treat it as free
        return 0.0
    try:
        return float(cost or 0.0)
    except (TypeError, ValueError):
        return 0.0
