"""The model gateway: the one OpenAI-compatible endpoint a sandboxed replay may call.

It holds the real provider credentials (they never enter the sandbox), authenticates the
caller with a per-run key, serves every call with a litellm model chosen on the host (the
configured model, or the one ``aliases`` maps the requested ``model`` name to), and records
tokens, cost and latency of each call per run and case (header ``X-Autofix-Case``).

Routes: ``POST /v1/chat/completions`` (plain or ``stream: true``: server-sent events),
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``.

What a chat request carries is forwarded whole to ``litellm.acompletion``: every OpenAI
chat-completions parameter (``tools``, ``tool_choice``, ``response_format``, ``n``, ``stop``,
``seed``, ``logprobs``, ...) goes through as sent, and the answer (tool calls included) comes back
as the provider gave it. The gateway keeps for itself only the key, the ``model`` (replaced by
the served one) and how usage is recorded. A field that is not an OpenAI chat-completions
parameter is refused, never passed on: litellm would read some of them (``api_base``,
``api_key``, ``mock_response``, cost overrides, ...) as its own settings, and the provider
credentials must not follow a caller-chosen ``api_base``.

A request the served model cannot honour is refused with a 400 naming the parameter: the
embedded local model says what it can do (:func:`autofix.models.provider.local_unsupported`),
other providers are checked by litellm (``UnsupportedParamsError``). A body over
``max_body_bytes`` gets 413. A run that spent its budget (tokens and/or USD, see
:mod:`autofix.models.usage`) gets 429 ``budget_exceeded``, recorded in the ledger.

Errors use OpenAI's body shape ``{"error": {"message", "type", "param", "code"}}``, so
OpenAI client libraries inside the sandbox raise their usual exceptions.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import litellm
import uvicorn
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from autofix.models.provider import LOCAL_MODEL, cost_usd, is_local, local_unsupported, register_local_provider
from autofix.models.usage import BUDGET_EXCEEDED, Budget, UsageStore

CASE_HEADER = "X-Autofix-Case"
"""Request header naming the replay case a call belongs to (recorded with the call)."""

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body the gateway reads (``model.gateway.max_body_bytes``)."""

OPENAI_CHAT_PARAMS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
})
"""The request body fields of OpenAI's chat completions: what the gateway forwards (and nothing else)."""

_OWN_FIELDS = ("model", "messages", "stream", "stream_options")
"""Fields the gateway handles itself rather than forwarding as they are."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[Any] | None = None


class ChatRequest(BaseModel):
    """An OpenAI chat-completions request: the fields checked here, the others kept as sent."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None

    def forwarded(self) -> dict[str, Any]:
        """The parameters sent on to litellm: every one the caller set, as validated, but the gateway's own."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in _OWN_FIELDS}

    def wants_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class EmbeddingRequest(BaseModel):
    """An OpenAI embeddings request."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


