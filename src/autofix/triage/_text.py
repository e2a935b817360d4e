"""Small text helpers shared by detection, rules and clustering: words, content terms, plain text of JSON values.

Everything here is deterministic, language-light (English function words only) and cheap:
these run on every trace of a million-trace stream.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "STOPWORDS",
    "clip",
    "content_terms",
    "is_question",
    "numbers",
    "one_line",
    "slug",
    "text_of",
    "words",
]

STOPWORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each few for from further had hadn't has hasn't have haven't having he her here hers herself him
    himself his how i i'm i've i'd i'll if in into is isn't it it's its itself let's me more most my myself
    no nor not of off on once only or other ought our ours ourselves out over own same she should shouldn't
    so some such than that that's the their theirs them themselves then there there's these they this those
    through to too under until up very was wasn't we were weren't what what's whats when where which while
    who whom why will with won't would wouldn't you your yours yourself yourselves im ive dont cant pls
    please hi hello hey thanks thank ok okay yes yeah also just get got us any anything something tell
    want need know like much many way one would could also still""".split()
)

_WORD = re.compile(r"[a-z0-9][a-z0-9'_-]*[a-z0-9]|[a-z0-9]")
_NUMBER = re.compile(r"\b(\d+(?:[.,]\d+)?)")
_QUESTION_START = re.compile(
    r"^\W*(how|what|whats|what's|when|where|which|who|whom|whose|why|is|are|am|can|could|do|does|did|should|"
    r"shall|will|would|may|might|must|have|has|any)\b",
    re.I,
)


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, inner ' _ -)."""
    return _WORD.findall(text.lower())


def _stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


_TERM_CACHE: dict[str, str] = {}
_TERM_CACHE_MAX = 500_000


def _term(w: str) -> str:
    """The content term of one lower-case word ('' for a function word), cached."""
    t = _TERM_CACHE.get(w)
    if t is None:
        x = w.strip("'-_")
        if x.endswith("'s"):
            x = x[:-2]
        t = "" if len(x) < 2 or x in STOPWORDS or w in STOPWORDS else _stem(x)
        if len(_TERM_CACHE) < _TERM_CACHE_MAX:
            _TERM_CACHE[w] = t
    return t


def content_terms(text: str) -> set[str]:
    """The content words of a text, lightly stemmed (plural s), without function words."""
    out = {_term(w) for w in set(_WORD.findall(text.lower()))}
    out.discard("")
    return out


def numbers(text: str) -> set[str]:
    """The numbers a text states (``5``, ``31``, ``2.5``, ``100%``), normalised."""
    return {m.group(1).replace(",", ".") for m in _NUMBER.finditer(text)}


def is_question(text: str) -> bool:
    """A question or a request for information: a question mark or a question word first."""
    t = text.strip()
    return t.endswith("?") or bool(_QUESTION_START.match(t))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def clip(text: str, limit: int) -> str:
    """One line, at most `limit` characters (an ellipsis marks a cut)."""
    text = one_line(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


_MESSAGE_KEYS = ("content", "text")
_INPUT_KEYS = ("question", "query", "input", "message", "prompt", "text", "content", "messages", "request")


def text_of(value: Any, limit: int = 4000) -> str:
    """The plain text of a trace's input or output (a string, chat messages, or a JSON object).

    Chat messages give the last user message for an input-like list; a dict gives its first
    question-like key; anything else is compact JSON. Cut to `limit` characters.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, list):
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        pick = users[-1] if users else (value[-1] if value and isinstance(value[-1], dict) else None)
        if pick is not None:
            for key in _MESSAGE_KEYS:
                if isinstance(pick.get(key), str):
                    return pick[key][:limit]
    if isinstance(value, dict):
        for key in _INPUT_KEYS:
            v = value.get(key)
            if isinstance(v, str):
                return v[:limit]
            if isinstance(v, list) and key == "messages":
                return text_of(v, limit)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)[:limit]
    except (TypeError, ValueError):
        return str(value)[:limit]


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, limit: int = 24) -> str:
    """Lower-case letters and digits joined by ``-`` (safe in git branch names), at most `limit` long."""
    s = _SLUG.sub("-", str(text).lower()).strip("-")
    return s[:limit].strip("-") or "x"
