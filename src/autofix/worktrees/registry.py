"""The repository's worktrees as git records them: finding the repository, naming branches and folders,
listing autofix's worktrees and pruning what killed runs left behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from git import Repo
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError
from pydantic import BaseModel

from autofix.config import AutofixConfig
from autofix.worktrees.changes import _one_line
from autofix.worktrees.records import (
    BRANCH_PREFIX,
    NotAGitRepositoryError,
    PruneReport,
    WorktreeError,
    WorktreeInfo,
)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIR_NAME = re.compile(r"^(?P<cluster>[A-Za-z0-9][A-Za-z0-9._-]*)-(?P<n>\d+)$")

# Worktree creation and removal touch shared admin files (.git/worktrees, refs): one at a time
# per process. Parallel candidates (threads) then never race on them; separate processes rely
# on git's own lock files.
ADMIN_LOCK = threading.RLock()





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


def remove_registered_worktree(repo: Repo, path: Path) -> None:
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
    with ADMIN_LOCK:
        infos = list_worktrees(repo.working_tree_dir, wdir)
        touched_run_dirs: set[Path] = set()
        for info in infos:
            if not selected(info.run_id):
                continue
            if info.registered and info.path is not None:
                if not dry_run:
                    try:
                        remove_registered_worktree(repo, info.path)
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