def openai_error(
    status_code: int,
    message: str,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in OpenAI's shape."""
    return JSONResponse(
        status_code=status_code,
        content={"error": {"message": message, "type": type, "param": param, "code": code}},
        headers=headers,
    )


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _validation_message(exc: ValidationError | RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request body.", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "extra_forbidden" and loc:
        return f"Unrecognized request argument supplied: {loc[0]}.", loc[0]
    # a union's failed branches add their type names to the path (e.g. 'input.str'): name the field only
    types = ("str", "int", "float", "bool", "dict", "list")
    param = ".".join(p for p in loc if p not in types and "[" not in p and not p.startswith("function-")) or None
    where = f" at '{param}'" if param else ""
    return f"Invalid request body{where}: {first.get('msg', 'invalid value')}.", param


class BodyTooLarge(Exception):
    """The request body is over the gateway's limit."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, read no further than ``limit`` bytes (BodyTooLarge past it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


def _named_param(message: str, params: dict[str, Any]) -> str | None:
    """The forwarded parameter an error message names, if one (the longest name found, in quotes or not)."""
    found = [name for name in params if name in message]
    return max(found, key=len) if found else None


class _EventStream(StreamingResponse):
    """Server-sent events whose ``on_close`` runs however the response ends (done, failed, caller gone)."""

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], Awaitable[None]]):
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                await aclose()  # runs the generator's own cleanup if the caller left mid-stream
            await self._on_close()


def _sse(data: Any) -> str:
    return f"data: {json.dumps(jsonable_encoder(data), ensure_ascii=False)}\n\n"


def _empty_choice(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta") or {}
    return choice.get("finish_reason") is None and not any(v not in (None, "", []) for v in delta.values())


def _base64_floats(vector: list[float]) -> str:
    """An embedding as OpenAI's ``encoding_format: base64`` sends it: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def app_options(model_config: Any) -> dict[str, Any]:
    """``create_app``/``GatewayServer`` keyword arguments from autofix.yaml's ``model`` section (ModelConfig)."""
    gateway = getattr(model_config, "gateway", None)
    budget = getattr(gateway, "budget", None)
    return {
        "model": model_config.name,
        "aliases": dict(getattr(model_config, "aliases", None) or {}),
        "max_body_bytes": int(getattr(gateway, "max_body_bytes", None) or DEFAULT_MAX_BODY_BYTES),
        "budget": Budget(tokens=budget.tokens, usd=budget.usd) if budget is not None else None,
    }


def create_app(
    store: UsageStore,
    model: str = LOCAL_MODEL,
    *,
    aliases: dict[str, str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    budget: Budget | None = None,
    litellm_kwargs: dict[str, Any] | None = None,
    timeout_s: float = 600.0,
) -> FastAPI:
    """The gateway as an ASGI app.

    ``model`` is the litellm model string calls go to (default: the embedded local model);
    ``aliases`` maps model names a caller asks for to other litellm model strings (a name not in it
    is served by ``model``). ``max_body_bytes``: the largest request body read (413 past it).
    ``budget``: what a run whose key was issued without a budget may spend (stored with the run on
    its first call). ``litellm_kwargs`` are extra arguments for each litellm call (``api_base``,
    ``api_key``, ...): the provider settings stay on the host.
    """
    aliases = dict(aliases or {})
    for served_model in {model, *aliases.values()}:
        if is_local(served_model):
            register_local_provider()
    extra = dict(litellm_kwargs or {})
    app = FastAPI(title="autofix model gateway", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.model = model
    app.state.aliases = aliases
    inflight = InFlight()
    app.state.inflight = inflight
    budgeted_runs: set[str] = set()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return openai_error(exc.status_code, str(exc.detail), code=code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return openai_error(400, message, param=param)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return openai_error(500, f"Internal gateway error: {type(exc).__name__}: {exc}", type="server_error",
                            code=type(exc).__name__)

    def authenticate(request: Request) -> str | JSONResponse:
        key = _bearer(request)
        if key is None:
            return openai_error(
                401,
                "You didn't provide an API key. Send 'Authorization: Bearer <key>' with the key "
                "autofix issued for this run (AUTOFIX_MODEL_API_KEY).",
                code="invalid_api_key",
            )
        run_id = store.run_for_key(key)
        if run_id is None:
            return openai_error(
                401,
                "Incorrect API key provided: it is unknown to this gateway or was revoked at the end of its run.",
                code="invalid_api_key",
            )
        return run_id

    async def read_json(request: Request, schema: type[BaseModel]) -> Any:
        """The validated body, or the error response to send instead (413 or 400)."""
        try:
            raw = await _read_body(request, max_body_bytes)
        except BodyTooLarge as exc:
            return openai_error(
                413,
                f"The request body ({exc.args[0]} bytes) is larger than this gateway accepts ({max_body_bytes} "
                f"bytes); send less, or raise model.gateway.max_body_bytes in autofix.yaml.",
                code="request_too_large",
            )
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return openai_error(400, f"The request body is not valid JSON: {exc}.")
        if not isinstance(payload, dict):
            return openai_error(400, "The request body must be a JSON object.")
        if schema is ChatRequest:
            unknown = sorted(set(payload) - OPENAI_CHAT_PARAMS)
            if unknown:
                return openai_error(
                    400,
                    f"Unrecognized request argument supplied: {unknown[0]}. The autofix gateway forwards OpenAI "
                    f"chat-completions parameters only.",
                    code="unknown_parameter", param=unknown[0],
                )
        try:
            return schema.model_validate(payload)
        except ValidationError as exc:
            message, param = _validation_message(exc)
            return openai_error(400, message, param=param,
                                code="unknown_parameter" if message.startswith("Unrecognized") else None)

    def served(requested: str | None) -> str:
        return aliases.get(requested, model) if requested else model

    def refuse_over_budget(run_id: str, case_id: str | None, served_model: str,
                           requested: str | None) -> JSONResponse | None:
        if run_id not in budgeted_runs:
            store.ensure_budget(run_id, budget)
            budgeted_runs.add(run_id)
        status = store.budget_status(run_id)
        if not status.exceeded:
            return None
        limits = []
        if status.budget is not None and status.budget.tokens is not None:
            limits.append(f"{status.spent_tokens} of {status.budget.tokens} tokens")
        if status.budget is not None and status.budget.usd is not None:
            limits.append(f"${status.spent_usd:.4f} of ${status.budget.usd:.4f}")
        message = (f"Run {run_id!r} has spent its model budget ({', '.join(limits)}); the gateway makes no "
                   f"further calls for it. Raise it with model.gateway.budget in autofix.yaml or "
                   f"`autofix gateway key --run {run_id} --budget-tokens N --budget-usd X`.")
        store.record(run_id, case_id, served_model, status="error", error=f"{BUDGET_EXCEEDED}: {message}",
                     requested_model=requested)
        # x-should-retry: OpenAI's client libraries would otherwise retry a 429 with back-off.
        return openai_error(429, message, type="insufficient_quota", code=BUDGET_EXCEEDED,
                            headers={"x-should-retry": "false"})

    def caller_error(exc: Exception, params: dict[str, Any]) -> JSONResponse | None:
        """The 400 for a request the provider (through litellm) refused, or None for a provider failure."""
        if isinstance(exc, litellm.UnsupportedParamsError):
            return openai_error(400, f"The served model cannot honour this request: {exc.message}",
                                code="unsupported_parameter", param=_named_param(str(exc.message), params))
        if isinstance(exc, litellm.BadRequestError) and not isinstance(
            exc, (litellm.exceptions.LiteLLMUnknownProvider, litellm.exceptions.PaymentRequiredError)
        ):
            return openai_error(400, f"The model provider refused the request: {exc.message}",
                                code=type(exc).__name__, param=_named_param(str(exc.message), params))
        return None

    def provider_failed(run_id: str, case_id: str | None, served_model: str, requested: str | None,
                        exc: Exception, started: float) -> JSONResponse:
        message = f"{type(exc).__name__}: {exc}"
        store.record(run_id, case_id, served_model, latency_ms=(time.perf_counter() - started) * 1000.0,
                     status="error", error=message, requested_model=requested)
        return openai_error(502, f"The model provider failed: {message}", type="provider_error",
                            code=type(exc).__name__)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model}

    @app.get("/v1/models")
    async def list_models(request: Request) -> Any:
        auth = authenticate(request)
        if isinstance(auth, JSONResponse):
            return auth
        names = list(dict.fromkeys([model, *aliases]))
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": 0, "owned_by": "autofix-gateway"} for name in names],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        auth = authenticate(request)
        if isinstance(auth, JSONResponse):
            return auth
        run_id = auth
        body = await read_json(request, ChatRequest)
        if isinstance(body, JSONResponse):
            return body
        served_model = served(body.model)
        params = body.forwarded()
        if is_local(served_model):
            problem = local_unsupported({**params, "stream": body.stream, "stream_options": body.stream_options})
            if problem:
                name, why = problem
                return openai_error(400, f"Unsupported parameter '{name}' for the served model {served_model}: {why}.",
                                    code="unsupported_parameter", param=name)
        case_id = request.headers.get(CASE_HEADER) or None
        refused = refuse_over_budget(run_id, case_id, served_model, body.model)
        if refused is not None:
            return refused
        messages = [m.model_dump(exclude_unset=True) for m in body.messages]

        started = time.perf_counter()
        inflight.enter(run_id, case_id)
        streaming = False
        try:
            if body.stream:
                response = await _stream(run_id, case_id, body, served_model, messages, params, started)
                streaming = isinstance(response, _EventStream)  # then the call is in flight until it ends
                return response
            return await _complete(run_id, case_id, body, served_model, messages, params, started, request)
        finally:
            if not streaming:
                inflight.leave(run_id, case_id)

    async def _complete(run_id: str, case_id: str | None, body: ChatRequest, served_model: str,
                        messages: list[dict[str, Any]], params: dict[str, Any], started: float,
                        request: Request) -> Any:
        try:
            # _skip_mcp_handler: litellm would otherwise treat `tools` naming an MCP server as its own to
            # call (and, in litellm 1.106, import the optional `mcp` package for any request with tools);
            # the tools of a replayed assistant are the assistant's, forwarded to the model as they are.
            response = await litellm.acompletion(
                model=served_model, messages=messages, timeout=timeout_s, _skip_mcp_handler=True, **params, **extra
            )
        except Exception as exc:  # a request the provider refuses is the caller's 400; any other failure a 502
            refused = caller_error(exc, params)
            if refused is not None:
                return refused
            return provider_failed(run_id, case_id, served_model, body.model, exc, started)
        latency_ms = (time.perf_counter() - started) * 1000.0

        usage = getattr(response, "usage", None)
        # A caller that hung up (its own timeout) never got this answer: the call cost what it cost,
        # but it failed for the caller, which is the infrastructure's fault, not the assistant's.
        gone = await request.is_disconnected()
        store.record(
            run_id,
            case_id,
            served_model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=cost_usd(response, served_model),
            latency_ms=latency_ms,
            status="error" if gone else "ok",
            error=f"the caller hung up after {latency_ms / 1000:.1f} s, before the answer came" if gone else None,
            requested_model=body.model,
        )
        content = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        content.setdefault("object", "chat.completion")
        return JSONResponse(content=jsonable_encoder(content))

    async def _stream(run_id: str, case_id: str | None, body: ChatRequest, served_model: str,
                      messages: list[dict[str, Any]], params: dict[str, Any], started: float) -> Any:
        try:
            # Usage of a stream: the provider is always asked for it (stream_options.include_usage), and
            # litellm.stream_chunk_builder sums it from the chunks at the end; a provider that sends none
            # gets its tokens counted by litellm's tokenizer from the chunks' text. The caller sees the
            # usage chunk only if it asked for it, as OpenAI does.
            stream = await litellm.acompletion(
                model=served_model, messages=messages, timeout=timeout_s, _skip_mcp_handler=True, stream=True,
                stream_options={"include_usage": True}, **params, **extra,
            )
        except Exception as exc:  # failures before the first chunk are answered like unstreamed ones
            refused = caller_error(exc, params)
            if refused is not None:
                return refused
            return provider_failed(run_id, case_id, served_model, body.model, exc, started)

        chunks: list[Any] = []
        state: dict[str, Any] = {"done": False, "error": None, "recorded": False}
        wants_usage = body.wants_usage()

        async def events() -> AsyncIterator[str]:
            try:
                async for chunk in stream:
                    chunks.append(chunk)
                    data = chunk.model_dump() if hasattr(chunk, "model_dump") else dict(chunk)
                    data["object"] = "chat.completion.chunk"
                    choices = [c for c in data.get("choices") or [] if not _empty_choice(c)]
                    if data.get("usage"):
                        if not wants_usage:
                            data.pop("usage")
                            if not choices:
                                continue
                        elif not choices:
                            data["choices"] = []  # OpenAI's usage chunk has no choices
                    yield _sse(data)
            except Exception as exc:  # the provider failed mid-stream: tell the caller in the stream
                state["error"] = f"{type(exc).__name__}: {exc}"
                yield _sse({"error": {"message": f"The model provider failed: {state['error']}",
                                      "type": "provider_error", "param": None, "code": type(exc).__name__}})
            state["done"] = True
            yield "data: [DONE]\n\n"

        async def on_close() -> None:
            if state["recorded"]:
                return
            state["recorded"] = True
            try:
                latency_ms = (time.perf_counter() - started) * 1000.0
                built = litellm.stream_chunk_builder(chunks, messages=messages) if chunks else None
                usage = getattr(built, "usage", None)
                error = state["error"]
                if error is None and not state["done"]:
                    error = f"the caller hung up after {latency_ms / 1000:.1f} s, before the answer ended"
                store.record(
                    run_id, case_id, served_model,
                    prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                    cost_usd=cost_usd(built, served_model) if built is not None else 0.0,
                    latency_ms=latency_ms, status="error" if error else "ok", error=error,
                    requested_model=body.model,
                )
            finally:
                inflight.leave(run_id, case_id)

        return _EventStream(events(), on_close)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        auth = authenticate(request)
        if isinstance(auth, JSONResponse):
            return auth
        run_id = auth
        body = await read_json(request, EmbeddingRequest)
        if isinstance(body, JSONResponse):
            return body
        served_model = served(body.model)
        if is_local(served_model):
            asked = f" (asked for {body.model!r})" if body.model else ""
            return openai_error(
                400,
                f"The served model {served_model}{asked} is the embedded chat model and cannot embed. Map the "
                f"embedding model the assistant asks for to one that can in model.aliases of autofix.yaml, e.g. "
                f"`text-embedding-3-small: openai/text-embedding-3-small`.",
                code="model_cannot_embed", param="model",
            )
        case_id = request.headers.get(CASE_HEADER) or None
        refused = refuse_over_budget(run_id, case_id, served_model, body.model)
        if refused is not None:
            return refused
        # encoding_format is the gateway's to honour: the provider returns floats, the gateway encodes them
        # as OpenAI does for "base64" (what OpenAI's client libraries ask for by default), so providers
        # without base64 support serve those clients too.
        params = body.model_dump(exclude_unset=True, exclude={"model", "input", "encoding_format"})

        started = time.perf_counter()
        inflight.enter(run_id, case_id)
        try:
            try:
                response = await litellm.aembedding(model=served_model, input=body.input, timeout=timeout_s,
                                                    **params, **extra)
            except Exception as exc:
                refused = caller_error(exc, params)
                if refused is not None:
                    return refused
                return provider_failed(run_id, case_id, served_model, body.model, exc, started)
            usage = getattr(response, "usage", None)
            store.record(
                run_id, case_id, served_model,
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                cost_usd=cost_usd(response, served_model),
                latency_ms=(time.perf_counter() - started) * 1000.0,
                requested_model=body.model,
            )
            content = jsonable_encoder(response.model_dump() if hasattr(response, "model_dump") else dict(response))
            if body.encoding_format == "base64":
                for item in content.get("data") or []:
                    if isinstance(item.get("embedding"), list):
                        item["embedding"] = _base64_floats(item["embedding"])
            return JSONResponse(content=content)
        finally:
            inflight.leave(run_id, case_id)

    return app


class InFlight:
    """Calls the gateway is answering now, per run and case (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str | None], int] = {}
        self._idle = threading.Condition(self._lock)

    def enter(self, run_id: str, case_id: str | None) -> None:
        with self._lock:
            self._counts[(run_id, case_id)] = self._counts.get((run_id, case_id), 0) + 1

    def leave(self, run_id: str, case_id: str | None) -> None:
        with self._lock:
            left = self._counts.get((run_id, case_id), 1) - 1
            if left > 0:
                self._counts[(run_id, case_id)] = left
            else:
                self._counts.pop((run_id, case_id), None)
            self._idle.notify_all()

    def cases(self, run_id: str) -> dict[str | None, int]:
        """Case id -> calls of `run_id` still being answered."""
        with self._lock:
            return {case: n for (run, case), n in self._counts.items() if run == run_id}

    def wait_idle(self, run_id: str, timeout_s: float) -> dict[str | None, int]:
        """Wait until `run_id` has no call in flight (at most `timeout_s`); returns what is still in flight."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while True:
                left = {case: n for (run, case), n in self._counts.items() if run == run_id}
                remaining = deadline - time.monotonic()
                if not left or remaining <= 0:
                    return left
                self._idle.wait(remaining)


class GatewayServer:
    """The gateway served by uvicorn in a background thread of this process.

    ``port=0`` picks a free port. Use as a context manager::

        with GatewayServer(UsageStore("runs/gateway.sqlite3")) as gw:
            client = OpenAI(base_url=gw.base_url, api_key=key)

    ``base_url`` ends in ``/v1`` (what OpenAI clients expect); ``url`` is the root. When
    bound to ``0.0.0.0`` they use 127.0.0.1; :meth:`base_url_for` gives the URL a
    container uses (e.g. ``gw.base_url_for("172.17.0.1")``).
    """

    def __init__(
        self,
        store: UsageStore | str | Path,
        model: str = LOCAL_MODEL,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout_s: float = 30.0,
        **app_kwargs: Any,
    ):
        self.store = store if isinstance(store, UsageStore) else UsageStore(store)
        self._owns_store = not isinstance(store, UsageStore)
        self.model = model
        self.host = host
        self.port = int(port)
        self.app = create_app(self.store, model, **app_kwargs)
        self._log_level = log_level
        self._startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    # URLs -------------------------------------------------------------------------------

    def _url_host(self, host: str) -> str:
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"[{host}]" if ":" in host else host

    def url_for(self, host: str) -> str:
        """Root URL of the gateway as seen from ``host`` (an address the server listens on)."""
        return f"http://{self._url_host(host)}:{self.port}"

    def base_url_for(self, host: str) -> str:
        """OpenAI base URL (ending in ``/v1``) as seen from ``host``."""
        return self.url_for(host) + "/v1"

    @property
    def url(self) -> str:
        return self.url_for(self.host)

    @property
    def inflight(self) -> InFlight:
        """The calls being answered now (a replay waits for its own before reading their usage)."""
        return self.app.state.inflight

    @property
    def base_url(self) -> str:
        return self.base_url_for(self.host)

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> GatewayServer:
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"The model gateway cannot listen on {self.host}:{self.port}: {exc}") from exc
        sock.listen(128)
        sock.set_inheritable(True)
        self._socket = sock
        self.port = sock.getsockname()[1]

        config = uvicorn.Config(
            self.app, log_level=self._log_level, access_log=False, lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)

        def serve() -> None:
            try:
                assert self._server is not None
                self._server.run(sockets=[sock])
            except BaseException as exc:  # reported by start()
                self._error = exc

        self._thread = threading.Thread(target=serve, name=f"autofix-gateway-{self.port}", daemon=True)
        self._thread.start()

        deadline = time.monotonic() + self._startup_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                self._cleanup()
                raise RuntimeError(f"The model gateway stopped while starting: {self._error!r}")
            if self._server.started:
                try:
                    if httpx.get(self.url + "/health", timeout=2.0, trust_env=False).status_code == 200:
                        return self
                except httpx.HTTPError as exc:
                    last = exc
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"The model gateway on {self.url} did not answer /health within "
                           f"{self._startup_timeout_s:.0f} s (last error: {last!r})")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._thread = None
        self._server = None
        if self._owns_store:
            self.store.close()
            self._owns_store = False

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
