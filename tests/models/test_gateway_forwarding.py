"""The gateway forwards what real assistants send: tools, streaming, embeddings, aliases, limits, budgets.

The model is scripted at the litellm boundary: a ``litellm.CustomLLM`` provider registered in
``litellm.custom_provider_map``, so every request goes through the real FastAPI app *and* litellm's
own parameter mapping, streaming wrapper and embedding path. Callers are the OpenAI client library
(what an assistant uses) and raw HTTP where the wire format itself is the point.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path

import httpx
import litellm
import openai
import pytest
from fastapi.testclient import TestClient
from litellm import CustomLLM, EmbeddingResponse, ModelResponse
from typer.testing import CliRunner

from autofix.cli.gateway_cmd import app as gateway_cli
from autofix.models.gateway import CASE_HEADER, create_app
from autofix.models.provider import LOCAL_MODEL
from autofix.models.usage import Budget, UsageStore

CHAT = "scripted/chat-model"
QUESTION = [{"role": "user", "content": "What is the status of INC-1001?"}]
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_ticket",
        "description": "Look a ticket up by its id.",
        "parameters": {"type": "object", "properties": {"ticket_id": {"type": "string"}}, "required": ["ticket_id"]},
    },
}]
TOOL_CALL = {"id": "call_7", "type": "function", "function": {"name": "get_ticket", "arguments": '{"ticket_id": "INC-1001"}'}}


class ScriptedProvider(CustomLLM):
    """A model provider that answers from a script and remembers what litellm handed it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []
        self.replies: list[dict] = []
        self.stream_text = ["Hello ", "world"]
        self.stream_usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        self.fail_with: Exception | None = None

    def _remember(self, model: str, kwargs: dict) -> None:
        self.calls.append({"model": model, "messages": kwargs.get("messages"), "input": kwargs.get("input"),
                           "params": dict(kwargs.get("optional_params") or {})})
        if self.fail_with is not None:
            raise self.fail_with

    async def acompletion(self, model, messages, *args, **kwargs):  # type: ignore[override]
        self._remember(model, {**kwargs, "messages": messages})
        reply = self.replies.pop(0) if self.replies else {"content": "The ticket is open."}
        message = {"role": "assistant", "content": reply.get("content"), **({"tool_calls": reply["tool_calls"]}
                                                                            if reply.get("tool_calls") else {})}
        return ModelResponse(
            model=model,
            choices=[{"index": 0, "finish_reason": "tool_calls" if reply.get("tool_calls") else "stop",
                      "message": message}],
            usage={"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        )

    async def astreaming(self, model, messages, *args, **kwargs):  # type: ignore[override]
        self._remember(model, {**kwargs, "messages": messages})
        for i, piece in enumerate(self.stream_text):
            last = i == len(self.stream_text) - 1
            yield {"text": piece, "is_finished": last, "finish_reason": "stop" if last else "", "index": 0,
                   "tool_use": None, "usage": self.stream_usage if last else None}

    async def aembedding(self, model, input, model_response, *args, **kwargs):  # type: ignore[override]
        self._remember(model, {**kwargs, "input": input})
        input = [input] if isinstance(input, str) else input
        response = EmbeddingResponse(model=model, data=[
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 0.5]} for i, text in enumerate(input)])
        response.usage = litellm.Usage(prompt_tokens=3 * len(input), completion_tokens=0, total_tokens=3 * len(input))
        return response


@pytest.fixture
def provider(monkeypatch):
    scripted = ScriptedProvider()
    monkeypatch.setattr(litellm, "custom_provider_map",
                        [e for e in litellm.custom_provider_map if e.get("provider") != "scripted"]
                        + [{"provider": "scripted", "custom_handler": scripted}])
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    return scripted


@pytest.fixture
def store(tmp_path: Path):
    with UsageStore(tmp_path / "gateway.sqlite3") as s:
        yield s


def gateway(store, model=CHAT, **options) -> TestClient:
    return TestClient(create_app(store, model, **options))


