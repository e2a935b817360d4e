"""The model gateway: auth, forwarding through litellm, per-case usage records, errors.

Unit tests script the model at the litellm boundary (``litellm.acompletion``); the
integration test at the end runs the real embedded model behind a real server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import litellm
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from autofix.cli.gateway_cmd import app as gateway_cli
from autofix.models.gateway import CASE_HEADER, GatewayServer, create_app
from autofix.models.provider import LOCAL_MODEL
from autofix.models.usage import UsageStore

GATEWAY_MODEL = "openai/gpt-4o-mini"  # what the gateway is configured with in the unit tests
QUESTION = [{"role": "user", "content": "What is the office code?"}]


def fake_response(content: str = "The code is 4721.", prompt_tokens: int = 12, completion_tokens: int = 5):
    return litellm.ModelResponse(
        model=GATEWAY_MODEL,
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )


class ScriptedLM:
    """Stands in for litellm.acompletion: answers from a script and remembers each call."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls: list[dict] = []

    async def __call__(self, **kwargs):
        self.calls.append(kwargs)
        outcome = self.outcomes.pop(0) if self.outcomes else fake_response()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.fixture
def store(tmp_path: Path):
    with UsageStore(tmp_path / "gateway.sqlite3") as s:
        yield s


@pytest.fixture
def lm(monkeypatch):
    scripted = ScriptedLM()
    monkeypatch.setattr(litellm, "acompletion", scripted)
    return scripted


@pytest.fixture
def client(store, lm):
    with TestClient(create_app(store, GATEWAY_MODEL)) as c:
        yield c


def auth(key: str, case: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if case is not None:
        headers[CASE_HEADER] = case
    return headers


def assert_openai_error(response, status: int, type_: str, code: str | None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == type_
    assert error["code"] == code
    return error


def test_missing_key_is_401_openai_style(client, lm):
    response = client.post("/v1/chat/completions", json={"model": "x", "messages": QUESTION})
    error = assert_openai_error(response, 401, "invalid_request_error", "invalid_api_key")
    assert error["param"] is None
    assert lm.calls == []


def test_unknown_key_is_401(client, store, lm):
    store.issue_key("run-1")
    response = client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth("afx-not-a-key"))
    assert_openai_error(response, 401, "invalid_request_error", "invalid_api_key")
    response = client.post("/v1/chat/completions", json={"messages": QUESTION}, headers={"Authorization": "Basic abc"})
    assert_openai_error(response, 401, "invalid_request_error", "invalid_api_key")
    assert lm.calls == []


def test_revoked_key_is_401(client, store, lm):
    key = store.issue_key("run-1")
    assert key.startswith("afx-")
    assert client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(key)).status_code == 200
    assert store.revoke("run-1") == 1
    response = client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(key))
    assert_openai_error(response, 401, "invalid_request_error", "invalid_api_key")
    assert len(lm.calls) == 1
    assert store.run_for_key(key) is None


def test_completion_is_forwarded_to_the_gateway_model_and_recorded_per_case(client, store, lm):
    key = store.issue_key("run-7")
    other_run_key = store.issue_key("run-8")
    lm.outcomes = [fake_response("a", 10, 2), fake_response("b", 20, 4), fake_response("c", 7, 1), fake_response("d", 5, 5)]

    first = client.post(
        "/v1/chat/completions",
        json={
            "model": "sandbox-picked-model",
            "messages": QUESTION,
            "temperature": 0,
            "max_tokens": 32,
            "top_p": 0.5,
            "stop": ["\n\n"],
            "seed": 3,
            "logprobs": True,  # every OpenAI parameter is forwarded as sent
        },
        headers=auth(key, "case-1"),
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "a"
    assert body["usage"]["total_tokens"] == 12

    # The sandbox does not choose the provider: the configured model answers.
    call = lm.calls[0]
    assert call["model"] == GATEWAY_MODEL
    assert call["messages"] == QUESTION
    assert {k: call[k] for k in ("temperature", "max_tokens", "top_p", "stop", "seed")} == {
        "temperature": 0.0, "max_tokens": 32, "top_p": 0.5, "stop": ["\n\n"], "seed": 3,
    }
    assert call["logprobs"] is True

    client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(key, "case-1"))
    client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(key, "case-2"))
    client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(other_run_key))
    assert "max_tokens" not in lm.calls[1]  # only what the caller sent is forwarded

    usage = store.usage_by_case("run-7")
    assert set(usage) == {"case-1", "case-2"}
    assert usage["case-1"]["calls"] == 2
    assert usage["case-1"]["tokens"] == 36
    assert usage["case-1"]["prompt_tokens"] == 30
    assert usage["case-2"]["tokens"] == 8
    assert usage["case-1"]["errors"] == 0
    assert usage["case-1"]["latency_ms"] >= 0
    assert usage["case-1"]["cost_usd"] >= 0
    assert store.usage_by_case("run-8") == {None: store.usage_by_case("run-8")[None]}
    assert store.usage_by_case("run-8")[None]["tokens"] == 10

    rows = store.calls("run-7", "case-1")
    assert [r.requested_model for r in rows] == ["sandbox-picked-model", None]
    assert all(r.model == GATEWAY_MODEL and r.status == "ok" and r.error is None for r in rows)
    assert [r.tokens for r in store.calls("run-7")] == [12, 24, 8]


