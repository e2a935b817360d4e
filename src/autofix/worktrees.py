"""Worktrees: one isolated git worktree (on its own branch) per fix candidate.

A target assistant lives in a git repository, possibly in a subfolder of a larger one
(a monorepo). `WorktreeManager` finds the enclosing repository, pins the commit every
candidate of a run starts from, and gives each candidate a worktree of the *whole*
repository on a new branch `autofix/<run>/<cluster>/<n>` at
`<worktrees_dir>/<run>/<cluster>-<n>`; inside it the target lives at the same subpath
(`Candidate.target_path`).

An optimizer edits files in `target_path`; `commit` then checks every changed path
(added, modified, deleted, renamed, untracked) against the surfaces of autofix.yaml and
commits only when all of them are surface files, authored by `autofix <autofix@localhost>`
with trailers naming run, cluster, candidate and optimizer. `diff` is what the approver
sees: the candidate branch against the base commit.

Worktrees are removed by `remove` (or the `candidate_worktree` context manager, which
cleans up on exceptions and Ctrl-C too); `prune` removes whatever a killed run left
behind: registered worktrees whose folder is gone or half-made, locked ones, leftover
folders, and `autofix/*` branches without a worktree.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

from git import Repo
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError
from pydantic import BaseModel, ConfigDict, Field

from autofix.config import AutofixConfig, glob_matches

__all__ = [
    "AUTHOR_EMAIL",
    "AUTHOR_NAME",
    "BRANCH_PREFIX",
    "Candidate",
    "CandidateDiff",
    "ChangedFile",
    "CommitResult",
    "DirtyTargetError",
    "EmptyChangeError",
    "NotAGitRepositoryError",
    "PruneReport",
    "SurfaceViolationError",
    "WorktreeError",
    "WorktreeInfo",
    "WorktreeManager",
    "branch_name",
    "candidate_worktree",
    "default_worktrees_dir",
    "find_repository",
    "list_worktrees",
    "prune",
]

AUTHOR_NAME = "autofix"
AUTHOR_EMAIL = "autofix@localhost"
BRANCH_PREFIX = "autofix"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIR_NAME = re.compile(r"^(?P<cluster>[A-Za-z0-9][A-Za-z0-9._-]*)-(?P<n>\d+)$")
_SYMLINK_MODE = "120000"
_GITLINK_MODE = "160000"
_MAX_LISTED = 25

# Worktree creation and removal touch shared admin files (.git/worktrees, refs): one at a time
# per process. Parallel candidates (threads) then never race on them; separate processes rely
# on git's own lock files.
_LOCK = threading.RLock()


# --------------------------------------------------------------------------- errors


class WorktreeError(Exception):
    """A worktree operation failed; the message says why and what to do."""


class NotAGitRepositoryError(WorktreeError):
    """The target folder is not inside a git repository."""


class DirtyTargetError(WorktreeError):
    """The target folder has uncommitted changes to tracked files, so the base would differ from disk."""

    def __init__(self, message: str, paths: list[str]):
        super().__init__(message)
        self.paths = paths


class EmptyChangeError(WorktreeError):
    """`commit` found nothing to commit."""


class SurfaceViolationError(WorktreeError):
    """A candidate changed files outside the allowed surfaces; nothing was committed."""

    def __init__(self, message: str, offending: list[ChangedFile]):
        super().__init__(message)
        self.offending = offending

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.offending]


# --------------------------------------------------------------------------- records


class Candidate(BaseModel):
    """One fix candidate: its branch and worktree, and where the target sits inside it."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    cluster_id: str
    n: int
    branch: str = Field(description="`autofix/<run>/<cluster>/<n>`.")
    path: Path = Field(description="The worktree: a checkout of the whole repository.")
    target_path: Path = Field(description="The target folder (holding autofix.yaml) inside the worktree.")
    subpath: str = Field(description="The target folder relative to the repository root, POSIX; '' at the root.")
    repo_root: Path = Field(description="The main working tree of the repository.")
    base_commit: str = Field(description="Full hash of the commit the branch starts from.")


