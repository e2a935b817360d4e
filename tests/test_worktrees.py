"""Candidate worktrees on real git repositories: create, commit within the surfaces, diff, clean up, prune."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import glob_matches, load_config
from autofix.worktrees import (
    AUTHOR_EMAIL,
    AUTHOR_NAME,
    Candidate,
    DirtyTargetError,
    EmptyChangeError,
    NotAGitRepositoryError,
    SurfaceViolationError,
    WorktreeError,
    WorktreeManager,
    candidate_worktree,
    list_worktrees,
    prune,
)

CONFIG = """\
project: helpdesk
replay:
  command: python -m helpdesk.replay --cases {cases} --out {out}
  sandbox: local
surfaces:
  prompts: [prompts/*.md]
  retrieval:
    file: config/retrieval.yaml
    space:
      top_k: {type: int, low: 1, high: 10}
  code: [src/helpdesk/tools/*.py]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
"""

TARGET_FILES = {
    "autofix.yaml": CONFIG,
    "prompts/system.md": "You are a helpdesk assistant.\nAnswer from the documents.\n",
    "prompts/rephrase.md": "Rephrase the question.\n",
    "config/retrieval.yaml": "top_k: 3\n",
    "src/helpdesk/__init__.py": "",
    "src/helpdesk/app.py": "def main():\n    return 0\n",
    "src/helpdesk/tools/search.py": "def search(q):\n    return []\n",
    "data/traces.jsonl": '{"trace_id": "t1"}\n',
    "data/regression.jsonl": '{"case_id": "c1", "input": "hi"}\n',
}

SURFACES = ["prompts/*.md", "src/helpdesk/tools/*.py", "config/retrieval.yaml"]

runner = CliRunner()


def git(cwd: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def init_repo(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git configuration: autofix must bring its own identity."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def monorepo(tmp_path: Path) -> Path:
    """A repository with the target in services/helpdesk; returns the target folder."""
    repo = tmp_path / "mono"
    write_files(repo, {"README.md": "# Monorepo\n", "services/billing/main.py": "print('billing')\n"})
    write_files(repo / "services/helpdesk", TARGET_FILES)
    init_repo(repo)
    return repo / "services/helpdesk"


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    """A repository that is the target itself."""
    repo = tmp_path / "plain"
    write_files(repo, {**TARGET_FILES, "README.md": "# Helpdesk\n"})
    init_repo(repo)
    return repo


def repo_of(target: Path) -> Path:
    return Path(git(target, "rev-parse", "--show-toplevel").strip())


def worktree_paths(target: Path) -> list[str]:
    out = git(target, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def autofix_branches(target: Path) -> list[str]:
    return git(target, "branch", "--list", "autofix/*", "--format=%(refname:short)").split()


def assert_clean(target: Path) -> None:
    """Only the main worktree is left, and no autofix/ branch."""
    assert worktree_paths(target) == [str(repo_of(target))]
    assert autofix_branches(target) == []


def head(target: Path, ref: str = "HEAD") -> str:
    return git(target, "rev-parse", ref).strip()


# ---------------------------------------------------------------- create / commit / diff


def test_monorepo_create_commit_diff(monorepo: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(monorepo, tmp_path / "wt", "run1")
    assert mgr.subpath == "services/helpdesk"
    base = mgr.pin_base()
    assert base == head(monorepo)

    cand = mgr.create("refunds", 1)
    assert cand.branch == "autofix/run1/refunds/1"
    assert cand.path == (tmp_path / "wt" / "run1" / "refunds-1").resolve()
    assert cand.target_path == cand.path / "services/helpdesk"
    assert (cand.target_path / "autofix.yaml").is_file()
    assert (cand.path / "README.md").is_file()  # a worktree of the whole repository
    assert str(cand.path) in worktree_paths(monorepo)
    assert autofix_branches(monorepo) == ["autofix/run1/refunds/1"]

    (cand.target_path / "prompts/system.md").write_text("You are a careful helpdesk assistant.\nAnswer from the documents.\n")
    (cand.target_path / "prompts/refunds.md").write_text("Refunds take 14 days.\n")  # a new file matching a surface
    result = mgr.commit(
        cand,
        optimizer="gepa",
        description="Tell the assistant to be careful\n\nThe refund answers guessed.",
        allowed_globs=SURFACES,
    )

    commit = git(monorepo, "log", "-1", "--format=%an|%ae|%cn|%ce|%P", cand.branch).strip().split("|")
    assert commit == [AUTHOR_NAME, AUTHOR_EMAIL, AUTHOR_NAME, AUTHOR_EMAIL, base]  # parent is the base
    message = git(monorepo, "log", "-1", "--format=%B", cand.branch)
    assert message.startswith("autofix(refunds): Tell the assistant to be careful\n")
    assert "The refund answers guessed." in message
    for trailer in ("Autofix-Run: run1", "Autofix-Cluster: refunds", "Autofix-Candidate: 1", "Autofix-Optimizer: gepa", f"Autofix-Base: {base}"):
        assert trailer in message
    assert result.sha == head(monorepo, cand.branch)
    assert sorted((f.status, f.path) for f in result.files) == [
        ("added", "services/helpdesk/prompts/refunds.md"),
        ("modified", "services/helpdesk/prompts/system.md"),
    ]

    d = mgr.diff(cand)
    assert (d.base_commit, d.head_commit) == (base, result.sha)
    by_path = {f.path: f for f in d.files}
    assert by_path["services/helpdesk/prompts/system.md"].target_path == "prompts/system.md"
    assert (by_path["services/helpdesk/prompts/system.md"].additions, by_path["services/helpdesk/prompts/system.md"].deletions) == (1, 1)
    assert by_path["services/helpdesk/prompts/refunds.md"].status == "added"
    assert "--- a/services/helpdesk/prompts/system.md" in d.patch
    assert "-You are a helpdesk assistant." in d.patch
    assert "+You are a careful helpdesk assistant." in d.patch
    assert "+Refunds take 14 days." in d.patch

    # The main checkout is untouched.
    assert head(monorepo) == base
    assert (monorepo / "prompts/system.md").read_text().startswith("You are a helpdesk assistant.")
    assert git(monorepo, "status", "--porcelain") == ""


def test_plain_repo_rename_delete_and_retrieval_within_surfaces(plain: Path, tmp_path: Path) -> None:
    cfg = load_config(plain / "autofix.yaml")
    mgr = WorktreeManager.from_config(cfg, "run-2")
    cand = mgr.create("c7", 3)
    assert cand.subpath == "" and cand.target_path == cand.path
    assert cand.path == (plain / "runs/worktrees/run-2/c7-3").resolve()

    (cand.path / "prompts/rephrase.md").rename(cand.path / "prompts/rewrite.md")
    (cand.path / "config/retrieval.yaml").write_text("top_k: 5\n")
    (cand.path / "src/helpdesk/tools/search.py").unlink()
    result = mgr.commit(cand, optimizer="optuna", description="top_k 5", allowed_globs=cfg.surface_globs())

    statuses = {(f.status, f.path, f.old_path) for f in result.files}
    assert ("renamed", "prompts/rewrite.md", "prompts/rephrase.md") in statuses
    assert ("modified", "config/retrieval.yaml", None) in statuses
    assert ("deleted", "src/helpdesk/tools/search.py", None) in statuses
    assert {f.path for f in mgr.diff(cand).files} == {"prompts/rewrite.md", "config/retrieval.yaml", "src/helpdesk/tools/search.py"}
    # Worktrees inside the target's state folder keep the main checkout's status clean.
    assert git(plain, "status", "--porcelain") == ""


def test_commit_twice_builds_on_the_branch(plain: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(plain, tmp_path / "wt", "run1")
    cand = mgr.create("c1", 1)
    (cand.path / "prompts/system.md").write_text("one\n")
    first = mgr.commit(cand, optimizer="gepa", description="step 1", allowed_globs=SURFACES)
    (cand.path / "prompts/system.md").write_text("two\n")
    second = mgr.commit(cand, optimizer="gepa", description="step 2", allowed_globs=SURFACES)
    assert head(plain, f"{second.sha}^") == first.sha
    assert "+two" in mgr.diff(cand).patch and "+one" not in mgr.diff(cand).patch


# ---------------------------------------------------------------- the surface check


def _edit(path: Path, text: str = "changed\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


OUTSIDE_CHANGES = {
    "repo root README (outside the target)": (lambda wt, t: _edit(wt / "README.md"), "README.md", "outside the target folder"),
    "another service": (lambda wt, t: _edit(wt / "services/billing/main.py"), "services/billing/main.py", "outside the target folder"),
    "source file not in the code globs": (lambda wt, t: _edit(t / "src/helpdesk/app.py"), "services/helpdesk/src/helpdesk/app.py", "not in the surfaces"),
    "new file outside the surfaces": (lambda wt, t: _edit(t / "notes.txt"), "services/helpdesk/notes.txt", "not in the surfaces"),
    "new file in a sub-folder of prompts": (lambda wt, t: _edit(t / "prompts/extra/x.md"), "services/helpdesk/prompts/extra/x.md", "not in the surfaces"),
    "autofix.yaml itself": (lambda wt, t: _edit(t / "autofix.yaml", CONFIG + "# more\n"), "services/helpdesk/autofix.yaml", "not in the surfaces"),
    "deleted dataset": (lambda wt, t: (t / "data/traces.jsonl").unlink(), "services/helpdesk/data/traces.jsonl", "not in the surfaces"),
    "prompt renamed out of the surfaces": (lambda wt, t: (t / "prompts/rephrase.md").rename(t / "rephrase.md"), "services/helpdesk/rephrase.md", "not in the surfaces"),
    "symlink named like a prompt": (lambda wt, t: os.symlink("../autofix.yaml", t / "prompts/link.md"), "services/helpdesk/prompts/link.md", "symbolic link"),
    "hidden file a wildcard does not match": (lambda wt, t: _edit(t / "prompts/.hidden.md"), "services/helpdesk/prompts/.hidden.md", "not in the surfaces"),
}


@pytest.mark.parametrize("case", list(OUTSIDE_CHANGES), ids=list(OUTSIDE_CHANGES))
def test_change_outside_the_surfaces_is_refused(monorepo: Path, tmp_path: Path, case: str) -> None:
    make_change, offending, reason = OUTSIDE_CHANGES[case]
    mgr = WorktreeManager(monorepo, tmp_path / "wt", "run1")
    cand = mgr.create("c1", 1)
    # An allowed change alongside does not make the rest pass.
    (cand.target_path / "prompts/system.md").write_text("better\n")
    make_change(cand.path, cand.target_path)

    with pytest.raises(SurfaceViolationError) as info:
        mgr.commit(cand, optimizer="llm-patch", description="fix", allowed_globs=SURFACES)

    err = info.value
    assert offending in err.paths
    assert "services/helpdesk/prompts/system.md" not in err.paths
    assert offending in str(err) and reason in str(err) and "nothing was committed" in str(err)
    assert head(monorepo, cand.branch) == cand.base_commit  # nothing committed
    assert git(cand.path, "diff", "--cached", "--name-only") == ""  # nothing left staged
    assert (cand.target_path / "prompts/system.md").read_text() == "better\n"  # the work is left for inspection


def test_commit_made_by_hand_in_the_worktree_is_caught(monorepo: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(monorepo, tmp_path / "wt", "run1")
    cand = mgr.create("c1", 1)
    _edit(cand.path / "README.md", "sneaky\n")
    git(cand.path, "commit", "-q", "-am", "by hand")
    (cand.target_path / "prompts/system.md").write_text("better\n")
    sneaky = head(cand.path)
    with pytest.raises(SurfaceViolationError) as info:
        mgr.commit(cand, optimizer="llm-patch", description="fix", allowed_globs=SURFACES)
    assert info.value.paths == ["README.md"]
    assert head(cand.path) == sneaky


def test_no_surfaces_means_nothing_may_change(plain: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(plain, tmp_path / "wt", "run1")
    cand = mgr.create("c1", 1)
    (cand.path / "prompts/system.md").write_text("better\n")
    with pytest.raises(SurfaceViolationError, match="declares no surfaces"):
        mgr.commit(cand, optimizer="gepa", description="fix", allowed_globs=[])


def test_empty_change_is_refused(plain: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(plain, tmp_path / "wt", "run1")
    cand = mgr.create("c1", 1)
    with pytest.raises(EmptyChangeError, match="no change to commit"):
        mgr.commit(cand, optimizer="gepa", description="fix", allowed_globs=SURFACES)
    # Writing the same content back is no change either.
    (cand.path / "prompts/system.md").write_text(TARGET_FILES["prompts/system.md"])
    with pytest.raises(EmptyChangeError):
        mgr.commit(cand, optimizer="gepa", description="fix", allowed_globs=SURFACES)
    assert head(plain, cand.branch) == cand.base_commit


# ---------------------------------------------------------------- the base


def test_dirty_target_is_refused_and_dirt_elsewhere_is_not(monorepo: Path, tmp_path: Path) -> None:
    repo = repo_of(monorepo)
    (repo / "README.md").write_text("edited outside the target\n")  # other folders may be dirty
    (monorepo / "untracked.txt").write_text("untracked files are not in the base either way\n")
    mgr = WorktreeManager(monorepo, tmp_path / "wt", "run1")
    assert mgr.pin_base() == head(monorepo)

    (monorepo / "prompts/system.md").write_text("edited but not committed\n")
    mgr2 = WorktreeManager(monorepo, tmp_path / "wt", "run2")
    with pytest.raises(DirtyTargetError) as info:
        mgr2.pin_base()
    assert info.value.paths == ["services/helpdesk/prompts/system.md"]
    assert "uncommitted changes" in str(info.value) and "git stash" in str(info.value)
    with pytest.raises(DirtyTargetError):
        mgr2.create("c1", 1)  # create pins the base itself
    with pytest.warns(UserWarning, match="allow_dirty"):
        assert mgr2.pin_base(allow_dirty=True) == head(monorepo)


def test_base_is_pinned_once_per_run(plain: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(plain, tmp_path / "wt", "run1")
    base = mgr.pin_base()
    (plain / "prompts/system.md").write_text("moved on\n")
    git(plain, "commit", "-q", "-am", "later work")
    assert mgr.pin_base(base) == base
    with pytest.raises(WorktreeError, match="pinned"):
        mgr.pin_base("HEAD")
    cand = mgr.create("c1", 1)
    assert cand.base_commit == base
    assert (cand.path / "prompts/system.md").read_text() == TARGET_FILES["prompts/system.md"]
    # A resumed run restores its base.
    resumed = WorktreeManager(plain, tmp_path / "wt", "run1", base_commit=base)
    assert resumed.create("c1", 2).base_commit == base


def test_not_a_git_repository(tmp_path: Path) -> None:
    write_files(tmp_path / "loose", TARGET_FILES)
    with pytest.raises(NotAGitRepositoryError, match="not inside a git repository"):
        WorktreeManager(tmp_path / "loose", tmp_path / "wt", "run1")


def test_bad_names_and_duplicates_are_refused(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(WorktreeError, match="invalid run id"):
        WorktreeManager(plain, tmp_path / "wt", "run/../x")
    mgr = WorktreeManager(plain, tmp_path / "wt", "run1")
    for bad in ("has space", "a..b", "x.lock", "-dash", "a/b"):
        with pytest.raises(WorktreeError, match="invalid cluster id"):
            mgr.create(bad, 1)
    mgr.create("c1", 1)
    with pytest.raises(WorktreeError, match="already exists"):
        mgr.create("c1", 1)
    assert autofix_branches(plain) == ["autofix/run1/c1/1"]


# ---------------------------------------------------------------- cleanup


def test_context_manager_cleans_up_after_success(monorepo: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(monorepo, tmp_path / "wt", "run1")
    with candidate_worktree(mgr, "c1", 1) as cand:
        (cand.target_path / "prompts/system.md").write_text("better\n")
        mgr.commit(cand, optimizer="gepa", description="fix", allowed_globs=SURFACES)
    assert not cand.path.exists()
    assert not (tmp_path / "wt" / "run1").exists()
    assert_clean(monorepo)


def test_context_manager_can_keep_the_branch_for_approval(monorepo: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(monorepo, tmp_path / "wt", "run1")
    with mgr.candidate("c1", 1, keep_branch=True) as cand:
        (cand.target_path / "prompts/system.md").write_text("better\n")
        mgr.commit(cand, optimizer="gepa", description="fix", allowed_globs=SURFACES)
    assert not cand.path.exists()
    assert worktree_paths(monorepo) == [str(repo_of(monorepo))]
    assert autofix_branches(monorepo) == ["autofix/run1/c1/1"]
    assert "+better" in mgr.diff(cand).patch  # still reviewable without the worktree


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_context_manager_cleans_up_after_an_exception(monorepo: Path, tmp_path: Path, exc_type: type[BaseException]) -> None:
    mgr = WorktreeManager(monorepo, tmp_path / "wt", "run1")
    with pytest.raises(exc_type):
        with mgr.candidate("c1", 1, keep_branch=True) as cand:
            (cand.target_path / "prompts/system.md").write_text("better\n")
            mgr.commit(cand, optimizer="gepa", description="fix", allowed_globs=SURFACES)
            raise exc_type()
    assert not cand.path.exists()
    assert_clean(monorepo)


def test_context_manager_keep_leaves_everything(plain: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(plain, tmp_path / "wt", "run1")
    with pytest.raises(RuntimeError):
        with mgr.candidate("c1", 1, keep=True) as cand:
            raise RuntimeError("debug me")
    assert cand.path.is_dir() and autofix_branches(plain) == ["autofix/run1/c1/1"]
    mgr.remove(cand)
    assert_clean(plain)


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from autofix.worktrees import WorktreeManager
    mgr = WorktreeManager(sys.argv[1], sys.argv[2], "killed")
    with mgr.candidate("c1", 1) as cand:
        (cand.target_path / "prompts/system.md").write_text("half-written")
        mgr.create("c2", 1)
        print(cand.path, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_cleanup_after_a_killed_run(monorepo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(monorepo), str(wt)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = Path(proc.stdout.strip())
    assert left.is_dir()  # the context manager had no chance to clean up
    assert len(worktree_paths(monorepo)) == 3
    assert sorted(autofix_branches(monorepo)) == ["autofix/killed/c1/1", "autofix/killed/c2/1"]

    report = WorktreeManager(monorepo, wt, "killed").cleanup()
    assert report.ok
    assert sorted(report.removed_branches) == ["autofix/killed/c1/1", "autofix/killed/c2/1"]
    assert len(report.removed_worktrees) == 2
    assert not left.exists() and not (wt / "killed").exists()
    assert_clean(monorepo)


def test_remove_survives_a_folder_deleted_under_gits_feet(plain: Path, tmp_path: Path) -> None:
    mgr = WorktreeManager(plain, tmp_path / "wt", "run1")
    cand = mgr.create("c1", 1)
    shutil.rmtree(cand.path)
    assert [i.state for i in list_worktrees(plain)] == ["folder gone"]
    mgr.remove(cand)
    assert_clean(plain)
    mgr.remove(cand)  # removing twice is harmless


def test_prune_handles_every_half_made_state(plain: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    mgr = WorktreeManager(plain, wt, "crashed")
    base = mgr.pin_base()
    # 1. registered and locked ("initializing", as a `git worktree add` killed midway leaves it), folder gone
    locked = wt / "crashed" / "c1-1"
    git(plain, "worktree", "add", "-q", "--lock", "--reason", "initializing", "-b", "autofix/crashed/c1/1", str(locked), base)
    shutil.rmtree(locked)
    # 2. registered and locked, folder still there
    git(plain, "worktree", "add", "-q", "--lock", "-b", "autofix/crashed/c2/1", str(wt / "crashed" / "c2-1"), base)
    # 3. a branch without a worktree
    git(plain, "branch", "autofix/crashed/c3/1", base)
    # 4. a folder git no longer knows
    orphan = wt / "crashed" / "c4-1"
    _edit(orphan / "prompts/system.md")
    # 5. a worktree whose branch was switched away from autofix/ (found by its folder)
    switched = mgr.create("c5", 1)
    git(switched.path, "checkout", "-q", "--detach")
    # someone else's worktree is left alone
    theirs = tmp_path / "their-feature"
    git(plain, "worktree", "add", "-q", "-b", "feature", str(theirs), base)

    states = {(i.cluster_id, i.state) for i in list_worktrees(plain, wt)}
    assert states == {("c1", "folder gone"), ("c2", "locked"), ("c3", "branch only"), ("c4", "leftover folder"), ("c5", "active"), ("c5", "branch only")}

    dry = prune(plain, worktrees_dir=wt, dry_run=True)
    assert dry.dry_run and len(dry.removed_worktrees) == 3 and dry.removed_folders == [orphan.resolve()]
    assert len(list_worktrees(plain, wt)) == 6  # nothing removed

    report = prune(plain, worktrees_dir=wt)
    assert report.ok, report.errors
    assert sorted(report.removed_branches) == [f"autofix/crashed/c{i}/1" for i in (1, 2, 3, 5)]
    assert worktree_paths(plain) == [str(plain), str(theirs)]
    assert autofix_branches(plain) == []
    assert not (wt / "crashed").exists()
    assert "feature" in git(plain, "branch", "--list", "feature")


def test_prune_keeps_the_runs_it_is_told_to_keep(plain: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    old = WorktreeManager(plain, wt, "old")
    new = WorktreeManager(plain, wt, "new")
    old.create("c1", 1)
    old.create("c2", 1)
    kept = new.create("c1", 1)
    report = prune(plain, keep_runs=["new"], worktrees_dir=wt)
    assert report.kept_runs == ["new"]
    assert sorted(report.removed_branches) == ["autofix/old/c1/1", "autofix/old/c2/1"]
    assert autofix_branches(plain) == ["autofix/new/c1/1"]
    assert worktree_paths(plain) == [str(plain), str(kept.path)]
    assert kept.path.is_dir()

    # `runs` restricts pruning to those runs.
    other = WorktreeManager(plain, wt, "other")
    other.create("c9", 1)
    report = prune(plain, runs=["other"], worktrees_dir=wt)
    assert report.removed_branches == ["autofix/other/c9/1"] and report.kept_runs == ["new"]
    assert autofix_branches(plain) == ["autofix/new/c1/1"]


# ---------------------------------------------------------------- globs


def test_glob_matches_agrees_with_the_files_globs_expand_to(tmp_path: Path) -> None:
    files = [
        "prompts/a.md", "prompts/.hidden.md", "prompts/sub/b.md", "prompts/a.txt", "src/x/tools/t.py",
        "src/x/tools/deep/u.py", "src/y.py", "config/retrieval.yaml", "top.md", ".cfg/z.md", "data/[1].json",
    ]
    write_files(tmp_path, {f: "" for f in files})
    patterns = [
        "prompts/*.md", "prompts/**", "prompts/**/*.md", "**/*.md", "src/*/tools/*.py", "src/**/*.py",
        "config/retrieval.yaml", "prompts/?.md", "prompts/[ab].md", "prompts/[!a].md", "*.md", "./prompts/*.md",
        "data/[[]1].json", "data/[[&~|]1].json",
    ]
    for pattern in patterns:
        expanded = {
            Path(m).relative_to(tmp_path).as_posix()
            for m in glob.glob(str(tmp_path / pattern), recursive=True)
            if os.path.isfile(m)
        }
        matched = {f for f in files if glob_matches(pattern, f)}
        assert matched == expanded, pattern
    assert not glob_matches("prompts/*.md", "prompts/../secret.md")
    assert not glob_matches("**", "/etc/passwd")


