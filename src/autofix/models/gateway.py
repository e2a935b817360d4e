"""The model gateway: the one OpenAI-compatible endpoint a sandboxed replay may call.

It holds the real provider credentials (they never enter the sandbox), authenticates the
caller with a per-run key, sends every call to the gateway's configured litellm model
whatever ``model`` the caller asked for, and records tokens, cost and latency of each
call per run and case (header ``X-Autofix-Case``).

Routes: ``POST /v1/chat/completions`` (non-streaming), ``GET /v1/models``, ``GET /health``.
Errors use OpenAI's body shape ``{"error": {"message", "type", "param", "code"}}``, so
OpenAI client libraries inside the sandbox raise their usual exceptions.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import litellm
import uvicorn
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from autofix.models.provider import LOCAL_MODEL, cost_usd, is_local, register_local_provider
from autofix.models.usage import UsageStore

CASE_HEADER = "X-Autofix-Case"
"""Request header naming the replay case a call belongs to (recorded with the call)."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[Any] | None = None


class ChatRequest(BaseModel):
    """The part of an OpenAI chat-completions request the gateway honours; other fields are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None


def openai_error(
    status_code: int,
    message: str,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> JSONResponse:
    """A JSON error response in OpenAI's shape."""
    return JSONResponse(
        status_code=status_code,
        content={"error": {"message": message, "type": type, "param": param, "code": code}},
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
    param = ".".join(loc) or None
    where = f" at '{param}'" if param else ""
    return f"Invalid request body{where}: {first.get('msg', 'invalid value')}.", param


def create_app(
    store: UsageStore,
    model: str = LOCAL_MODEL,
    *,
    litellm_kwargs: dict[str, Any] | None = None,
    timeout_s: float = 600.0,
) -> FastAPI:
    """The gateway as an ASGI app.

    ``model`` is the litellm model string every call goes to (default: the embedded local
    model). ``litellm_kwargs`` are extra arguments for each ``litellm.acompletion`` call
    (``api_base``, ``api_key``, ...): the provider settings stay on the host.
    """
    if is_local(model):
        register_local_provider()
    extra = dict(litellm_kwargs or {})
    app = FastAPI(title="autofix model gateway", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.model = model
    inflight = InFlight()
    app.state.inflight = inflight

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

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model}

    @app.get("/v1/models")
    async def list_models(request: Request) -> Any:
        auth = authenticate(request)
        if isinstance(auth, JSONResponse):
            return auth
        return {
            "object": "list",
            "data": [{"id": model, "object": "model", "created": 0, "owned_by": "autofix-gateway"}],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        auth = authenticate(request)
        if isinstance(auth, JSONResponse):
            return auth
        run_id = auth

        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return openai_error(400, f"The request body is not valid JSON: {exc}.")
        if not isinstance(payload, dict):
            return openai_error(400, "The request body must be a JSON object.")
        try:
            body = ChatRequest.model_validate(payload)
        except ValidationError as exc:
            message, param = _validation_message(exc)
            return openai_error(400, message, param=param)
        if body.stream:
            return openai_error(
                400, "Streaming is not supported by the autofix model gateway; send stream=false.",
                code="unsupported_parameter", param="stream",
            )

        params: dict[str, Any] = {}
        max_tokens = body.max_tokens if body.max_tokens is not None else body.max_completion_tokens
        for name, value in (
            ("temperature", body.temperature),
            ("max_tokens", max_tokens),
            ("top_p", body.top_p),
            ("stop", body.stop),
            ("seed", body.seed),
        ):
            if value is not None:
                params[name] = value
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        case_id = request.headers.get(CASE_HEADER) or None

        started = time.perf_counter()
        inflight.enter(run_id, case_id)
        try:
            return await _complete(run_id, case_id, body, messages, params, started, request)
        finally:
            inflight.leave(run_id, case_id)

    async def _complete(run_id: str, case_id: str | None, body: ChatRequest, messages: list[dict[str, Any]],
                        params: dict[str, Any], started: float, request: Request) -> Any:
        try:
            response = await litellm.acompletion(
                model=model, messages=messages, timeout=timeout_s, **params, **extra
            )
        except Exception as exc:  # any provider failure is the caller's 502, never a crash
            latency_ms = (time.perf_counter() - started) * 1000.0
            message = f"{type(exc).__name__}: {exc}"
            store.record(
                run_id, case_id, model, latency_ms=latency_ms, status="error", error=message,
                requested_model=body.model,
            )
            return JSONResponse(
                status_code=502,
                content={
                    "error": {
                        "message": f"The model provider failed: {message}",
                        "type": "provider_error",
                        "param": None,
                        "code": type(exc).__name__,
                    }
                },
            )
        latency_ms = (time.perf_counter() - started) * 1000.0

        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        # A caller that hung up (its own timeout) never got this answer: the call cost what it cost,
        # but it failed for the caller, which is the infrastructure's fault, not the assistant's.
        gone = await request.is_disconnected()
        store.record(
            run_id,
            case_id,
            model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd(response, model),
            latency_ms=latency_ms,
            status="error" if gone else "ok",
            error=f"the caller hung up after {latency_ms / 1000:.1f} s, before the answer came" if gone else None,
            requested_model=body.model,
        )
        content = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        content.setdefault("object", "chat.completion")
        return JSONResponse(content=jsonable_encoder(content))

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
