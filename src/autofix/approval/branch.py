"""The target branch: the branch checked out in the repository's main worktree, where candidates' bases
come from and where approved changes land, only ever by fast-forward.

    target = TargetBranch.of(config)
    target.branch, target.head(), target.dirty()
    target.fast_forward(commit, expected_head=base)
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from autofix.approval.records import DecisionRefused
from autofix.worktrees import AUTHOR_EMAIL, AUTHOR_NAME, find_repository


class GitError(RuntimeError):
    """A git command failed; the message holds its command and what git said."""


def git(root: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    """Run git in `root` without hooks; its stdout (stripped of the final newline)."""
    return git_bytes(root, *args, input=input, env=env).decode("utf-8", "replace").rstrip("\n")


def git_bytes(root: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    command = ["git", "-c", f"core.hooksPath={os.devnull}", "-c", "commit.gpgsign=false", *args]
    done = subprocess.run(command, cwd=root, input=input, capture_output=True,
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        said = " ".join(done.stderr.decode("utf-8", "replace").split()) or f"exit {done.returncode}"
        raise GitError(f"git {' '.join(args)} (in {root}) failed: {said}")
    return done.stdout


def autofix_identity() -> dict[str, str]:
    return {"GIT_AUTHOR_NAME": AUTHOR_NAME, "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
            "GIT_COMMITTER_NAME": AUTHOR_NAME, "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL}


@dataclass(frozen=True)
class TargetBranch:
    """The main worktree of the repository enclosing a target, and its checked-out branch."""

    root: Path
    """The main worktree."""
    branch: str
    subpath: str
    """The target folder inside the repository ('' at its root)."""

    @classmethod
    def of(cls, config: object) -> TargetBranch:
        """The target branch of `config`'s target; DecisionRefused when the main worktree has no branch out."""
        repo, subpath = find_repository(config.root)  # type: ignore[attr-defined]
        listing = repo.git.worktree("list", "--porcelain")
        main_block = listing.split("\n\n", 1)[0].splitlines()
        root = Path(next(line[len("worktree "):] for line in main_block if line.startswith("worktree ")))
        branch = next((line[len("branch "):] for line in main_block if line.startswith("branch ")), None)
        if branch is None:
            raise DecisionRefused(
                f"the main worktree {root} has no branch checked out (detached HEAD); approved changes land on the "
                f"branch checked out there: `git -C {root} switch <branch>` and try again")
        return cls(root=root.resolve(), branch=branch.removeprefix("refs/heads/"), subpath=subpath)

    @property
    def where(self) -> str:
        return str(self.root / self.subpath) if self.subpath else str(self.root)

    def head(self) -> str:
        return git(self.root, "rev-parse", "--verify", f"refs/heads/{self.branch}^{{commit}}")

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names, None when the repository does not have it."""
        try:
            return git(self.root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except GitError:
            return None

    def tree(self, commit: str) -> str:
        return git(self.root, "rev-parse", "--verify", f"{commit}^{{tree}}")

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            git(self.root, "merge-base", "--is-ancestor", older, newer)
        except GitError:
            return False
        return True

    def commits_between(self, older: str, newer: str) -> int:
        return int(git(self.root, "rev-list", "--count", f"{older}..{newer}") or 0)

    def dirty(self) -> list[str]:
        """Tracked files of the target folder with staged or unstaged changes in the main worktree."""
        out = git(self.root, "status", "--porcelain=v1", "-z", "--untracked-files=no", "--", self.subpath or ".")
        tokens = out.split("\0")
        paths, i = [], 0
        while i < len(tokens):
            token = tokens[i]
            i += 1
            if len(token) < 4:
                continue
            paths.append(token[3:])
            if token[0] in "RC":
                i += 1
        return paths

    def refuse_if_dirty(self, doing: str) -> None:
        dirty = self.dirty()
        if dirty:
            shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
            raise DecisionRefused(
                f"{self.where} has uncommitted changes to tracked files: {shown}. {doing} fast-forwards branch "
                f"{self.branch} checked out there, and would mix them with the validated change: commit or stash them "
                f"(`git -C {self.root} stash`) and try again")

    def untracked_in_the_way(self, base: str, commit: str) -> list[str]:
        """Files `commit` adds over `base` that exist untracked in the main worktree (a fast-forward would stop)."""
        added = git(self.root, "diff", "--name-only", "-z", "--diff-filter=A", base, commit).split("\0")
        return [p for p in added if p and (self.root / p).exists()]

    def fast_forward(self, commit: str, *, expected_head: str) -> None:
        """Move the branch (and the main worktree's files) to `commit`, only from `expected_head` and only forward."""
        head = self.head()
        if head != expected_head:
            raise DecisionRefused(f"branch {self.branch} moved while approving (now {head[:12]}, expected "
                                  f"{expected_head[:12]}); nothing was merged: approve again")
        in_the_way = self.untracked_in_the_way(head, commit)
        if in_the_way:
            raise DecisionRefused(
                f"untracked files in {self.root} would be overwritten by the merge: {', '.join(in_the_way[:10])}; "
                f"move them away and approve again")
        try:
            git(self.root, "merge", "--ff-only", "--quiet", commit, env=autofix_identity())
        except GitError as exc:
            raise DecisionRefused(f"could not fast-forward {self.branch} to {commit[:12]}: {exc}") from None
