"""Minimal edits of a YAML mapping file: only the values of the keys that change are rewritten;
comments, key order and every other line stay as they were (ruamel.yaml's round trip).

    set_values("top_k: 2   # chunks\nbm25_b: 0.75\n", {"top_k": 3, "bm25_b": 0.75})
    -> "top_k: 3   # chunks\nbm25_b: 0.75\n"
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

MISSING: Any = object()
"""The value of a key the file does not set."""


def _yaml() -> YAML:
    y = YAML()  # round trip: comments, order and quoting are kept
    y.preserve_quotes = True
    y.width = 4096  # never fold a long value onto a second line
    return y


def _load(text: str, where: str) -> CommentedMap:
    doc = _yaml().load(text) if text.strip() else None
    if doc is None:
        return CommentedMap()
    if not isinstance(doc, CommentedMap):
        raise ValueError(f"{where}: the retrieval file must be a YAML mapping (key: value per line), "
                         f"not a {type(doc).__name__}")
    return doc


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def load_values(text: str, where: str = "retrieval file") -> dict[str, Any]:
    """The file's top-level keys and their values as plain Python values."""
    return {str(k): _plain(v) for k, v in _load(text, where).items()}


def same_value(a: Any, b: Any) -> bool:
    """Equal as YAML values: `true` is not `1`, `2` equals `2.0`, lists compare element-wise."""
    if a is MISSING or b is MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def _node(value: Any) -> Any:
    """A value as ruamel should write it: lists inline (`[a, b]`), so one key stays one line."""
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq([_node(v) for v in value])
        seq.fa.set_flow_style()
        return seq
    return value


def set_values(text: str, values: Mapping[str, Any], where: str = "retrieval file") -> str:
    """`text` with each key of `values` set to its value; `text` itself (byte for byte) when nothing
    changes. Keys the file lacks are appended at the end."""
    doc = _load(text, where)
    changed = False
    for key, value in values.items():
        if same_value(_plain(doc[key]) if key in doc else MISSING, value):
            continue
        doc[key] = _node(value)
        changed = True
    if not changed:
        return text
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()
