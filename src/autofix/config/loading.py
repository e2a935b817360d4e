"""Reading `autofix.yaml` and policy files: YAML with line numbers, and every pydantic error turned into a
`ConfigIssue` naming the file, the line, the key and the fix."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from autofix.config.errors import ConfigError, ConfigIssue
from autofix.config.fields import _is_policy_name
from autofix.config.policy import GatePolicy
from autofix.config.target import CONFIG_FILENAME, AutofixConfig


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _plain(node: Any) -> Any:
    """ruamel round-trip objects -> plain Python (bool/int/float/str, dict, list)."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _display(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path, shown: str) -> tuple[Any, list[ConfigIssue]]:
    if not path.exists():
        return None, [ConfigIssue(file=shown, message="file not found", hint=f"create it or pass the right path ({path.resolve()})")]
    if not path.is_file():
        return None, [ConfigIssue(file=shown, message="not a file", hint="pass the path of the YAML file, not a folder")]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(file=shown, message=f"cannot read the file: {exc}")]
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark is not None and exc.problem_mark is not None:
            problem = f"{exc.problem} ({exc.context} on line {exc.context_mark.line + 1})"
        return None, [
            ConfigIssue(
                file=shown,
                line=mark.line + 1 if mark is not None else None,
                column=mark.column + 1 if mark is not None else None,
                message=f"YAML syntax error: {problem}",
                hint="check indentation, colons and brackets around this line",
            )
        ]
    except YAMLError as exc:
        return None, [ConfigIssue(file=shown, message=f"YAML error: {exc}")]
    if data is None:
        return None, [ConfigIssue(file=shown, line=1, message="the file is empty", hint="write the configuration as a YAML mapping")]
    if not isinstance(data, dict):
        line = data.lc.line + 1 if hasattr(data, "lc") else 1
        return None, [
            ConfigIssue(file=shown, line=line, column=1, message=f"expected a mapping of keys at the top, found a {type(_plain(data)).__name__}",
                        hint="write `key: value` lines")
        ]
    return data, []


