"""`WorktreeManager`: a run's candidate worktrees from one pinned base commit, their commits, diffs and removal."""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from git import Repo
from git.exc import GitCommandError

from autofix.config import AutofixConfig
from autofix.worktrees.changes import (
    _commit_message,
    _git_commit,
    _listing,
    _parse_numstat,
    _parse_raw,
    _surface_check,
    _with_stats,
    _with_target,
)
from autofix.worktrees.records import (
    Candidate,
    CandidateDiff,
    ChangedFile,
    CommitResult,
    DirtyTargetError,
    EmptyChangeError,
    PruneReport,
    SurfaceViolationError,
    WorktreeError,
)
from autofix.worktrees.registry import (
    ADMIN_LOCK,
    _autofix_branches,
    _check_id,
    _delete_branch,
    _find_registered,
    _remove_empty_run_dir,
    _short,
    branch_name,
    default_worktrees_dir,
    find_repository,
    prune,
    remove_registered_worktree,
)


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
        with ADMIN_LOCK:
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
            remove_registered_worktree(self.repo, candidate.path)
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
        with ADMIN_LOCK:
            self._remove(candidate, delete_branch=delete_branch)

    def cleanup(self, run_id: str | None = None, *, dry_run: bool = False) -> PruneReport:
        """Remove every worktree, leftover folder and branch of a run (default: this run)."""
        run = _check_id("run id", run_id or self.run_id)
        return prune(self.repo_root, runs=[run], worktrees_dir=self.worktrees_dir, dry_run=dry_run)




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
