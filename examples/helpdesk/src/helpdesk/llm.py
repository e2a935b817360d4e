"""Chat completions through the OpenAI-compatible endpoint named by AUTOFIX_MODEL_BASE_URL / AUTOFIX_MODEL."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass


class ModelError(Exception):
    pass


@dataclass(frozen=True)
class ModelEndpoint:
    base_url: str
    api_key: str
    model: str
    timeout_s: float = 300.0  # the embedded model serialises calls: on a busy 2-core machine one can wait minutes

    @classmethod
    def from_env(cls) -> "ModelEndpoint":
        base_url = os.environ.get("AUTOFIX_MODEL_BASE_URL")
        if not base_url:
            raise ModelError("AUTOFIX_MODEL_BASE_URL is not set: point it at an OpenAI-compatible /v1 endpoint")
        return cls(
            base_url=base_url.rstrip("/"),
            api_key=os.environ.get("AUTOFIX_MODEL_API_KEY", ""),
            model=os.environ.get("AUTOFIX_MODEL", "default"),
        )

    def chat(self, messages: list[dict[str, str]], case_id: str | None = None, max_tokens: int = 256) -> dict:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": max_tokens})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"}
        if case_id:
            headers["X-Autofix-Case"] = case_id
        request = urllib.request.Request(f"{self.base_url}/chat/completions", body.encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ModelError(f"model endpoint answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ModelError(f"model endpoint unreachable at {self.base_url}: {exc}") from None
        return payload
