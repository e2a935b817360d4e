"""Fixtures of the approval tests: a tiny triaged target in a real git repository (the target at the root, or in
a monorepo's subfolder), candidates committed by the real WorktreeManager, and gate verdicts built directly."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autofix.approval import ApprovalStore, Lineage, open_store
from autofix.config import AutofixConfig, load_config
from autofix.gate.records import CaseChange, GateCheck, GateVerdict
from autofix.worktrees import WorktreeManager

CLUSTER = "prompt-tone-1"

CONFIG = """\
project: tiny
replay:
  command: python replay.py --cases {cases} --out {out}
  sandbox: local
surfaces:
  prompts: [prompts/*.md]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
  labels: data/labels.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
"""

PROMPT = "".join(f"Line {i} of the system prompt.\n" for i in range(1, 13))

TRACES = [
    {"trace_id": f"t{n:03d}", "timestamp": "2026-11-20T09:30:00Z", "input": f"How do I reset password {n}?",
     "output": "I don't know.", "metadata": {"user": "alice"}}
    for n in range(1, 5)
]

REGRESSION = [
    {"case_id": "reg-001", "input": "How do I book a room?", "expected": {"must_include": ["Rooms"]}},
    {"case_id": "t004", "input": "How do I reset password 4?", "expected": {"must_include": ["reset"]}},
]

LABELS = [{"case_id": "t001", "expected": {"must_include": ["HelpPoint"]}, "labeled_by": "rita"}]


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@dataclass
class Tiny:
    """A triaged tiny target under git; `root` holds autofix.yaml, `repo` is the repository's root."""

    root: Path
    repo: Path
    run_id: str = "run-1"
    gate_calls: list[dict] = field(default_factory=list)
    _manager: WorktreeManager | None = None

    @functools.cached_property
    def config(self) -> AutofixConfig:
        return load_config(self.root / "autofix.yaml")

    def store(self) -> ApprovalStore:
        return open_store(self.config)

    def head(self) -> str:
        return git(self.repo, "rev-parse", "HEAD")

    def tree(self, ref: str) -> str:
        return git(self.repo, "rev-parse", f"{ref}^{{tree}}")

    def git(self, *args: str) -> str:
        return git(self.repo, *args)

    def branches(self) -> list[str]:
        return git(self.repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").splitlines()

    def show(self, ref: str, rel: str) -> str:
        prefix = self.root.relative_to(self.repo).as_posix()
        path = f"{prefix}/{rel}" if prefix != "." else rel
        return git(self.repo, "show", f"{ref}:{path}")

    def manager(self) -> WorktreeManager:
        if self._manager is None:
            self._manager = WorktreeManager.from_config(self.config, self.run_id)
            self._manager.pin_base("HEAD")
        return self._manager

    def candidate(self, n: int, edit: Callable[[str], str]) -> tuple[str, str]:
        """Candidate n of the cluster: the prompt edited by `edit`, committed on its branch; (commit, diff)."""
        manager = self.manager()
        cand = manager.create(CLUSTER, n)
        path = cand.target_path / "prompts" / "system.md"
        path.write_text(edit(path.read_text()))
        commit = manager.commit(cand, optimizer="scripted", description=f"candidate {n}: kinder wording",
                                allowed_globs=self.config.surface_globs())
        diff = manager.diff(cand)
        manager.remove(cand, delete_branch=False)
        return commit.sha, diff.patch

    def verdict(self, commit: str, *, base: str | None = None, passed: bool = True,
                verdict_id: str = "v-1") -> GateVerdict:
        base = base or self.manager().base_commit
        return make_verdict(self.repo, commit, base=base, passed=passed, verdict_id=verdict_id)

    def enqueue(self, n: int = 1, edit: Callable[[str], str] | None = None) -> tuple[str, str, GateVerdict]:
        """Candidate n committed, validated (a passing verdict) and queued; (proposal id, diff, verdict)."""
        commit, diff = self.candidate(n, edit or (lambda t: t.replace("Line 3 of", f"Line three (v{n}) of")))
        verdict = self.verdict(commit)
        with self.store() as store:
            pid = store.enqueue(verdict, diff, lineage(self, n))
        return pid, diff, verdict

    def commit_on_main(self, rel: str, text: str, message: str = "a colleague's change") -> str:
        """A commit on the target branch in the main worktree (the branch moves)."""
        write(self.root, {rel: text})
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", message)
        return self.head()

    def audit_actions(self, pid: str | None = None) -> list[str]:
        with self.store() as store:
            return [e.action for e in store.audit_log(pid)]


def lineage(tiny: Tiny, n: int) -> Lineage:
    return Lineage(trace_ids=[t["trace_id"] for t in TRACES], cluster=CLUSTER, optimizer="scripted",
                   run_id=tiny.run_id, branch=f"autofix/{tiny.run_id}/{CLUSTER}/{n}", description=f"kinder wording {n}",
                   rationale="users asked twice", models={"target": "autofix-local/smollm2-135m-instruct",
                                                          "optimizer": "scripted/optimizer"},
                   cost_usd=0.0123, metric_calls=42)


def make_verdict(repo: Path, commit: str, *, base: str, passed: bool = True, verdict_id: str = "v-1") -> GateVerdict:
    """A gate verdict on `commit` against `base` (trees read from the repository at `repo`)."""
    return GateVerdict(
        verdict_id=verdict_id, passed=passed, candidate_ref=commit, candidate_commit=commit,
        candidate_tree=git(repo, "rev-parse", f"{commit}^{{tree}}"), base_commit=base,
        base_tree=git(repo, "rev-parse", f"{base}^{{tree}}"), cluster=CLUSTER,
        policy="policies/default.yaml", policy_sha256="0" * 64, judges={"answer_correct": "1"},
        checks=[
            GateCheck(section="target", name="held-out slice", passed=passed, value=0.67, threshold=0.1, margin=0.57,
                      reason="the slice score rose from 0.00 to 0.67 (p = 0.03)" if passed
                      else "the slice score did not rise (0.00 -> 0.00)"),
            GateCheck(section="regression", name="regression answer_correct", passed=True, value=0.0,
                      threshold=0.05, margin=0.05, reason="no drop beyond the margin"),
        ],
        fixed=[CaseChange(dataset=f"slice:{CLUSTER}:holdout", case_id="t002", trace_id="t002", metric="slice",
                          base=0.0, candidate=1.0, input="How do I reset password 2?",
                          base_output="I don't know.", candidate_output="Use HelpPoint to reset it.")],
        regressed=[], unchanged=1, created_at="2026-11-21T10:00:00+00:00")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git configuration: autofix brings its own identity."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_DIR"):
        monkeypatch.delenv(var, raising=False)


def build_tiny(repo: Path, subpath: str = "") -> Tiny:
    root = repo / subpath if subpath else repo
    write(root, {
        "autofix.yaml": CONFIG, "prompts/system.md": PROMPT, "replay.py": "print('replay')\n",
        "data/traces.jsonl": jsonl(TRACES), "data/regression.jsonl": jsonl(REGRESSION),
        "data/labels.jsonl": jsonl(LABELS), ".gitignore": "runs/\n",
    })
    if subpath:
        write(repo, {"README.md": "# Monorepo\n", "services/billing/main.py": "print('billing')\n"})
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    triage = root / "runs" / "triage"
    triage.mkdir(parents=True)
    (triage / "latest.json").write_text(json.dumps({"clusters": [
        {"id": CLUSTER, "category": "prompt", "trace_ids": [t["trace_id"] for t in TRACES]}]}))
    return Tiny(root=root, repo=repo)


@pytest.fixture
def tiny(tmp_path: Path) -> Tiny:
    """The target at the root of its repository."""
    return build_tiny(tmp_path / "tiny")


@pytest.fixture(params=["plain", "monorepo"])
def any_tiny(request: pytest.FixtureRequest, tmp_path: Path) -> Tiny:
    """The target at the root of its repository, and in a monorepo's subfolder."""
    if request.param == "plain":
        return build_tiny(tmp_path / "tiny")
    return build_tiny(tmp_path / "mono", "services/tiny")


@pytest.fixture
def fake_gate(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], list[dict]]:
    """Install a stand-in for `autofix.gate.runner.run_gate`: `fake_gate(passed)` returns the list of its calls."""

    def install(passed: bool = True) -> list[dict]:
        calls: list[dict] = []

        def run_gate(config, candidate, *, base=None, cluster=None, policy_path=None, sandbox_kind=None,
                     on_event=lambda m: None):
            calls.append({"candidate": candidate, "base": base, "cluster": cluster})
            on_event("fake gate: replaying")
            return make_verdict(config.root, candidate, base=base, passed=passed, verdict_id=f"v-re-{len(calls)}")

        try:
            import autofix.gate.runner as module
        except ImportError:
            module = types.ModuleType("autofix.gate.runner")
            monkeypatch.setitem(sys.modules, "autofix.gate.runner", module)
        monkeypatch.setattr(module, "run_gate", run_gate, raising=False)
        return calls

    return install