def headers(key: str, case: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **({CASE_HEADER: case} if case else {})}


def openai_client(client: TestClient, key: str, case: str | None = None) -> openai.OpenAI:
    """The OpenAI client library an assistant uses, talking to the in-process gateway."""
    return openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client, max_retries=0,
                         default_headers={CASE_HEADER: case} if case else None)


def error_of(response, status: int, code: str | None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["code"] == code
    return error


# --- function calling ---------------------------------------------------------------------------


def test_a_function_calling_conversation_goes_through_intact(store, provider):
    key = store.issue_key("run-tools")
    provider.replies = [{"content": None, "tool_calls": [TOOL_CALL]}, {"content": "INC-1001 is open."}]
    with gateway(store) as client:
        llm = openai_client(client, key, case="ticket")
        first = llm.chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_ticket"}}, parallel_tool_calls=False,
            temperature=0, seed=7, stop=["\n\n"], response_format={"type": "text"}, n=1, user="alice",
        )
        # The assistant sees the provider's tool call exactly, in OpenAI's shape.
        assert first.choices[0].finish_reason == "tool_calls"
        call = first.choices[0].message.tool_calls[0]
        assert (call.id, call.type, call.function.name, json.loads(call.function.arguments)) == (
            "call_7", "function", "get_ticket", {"ticket_id": "INC-1001"})

        # The provider got the request's parameters as the assistant sent them.
        sent = provider.calls[0]
        assert sent["model"] == "chat-model"  # the served model, whatever the assistant named
        assert sent["params"]["tools"] == TOOLS
        assert sent["params"]["tool_choice"] == {"type": "function", "function": {"name": "get_ticket"}}
        assert sent["params"]["parallel_tool_calls"] is False
        assert sent["params"]["response_format"] == {"type": "text"}
        assert (sent["params"]["seed"], sent["params"]["stop"], sent["params"]["n"]) == (7, ["\n\n"], 1)

        # Second turn: the tool call and its result go back to the model as they are.
        history = QUESTION + [first.choices[0].message.model_dump(exclude_none=True),
                              {"role": "tool", "tool_call_id": "call_7", "content": '{"status": "open"}'}]
        second = llm.chat.completions.create(model="gpt-4o-mini", messages=history, tools=TOOLS)
        assert second.choices[0].message.content == "INC-1001 is open."
    turn = provider.calls[1]["messages"]
    assert turn[1]["tool_calls"][0]["id"] == "call_7" and turn[1]["tool_calls"][0]["function"]["name"] == "get_ticket"
    assert turn[2] == {"role": "tool", "tool_call_id": "call_7", "content": '{"status": "open"}'}
    assert provider.calls[1]["params"]["tools"] == TOOLS
    rows = store.calls("run-tools", "ticket")
    assert [(r.status, r.model, r.requested_model, r.tokens) for r in rows] == [("ok", CHAT, "gpt-4o-mini", 17)] * 2


# --- streaming ----------------------------------------------------------------------------------


def sse_events(response) -> list:
    """The data of each server-sent event; the last must be [DONE]."""
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


def test_a_streamed_answer_is_server_sent_events_and_its_usage_is_recorded(store, provider):
    key = store.issue_key("run-stream")
    with gateway(store) as client:
        response = client.post("/v1/chat/completions", headers=headers(key, "s1"),
                               json={"model": "gpt-4o-mini", "messages": QUESTION, "stream": True})
        assert response.status_code == 200, response.text
        chunks = sse_events(response)
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello world"
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert not any(c.get("usage") for c in chunks)  # not asked for: not sent, as OpenAI does

        # Asked for: a last chunk with the usage and no choices, as OpenAI sends it.
        asked = sse_events(client.post("/v1/chat/completions", headers=headers(key, "s2"), json={
            "messages": QUESTION, "stream": True, "stream_options": {"include_usage": True}}))
        assert asked[-1]["choices"] == [] and asked[-1]["usage"]["total_tokens"] == 11

        # The OpenAI client library reassembles the stream.
        stream = openai_client(client, key, "s3").chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello world"
    assert provider.calls[0]["params"]["stream"] is True
    usage = store.usage_by_case("run-stream")
    assert {case: (u["calls"], u["tokens"], u["errors"]) for case, u in usage.items()} == {
        "s1": (1, 11, 0), "s2": (1, 11, 0), "s3": (1, 11, 0)}
    assert store.calls("run-stream", "s1")[0].requested_model == "gpt-4o-mini"


