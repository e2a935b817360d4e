"""Recognising the same change again: a diff reduced to the files it touches and the lines it removes and adds.

Two runs that propose the same edit produce diffs that differ in what does not matter: blob ids on the
`index` lines, hunk positions (the file above the edit grew), context lines, the `a/` `b/` prefixes, trailing
whitespace. `normalized_diff` keeps, per file (sorted by path), the path and the removed and added lines in
order; `diff_sha256` hashes that. A change to different files or different lines hashes differently.
"""

from __future__ import annotations

import hashlib
import re

_DIFF_GIT = re.compile(r"^diff --git (?:\"?a/(?P<a>.+?)\"? )\"?b/(?P<b>.+?)\"?$")


def _path(line: str) -> str | None:
    """The file of a `--- a/x` / `+++ b/x` line (None for /dev/null)."""
    name = line[4:].split("\t", 1)[0].strip().strip('"')
    if name == "/dev/null":
        return None
    return name[2:] if name.startswith(("a/", "b/")) else name


def normalized_diff(diff: str) -> str:
    """The diff as `<path>\\n-removed\\n+added...` blocks, files sorted by path (see the module doc)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_hunk = False
    old_path: str | None = None
    for raw in diff.splitlines():
        line = raw.rstrip()
        match = _DIFF_GIT.match(line)
        if match:
            current = files.setdefault(match.group("b"), [])
            in_hunk, old_path = False, match.group("a")
            continue
        if line.startswith("--- ") and not in_hunk:
            old_path = _path(line)
            continue
        if line.startswith("+++ ") and not in_hunk:
            new_path = _path(line) or old_path or "?"
            if new_path not in files:
                current = files.setdefault(new_path, [])
            else:
                current = files[new_path]
            if old_path is not None and old_path != new_path:
                current.append(f"renamed from {old_path}")
            continue
        if line.startswith("@@"):
            in_hunk = True
            continue
        if not in_hunk or current is None:
            if current is not None and line.startswith(("rename from ", "deleted file mode", "new file mode",
                                                        "Binary files")):
                current.append(line)
            continue
        if line.startswith(("-", "+")):
            current.append(line)
    blocks = [path + "\n" + "\n".join(lines) for path, lines in sorted(files.items()) if lines]
    return "\n".join(blocks) + ("\n" if blocks else "")


def diff_sha256(diff: str) -> str:
    """sha256 of `normalized_diff(diff)`."""
    return hashlib.sha256(normalized_diff(diff).encode("utf-8")).hexdigest()