ChangeStatus = Literal["added", "modified", "deleted", "renamed", "copied", "type_changed", "unmerged", "unknown"]
_STATUS = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type_changed",
    "U": "unmerged",
}


class ChangedFile(BaseModel):
    """One changed path of a candidate, relative to the repository root."""

    model_config = ConfigDict(frozen=True)

    status: ChangeStatus
    path: str = Field(description="Path after the change, POSIX, relative to the repository root.")
    old_path: str | None = Field(default=None, description="Path before a rename or copy.")
    target_path: str | None = Field(
        default=None, description="`path` relative to the target folder; None when outside it."
    )
    mode: str | None = Field(default=None, description="Git file mode after the change (100644, 100755, 120000...).")
    additions: int | None = Field(default=None, description="Lines added; None for binary files.")
    deletions: int | None = Field(default=None, description="Lines deleted; None for binary files.")
    reason: str | None = Field(default=None, description="Why the change is not allowed (surface check only).")

    @property
    def letter(self) -> str:
        return {v: k for k, v in _STATUS.items()}.get(self.status, "?")

    def describe(self) -> str:
        shown = f"{self.old_path} -> {self.path}" if self.old_path else self.path
        return f"{self.letter} {shown}" + (f" ({self.reason})" if self.reason else "")


class CommitResult(BaseModel):
    """What `commit` recorded."""

    sha: str
    branch: str
    message: str
    files: list[ChangedFile] = Field(description="Changes of this commit against its parent.")


class CandidateDiff(BaseModel):
    """The candidate branch against the base commit: what the approver sees."""

    branch: str
    base_commit: str
    head_commit: str
    files: list[ChangedFile]
    patch: str = Field(description="Unified diff, paths relative to the repository root (a/ and b/ prefixes).")


class WorktreeInfo(BaseModel):
    """An autofix worktree, branch or leftover folder found in a repository."""

    run_id: str | None
    cluster_id: str | None = None
    n: int | None = None
    branch: str | None = Field(default=None, description="Branch name without refs/heads/.")
    path: Path | None = Field(default=None, description="Worktree folder (registered or leftover).")
    head: str | None = None
    registered: bool = Field(default=False, description="git knows the worktree (`git worktree list`).")
    exists: bool = Field(default=False, description="The folder is on disk.")
    locked: bool = False
    prunable: bool = Field(default=False, description="Registered, but its folder is gone.")

    @property
    def state(self) -> str:
        if self.registered:
            if not self.exists or self.prunable:
                return "folder gone"
            return "locked" if self.locked else "active"
        if self.path is not None and self.exists:
            return "leftover folder"
        return "branch only"


class PruneReport(BaseModel):
    """What `prune` removed (or would remove, with dry_run)."""

    repo_root: Path
    dry_run: bool = False
    removed_worktrees: list[Path] = Field(default_factory=list)
    removed_folders: list[Path] = Field(default_factory=list, description="Leftover folders git no longer knew.")
    removed_branches: list[str] = Field(default_factory=list)
    kept_runs: list[str] = Field(default_factory=list, description="Runs found and left alone.")
    errors: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def nothing_found(self) -> bool:
        return not (self.removed_worktrees or self.removed_folders or self.removed_branches)


# --------------------------------------------------------------------------- helpers


