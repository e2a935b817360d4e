"""Which code a replay runs: a ref resolved to a commit, the tree hash of the target folder there,
and a temporary checkout of it.

`--ref` is a branch, a tag, a commit sha, `HEAD` (anything `git rev-parse` takes), or `WORKTREE`:
the working tree as it is on disk, uncommitted and untracked (not ignored) files included.

The tree hash identifies the target folder's content: `git rev-parse <commit>:<subpath>` at a
commit; for `WORKTREE`, the same hash computed through a throw-away index and object folder
(`git add -A` + `git write-tree`), so the repository's own index and objects are never touched and
an unchanged working tree has exactly the tree hash of HEAD. The target's state folder (`runs/`)
is left out. A target outside git can still be replayed at `WORKTREE`; its hash is then a SHA-256
over its files.

A commit is checked out as a detached worktree at `<state>/worktrees/<replay_id>/ref-0` and removed
afterwards, whatever happens; a killed replay's leftover is removed by `autofix worktrees prune`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from git import Repo
from git.exc import GitCommandError

from autofix.config import AutofixConfig
from autofix.worktrees.records import NotAGitRepositoryError
from autofix.worktrees.registry import (
    ADMIN_LOCK,
    default_worktrees_dir,
    find_repository,
    remove_registered_worktree,
)

WORKTREE = "WORKTREE"
"""The `--ref` naming the working tree as it is on disk."""

_SKIPPED_PARTS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".hypothesis"}


class RefError(ValueError):
    """A ref that names no commit (or no target folder at that commit); the message says what to give."""


@dataclass(frozen=True)
class ResolvedRef:
    """A `--ref` resolved: the commit (None for a target outside git) and the target folder's tree hash."""

    ref: str
    commit: str | None
    tree: str
    worktree: bool
    """True for `WORKTREE`: the replay runs in the target folder itself."""
    dirty: bool = False
    """For `WORKTREE`: the working tree differs from HEAD in the target folder."""

    @property
    def label(self) -> str:
        if self.commit is None:
            return f"{self.ref} (not under git)"
        short = self.commit[:12]
        if self.worktree:
            return f"{self.ref} (HEAD {short}{' + uncommitted changes' if self.dirty else ''})"
        return short if self.ref == self.commit else f"{self.ref} ({short})"


def _repo(config: AutofixConfig) -> tuple[Repo, str] | None:
    try:
        return find_repository(config.root)
    except NotAGitRepositoryError:
        return None


def _commit_of(repo: Repo, ref: str) -> str | None:
    try:
        return repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except GitCommandError:
        return None


def _tree_at(repo: Repo, commit: str, subpath: str) -> str | None:
    spec = f"{commit}:{subpath}" if subpath else f"{commit}^{{tree}}"
    try:
        sha = repo.git.rev_parse("--verify", "--quiet", spec)
        return sha if repo.git.cat_file("-t", sha) == "tree" else None
    except GitCommandError:
        return None


def _state_pathspec(repo: Repo, config: AutofixConfig, repo_root: Path) -> list[str]:
    """An `:(exclude)` pathspec for the state folder when it lies inside the target folder and git
    does not ignore it already (naming an ignored path makes `git add` fail)."""
    state = config.state_path
    try:
        state.relative_to(config.root)
        rel = state.relative_to(repo_root).as_posix()
    except ValueError:
        return []
    try:
        repo.git.check_ignore("-q", "--", rel + "/")
        return []  # ignored: git add leaves it out anyway
    except GitCommandError:
        return [f":(top,exclude){rel}"]


def worktree_tree_hash(config: AutofixConfig) -> str:
    """Tree hash of the target folder as it is on disk (see the module doc)."""
    found = _repo(config)
    if found is None:
        return files_hash(config.root, exclude=[config.state_path])
    repo, subpath = found
    repo_root = Path(repo.working_tree_dir).resolve()
    objects = Path(repo.common_dir).resolve() / "objects"
    with tempfile.TemporaryDirectory(prefix="autofix-tree-") as tmp:
        index = Path(tmp) / "index"
        own_index = Path(repo.git_dir) / "index"
        if own_index.is_file():
            shutil.copyfile(own_index, index)  # keeps git's stat cache: only changed files are hashed again
        env = {
            "GIT_INDEX_FILE": str(index),
            "GIT_OBJECT_DIRECTORY": str(Path(tmp) / "objects"),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects),
        }
        (Path(tmp) / "objects").mkdir()
        pathspec = [f":(top){subpath}" if subpath else ":(top)", *_state_pathspec(repo, config, repo_root)]
        try:
            repo.git.add("-A", "--ignore-errors", "--", *pathspec, env=env)
            args = [f"--prefix={subpath}/"] if subpath else []
            return repo.git.write_tree(*args, env=env)
        except GitCommandError as exc:
            raise RefError(f"cannot hash the working tree of {config.root}: {(exc.stderr or str(exc)).strip()}") from None


