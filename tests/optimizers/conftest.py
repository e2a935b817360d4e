"""Fixtures of the optimizer tests: the helpdesk in a repository of its own, triaged; a scripted
optimizer model at the litellm boundary (`scripted/optimizer`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import autofix  # noqa: F401 - first: it keeps litellm from fetching its price map over the network
import litellm
import pytest
from litellm import CustomLLM, ModelResponse

HELPDESK = Path(__file__).resolve().parents[2] / "examples" / "helpdesk"


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True, env=env).stdout


def make_helpdesk_repo(parent: Path, *, edit: Callable[[Path], None] | None = None) -> Path:
    """The bundled helpdesk (data included) committed in a repository of its own and triaged."""
    root = parent / "helpdesk"
    shutil.copytree(HELPDESK, root, ignore=shutil.ignore_patterns("runs", "__pycache__", ".pytest_cache"))
    (root / ".gitignore").write_text("runs/\n")
    if edit is not None:
        edit(root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "helpdesk")
    from autofix.config import load_config
    from autofix.triage.pipeline import run_triage

    run_triage(load_config(root / "autofix.yaml"))
    return root


class ScriptedOptimizerModel(CustomLLM):
    """An optimizer model that answers from a script (a function of the messages) and records the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[dict]] = []
        self.script: Callable[[list[dict]], str] = lambda messages: ""

    def _reply(self, model: str, messages: list[dict]) -> ModelResponse:
        self.calls.append(messages)
        return ModelResponse(model=model, choices=[{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": self.script(messages)}}],
                             usage={"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150})

    def completion(self, model, messages, *args, **kwargs):  # type: ignore[override]
        return self._reply(model, messages)

    async def acompletion(self, model, messages, *args, **kwargs):  # type: ignore[override]
        return self._reply(model, messages)


@pytest.fixture
def scripted_model(monkeypatch) -> ScriptedOptimizerModel:
    """`scripted/optimizer` answers with `scripted_model.script(messages)`."""
    scripted = ScriptedOptimizerModel()
    monkeypatch.setattr(litellm, "custom_provider_map",
                        [e for e in litellm.custom_provider_map if e.get("provider") != "scripted"]
                        + [{"provider": "scripted", "custom_handler": scripted}])
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    return scripted
