"""Word-level text helpers shared by retrieval and routing."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9€$£]+(?:[-'][a-z0-9]+)*")

STOPWORDS = frozenset("""
a about above after again all am an and any are as at be because been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers how i if in
into is it its itself just me more most my myself no nor not now of off on once only or other our ours out over own
same she should so some such than that the their theirs them then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your yours yourself
i'm i've it's don't can't what's pls please hi hey
""".split())


def tokenize(text: str, drop_stopwords: bool = False) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    return [t for t in tokens if t not in STOPWORDS] if drop_stopwords else tokens