def find_repository(path: str | os.PathLike[str]) -> tuple[Repo, str]:
    """The git repository enclosing `path` and `path` relative to its root ('' at the root)."""
    folder = Path(path).resolve()
    if folder.is_file():
        folder = folder.parent
    try:
        repo = Repo(folder, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise NotAGitRepositoryError(
            f"{folder} is not inside a git repository; autofix builds candidates in git worktrees, "
            f"so the target must be under git (run `git init` and commit it, or point -c at a target that is)"
        ) from None
    if repo.bare or repo.working_tree_dir is None:
        raise NotAGitRepositoryError(f"{repo.git_dir} is a bare repository; autofix needs a working tree")
    root = Path(repo.working_tree_dir).resolve()
    try:
        sub = folder.relative_to(root)
    except ValueError:
        raise NotAGitRepositoryError(f"{folder} is not inside the working tree {root}") from None
    subpath = PurePosixPath(*sub.parts).as_posix() if sub.parts else ""
    return repo, subpath


def default_worktrees_dir(cfg: AutofixConfig) -> Path:
    """Where a target's candidate worktrees go: `<state_dir>/worktrees` beside autofix.yaml."""
    return cfg.state_path / "worktrees"


def branch_name(run_id: str, cluster_id: str, n: int) -> str:
    return f"{BRANCH_PREFIX}/{run_id}/{cluster_id}/{n}"


def _check_id(kind: str, value: str) -> str:
    if (
        not isinstance(value, str)
        or not _ID.match(value)
        or ".." in value
        or value.endswith((".", ".lock"))
    ):
        raise WorktreeError(
            f"invalid {kind} {value!r}: it names a git branch and a folder, so use letters, digits, "
            f"'.', '_' and '-', starting with a letter or digit (no '..', not ending in '.' or '.lock')"
        )
    return value


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def _common_dir(repo: Repo) -> Path:
    return Path(repo.common_dir).resolve()


def _main_root(repo: Repo) -> Path:
    """The main working tree (the common dir's parent), also when `repo` is a linked worktree."""
    common = _common_dir(repo)
    if common.name == ".git":
        return common.parent
    return Path(repo.working_tree_dir).resolve()


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


# --------------------------------------------------------------------------- registered worktrees


class _Registered(BaseModel):
    path: Path
    head: str | None = None
    branch: str | None = None  # without refs/heads/
    locked: bool = False
    prunable: bool = False
    main: bool = False


def _registered(repo: Repo) -> list[_Registered]:
    """`git worktree list --porcelain -z`, the main worktree first."""
    out = repo.git.worktree("list", "--porcelain", "-z")
    entries: list[_Registered] = []
    current: dict[str, object] | None = None
    for token in out.split("\0"):
        if not token:
            if current is not None:
                entries.append(_Registered(**current))  # type: ignore[arg-type]
                current = None
            continue
        key, _, value = token.partition(" ")
        if key == "worktree":
            if current is not None:
                entries.append(_Registered(**current))  # type: ignore[arg-type]
            current = {"path": Path(value), "main": not entries and current is None}
        elif current is None:
            continue
        elif key == "HEAD":
            current["head"] = value
        elif key == "branch":
            current["branch"] = value.removeprefix("refs/heads/")
        elif key == "locked":
            current["locked"] = True
        elif key == "prunable":
            current["prunable"] = True
    if current is not None:
        entries.append(_Registered(**current))  # type: ignore[arg-type]
    if entries:
        entries[0] = entries[0].model_copy(update={"main": True})
    return entries


def _find_registered(repo: Repo, path: Path) -> _Registered | None:
    target = _real(path)
    for entry in _registered(repo):
        if not entry.main and _real(entry.path) == target:
            return entry
    return None


def _autofix_branches(repo: Repo) -> list[str]:
    out = repo.git.for_each_ref("--format=%(refname)", f"refs/heads/{BRANCH_PREFIX}/")
    return [line.removeprefix("refs/heads/") for line in out.splitlines() if line.strip()]


def _branch_parts(branch: str | None) -> tuple[str | None, str | None, int | None]:
    if not branch or not branch.startswith(BRANCH_PREFIX + "/"):
        return None, None, None
    parts = branch.split("/")
    run = parts[1] if len(parts) > 1 else None
    cluster = parts[2] if len(parts) > 2 else None
    n = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
    return run, cluster, n


def _path_parts(path: Path, worktrees_dir: Path | None) -> tuple[str | None, str | None, int | None]:
    if worktrees_dir is None:
        return None, None, None
    try:
        rel = Path(_real(path)).relative_to(_real(worktrees_dir))
    except ValueError:
        return None, None, None
    if len(rel.parts) != 2 or not _ID.match(rel.parts[0]):
        return None, None, None
    m = _DIR_NAME.match(rel.parts[1])
    if not m:
        return None, None, None
    return rel.parts[0], m.group("cluster"), int(m.group("n"))


def _leftover_dirs(worktrees_dir: Path | None, registered: set[str]) -> list[Path]:
    """Folders `<worktrees_dir>/<run>/<cluster>-<n>` git does not know (any more)."""
    if worktrees_dir is None or not worktrees_dir.is_dir():
        return []
    found: list[Path] = []
    for run_dir in sorted(worktrees_dir.iterdir()):
        if not run_dir.is_dir() or run_dir.is_symlink() or not _ID.match(run_dir.name):
            continue
        for child in sorted(run_dir.iterdir()):
            if child.is_dir() and not child.is_symlink() and _DIR_NAME.match(child.name) and _real(child) not in registered:
                found.append(child)
    return found


def _remove_registered(repo: Repo, path: Path) -> None:
    """Remove a registered worktree whatever state it is in (locked, folder gone, half made)."""
    with contextlib.suppress(GitCommandError):
        repo.git.worktree("unlock", str(path))
    if path.exists():
        try:
            repo.git.worktree("remove", "--force", "--force", str(path))
        except GitCommandError:
            shutil.rmtree(path, ignore_errors=True)
    repo.git.worktree("prune")
    if _find_registered(repo, path) is None:
        return
    # Last resort: git still lists it (e.g. a lock it would not lift). Its admin folder is
    # the one whose `gitdir` file points at <path>/.git.
    admin_root = _common_dir(repo) / "worktrees"
    if admin_root.is_dir():
        for admin in admin_root.iterdir():
            gitdir = admin / "gitdir"
            try:
                pointed = gitdir.read_text().strip()
            except OSError:
                continue
            if _real(Path(pointed).parent) == _real(path):
                shutil.rmtree(admin, ignore_errors=True)
    repo.git.worktree("prune")
    if _find_registered(repo, path) is not None:
        raise WorktreeError(f"git still lists the worktree {path}; remove it with `git worktree remove --force --force {path}`")


def _delete_branch(repo: Repo, branch: str) -> bool:
    """Delete a local branch if it exists; True when it did."""
    try:
        repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}")
    except GitCommandError:
        return False
    repo.git.branch("-D", branch)
    return True