def test_provider_error_is_502_openai_style_and_recorded(client, store, lm):
    key = store.issue_key("run-1")
    lm.outcomes = [
        litellm.exceptions.APIConnectionError(message="connection refused", llm_provider="openai", model="gpt-4o-mini"),
        RuntimeError("boom"),
    ]
    response = client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(key, "case-9"))
    error = assert_openai_error(response, 502, "provider_error", "APIConnectionError")
    assert "connection refused" in error["message"]
    response = client.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(key, "case-9"))
    assert_openai_error(response, 502, "provider_error", "RuntimeError")

    rows = store.calls("run-1", "case-9")
    assert [r.status for r in rows] == ["error", "error"]
    assert "connection refused" in rows[0].error
    assert rows[0].tokens == 0
    assert store.usage_by_case("run-1")["case-9"]["errors"] == 2


def test_parameters_litellm_would_read_as_its_own_are_refused(client, store, lm):
    key = store.issue_key("run-1")
    for name, value in (("api_base", "http://attacker.example/v1"), ("mock_response", "hi"), ("input_cost_per_token", 0)):
        response = client.post("/v1/chat/completions", json={"messages": QUESTION, name: value}, headers=auth(key))
        error = assert_openai_error(response, 400, "invalid_request_error", "unknown_parameter")
        assert error["param"] == name and name in error["message"]
    assert lm.calls == []
    assert store.calls("run-1") == []


@pytest.mark.parametrize(
    "content, param",
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"model": "x"}).encode(), "messages"),
        (json.dumps({"messages": []}).encode(), "messages"),
        (json.dumps({"messages": [{"content": "no role"}]}).encode(), "messages.0.role"),
        (json.dumps({"messages": QUESTION, "temperature": "hot"}).encode(), "temperature"),
    ],
)
def test_malformed_body_is_400(client, store, lm, content, param):
    key = store.issue_key("run-1")
    response = client.post(
        "/v1/chat/completions", content=content, headers={**auth(key), "Content-Type": "application/json"}
    )
    error = assert_openai_error(response, 400, "invalid_request_error", None)
    assert error["param"] == param
    assert lm.calls == []
    assert store.calls("run-1") == []


def test_models_health_and_unknown_routes(client, store):
    assert client.get("/health").json() == {"status": "ok", "model": GATEWAY_MODEL}
    assert_openai_error(client.get("/v1/models"), 401, "invalid_request_error", "invalid_api_key")
    models = client.get("/v1/models", headers=auth(store.issue_key("run-1"))).json()
    assert [m["id"] for m in models["data"]] == [GATEWAY_MODEL]
    assert client.get("/v1/images/generations").status_code == 404
    assert client.get("/v1/images/generations").json()["error"]["code"] == "not_found"
    assert client.get("/v1/embeddings").json()["error"]["code"] == "method_not_allowed"


def test_usage_store_is_safe_across_threads(tmp_path):
    with UsageStore(tmp_path / "g.sqlite3") as store:
        keys = []

        def work(i: int) -> None:
            keys.append(store.issue_key(f"run-{i % 2}"))
            for _ in range(25):
                store.record(f"run-{i % 2}", f"case-{i}", "m", 1, 2, 0.0, 1.0, "ok")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.calls("run-0")) == len(store.calls("run-1")) == 100
        assert sum(u["tokens"] for u in store.usage_by_case("run-1").values()) == 300
        assert {store.run_for_key(k) for k in keys} == {"run-0", "run-1"}
    # the file is readable by another connection (WAL) after the store is closed
    with UsageStore(tmp_path / "g.sqlite3") as again:
        assert len(again.calls("run-0", "case-0")) == 25


def test_gateway_server_serves_in_a_background_thread(tmp_path, lm):
    with GatewayServer(tmp_path / "g.sqlite3", model=GATEWAY_MODEL, port=0) as gw:
        assert gw.port > 0
        assert gw.base_url == f"http://127.0.0.1:{gw.port}/v1"
        key = gw.store.issue_key("run-1")
        response = httpx.post(
            gw.base_url + "/chat/completions", json={"messages": QUESTION}, headers=auth(key, "c1"), trust_env=False
        )
        assert response.status_code == 200
        assert gw.store.usage_by_case("run-1")["c1"]["tokens"] == 17
    with pytest.raises(httpx.HTTPError):
        httpx.get(gw.url + "/health", timeout=1, trust_env=False)