def test_a_stream_whose_provider_sends_no_usage_is_counted_from_its_chunks(store, provider):
    provider.stream_usage = None
    key = store.issue_key("run-count")
    with gateway(store) as client:
        sse_events(client.post("/v1/chat/completions", headers=headers(key, "c"),
                               json={"messages": QUESTION, "stream": True}))
    [row] = store.calls("run-count", "c")
    assert row.status == "ok" and row.prompt_tokens > 0 and row.completion_tokens > 0


def test_a_provider_failing_mid_stream_ends_the_stream_with_an_error_event_and_is_recorded(store, provider):
    provider.fail_with = RuntimeError("upstream down")  # raised when the first chunk is asked for
    key = store.issue_key("run-fail")
    with gateway(store) as client:
        response = client.post("/v1/chat/completions", headers=headers(key, "f"),
                               json={"messages": QUESTION, "stream": True})
        assert response.status_code == 200  # the stream had started: the failure is its last event
        error = sse_events(response)[-1]["error"]
        assert error["type"] == "provider_error" and "upstream down" in error["message"]
        with pytest.raises(openai.APIError, match="upstream down"):
            list(openai_client(client, key, "f").chat.completions.create(model="m", messages=QUESTION, stream=True))
    rows = store.calls("run-fail", "f")
    assert [r.status for r in rows] == ["error", "error"] and all("upstream down" in r.error for r in rows)


