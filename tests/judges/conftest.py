"""A scripted judge model at the litellm boundary: `litellm.completion` answers from a script."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from autofix.config import AutofixConfig, RubricJudge  # noqa: E402

FAKE_MODEL = "openai/scripted-judge"


def reply(score: Any = 4, rationale: str = "The answer states the fact from the policy.", confidence: Any = 0.8,
          tags: str = "[]") -> str:
    """What a well-behaved model writes for DSPy's ChatAdapter."""
    return (f"[[ ## rationale ## ]]\n{rationale}\n\n[[ ## score ## ]]\n{score}\n\n"
            f"[[ ## confidence ## ]]\n{confidence}\n\n[[ ## failure_tags ## ]]\n{tags}\n\n[[ ## completed ## ]]")


class ScriptedModel:
    """Stands in for `litellm.completion`: each call takes the next script entry (a text, a function of the
    messages returning a text, or an exception to raise); the last entry repeats. Remembers every call."""

    def __init__(self) -> None:
        self.script: list[Any] = [reply()]
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        import litellm

        self.calls.append(kwargs)
        entry = self.script[min(len(self.calls) - 1, len(self.script) - 1)]
        if isinstance(entry, BaseException):
            raise entry
        text = entry(kwargs["messages"]) if callable(entry) else entry
        return litellm.ModelResponse(
            choices=[{"message": {"role": "assistant", "content": text}, "finish_reason": "stop", "index": 0}],
            model=kwargs.get("model"), usage={"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        )

    def last_user_message(self) -> str:
        return self.calls[-1]["messages"][-1]["content"]


@pytest.fixture
def scripted(monkeypatch) -> ScriptedModel:
    import litellm

    model = ScriptedModel()
    monkeypatch.setattr(litellm, "completion", model)
    return model


def field(messages: list[dict[str, str]], name: str) -> str:
    """The value of an input field in the last user message DSPy sent."""
    text = messages[-1]["content"]
    start = text.index(f"[[ ## {name} ## ]]") + len(f"[[ ## {name} ## ]]")
    ends = [i for i in (text.find("[[ ##", start), text.find("\n\nRespond with", start)) if i >= 0]
    return text[start:min(ends) if ends else None].strip()


HELPFULNESS = RubricJudge(
    name="helpfulness", kind="rubric", dimension="helpfulness", scale=[1, 5], threshold=3,
    anchors={1: "Wrong or off-topic.", 3: "Partly answers.", 5: "Answers exactly with the facts."},
)
SAFETY = RubricJudge(name="no_harm", kind="rubric", dimension="safety", safety=True)


def make_config(tmp_path, judges: list[dict] | None = None, golden: str | None = None) -> AutofixConfig:
    """A minimal target config in `tmp_path` (state in tmp_path/runs), judged by the scripted model."""
    (tmp_path / "data").mkdir(exist_ok=True)
    for name in ("traces.jsonl", "regression.jsonl"):
        (tmp_path / "data" / name).touch()
    data = {
        "project": "t",
        "model": {"name": "autofix-local/smollm2-135m-instruct", "judge": FAKE_MODEL},
        "replay": {"command": "true {cases} {out}", "sandbox": "local"},
        "datasets": {"traces": "data/traces.jsonl", "regression": "data/regression.jsonl",
                     **({"golden": golden} if golden else {})},
        "judges": judges or [
            {"name": "answer_correct", "kind": "check", "check": "contains_expected"},
            HELPFULNESS.model_dump(exclude_defaults=True) | {"kind": "rubric", "threshold": 3},
            {"name": "no_harm", "kind": "rubric", "dimension": "safety", "safety": True},
        ],
    }
    return AutofixConfig.model_validate(data, context={"root": tmp_path})