def test_cli_key_and_usage(tmp_path, lm):
    db = tmp_path / "g.sqlite3"
    runner = CliRunner()
    result = runner.invoke(gateway_cli, ["key", "--run", "run-3", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    key = json.loads(result.output)["api_key"]
    assert key.startswith("afx-")

    with UsageStore(db) as store:
        assert store.run_for_key(key) == "run-3"
        with TestClient(create_app(store, GATEWAY_MODEL)) as c:
            c.post("/v1/chat/completions", json={"messages": QUESTION}, headers=auth(key, "billing-42"))

    result = runner.invoke(gateway_cli, ["usage", "--run", "run-3", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    cases = json.loads(result.output)["cases"]
    assert [(c["case_id"], c["calls"], c["tokens"]) for c in cases] == [("billing-42", 1, 17)]

    result = runner.invoke(gateway_cli, ["usage", "--run", "run-3", "--db", str(db)])
    assert result.exit_code == 0
    assert "billing-42" in result.output and "17" in result.output

    result = runner.invoke(gateway_cli, ["usage", "--run", "nope", "--db", str(db)])
    assert result.exit_code == 1
    result = runner.invoke(gateway_cli, ["usage", "--run", "run-3", "--db", str(tmp_path / "missing.sqlite3")])
    assert result.exit_code == 1

    result = runner.invoke(gateway_cli, ["revoke", "--run", "run-3", "--db", str(db), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["revoked"] == 1


def test_cli_takes_the_database_from_the_config_state_dir(tmp_path, monkeypatch):
    import autofix.config

    state = tmp_path / "state"
    config = SimpleNamespace(
        state_dir="state",
        state_path=state,
        model=SimpleNamespace(name=LOCAL_MODEL, gateway=SimpleNamespace(host="127.0.0.1", port=4141)),
    )
    monkeypatch.setattr(autofix.config, "load_config", lambda path: config)
    result = CliRunner().invoke(gateway_cli, ["key", "-c", str(tmp_path / "autofix.yaml"), "--run", "r", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["db"] == str(state / "gateway.sqlite3")
    with UsageStore(state / "gateway.sqlite3") as store:
        assert store.run_for_key(json.loads(result.output)["api_key"]) == "r"


def test_cli_serve_runs_in_the_foreground_until_interrupted(tmp_path):
    db = tmp_path / "g.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "autofix", "gateway", "serve", "--port", "0", "--db", str(db), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        assert info["model"] == LOCAL_MODEL and info["db"] == str(db)
        assert httpx.get(info["url"] + "/health", trust_env=False).json()["status"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with UsageStore(db) as store:  # the database was created where asked
        assert store.calls("any") == []


@pytest.mark.model
def test_real_local_model_through_a_real_gateway(tmp_path):
    with GatewayServer(tmp_path / "gateway.sqlite3", model=LOCAL_MODEL, host="127.0.0.1", port=0) as gw:
        key = gw.store.issue_key("run-local")
        started = time.perf_counter()
        response = httpx.post(
            gw.base_url + "/chat/completions",
            json={
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Answer from the context. Context: the office door code is 4721."},
                    {"role": "user", "content": "What is the office door code?"},
                ],
                "temperature": 0,
                "max_tokens": 48,
            },
            headers={"Authorization": f"Bearer {key}", CASE_HEADER: "door-code"},
            timeout=120,
            trust_env=False,
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        body = response.json()
        content = body["choices"][0]["message"]["content"]
        assert content.strip()
        assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0

        rows = gw.store.calls("run-local", "door-code")
        assert len(rows) == 1
        row = rows[0]
        assert row.status == "ok" and row.model == LOCAL_MODEL and row.requested_model == "gpt-4o-mini"
        assert row.tokens > 0 and row.tokens == body["usage"]["total_tokens"]
        assert row.cost_usd == 0.0
        assert 0 < row.latency_ms <= elapsed * 1000


@pytest.mark.model
def test_a_request_longer_than_the_local_models_context_is_the_callers_400_not_a_provider_failure(tmp_path):
    with GatewayServer(tmp_path / "gateway.sqlite3", model=LOCAL_MODEL, host="127.0.0.1", port=0) as gw:
        key = gw.store.issue_key("run-long")
        response = httpx.post(
            gw.base_url + "/chat/completions",
            json={"messages": [{"role": "user", "content": "word " * 4000}], "max_tokens": 16},
            headers={"Authorization": f"Bearer {key}", CASE_HEADER: "too-long"}, timeout=120, trust_env=False)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "ContextWindowExceededError" and "context window" in error["message"]
        # not recorded as a failed call: the replay counts the case as the target's failure, measured
        assert gw.store.usage_by_case("run-long").get("too-long", {}).get("errors", 0) == 0