def _remove_empty_run_dir(run_dir: Path, worktrees_dir: Path | None) -> None:
    """Remove `<worktrees_dir>/<run>` once its last candidate is gone."""
    if worktrees_dir is None or _real(run_dir.parent) != _real(worktrees_dir):
        return
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only when empty


# --------------------------------------------------------------------------- listing and pruning


def list_worktrees(
    repo_path: str | os.PathLike[str], worktrees_dir: str | os.PathLike[str] | None = None
) -> list[WorktreeInfo]:
    """Every autofix worktree, `autofix/*` branch and leftover folder of the repository enclosing `repo_path`.

    A worktree is autofix's when its branch is `autofix/...` or its folder is
    `<worktrees_dir>/<run>/<cluster>-<n>`; a branch without a worktree and a folder git no
    longer knows are listed too.
    """
    repo, _ = find_repository(repo_path)
    wdir = Path(worktrees_dir).resolve() if worktrees_dir is not None else None
    infos: list[WorktreeInfo] = []
    seen_branches: set[str] = set()
    registered_paths: set[str] = set()
    for entry in _registered(repo):
        if entry.main:
            continue
        registered_paths.add(_real(entry.path))
        run, cluster, n = _branch_parts(entry.branch)
        if run is None:
            run, cluster, n = _path_parts(entry.path, wdir)
            if run is None:
                continue  # someone else's worktree
        if entry.branch:
            seen_branches.add(entry.branch)
        infos.append(
            WorktreeInfo(
                run_id=run,
                cluster_id=cluster,
                n=n,
                branch=entry.branch,
                path=entry.path,
                head=entry.head,
                registered=True,
                exists=entry.path.exists(),
                locked=entry.locked,
                prunable=entry.prunable,
            )
        )
    for branch in _autofix_branches(repo):
        if branch in seen_branches:
            continue
        run, cluster, n = _branch_parts(branch)
        infos.append(
            WorktreeInfo(run_id=run, cluster_id=cluster, n=n, branch=branch, head=repo.commit(f"refs/heads/{branch}").hexsha)
        )
    for folder in _leftover_dirs(wdir, registered_paths):
        run, cluster, n = _path_parts(folder, wdir)
        infos.append(WorktreeInfo(run_id=run, cluster_id=cluster, n=n, path=folder, exists=True))
    infos.sort(key=lambda i: (i.run_id or "", i.cluster_id or "", i.n if i.n is not None else -1, i.branch or ""))
    return infos