class StalledProvider(ScriptedProvider):
    """Streams its first chunk, then waits until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.go_on = threading.Event()

    async def astreaming(self, model, messages, *args, **kwargs):  # type: ignore[override]
        yield {"text": "Hello ", "is_finished": False, "finish_reason": "", "index": 0, "tool_use": None, "usage": None}
        while not self.go_on.is_set():
            await asyncio.sleep(0.01)
        yield {"text": "world", "is_finished": True, "finish_reason": "stop", "index": 0, "tool_use": None,
               "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}


def test_a_caller_hanging_up_mid_stream_is_recorded_and_the_call_leaves_the_in_flight_set(tmp_path, monkeypatch):
    from autofix.models.gateway import GatewayServer

    stalled = StalledProvider()
    monkeypatch.setattr(litellm, "custom_provider_map", [*litellm.custom_provider_map,
                                                         {"provider": "scripted", "custom_handler": stalled}])
    with GatewayServer(tmp_path / "g.sqlite3", model=CHAT, port=0) as gw:
        key = gw.store.issue_key("run-gone")
        with httpx.stream("POST", gw.base_url + "/chat/completions", headers=headers(key, "gone"), trust_env=False,
                          json={"messages": QUESTION, "stream": True}, timeout=30) as response:
            lines = response.iter_lines()  # kept: a dropped line iterator closes the connection (an early hang-up)
            first = next(lines)
            assert json.loads(first[len("data: "):])["choices"][0]["delta"]["content"] == "Hello "
            assert gw.inflight.cases("run-gone") == {"gone": 1}
        # the caller closed the connection before the answer ended: the gateway notices while the provider still
        # stalls (letting it go on first races the disconnect: on a busy machine the rest may be sent before it)
        try:
            assert gw.inflight.wait_idle("run-gone", timeout_s=30) == {}
        finally:
            stalled.go_on.set()
        [row] = gw.store.calls("run-gone", "gone")
    assert row.status == "error" and "hung up" in row.error and "before the answer ended" in row.error


# --- embeddings ---------------------------------------------------------------------------------


def test_embeddings_are_forwarded_and_recorded(store, provider):
    key = store.issue_key("run-emb")
    with gateway(store, aliases={"text-embedding-3-small": "scripted/embedder"}) as client:
        # OpenAI's client asks for base64 by default and decodes it: the gateway encodes the floats.
        result = openai_client(client, key, "e1").embeddings.create(
            model="text-embedding-3-small", input=["vpn", "annual leave"])
        raw = client.post("/v1/embeddings", headers=headers(key, "e2"), json={
            "model": "text-embedding-3-small", "input": "vpn", "encoding_format": "float"}).json()
        # A parameter this provider cannot take is refused by litellm: a 400 naming it, not a silent drop.
        refused = client.post("/v1/embeddings", headers=headers(key, "e3"), json={
            "model": "text-embedding-3-small", "input": "vpn", "dimensions": 2})
    assert [d.embedding for d in result.data] == [[3.0, 0.5], [12.0, 0.5]]
    assert result.usage.prompt_tokens == 6
    assert raw["object"] == "list" and raw["data"][0]["embedding"] == [3.0, 0.5]
    assert error_of(refused, 400, "unsupported_parameter")["param"] == "dimensions"
    sent = provider.calls[0]
    assert sent["model"] == "embedder" and sent["input"] == ["vpn", "annual leave"]
    rows = store.calls("run-emb")
    assert [(r.case_id, r.status, r.model, r.requested_model, r.prompt_tokens) for r in rows] == [
        ("e1", "ok", "scripted/embedder", "text-embedding-3-small", 6),
        ("e2", "ok", "scripted/embedder", "text-embedding-3-small", 3)]


def test_the_embedded_chat_model_refuses_embeddings_clearly(store):
    key = store.issue_key("run-local")
    with gateway(store, LOCAL_MODEL) as client:
        response = client.post("/v1/embeddings", headers=headers(key),
                               json={"model": "text-embedding-3-small", "input": "vpn"})
        error = error_of(response, 400, "model_cannot_embed")
        assert error["param"] == "model" and "cannot embed" in error["message"] and "model.aliases" in error["message"]
        with pytest.raises(openai.BadRequestError):
            openai_client(client, key).embeddings.create(model="text-embedding-3-small", input="vpn")
        error = error_of(client.post("/v1/embeddings", headers=headers(key), json={"input": "x", "shape": 1}),
                         400, "unknown_parameter")
        assert error["param"] == "shape"
    assert store.calls("run-local") == []


# --- aliases ------------------------------------------------------------------------------------


def test_aliases_choose_the_served_model_and_unknown_names_get_the_default(store, provider):
    key = store.issue_key("run-alias")
    with gateway(store, aliases={"gpt-4o-mini": "scripted/small-model"}) as client:
        for asked in ("gpt-4o-mini", "claude-unknown", None):
            body = {"messages": QUESTION, **({"model": asked} if asked else {})}
            assert client.post("/v1/chat/completions", headers=headers(key), json=body).status_code == 200
        models = client.get("/v1/models", headers=headers(key)).json()
    assert [m["id"] for m in models["data"]] == [CHAT, "gpt-4o-mini"]
    assert [c["model"] for c in provider.calls] == ["small-model", "chat-model", "chat-model"]
    assert [(r.model, r.requested_model) for r in store.calls("run-alias")] == [
        ("scripted/small-model", "gpt-4o-mini"), (CHAT, "claude-unknown"), (CHAT, None)]


# --- what the served model cannot honour --------------------------------------------------------


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"),
    ({"tools": TOOLS}, "tools"),
    ({"tools": TOOLS, "tool_choice": "auto"}, "tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"reasoning_effort": "high"}, "reasoning_effort"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
])
def test_the_embedded_model_refuses_what_it_cannot_honour_naming_the_parameter(store, extra, param):
    key = store.issue_key("run-local")
    with gateway(store, LOCAL_MODEL) as client:
        response = client.post("/v1/chat/completions", headers=headers(key), json={"messages": QUESTION, **extra})
    error = error_of(response, 400, "unsupported_parameter")
    assert error["param"] == param and f"'{param}'" in error["message"]
    assert store.calls("run-local") == []


def test_a_parameter_the_provider_refuses_is_a_400_naming_it(store, provider):
    provider.fail_with = litellm.UnsupportedParamsError(status_code=400, message="scripted does not support logit_bias")
    key = store.issue_key("run-x")
    with gateway(store) as client:
        response = client.post("/v1/chat/completions", headers=headers(key),
                               json={"messages": QUESTION, "logit_bias": {"50256": -100}})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "logit_bias"


# --- request size and budgets -------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(store, provider):
    key = store.issue_key("run-big")
    with gateway(store, max_body_bytes=2048) as client:
        big = [{"role": "user", "content": "x" * 4096}]
        error = error_of(client.post("/v1/chat/completions", headers=headers(key), json={"messages": big}),
                         413, "request_too_large")
        assert "2048" in error["message"] and "max_body_bytes" in error["message"]
        error_of(client.post("/v1/embeddings", headers=headers(key), json={"input": "y" * 4096}), 413,
                 "request_too_large")
        assert client.post("/v1/chat/completions", headers=headers(key), json={"messages": QUESTION}).status_code == 200
    assert len(provider.calls) == 1


def test_a_run_that_spent_its_token_budget_gets_429_and_the_ledger_shows_it(tmp_path, provider):
    db = tmp_path / "gateway.sqlite3"
    runner = CliRunner()
    with UsageStore(db) as store:
        key = store.issue_key("run-budget")  # no budget of its own: the gateway's default applies
        own = json.loads(runner.invoke(gateway_cli, [
            "key", "--run", "run-own", "--budget-tokens", "100", "--db", str(db), "--json"]).output)
        with gateway(store, budget=Budget(tokens=30)) as client:
            statuses = [client.post("/v1/chat/completions", headers=headers(key, f"c{i}"),
                                    json={"messages": QUESTION}).status_code for i in range(3)]
            refused = client.post("/v1/chat/completions", headers=headers(key, "c3"), json={"messages": QUESTION})
            with pytest.raises(openai.RateLimitError):  # what the assistant's client raises (not retried)
                openai_client(client, key).chat.completions.create(model="m", messages=QUESTION)
            own_statuses = [client.post("/v1/chat/completions", headers=headers(own["api_key"]),
                                        json={"messages": QUESTION}).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # 17 tokens, 34 >= 30: spent
        error = error_of(refused, 429, "budget_exceeded")
        assert error["type"] == "insufficient_quota" and "34 of 30 tokens" in error["message"]
        assert refused.headers["x-should-retry"] == "false"
        assert own_statuses == [200, 200, 200]  # its own budget (100 tokens) replaces the default
        rows = store.calls("run-budget")
        assert len(rows) == 5 and len(provider.calls) == 2 + 3
        assert [r.status for r in rows] == ["ok", "ok", "error", "error", "error"]
        assert all(r.error.startswith("budget_exceeded") and r.tokens == 0 for r in rows[2:])
        status = store.budget_status("run-budget")
        assert (status.budget.tokens, status.spent_tokens, status.left_tokens, status.exceeded) == (30, 34, -4, True)

    result = runner.invoke(gateway_cli, ["usage", "--run", "run-budget", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    budget = json.loads(result.output)["budget"]
    assert (budget["tokens"], budget["spent_tokens"], budget["left_tokens"], budget["exceeded"]) == (30, 34, -4, True)
    table = runner.invoke(gateway_cli, ["usage", "--run", "run-own", "--db", str(db)]).output
    assert "budget: 100 tokens, 49 left" in table


def test_a_dollar_budget_counts_the_recorded_cost(store, provider):
    key = store.issue_key("run-usd", budget=Budget(usd=0.01))
    store.record("run-usd", "earlier", CHAT, prompt_tokens=1000, cost_usd=0.012)
    with gateway(store) as client:
        error = error_of(client.post("/v1/chat/completions", headers=headers(key), json={"messages": QUESTION}),
                         429, "budget_exceeded")
    assert "$0.0120 of $0.0100" in error["message"]
    assert provider.calls == []


# --- multi-turn cases ---------------------------------------------------------------------------


ECHO_HISTORY = (
    "import json, sys\n"
    "rows = [json.loads(l) for l in open(sys.argv[1])]\n"
    "with open(sys.argv[2], 'w') as out:\n"
    "    for r in rows:\n"
    "        out.write(json.dumps({'case_id': r['case_id'], 'output': json.dumps(r.get('messages'))}) + '\\n')\n"
)


def test_a_multi_turn_case_reaches_the_replay_command_with_its_history(tmp_path):
    from autofix.config import load_config
    from autofix.demo import bundled_example
    from autofix.models.gateway import GatewayServer
    from autofix.replay import Case, replay_cases
    from autofix.replay.records import load_cases
    from autofix.sandbox.local_backend import LocalSandbox

    script = tmp_path / "echo_history.py"
    script.write_text(ECHO_HISTORY)
    helpdesk = load_config(bundled_example())
    config = helpdesk.model_copy(update={"replay": helpdesk.replay.model_copy(update={
        "command": f"{sys.executable} {script} {{cases}} {{out}}", "batch_size": 10})})
    history = [{"role": "user", "content": "How do I reset my VPN?"},
               {"role": "assistant", "content": "Open NorthGate and choose Reset."}]
    cases = [Case(case_id="multi", input="And on a Mac?", messages=history),
             Case(case_id="single", input="Where is the VPN guide?")]
    sandbox = LocalSandbox()
    with UsageStore(tmp_path / "g.sqlite3") as store, \
            GatewayServer(store, model=LOCAL_MODEL, host=sandbox.gateway_bind_host(), port=0) as gw:
        results = replay_cases(cases, config=config, target_dir=helpdesk.root, sandbox=sandbox, gateway=gw,
                               replay_id="multi-turn", io_root=tmp_path / "io")
    by_id = {r.case_id: r for r in results}
    assert by_id["multi"].error is None and json.loads(by_id["multi"].output) == history
    assert json.loads(by_id["single"].output) is None
    written = (tmp_path / "io" / "batch-0000" / "cases.jsonl").read_text().splitlines()
    assert "messages" in json.loads(written[0]) and "messages" not in json.loads(written[1])
    assert load_cases(tmp_path / "io" / "batch-0000" / "cases.jsonl") == cases  # the file round-trips


def test_a_slice_case_from_a_multi_turn_trace_carries_its_history(tmp_path):
    from autofix.config import load_config
    from autofix.demo import bundled_example
    from autofix.replay.datasets import load_slice

    llm_input = [
        {"role": "system", "content": "You are the helpdesk assistant. Context: ..."},
        {"role": "user", "content": "How do I reset my VPN?"},
        {"role": "assistant", "content": "Open NorthGate and choose Reset."},
        {"role": "user", "content": [{"type": "text", "text": "Excerpts: ...\nQuestion: And on a Mac?"}]},
    ]
    traces = [
        {"trace_id": "t-multi", "session_id": "s1", "timestamp": "2026-11-02T08:25:00Z", "input": "And on a Mac?",
         "output": "...", "spans": [{"kind": "llm", "name": "chat", "input": llm_input, "output": "..."}]},
        {"trace_id": "t-field", "timestamp": "2026-11-02T09:00:00Z", "input": "b", "metadata": {"tenant": "x"},
         "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "A"},
                      {"role": "user", "content": "b"}]},
        {"trace_id": "t-single", "timestamp": "2026-11-02T10:00:00Z", "input": "Where is the VPN guide?",
         "spans": [{"kind": "llm", "name": "chat", "input": llm_input[:1] + llm_input[3:], "output": "..."}]},
    ]
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    (tmp_path / "triage").mkdir()
    (tmp_path / "triage" / "latest.json").write_text(json.dumps({
        "clusters": [{"id": "memory-1", "trace_ids": ["t-multi", "t-field", "t-single"]}],
        "sources": [str(tmp_path / "traces.jsonl")]}))
    helpdesk = load_config(bundled_example())
    config = helpdesk.model_copy(update={"state_dir": str(tmp_path)})

    cases = {c.case_id: c for c in load_slice(config, "memory-1").cases}
    assert cases["t-multi"].input == "And on a Mac?"
    assert [t.model_dump() for t in cases["t-multi"].messages] == llm_input[1:3]
    assert [t.model_dump() for t in cases["t-field"].messages] == [{"role": "user", "content": "a"},
                                                                   {"role": "assistant", "content": "A"}]
    assert cases["t-single"].messages is None
    assert "messages" not in json.loads(cases["t-single"].model_dump_json())


# --- the embedded model, for real ---------------------------------------------------------------


@pytest.mark.model
def test_the_embedded_model_honours_forced_tool_calls_json_answers_and_streaming(store):
    with gateway(store, LOCAL_MODEL) as client:
        llm = openai_client(client, store.issue_key("run-real"))
        called = llm.chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, tools=TOOLS, max_tokens=40,
            tool_choice={"type": "function", "function": {"name": "get_ticket"}})
        [call] = called.choices[0].message.tool_calls
        assert call.function.name == "get_ticket" and called.choices[0].finish_reason == "tool_calls"
        assert isinstance(json.loads(call.function.arguments), dict)  # strict JSON, whatever the tiny model says

        schema = {"type": "object", "properties": {"status": {"type": "string", "enum": ["open", "closed"]}},
                  "required": ["status"]}
        answer = llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=40, response_format={
            "type": "json_schema", "json_schema": {"name": "status", "schema": schema}})
        assert json.loads(answer.choices[0].message.content)["status"] in ("open", "closed")

        plain = llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=24)
        streamed = "".join(c.choices[0].delta.content or "" for c in llm.chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, max_tokens=24, stream=True) if c.choices)
        assert streamed == plain.choices[0].message.content  # streaming does not change the answer
    rows = store.calls("run-real")
    assert [r.status for r in rows] == ["ok"] * 4 and rows[3].tokens == rows[2].tokens == plain.usage.total_tokens


# --- configuration ------------------------------------------------------------------------------


def test_autofix_yaml_model_section_configures_aliases_the_body_limit_and_budgets():
    from pydantic import ValidationError

    from autofix.config.target import ModelConfig
    from autofix.models.gateway import DEFAULT_MAX_BODY_BYTES, app_options

    assert app_options(ModelConfig()) == {"model": LOCAL_MODEL, "aliases": {}, "max_body_bytes": DEFAULT_MAX_BODY_BYTES,
                                          "budget": None}
    config = ModelConfig.model_validate({
        "name": "openai/gpt-4o-mini",
        "aliases": {"gpt-4o": "openai/gpt-4o-mini", "text-embedding-3-small": "openai/text-embedding-3-small"},
        "gateway": {"max_body_bytes": 65536, "budget": {"tokens": 200000, "usd": 2.5}},
    })
    options = app_options(config)
    assert options["aliases"]["gpt-4o"] == "openai/gpt-4o-mini" and options["max_body_bytes"] == 65536
    assert options["budget"] == Budget(tokens=200000, usd=2.5)
    with pytest.raises(ValidationError, match="empty side"):
        ModelConfig.model_validate({"aliases": {"gpt-4o": " "}})
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"gateway": {"budget": {"tokens": 0}}})