def files_hash(root: Path, exclude: list[Path] = ()) -> str:
    """SHA-256 over the relative path, executable bit and content of every file below `root`."""
    root = root.resolve()
    skipped = {p.resolve() for p in exclude}
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_PARTS and (here / d).resolve() not in skipped)
        for name in sorted(files):
            path = here / name
            if name.endswith(".pyc"):
                continue
            try:
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    content = os.readlink(path).encode()
                elif stat.S_ISREG(st.st_mode):
                    content = path.read_bytes()
                else:
                    continue
            except OSError:
                continue
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{oct(st.st_mode & 0o111)}\0{len(content)}\0".encode())
            digest.update(content)
    return "files-sha256:" + digest.hexdigest()


def resolve_ref(config: AutofixConfig, ref: str = WORKTREE) -> ResolvedRef:
    """Resolve `ref` for the target of `config`; RefError names what went wrong and what to give."""
    ref = (ref or "").strip()
    if not ref:
        raise RefError("empty --ref: give a branch, a tag, a commit sha, HEAD, or WORKTREE")
    found = _repo(config)
    if ref == WORKTREE:
        tree = worktree_tree_hash(config)
        if found is None:
            return ResolvedRef(ref=ref, commit=None, tree=tree, worktree=True, dirty=True)
        repo, subpath = found
        head = _commit_of(repo, "HEAD")
        head_tree = _tree_at(repo, head, subpath) if head else None
        return ResolvedRef(ref=ref, commit=head, tree=tree, worktree=True, dirty=tree != head_tree)
    if found is None:
        raise RefError(
            f"{config.root} is not inside a git repository, so --ref {ref} names nothing: "
            f"use --ref WORKTREE, or put the target under git"
        )
    repo, subpath = found
    commit = _commit_of(repo, ref)
    if commit is None:
        raise RefError(
            f"unknown ref {ref!r} in {repo.working_tree_dir}: give a branch, a tag, a commit sha, HEAD, "
            f"or WORKTREE for the working tree as it is on disk"
        )
    tree = _tree_at(repo, commit, subpath)
    if tree is None:
        raise RefError(f"the target folder {subpath or '.'} does not exist at {ref} ({commit[:12]}): "
                       f"pick a commit that has it")
    return ResolvedRef(ref=ref, commit=commit, tree=tree, worktree=False)


@contextlib.contextmanager
def checkout(config: AutofixConfig, resolved: ResolvedRef, replay_id: str) -> Iterator[Path]:
    """The target folder at `resolved`: the folder itself for WORKTREE, else a temporary detached
    worktree of the commit (removed on exit, on errors and Ctrl-C too)."""
    if resolved.worktree:
        yield config.root
        return
    found = _repo(config)
    assert found is not None and resolved.commit is not None
    repo, subpath = found
    worktrees_dir = default_worktrees_dir(config)
    path = worktrees_dir / replay_id / "ref-0"  # the layout `autofix worktrees prune` cleans up
    with ADMIN_LOCK:
        worktrees_dir.mkdir(parents=True, exist_ok=True)
        ignore = worktrees_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# autofix worktrees\n*\n")
        try:
            repo.git.worktree("add", "--detach", str(path), resolved.commit)
        except GitCommandError as exc:
            with contextlib.suppress(Exception):
                remove_registered_worktree(repo, path)
            raise RefError(f"could not check out {resolved.ref} at {path}: {(exc.stderr or str(exc)).strip()}") from None
    try:
        yield path / subpath if subpath else path
    finally:
        with ADMIN_LOCK:
            try:
                remove_registered_worktree(repo, path)
            finally:
                shutil.rmtree(path, ignore_errors=True)
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
