"""What the worktree room hands out: candidates, changed files, commits, diffs, listings, and its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AUTHOR_NAME = "autofix"
AUTHOR_EMAIL = "autofix@localhost"
BRANCH_PREFIX = "autofix"


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
