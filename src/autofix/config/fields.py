"""Validation shared by the configuration models: the strict base model, errors with a fix, paths that
must exist, surface globs, and the names of the built-in gate policies."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")




def _fail(message: str, hint: str | None = None, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A validation error with a fix hint; `at` points below the validated value (e.g. a sibling key)."""
    ctx: dict[str, Any] = {}
    if hint:
        ctx["hint"] = hint
    if at:
        ctx["at"] = at
    return PydanticCustomError("autofix", message, ctx)


def _root_from(info: ValidationInfo) -> Path | None:
    ctx = info.context
    if isinstance(ctx, dict) and ctx.get("root") is not None:
        return Path(ctx["root"])
    return None


def _existing_file(value: str, info: ValidationInfo) -> str:
    root = _root_from(info)
    if root is None:
        return value
    path = (root / value).resolve()
    if not path.exists():
        raise _fail(f"file not found: {value}", f"create it or fix the path; it resolves to {path}")
    if not path.is_file():
        raise _fail(f"not a file: {value}", f"point it at a file; {path} is a folder")
    return value


def _existing_dir(value: str, info: ValidationInfo) -> str:
    root = _root_from(info)
    if root is None:
        return value
    path = (root / value).resolve()
    if not path.is_dir():
        raise _fail(f"folder not found: {value}", f"create it or fix the path; it resolves to {path}")
    return value


def _glob_files(root: Path, pattern: str) -> list[Path]:
    matches = glob.glob(str(root / pattern), recursive=True)
    return sorted(Path(m).resolve() for m in matches if os.path.isfile(m))


def _glob_component(part: str) -> str:
    """Regex for one path component of a glob (`*`, `?`, `[...]`; never crosses `/`)."""
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and part[j] == "!":
                j += 1
            if j < n and part[j] == "]":
                j += 1
            while j < n and part[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = part[i + 1 : j].replace("\\", "\\\\")
                for special in "[&~|":  # literal inside a set; unescaped they read as nested sets
                    body = body.replace(special, "\\" + special)
                if body.startswith("!"):
                    body = "^" + body[1:]
                elif body.startswith("^"):
                    body = "\\" + body
                out.append(f"(?!/)[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    regex = "".join(out)
    # glob.glob: a wildcard does not match a leading dot unless the pattern starts with one.
    if not part.startswith(".") and any(ch in part for ch in "*?["):
        regex = r"(?!\.)" + regex
    return regex


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = [p for p in pattern.replace("\\", "/").split("/") if p not in ("", ".")]
    regex = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex += r"(?:(?!\.)[^/]+/)*(?!\.)[^/]+" if last else r"(?:(?!\.)[^/]+/)*"
        else:
            regex += _glob_component(part) + ("" if last else "/")
    return re.compile(regex)


def glob_matches(pattern: str, rel_path: str) -> bool:
    """Whether a file at `rel_path` (POSIX, relative to autofix.yaml) is matched by a surface glob.

    The same rules as the globs expand with on disk (`glob.glob(..., recursive=True)`): `*` and
    `?` stay inside one folder, `**` as a whole component spans any number of folders, and
    wildcards skip names starting with a dot. Decided on the path alone, so it also answers for
    files that do not exist (yet, or any more): new files, deleted files, other checkouts.
    """
    rel = rel_path.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    if not rel or rel.startswith("/") or ".." in rel.split("/"):
        return False
    return _glob_regex(pattern).fullmatch(rel) is not None


def _matching_glob(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise _fail("empty glob", "write a glob relative to autofix.yaml, e.g. prompts/*.md")
    root = _root_from(info)
    if root is None:
        return value
    if not _glob_files(root, value):
        raise _fail(
            f"glob matches no file: {value}",
            f"fix the pattern or add the files; it is matched against {root}",
        )
    return value


ExistingFile = Annotated[str, AfterValidator(_existing_file)]
ExistingDir = Annotated[str, AfterValidator(_existing_dir)]
MatchingGlob = Annotated[str, AfterValidator(_matching_glob)]


def builtin_policies_dir() -> Path:
    """The folder of built-in launch-gate policies.

    An installed wheel carries them inside the package (`autofix/policies`, see
    pyproject's force-include); a source checkout keeps them at the repository
    root (`policies/`), beside `src/`.
    """
    package = Path(__file__).resolve().parents[1]  # src/autofix (or site-packages/autofix)
    packaged = package / "policies"
    if packaged.is_dir():
        return packaged
    return package.parents[1] / "policies"


def builtin_policy_names() -> list[str]:
    """Names usable as `policy:` without a path, e.g. `default`."""
    folder = builtin_policies_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _is_policy_name(value: str) -> bool:
    return "/" not in value and os.sep not in value and not value.endswith((".yaml", ".yml"))


def resolve_policy_path(value: str, root: Path | str) -> Path:
    """A built-in policy name -> its file in autofix's policies; anything else -> a path relative to `root`."""
    if _is_policy_name(value):
        return builtin_policies_dir() / f"{value}.yaml"
    return (Path(root) / value).resolve()
