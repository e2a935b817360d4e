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

Modules: `records` (what the room hands out, its errors), `changes` (diffs, the surface check,
commit messages), `registry` (the repository's worktrees: naming, listing, pruning), `manager`.
"""

from autofix.worktrees.manager import WorktreeManager, candidate_worktree
from autofix.worktrees.records import (
    AUTHOR_EMAIL,
    AUTHOR_NAME,
    BRANCH_PREFIX,
    Candidate,
    CandidateDiff,
    ChangedFile,
    CommitResult,
    DirtyTargetError,
    EmptyChangeError,
    NotAGitRepositoryError,
    PruneReport,
    SurfaceViolationError,
    WorktreeError,
    WorktreeInfo,
)
from autofix.worktrees.registry import (
    branch_name,
    default_worktrees_dir,
    find_repository,
    list_worktrees,
    prune,
)

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

