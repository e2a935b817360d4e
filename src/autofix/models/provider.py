"""The local model as a litellm provider, so that every model call goes through litellm.

After :func:`register_local_provider`, ``litellm.completion(model="autofix-local/<anything>", ...)``
(and ``acompletion``, and anything built on litellm such as ``dspy.LM``) is answered by the
embedded SmolLM2 model. Any other litellm model string goes to its usual provider.

What the embedded model honours of an OpenAI chat-completions request (:func:`local_unsupported`
names what it does not, so the gateway refuses it with a 400 instead of dropping it):

- sampling: ``temperature``, ``top_p``, ``max_tokens``/``max_completion_tokens``, ``stop``, ``seed``,
  ``presence_penalty``, ``frequency_penalty``; ``n`` only 1;
- ``response_format``: ``text``, ``json_object`` and ``json_schema``, enforced by a llama.cpp grammar;
- ``tools`` only with a ``tool_choice`` that names the function to call (or ``"required"`` with a single
  tool): the arguments are then generated under that tool's JSON schema and come back as
  ``tool_calls``; ``tool_choice: "none"`` answers in text. The model cannot decide by itself
  whether to call a tool (``"auto"``);
- ``stream``: the answer is computed whole, then streamed (same text and token counts as unstreamed);
- ``user``, ``store``, ``metadata``, ``service_tier``, ``prompt_cache_key``, ``safety_identifier``:
  accepted, they do not change an answer.

Refused: ``n`` > 1, ``logprobs``/``top_logprobs``, ``logit_bias``, the legacy ``functions``/
``function_call``, audio, predicted outputs, web search, reasoning options. Embeddings too: the
chat model is not an embedding model.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
from litellm import CustomLLM, ModelResponse, Usage
from litellm.types.utils import GenericStreamingChunk

from autofix.models import local

# litellm prints a provider list and a bug-report link on every failed call; autofix reports the
# error itself (the message names the model and the cause), so that noise stays off the terminal.
litellm.suppress_debug_info = True

PROVIDER = "autofix-local"
"""litellm provider prefix of the embedded model."""
LOCAL_MODEL = f"{PROVIDER}/{local.MODEL_ID}"
"""The default model string: the embedded SmolLM2-135M-Instruct."""

_register_lock = threading.Lock()


HONOURED_PARAMS = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
    "frequency_penalty", "n", "response_format", "tools", "tool_choice", "parallel_tool_calls", "stream",
    "stream_options",
})
"""Request parameters the embedded model acts on (some only with certain values: see the module doc)."""
NEUTRAL_PARAMS = frozenset({
    "user", "store", "metadata", "service_tier", "prompt_cache_key", "prompt_cache_retention", "safety_identifier",
})
"""Request parameters that do not change an answer: accepted and not acted on."""
_SERVE_ANOTHER = "; serve a model that can (model.name or model.aliases in autofix.yaml)"


def _forced_tool(tools: Any, tool_choice: Any) -> tuple[str | None, str | None]:
    """(name of the tool the call must make, or None; why the request cannot be honoured, or None)."""
    if not tools:
        return None, None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        return None, "tools must be a list of tool objects"
    names = [((t.get("function") or {}).get("name")) for t in tools]
    if tool_choice == "none":
        return None, None
    if tool_choice == "required" and len(names) == 1:
        return names[0], None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if name not in names:
            return None, f"tool_choice names the function {name!r}, which is not in tools ({', '.join(map(str, names))})"
        return name, None
    return None, (
        f"the embedded local model cannot decide whether to call a tool (tool_choice={tool_choice or 'auto'!r}): "
        'send tool_choice {"type": "function", "function": {"name": ...}} naming the one to call, or "none"'
        + _SERVE_ANOTHER
    )


def local_unsupported(params: dict[str, Any], *, strict: bool = True) -> tuple[str, str] | None:
    """The first request parameter the embedded model cannot honour, as (parameter, why), or None.

    ``strict``: any parameter it does not know counts (the gateway, on an OpenAI request body); else
    only those known to be unsupported (litellm's own calls, e.g. from DSPy, may add harmless ones).
    """
    for name, value in params.items():
        if name in ("model", "messages") or value is None:
            continue
        if name == "n":
            if value != 1:
                return name, f"the embedded local model returns one choice; n={value!r} needs n=1" + _SERVE_ANOTHER
        elif name in ("logprobs", "top_logprobs"):
            if value:
                return name, "the embedded local model does not return log probabilities" + _SERVE_ANOTHER
        elif name == "response_format":
            kind = value.get("type") if isinstance(value, dict) else None
            if kind not in ("text", "json_object", "json_schema"):
                return name, f"response_format type {kind!r} is not one of text, json_object, json_schema"
            if kind == "json_schema" and not isinstance((value.get("json_schema") or {}).get("schema"), dict):
                return name, "response_format json_schema needs json_schema.schema (a JSON schema object)"
        elif name in ("tools", "tool_choice"):
            _, why = _forced_tool(params.get("tools"), params.get("tool_choice"))
            if why:
                return ("tool_choice" if "tool_choice names" in why else "tools"), why
        elif name in ("functions", "function_call"):
            return name, "legacy function calling is not supported: send tools with a tool_choice naming the function"
        elif name == "modalities":
            if list(value) != ["text"]:
                return name, "the embedded local model answers in text only (modalities=['text'])"
        elif name not in HONOURED_PARAMS and name not in NEUTRAL_PARAMS:
            if strict or name in ("logit_bias", "audio", "prediction", "web_search_options", "reasoning_effort",
                                  "verbosity", "thinking"):
                return name, f"the embedded local model does not support {name}" + _SERVE_ANOTHER
    return None


def _chat_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """local.chat()'s arguments for litellm's optional params (OpenAI names)."""
    problem = local_unsupported(params, strict=False)
    if problem:
        raise litellm.UnsupportedParamsError(status_code=400, message=f"{problem[0]}: {problem[1]}")
    kwargs: dict[str, Any] = {
        "max_tokens": params.get("max_tokens", params.get("max_completion_tokens", 256)),
        "temperature": params.get("temperature", 0.0),
        "top_p": params.get("top_p"),
        "stop": params.get("stop"),
        "seed": params.get("seed"),
        "presence_penalty": params.get("presence_penalty"),
        "frequency_penalty": params.get("frequency_penalty"),
    }
    fmt = params.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        kwargs["response_format"] = {k: v for k, v in fmt.items() if k in ("type", "schema")}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        # llama.cpp's spelling of a schema-constrained answer
        kwargs["response_format"] = {"type": "json_object", "schema": fmt["json_schema"]["schema"]}
    tool, _ = _forced_tool(params.get("tools"), params.get("tool_choice"))
    if tool is not None:
        kwargs["tools"] = params["tools"]
        kwargs["tool_choice"] = {"type": "function", "function": {"name": tool}}
    return kwargs


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
        kwargs = _chat_kwargs(dict(optional_params or {}))
        try:
            raw = local.chat(messages, **kwargs)
        except ValueError as exc:
            if "exceed context window" not in str(exc):
                raise
            # The request is longer than the model can read: the caller's 400 (a prompt the target built too
            # long is the target's failure), not a provider failure that would leave the case unmeasured.
            raise litellm.ContextWindowExceededError(message=str(exc), model=model, llm_provider=PROVIDER) from exc
        if "tools" in kwargs or "response_format" in kwargs:
            _repair_json(raw, content="response_format" in kwargs)
        return _to_model_response(raw, model, model_response)

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        # llama.cpp blocks; run it in a worker thread so the event loop keeps serving.
        return await asyncio.to_thread(self.completion, *args, **kwargs)

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:  # type: ignore[override]
        kwargs["model_response"] = None
        yield from _as_chunks(self.completion(*args, **kwargs))

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        # The whole answer first, then its chunks: the same text and token counts as without streaming,
        # so a replay's results do not depend on whether the assistant streams.
        kwargs["model_response"] = None
        response = await asyncio.to_thread(self.completion, *args, **kwargs)
        for chunk in _as_chunks(response):
            yield chunk

    def embedding(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise litellm.UnsupportedParamsError(
            status_code=400, message="the embedded local model is a chat model and cannot embed" + _SERVE_ANOTHER
        )

    async def aembedding(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.embedding(*args, **kwargs)


def _strict_json(text: str) -> str:
    """``text`` as strict JSON where it is JSON but for raw control characters inside strings (llama.cpp's
    grammars let a raw newline into a string); anything else unchanged (then it is the model's failure)."""
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    try:
        return json.dumps(json.loads(text, strict=False), ensure_ascii=False)
    except ValueError:
        return text


def _repair_json(raw: dict[str, Any], *, content: bool) -> None:
    """Make grammar-constrained output (tool call arguments, a JSON answer) strict JSON, in place."""
    for choice in raw.get("choices") or []:
        message = choice.get("message") or {}
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if isinstance(function.get("arguments"), str):
                function["arguments"] = _strict_json(function["arguments"])
        if content and isinstance(message.get("content"), str):
            message["content"] = _strict_json(message["content"])


def _as_chunks(response: ModelResponse) -> Iterator[GenericStreamingChunk]:
    """A finished answer as litellm streaming chunks: each tool call, then the text with the finish and usage."""
    choice = response.choices[0]
    message = choice.message  # type: ignore[union-attr]
    for i, call in enumerate(getattr(message, "tool_calls", None) or []):
        yield GenericStreamingChunk(
            text="", is_finished=False, finish_reason="", usage=None, index=0,
            tool_use={"id": call.id, "type": "function", "index": i,
                      "function": {"name": call.function.name, "arguments": call.function.arguments}},
        )
    usage = response.usage  # type: ignore[attr-defined]
    yield GenericStreamingChunk(
        text=message.content or "", is_finished=True, finish_reason=choice.finish_reason or "stop", index=0,
        tool_use=None, usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                              "total_tokens": usage.total_tokens},
    )


def _to_model_response(raw: dict[str, Any], model: str, model_response: ModelResponse | None) -> ModelResponse:
    response = model_response if model_response is not None else ModelResponse()
    choice = (raw.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    tool_calls = message.get("tool_calls")
    if tool_calls:
        response.choices[0].message = litellm.Message(  # type: ignore[union-attr]
            role="assistant", content=None,
            tool_calls=[{"id": c["id"], "type": "function", "function": dict(c["function"])} for c in tool_calls],
        )
    else:
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
