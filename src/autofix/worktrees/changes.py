"""A candidate's changes: parsing git's diff output, checking paths against the surfaces, the commit message."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from git import Repo

from autofix.config import glob_matches
from autofix.worktrees.records import (
    _STATUS,
    AUTHOR_EMAIL,
    AUTHOR_NAME,
    Candidate,
    ChangedFile,
)

_SYMLINK_MODE = "120000"
_GITLINK_MODE = "160000"
_MAX_LISTED = 25

def _parse_raw(output: str) -> list[ChangedFile]:
    """`git diff --raw -z` output -> changes."""
    tokens = output.split("\0")
    changes: list[ChangedFile] = []
    i = 0
    while i < len(tokens):
        head = tokens[i]
        i += 1
        if not head.startswith(":"):
            continue
        fields = head[1:].split()
        if len(fields) < 5:
            continue
        new_mode, letter = fields[1], fields[4][0]
        status = _STATUS.get(letter, "unknown")
        if letter in "RC":
            old, new = tokens[i], tokens[i + 1]
            i += 2
            changes.append(ChangedFile(status=status, path=new, old_path=old, mode=None if new_mode == "000000" else new_mode))
        else:
            path = tokens[i]
            i += 1
            changes.append(ChangedFile(status=status, path=path, mode=None if new_mode == "000000" else new_mode))
    return changes


def _parse_numstat(output: str) -> dict[str, tuple[int | None, int | None]]:
    """`git diff --numstat -z` output -> {path after: (additions, deletions)}."""
    stats: dict[str, tuple[int | None, int | None]] = {}
    tokens = output.split("\0")
    i = 0
    while i < len(tokens):
        head = tokens[i]
        i += 1
        if not head:
            continue
        parts = head.split("\t")
        if len(parts) < 3:
            continue
        add = None if parts[0] == "-" else int(parts[0])
        dele = None if parts[1] == "-" else int(parts[1])
        if parts[2] == "":  # rename/copy: old and new follow as their own tokens
            path = tokens[i + 1]
            i += 2
        else:
            path = parts[2]
        stats[path] = (add, dele)
    return stats


def _relative_to_target(path: str, subpath: str) -> str | None:
    if not subpath:
        return path
    prefix = subpath.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def _with_target(changes: Iterable[ChangedFile], subpath: str) -> list[ChangedFile]:
    return [c.model_copy(update={"target_path": _relative_to_target(c.path, subpath)}) for c in changes]


def _why_not_allowed(path: str, subpath: str, globs: Sequence[str]) -> str | None:
    rel = _relative_to_target(path, subpath)
    if rel is None:
        return f"outside the target folder {subpath}/"
    if not any(glob_matches(g, rel) for g in globs):
        return "not in the surfaces of autofix.yaml" if globs else "autofix.yaml declares no surfaces"
    return None


def _surface_check(changes: Iterable[ChangedFile], subpath: str, globs: Sequence[str]) -> list[ChangedFile]:
    """The changes that touch anything but a surface file, each with its reason."""
    offending: list[ChangedFile] = []
    for change in changes:
        reason = _why_not_allowed(change.path, subpath, globs)
        if reason is None and change.old_path is not None and change.status == "renamed":
            why_old = _why_not_allowed(change.old_path, subpath, globs)
            if why_old is not None:
                reason = f"renamed from {change.old_path}, which is {why_old}"
        if reason is None and change.mode == _SYMLINK_MODE:
            reason = "a symbolic link; surfaces take regular files only"
        if reason is None and change.mode == _GITLINK_MODE:
            reason = "a nested repository (submodule); surfaces take regular files only"
        if reason is None and change.status in ("unmerged", "unknown"):
            reason = f"{change.status} change"
        if reason is not None:
            offending.append(change.model_copy(update={"reason": reason}))
    return offending


def _listing(changes: Sequence[ChangedFile]) -> str:
    lines = [f"  {c.describe()}" for c in changes[:_MAX_LISTED]]
    if len(changes) > _MAX_LISTED:
        lines.append(f"  ... and {len(changes) - _MAX_LISTED} more")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _commit_message(candidate: Candidate, optimizer: str, description: str) -> str:
    lines = [line.rstrip() for line in (description or "").strip().splitlines()]
    summary = _one_line(lines[0]) if lines else f"fix for cluster {candidate.cluster_id}"
    subject = f"autofix({candidate.cluster_id}): {summary}"
    if len(subject) > 72:
        subject = subject[:71].rstrip() + "…"
    body = "\n".join(lines[1:]).strip()
    trailers = [
        f"Autofix-Run: {candidate.run_id}",
        f"Autofix-Cluster: {candidate.cluster_id}",
        f"Autofix-Candidate: {candidate.n}",
        f"Autofix-Optimizer: {_one_line(optimizer)}",
        f"Autofix-Base: {candidate.base_commit}",
    ]
    parts = [subject]
    if len(summary) + len(f"autofix({candidate.cluster_id}): ") > 72:
        parts.append(summary)  # the whole first line, as the subject was cut
    if body:
        parts.append(body)
    parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


def _commit_env() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
    }




def _git_commit(wt: Repo, message: str) -> None:
    wt.git(c=[f"core.hooksPath={os.devnull}", "commit.gpgsign=false"]).commit(
        "--no-verify", "--quiet", "--cleanup=verbatim", f"--message={message}", env={**os.environ, **_commit_env()}
    )


def _with_stats(files: list[ChangedFile], stats: dict[str, tuple[int | None, int | None]]) -> list[ChangedFile]:
    out = []
    for f in files:
        add, dele = stats.get(f.path, (None, None))
        out.append(f.model_copy(update={"additions": add, "deletions": dele}))
    return out