# ---------------------------------------------------------------- CLI


def cli(*args: str):
    return runner.invoke(app, ["worktrees", *args])


def test_cli_list_and_prune_json(monorepo: Path) -> None:
    config = str(monorepo / "autofix.yaml")
    cfg = load_config(config)
    WorktreeManager.from_config(cfg, "run-a").create("c1", 1)
    WorktreeManager.from_config(cfg, "run-b").create("c2", 4)

    result = cli("list", "-c", config, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["repo_root"] == str(repo_of(monorepo))
    rows = {(w["run_id"], w["cluster_id"], w["n"], w["branch"], w["state"]) for w in data["worktrees"]}
    assert rows == {("run-a", "c1", 1, "autofix/run-a/c1/1", "active"), ("run-b", "c2", 4, "autofix/run-b/c2/4", "active")}

    table = cli("list", "-c", config)
    assert table.exit_code == 0 and "autofix/run-a/c1/1" in table.stdout and "active" in table.stdout

    dry = cli("prune", "-c", config, "--dry-run", "--json")
    assert dry.exit_code == 0
    assert sorted(json.loads(dry.stdout)["removed_branches"]) == ["autofix/run-a/c1/1", "autofix/run-b/c2/4"]
    assert len(autofix_branches(monorepo)) == 2

    result = cli("prune", "-c", config, "--run", "run-a", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["removed_branches"] == ["autofix/run-a/c1/1"] and report["kept_runs"] == ["run-b"]
    assert autofix_branches(monorepo) == ["autofix/run-b/c2/4"]

    human = cli("prune", "-c", config)
    assert human.exit_code == 0 and "autofix/run-b/c2/4" in human.stdout
    assert_clean(monorepo)
    assert "Nothing to prune" in cli("prune", "-c", config).stdout
    assert json.loads(cli("list", "-c", config, "--json").stdout)["worktrees"] == []


def test_cli_outside_git_exits_non_zero(tmp_path: Path) -> None:
    write_files(tmp_path / "loose", TARGET_FILES)
    config = str(tmp_path / "loose" / "autofix.yaml")
    for args in (["list"], ["prune"]):
        result = cli(*args, "-c", config)
        assert result.exit_code == 1
        assert "not inside a git repository" in result.output
        as_json = cli(*args, "-c", config, "--json")
        assert as_json.exit_code == 1
        assert json.loads(as_json.stdout)["ok"] is False


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    write_files(tmp_path / "bad", {**TARGET_FILES, "autofix.yaml": "project: helpdesk\n"})
    result = cli("list", "-c", str(tmp_path / "bad" / "autofix.yaml"))
    assert result.exit_code == 2 and "missing required key" in result.output


def test_candidate_record_round_trips(plain: Path, tmp_path: Path) -> None:
    cand = WorktreeManager(plain, tmp_path / "wt", "run1").create("c1", 1)
    again = Candidate.model_validate_json(cand.model_dump_json())
    assert again == cand