def prune(
    repo_path: str | os.PathLike[str],
    keep_runs: Iterable[str] = (),
    *,
    runs: Iterable[str] | None = None,
    worktrees_dir: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Remove stale autofix worktrees, leftover folders and `autofix/*` branches.

    Everything of every run is removed except the runs in `keep_runs`; with `runs`, only
    those runs are touched. Worktrees are found by their `autofix/<run>/...` branch, or by
    their folder under `worktrees_dir` (pass it to catch folders git no longer knows and
    worktrees whose branch was switched). The main worktree and other tools' worktrees are
    never touched. `git worktree prune` runs at the end, which also drops git's records of
    any worktree folder that no longer exists (what `git gc` does anyway).
    """
    repo, _ = find_repository(repo_path)
    keep = set(keep_runs)
    only = set(runs) if runs is not None else None
    report = PruneReport(repo_root=_main_root(repo), dry_run=dry_run)
    kept: set[str] = set()

    def selected(run: str | None) -> bool:
        if run is None:
            return False
        if run in keep or (only is not None and run not in only):
            kept.add(run)
            return False
        return True

    wdir = Path(worktrees_dir).resolve() if worktrees_dir is not None else None
    with _LOCK:
        infos = list_worktrees(repo.working_tree_dir, wdir)
        touched_run_dirs: set[Path] = set()
        for info in infos:
            if not selected(info.run_id):
                continue
            if info.registered and info.path is not None:
                if not dry_run:
                    try:
                        _remove_registered(repo, info.path)
                    except (GitCommandError, WorktreeError, OSError) as exc:
                        report.errors.append(f"worktree {info.path}: {_short(exc)}")
                        continue
                report.removed_worktrees.append(info.path)
                touched_run_dirs.add(info.path.parent)
            elif info.path is not None:
                if not dry_run:
                    shutil.rmtree(info.path, ignore_errors=True)
                    if info.path.exists():
                        report.errors.append(f"folder {info.path}: could not be removed")
                        continue
                report.removed_folders.append(info.path)
                touched_run_dirs.add(info.path.parent)
        if not dry_run:
            with contextlib.suppress(GitCommandError):
                repo.git.worktree("prune")
        for info in infos:
            if info.branch is None or not selected(info.run_id):
                continue
            if dry_run:
                report.removed_branches.append(info.branch)
                continue
            try:
                if _delete_branch(repo, info.branch):
                    report.removed_branches.append(info.branch)
            except GitCommandError as exc:
                report.errors.append(f"branch {info.branch}: {_short(exc)}")
        if not dry_run:
            for run_dir in touched_run_dirs:
                _remove_empty_run_dir(run_dir, wdir)
    report.kept_runs = sorted(kept)
    return report


def _short(exc: BaseException) -> str:
    if isinstance(exc, GitCommandError):
        text = (exc.stderr or "").strip() or str(exc)
        return _one_line(text.removeprefix("stderr:").strip().strip("'"))
    return _one_line(str(exc))


# --------------------------------------------------------------------------- the manager


class WorktreeManager:
    """Candidate worktrees of one run, in the repository enclosing the target folder.

    `repo_path` is the target folder (the one holding autofix.yaml), which may be a subfolder
    of the repository. `base_commit` restores a pinned base (a resumed run).
    """

    def __init__(
        self,
        repo_path: str | os.PathLike[str],
        worktrees_dir: str | os.PathLike[str],
        run_id: str,
        *,
        base_commit: str | None = None,
    ):
        self.run_id = _check_id("run id", run_id)
        self.target = Path(repo_path).resolve()
        self.repo, self.subpath = find_repository(self.target)
        self.repo_root = Path(self.repo.working_tree_dir).resolve()
        self.worktrees_dir = Path(worktrees_dir).resolve()
        self._base: str | None = None
        if base_commit is not None:
            self._base = self._resolve(base_commit)

    @classmethod
    def from_config(cls, cfg: AutofixConfig, run_id: str, **kwargs: object) -> WorktreeManager:
        """A manager for the target of `cfg`, its worktrees under `<state_dir>/worktrees`."""
        return cls(cfg.root, default_worktrees_dir(cfg), run_id, **kwargs)  # type: ignore[arg-type]

    # ---- base ---------------------------------------------------------------

    @property
    def base_commit(self) -> str | None:
        return self._base

    def _resolve(self, ref: str) -> str:
        try:
            return self.repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
        except GitCommandError:
            raise WorktreeError(
                f"{ref!r} is not a commit of {self.repo_root}"
                + (" (the repository has no commit yet: commit the target first)" if ref == "HEAD" else "")
            ) from None

    def uncommitted(self) -> list[str]:
        """Tracked files under the target folder with staged or unstaged changes (repo-relative)."""
        out = self.repo.git.status("--porcelain=v1", "-z", "--untracked-files=no", "--", self.subpath or ".")
        paths: list[str] = []
        tokens = out.split("\0")
        i = 0
        while i < len(tokens):
            token = tokens[i]
            i += 1
            if len(token) < 4:
                continue
            paths.append(token[3:])
            if token[0] in "RC":
                i += 1  # the source path of a staged rename/copy
        return paths

    def pin_base(self, ref: str = "HEAD", *, allow_dirty: bool = False) -> str:
        """Resolve the commit every candidate of this run starts from; once per run.

        Refuses (DirtyTargetError) when tracked files of the target folder have uncommitted
        changes: candidates are built and validated from the commit, not from the working
        copy, so what is validated and later merged would silently differ from what the
        user has on disk (and the merge would land on top of those edits). `allow_dirty`
        proceeds anyway, with a warning. Calling it again returns the pinned commit; asking
        for a ref that resolves elsewhere is an error.
        """
        sha = self._resolve(ref)
        if self._base is not None:
            if sha != self._base:
                raise WorktreeError(
                    f"run {self.run_id} is pinned to {self._base[:12]}; {ref!r} is {sha[:12]}. "
                    f"A run has one base: start a new run to use another"
                )
            return self._base
        dirty = self.uncommitted()
        if dirty:
            where = self.subpath or str(self.repo_root)
            shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
            message = (
                f"{where} has uncommitted changes to tracked files: {shown}. Candidates are built from "
                f"commit {sha[:12]} ({ref}), not from your working copy, so what gets validated would differ "
                f"from what is on disk. Commit or stash them (`git stash`) first"
            )
            if not allow_dirty:
                raise DirtyTargetError(message + ", or allow a dirty target explicitly.", dirty)
            warnings.warn(message + "; going on as asked (allow_dirty).", stacklevel=2)
        self._base = sha
        return sha

    # ---- candidates -----------------------------------------------------------

    def candidate_path(self, cluster_id: str, n: int) -> Path:
        return self.worktrees_dir / self.run_id / f"{cluster_id}-{n}"

    def _candidate(self, cluster_id: str, n: int, base: str) -> Candidate:
        path = self.candidate_path(cluster_id, n)
        return Candidate(
            run_id=self.run_id,
            cluster_id=cluster_id,
            n=n,
            branch=branch_name(self.run_id, cluster_id, n),
            path=path,
            target_path=path / self.subpath if self.subpath else path,
            subpath=self.subpath,
            repo_root=self.repo_root,
            base_commit=base,
        )

    def _ignore_worktrees_dir(self) -> None:
        """Keep the main checkout's `git status` clean when the worktrees live inside it."""
        try:
            self.worktrees_dir.relative_to(self.repo_root)
        except ValueError:
            return
        ignore = self.worktrees_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# autofix candidate worktrees\n*\n")

    def create(self, cluster_id: str, n: int) -> Candidate:
        """A new worktree on a new branch `autofix/<run>/<cluster>/<n>` from the pinned base."""
        _check_id("cluster id", cluster_id)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise WorktreeError(f"invalid candidate number {n!r}: use a whole number >= 0")
        base = self._base or self.pin_base()
        candidate = self._candidate(cluster_id, n, base)
        with _LOCK:
            try:
                self.repo.git.check_ref_format("--branch", candidate.branch)
            except GitCommandError:
                raise WorktreeError(f"{candidate.branch!r} is not a valid branch name") from None
            if _find_registered(self.repo, candidate.path) is not None or candidate.path.exists():
                raise WorktreeError(
                    f"{candidate.path} already exists: candidate {n} of cluster {cluster_id} in run {self.run_id} "
                    f"was created before. Remove it (`autofix worktrees prune --run {self.run_id}`) or use another number"
                )
            if candidate.branch in _autofix_branches(self.repo):
                raise WorktreeError(
                    f"branch {candidate.branch} already exists. Remove it "
                    f"(`autofix worktrees prune --run {self.run_id}`) or use another number"
                )
            self.worktrees_dir.mkdir(parents=True, exist_ok=True)
            self._ignore_worktrees_dir()
            candidate.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.repo.git.worktree("add", "--no-track", "-b", candidate.branch, str(candidate.path), base)
            except BaseException as exc:
                # Half made: undo what exists, then report.
                with contextlib.suppress(Exception):
                    self._remove(candidate, delete_branch=True)
                if isinstance(exc, GitCommandError):
                    raise WorktreeError(f"could not create the worktree {candidate.path}: {_short(exc)}") from exc
                raise
        return candidate

    def candidate(self, cluster_id: str, n: int, *, keep: bool = False, keep_branch: bool = False):
        """Shorthand for `candidate_worktree(self, cluster_id, n, ...)`."""
        return candidate_worktree(self, cluster_id, n, keep=keep, keep_branch=keep_branch)

    # ---- commit and diff ---------------------------------------------------------

    def changes(self, candidate: Candidate) -> list[ChangedFile]:
        """Everything the candidate's worktree differs in from the base: commits, staged, unstaged, untracked.

        Stages the whole worktree (`git add -A`) to see untracked files and deletions.
        """
        wt = Repo(candidate.path)
        wt.git.add("-A")
        raw = wt.git.diff("--cached", "--raw", "-z", "-M", "--no-abbrev", candidate.base_commit)
        return _with_target(_parse_raw(raw), candidate.subpath)

    def check_surfaces(self, candidate: Candidate, allowed_globs: Sequence[str]) -> list[ChangedFile]:
        """The changes against the base that touch anything but the allowed surfaces (leaves them unstaged)."""
        wt = Repo(candidate.path)
        try:
            return _surface_check(self.changes(candidate), candidate.subpath, list(allowed_globs))
        finally:
            wt.git.reset("-q")

    def commit(
        self,
        candidate: Candidate,
        *,
        optimizer: str,
        description: str,
        allowed_globs: Sequence[str],
    ) -> CommitResult:
        """Stage the candidate's change and commit it, if every changed path is a surface file.

        `allowed_globs` are relative to the target folder (`cfg.surface_globs()`). Every path
        the branch and the worktree differ in from the base is checked (also files committed
        by someone else in the worktree, untracked files, both ends of a rename); any path
        outside the surfaces, a symlink or a nested repository makes it refuse with
        SurfaceViolationError listing them, and nothing is committed (the working files are
        left as they are, unstaged). Nothing new to commit raises EmptyChangeError. Hooks
        do not run, so what is checked is exactly what is committed.
        """
        wt = Repo(candidate.path)
        if wt.head.is_detached or wt.active_branch.name != candidate.branch:
            where = "a detached HEAD" if wt.head.is_detached else f"branch {wt.active_branch.name}"
            raise WorktreeError(
                f"{candidate.path} is on {where}, not on {candidate.branch}; refusing to commit there"
            )
        committed = False
        try:
            changes = self.changes(candidate)
            pending = wt.git.diff("--cached", "--raw", "-z", "-M", "--no-abbrev", "HEAD")
            if not pending.strip("\0"):
                raise EmptyChangeError(
                    f"no change to commit in {candidate.path}: the optimizer left the surfaces as they were"
                )
            offending = _surface_check(changes, candidate.subpath, list(allowed_globs))
            if offending:
                raise SurfaceViolationError(
                    f"candidate {candidate.branch} changes files outside the allowed surfaces; nothing was "
                    f"committed:\n{_listing(offending)}\nAllowed (relative to {candidate.subpath or 'the repository root'}"
                    f"): {', '.join(allowed_globs) or 'nothing'}. Undo those changes, or add the files to "
                    f"`surfaces` in autofix.yaml if optimizers may change them.",
                    offending,
                )
            message = _commit_message(candidate, optimizer, description)
            _git_commit(wt, message)
            committed = True
        finally:
            if not committed:
                with contextlib.suppress(GitCommandError):
                    wt.git.reset("-q")
        head = wt.head.commit
        raw = wt.git.diff("--raw", "-z", "-M", "--no-abbrev", f"{head.hexsha}^", head.hexsha)
        numstat = wt.git.diff("--numstat", "-z", "-M", f"{head.hexsha}^", head.hexsha)
        return CommitResult(
            sha=head.hexsha,
            branch=candidate.branch,
            message=head.message,
            files=_with_stats(_with_target(_parse_raw(raw), candidate.subpath), _parse_numstat(numstat)),
        )

    def diff(self, candidate: Candidate) -> CandidateDiff:
        """The candidate branch against the base commit (committed changes only)."""
        try:
            head = self.repo.git.rev_parse("--verify", f"refs/heads/{candidate.branch}")
        except GitCommandError:
            raise WorktreeError(f"branch {candidate.branch} does not exist (removed?)") from None
        common = ["-M", candidate.base_commit, head]
        raw = self.repo.git.diff("--raw", "-z", "--no-abbrev", *common)
        numstat = self.repo.git.diff("--numstat", "-z", *common)
        patch = self.repo.git(c="core.quotepath=false").diff(
            "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", *common,
            strip_newline_in_stdout=False,
        )
        files = _with_stats(_with_target(_parse_raw(raw), candidate.subpath), _parse_numstat(numstat))
        return CandidateDiff(
            branch=candidate.branch, base_commit=candidate.base_commit, head_commit=head, files=files, patch=patch
        )

    # ---- removal --------------------------------------------------------------------

    def _remove(self, candidate: Candidate, *, delete_branch: bool) -> None:
        registered = _find_registered(self.repo, candidate.path)
        if registered is not None:
            _remove_registered(self.repo, candidate.path)
        elif candidate.path.exists():
            shutil.rmtree(candidate.path)
        with contextlib.suppress(GitCommandError):
            self.repo.git.worktree("prune")
        if delete_branch:
            _delete_branch(self.repo, candidate.branch)
        _remove_empty_run_dir(candidate.path.parent, self.worktrees_dir)

    def remove(self, candidate: Candidate, *, delete_branch: bool = True) -> None:
        """Remove the candidate's worktree folder and (unless told otherwise) its branch.

        Works on half-made candidates too: folder gone but still registered, registered and
        locked, folder left but unregistered, branch without a worktree.
        """
        with _LOCK:
            self._remove(candidate, delete_branch=delete_branch)

    def cleanup(self, run_id: str | None = None, *, dry_run: bool = False) -> PruneReport:
        """Remove every worktree, leftover folder and branch of a run (default: this run)."""
        run = _check_id("run id", run_id or self.run_id)
        return prune(self.repo_root, runs=[run], worktrees_dir=self.worktrees_dir, dry_run=dry_run)


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


@contextlib.contextmanager
def candidate_worktree(
    manager: WorktreeManager,
    cluster_id: str,
    n: int,
    *,
    keep: bool = False,
    keep_branch: bool = False,
) -> Iterator[Candidate]:
    """Create a candidate worktree, yield it, and always clean up.

    On an exception or KeyboardInterrupt the worktree and its branch are removed (the
    exception propagates). On normal exit the worktree folder is removed, and the branch too
    unless `keep_branch` (a validated candidate waiting for approval keeps its branch).
    `keep=True` leaves everything in place, for debugging.
    """
    candidate = manager.create(cluster_id, n)
    try:
        yield candidate
    except BaseException:
        if not keep:
            manager.remove(candidate, delete_branch=True)
        raise
    else:
        if not keep:
            manager.remove(candidate, delete_branch=not keep_branch)
