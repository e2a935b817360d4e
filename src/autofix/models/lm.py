"""autofix's own language models (triage classifier, rubric judges): DSPy over litellm.

Any litellm model string works; `autofix-local/...` is the embedded model, registered with litellm here.
"""

from __future__ import annotations

import dspy

from autofix.models.provider import is_local, register_local_provider


def dspy_lm(model: str, *, temperature: float = 0.0, max_tokens: int = 512, num_retries: int = 2) -> dspy.LM:
    """A DSPy LM for `model`; DSPy's own cache is off because autofix keeps its own keyed caches.

    `engine="litellm"`: every call goes through litellm (the design's one door to models), where DSPy's
    default would call some well-known providers with its own client."""
    if is_local(model):
        register_local_provider()
    return dspy.LM(model, temperature=temperature, max_tokens=max_tokens, num_retries=num_retries, cache=False,
                  engine="litellm")