# ---- pydantic error -> issue -------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any] | None:
    """Members of a union that pydantic labels in error locations (Optional[X] is not labelled)."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _union_members(members[0])
        return members
    return None


def _strip_optional(tp: Any) -> Any:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _strip_optional(members[0])
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tag_of(model: type[BaseModel], discriminator: str | None = None) -> set[str]:
    """Literal values of the model's fields (only the discriminator field's, when named)."""
    tags: set[str] = set()
    for name, field in model.model_fields.items():
        if discriminator is not None and name != discriminator:
            continue
        ann = _unwrap(field.annotation)
        if typing.get_origin(ann) is Literal:
            tags.update(str(a) for a in typing.get_args(ann))
    return tags


def _clean_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str | int], Any]:
    """Drop pydantic's union labels / discriminator tags / `[key]` from `loc`.

    Returns the path as it is addressed in the YAML data and the annotation found there
    (None when the path leaves the schema, e.g. at an unknown key).
    """
    out: list[str | int] = []
    tp: Any = model
    i = 0
    while i < len(loc):
        seg = loc[i]
        if tp is None:
            # Outside the schema: keep data-addressable segments only.
            if seg != "[key]":
                out.append(seg)
            i += 1
            continue
        members = _union_members(tp)
        if members is not None:
            # This segment is the union member's label (a tag for discriminated unions).
            chosen = None
            for m in members:
                m = _strip_optional(m)
                if _is_model(m) and str(seg) in _tag_of(m):
                    chosen = m
                    break
            tp = chosen  # may be None (a plain-type union): deeper segments stay as they are
            i += 1
            continue
        tp = _strip_optional(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            out.append(seg)
            field = tp.model_fields.get(seg) if isinstance(seg, str) else None
            tp = field.annotation if field is not None else None
        elif origin in (list, tuple, set, frozenset):
            out.append(seg)
            args = typing.get_args(tp)
            tp = args[0] if args else None
        elif origin is dict:
            out.append(seg)
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else None
            if i + 1 < len(loc) and loc[i + 1] == "[key]":
                tp = None
                i += 1
        else:
            # A scalar: anything below it is a pydantic-internal label.
            tp = None
            break
        i += 1
    return out, tp


def _locate(data: Any, path: list[str | int]) -> tuple[int | None, int | None, Any]:
    """1-based (line, column) of the deepest node of `path` present in the YAML data, and that node."""
    line: int | None = None
    col: int | None = None
    if hasattr(data, "lc"):
        line, col = data.lc.line + 1, data.lc.col + 1
    node = data
    for seg in path:
        if isinstance(node, CommentedMap) and seg in node:
            ln, cl = node.lc.key(seg)
            line, col = ln + 1, cl + 1
            node = node[seg]
        elif isinstance(node, CommentedSeq) and isinstance(seg, int) and 0 <= seg < len(node):
            ln, cl = node.lc.item(seg)
            line, col = ln + 1, cl + 1
            node = node[seg]
        else:
            break
    return line, col, node


_HINTS = {
    "int_parsing": "write a whole number, e.g. 900",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number, without a fraction",
    "float_parsing": "write a number, e.g. 0.5",
    "float_type": "write a number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write text; quote it if YAML reads it as a number or boolean",
    "list_type": "write a YAML list, e.g. [a, b] or one `- item` per line",
    "dict_type": "write a mapping of `key: value` pairs",
    "model_type": "write a mapping of `key: value` pairs",
    "model_attributes_type": "write a mapping of `key: value` pairs",
    "too_short": "add entries",
    "string_pattern_mismatch": "use letters, digits, dots, dashes and underscores, starting with a letter or digit",
}


def _issue_from_error(err: dict[str, Any], model: type[BaseModel], data: Any, shown: str) -> ConfigIssue:
    etype = err["type"]
    ctx = err.get("ctx") or {}
    path, tp = _clean_loc(model, tuple(err["loc"]))
    at = ctx.get("at")
    if at:
        path = path + list(at)
    line, col, _node = _locate(data, path)
    message: str = err["msg"]
    hint: str | None = ctx.get("hint") or _HINTS.get(etype)
    key = path[-1] if path else None
    parent = ".".join(str(p) for p in path[:-1])
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if etype == "missing":
        message = f"missing required key `{key}`"
        hint = f"add `{key}:`" + (f" under `{parent}`" if parent else " at the top level")
    elif etype == "extra_forbidden":
        message = f"unknown key `{key}`"
        allowed = _allowed_for_extra(model, data, path)
        close = difflib.get_close_matches(str(key), allowed, n=1) if allowed else []
        hint = (f"did you mean `{close[0]}`? " if close else "remove it or fix its spelling; ") + (
            f"allowed here: {', '.join(allowed)}" if allowed else ""
        )
        hint = hint.strip().rstrip(";")
    elif etype in ("union_tag_invalid", "union_tag_not_found"):
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        expected = ctx.get("expected_tags") or ", ".join(
            repr(t) for t in sorted(_tags_at(model, path, disc))
        )
        if etype == "union_tag_invalid":
            message = f"unknown {disc} {ctx.get('tag')!r}"
        else:
            message = f"missing `{disc}`"
        hint = f"set `{disc}` to one of: {expected}"
        if line is not None and isinstance(_node, CommentedMap) and disc in _node:
            ln, cl = _node.lc.key(disc)
            line, col = ln + 1, cl + 1
            path = path + [disc]
    elif etype == "literal_error":
        message = f"{message}; got {err.get('input')!r}"
    elif etype in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a mapping, got {_kind_of(err.get('input'))}"
    elif etype in ("list_type",):
        message = f"expected a list, got {_kind_of(err.get('input'))}"
    elif etype != "autofix" and "input" in err:
        got = err["input"]
        message = f"{message}; got {_kind_of(got) if isinstance(got, (dict, list)) else repr(got)}"
    return ConfigIssue(
        file=shown,
        line=line,
        column=col,
        path=".".join(str(p) for p in path),
        message=message,
        hint=hint or None,
    )


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _tags_at(model: type[BaseModel], path: list[str | int], discriminator: str) -> set[str]:
    tp: Any = model
    for seg in path:
        tp = _strip_optional(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(seg) if isinstance(seg, str) else None
            if field is None:
                return set()
            tp = field.annotation
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return set()
    members = _union_members(tp) or []
    tags: set[str] = set()
    for m in members:
        m = _strip_optional(m)
        if _is_model(m):
            tags |= _tag_of(m, discriminator)
    return tags


def _allowed_for_extra(model: type[BaseModel], data: Any, path: list[str | int]) -> list[str]:
    """Allowed keys of the mapping holding the unknown key at `path`, using the data to pick union members."""
    tp: Any = model
    node = data
    for seg in path[:-1]:
        tp = _strip_optional(tp)
        members = _union_members(tp)
        if members is not None:
            tp = _pick_member(members, node)
            if tp is None:
                return []
        tp = _strip_optional(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(seg) if isinstance(seg, str) else None
            if field is None:
                return []
            tp = field.annotation
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return []
        try:
            node = node[seg]
        except (KeyError, IndexError, TypeError):
            node = None
    tp = _strip_optional(tp)
    members = _union_members(tp)
    if members is not None:
        tp = _pick_member(members, node)
    tp = _strip_optional(tp)
    return list(tp.model_fields) if _is_model(tp) else []


def _pick_member(members: list[Any], node: Any) -> Any:
    if not isinstance(node, dict):
        return None
    for m in members:
        m = _strip_optional(m)
        if _is_model(m):
            for name, field in m.model_fields.items():
                ann = _unwrap(field.annotation)
                if typing.get_origin(ann) is Literal and str(node.get(name)) in {str(a) for a in typing.get_args(ann)}:
                    return m
    return None


_VALID_TYPE = re.compile(r"^Input should be a valid (\w+)")


def _merge(group: list[ConfigIssue]) -> ConfigIssue:
    """One value failing every member of a plain union gives one error per member: merge them."""
    first = group[0]
    if len(group) == 1:
        return first
    words = [_VALID_TYPE.match(i.message) for i in group]
    if all(words):
        got = first.message.rsplit("; got ", 1)[1] if "; got " in first.message else None
        kinds = [m.group(1) for m in words if m]
        message = "Input should be a valid " + (", ".join(kinds[:-1]) + " or " + kinds[-1])
        return first.model_copy(update={"message": message + (f"; got {got}" if got else ""), "hint": None})
    messages: list[str] = []
    for issue in group:
        if issue.message not in messages:
            messages.append(issue.message)
    return first.model_copy(update={"message": "; or ".join(messages)})


def _issues_from_validation(exc: ValidationError, model: type[BaseModel], data: Any, shown: str) -> list[ConfigIssue]:
    groups: dict[tuple[str, int | None], list[ConfigIssue]] = {}
    for err in exc.errors(include_url=False):
        issue = _issue_from_error(err, model, data, shown)
        groups.setdefault((issue.path, issue.line), []).append(issue)
    issues = [_merge(group) for group in groups.values()]
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0, i.path))


def load_gate_policy(path: str | os.PathLike[str], judges: list[str] | None = None) -> GatePolicy:
    """Load and validate a launch-gate policy file.

    With `judges`, the metrics it names must be among them. Raises ConfigError whose
    issues name the policy file and its lines.
    """
    path = Path(path)
    shown = _display(path)
    data, issues = _read_yaml(path, shown)
    if issues:
        raise ConfigError(issues)
    try:
        policy = GatePolicy.model_validate(_plain(data), context={"judges": judges})
    except ValidationError as exc:
        raise ConfigError(_issues_from_validation(exc, GatePolicy, data, shown)) from None
    return policy


def load_config(path: str | os.PathLike[str] = CONFIG_FILENAME) -> AutofixConfig:
    """Load, validate and resolve an `autofix.yaml` (or a folder holding one).

    Raises ConfigError with every issue found: YAML syntax, schema, missing files,
    and the problems of the launch-gate policy it names.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILENAME
    shown = _display(path) if path.is_absolute() else str(path)
    data, issues = _read_yaml(path, shown)
    if issues:
        raise ConfigError(issues)
    root = path.resolve().parent
    try:
        cfg = AutofixConfig.model_validate(_plain(data), context={"root": root})
    except ValidationError as exc:
        raise ConfigError(_issues_from_validation(exc, AutofixConfig, data, shown)) from None
    cfg._root = root
    cfg._file = path.resolve()
    try:
        cfg._gate_policy = load_gate_policy(cfg.policy_path, judges=cfg.judge_names)
    except ConfigError as exc:
        written = "policy" in data
        policy_line, policy_col, _ = _locate(data, ["policy"])
        if _is_policy_name(cfg.policy):
            hint = (
                f"the built-in policy cannot be edited per target: copy {cfg.policy_path} next to "
                f"{CONFIG_FILENAME}, adjust it, and set `policy:` to its path"
            )
        else:
            hint = "fix the policy file or point `policy` at another one"
        n = len(exc.issues)
        note = ConfigIssue(
            file=shown,
            line=policy_line if written else 1,
            column=policy_col if written else 1,
            path="policy",
            message=f"the launch-gate policy {cfg.policy!r} has {n} problem{'s' if n != 1 else ''}, listed above",
            hint=hint,
        )
        raise ConfigError([*exc.issues, note]) from None
    return cfg
