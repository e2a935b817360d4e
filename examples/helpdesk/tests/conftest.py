import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

HELPDESK_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def helpdesk_root() -> Path:
    return HELPDESK_ROOT


class _EchoModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers with the first excerpt it was given: enough to test plumbing."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _EchoModel.requests.append({"body": body, "headers": dict(self.headers)})
        if self.headers.get("Authorization") != "Bearer test-key":
            self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
            return
        system = body["messages"][0]["content"]
        text = system.split("Policy excerpts:", 1)[-1].strip()[:200] or "Hello!"
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def echo_model(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _EchoModel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _EchoModel.requests.clear()
    monkeypatch.setenv("AUTOFIX_MODEL_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("AUTOFIX_MODEL_API_KEY", "test-key")
    monkeypatch.setenv("AUTOFIX_MODEL", "echo")
    yield _EchoModel.requests
    server.shutdown()
