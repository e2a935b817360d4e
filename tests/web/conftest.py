"""Fixtures of the review page tests: a tiny triaged target in a real git repository, two candidates committed
by the real WorktreeManager, gate verdicts built directly and queued (as tests/approval does), and the app."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
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
TRACES = [{"trace_id": f"t{n:03d}", "timestamp": "2026-11-20T09:30:00Z", "input": f"How do I reset password {n}?",
           "output": f"I don't know ({n}).", "metadata": {"user": "alice"}} for n in range(1, 5)]
REGRESSION = [{"case_id": "reg-001", "input": "How do I book a room?", "expected": {"must_include": ["Rooms"]}}]
LABELS = [{"case_id": "t001", "expected": {"must_include": ["HelpPoint"]}, "labeled_by": "rita"}]


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Target:
    """A triaged tiny target at the root of its git repository, with its approval store."""

    root: Path
    _manager: WorktreeManager | None = None
    queued: dict[str, GateVerdict] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.root / "autofix.yaml"

    @property
    def config(self) -> AutofixConfig:
        return load_config(self.config_file)

    def store(self) -> ApprovalStore:
        return open_store(self.config)

    def git(self, *args: str) -> str:
        return git(self.root, *args)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def manager(self) -> WorktreeManager:
        if self._manager is None:
            self._manager = WorktreeManager.from_config(self.config, "run-1")
            self._manager.pin_base("HEAD")
        return self._manager

    def enqueue(self, n: int, edit: Callable[[str], str]) -> str:
        """Candidate n (the prompt edited by `edit`), a passing verdict on it, queued; the proposal id."""
        manager = self.manager()
        cand = manager.create(CLUSTER, n)
        path = cand.target_path / "prompts" / "system.md"
        path.write_text(edit(path.read_text()))
        commit = manager.commit(cand, optimizer="scripted", description=f"kinder wording {n}",
                                allowed_globs=self.config.surface_globs())
        diff = manager.diff(cand).patch
        manager.remove(cand, delete_branch=False)
        verdict = make_verdict(self.root, commit.sha, base=manager.base_commit, verdict_id=f"v-{n}")
        lineage = Lineage(trace_ids=[t["trace_id"] for t in TRACES], cluster=CLUSTER, optimizer="scripted",
                          run_id="run-1", branch=f"autofix/run-1/{CLUSTER}/{n}", description=f"kinder wording {n}",
                          rationale="users asked twice", models={"target": "autofix-local/smollm2-135m-instruct",
                                                                 "optimizer": "scripted/optimizer"},
                          cost_usd=0.0123, metric_calls=42)
        with self.store() as store:
            pid = store.enqueue(verdict, diff, lineage)
        self.queued[pid] = verdict
        return pid


def make_verdict(repo: Path, commit: str, *, base: str, verdict_id: str = "v-1") -> GateVerdict:
    return GateVerdict(
        verdict_id=verdict_id, passed=True, candidate_ref=commit, candidate_commit=commit,
        candidate_tree=git(repo, "rev-parse", f"{commit}^{{tree}}"), base_commit=base,
        base_tree=git(repo, "rev-parse", f"{base}^{{tree}}"), cluster=CLUSTER,
        policy="policies/default.yaml", policy_sha256="0" * 64, judges={"answer_correct": "1"},
        checks=[
            GateCheck(section="target", name="held-out slice", passed=True, value=0.5, threshold=0.1, margin=0.4,
                      reason="0.17 -> 0.67 on 6 held-out cases (3 better, 0 worse; mcnemar p=0.03)",
                      detail={"n": 6, "base": 0.1667, "candidate": 0.6667, "p_value": 0.03}),
            GateCheck(section="regression", name="regression answer_correct", passed=True, value=0.0,
                      threshold=0.05, margin=0.05, reason="no drop beyond the margin"),
        ],
        fixed=[CaseChange(dataset=f"slice:{CLUSTER}:holdout", case_id="t002", trace_id="t002", metric="slice",
                          base=0.0, candidate=1.0, input="How do I reset password 2?",
                          base_output="I don't know <b>2</b>.", candidate_output="Use HelpPoint to reset it.")],
        regressed=[], unchanged=1, created_at="2026-11-21T10:00:00+00:00")


def edit(n: int) -> Callable[[str], str]:
    """Two independent prompt edits: candidate 1 rewords line 3, candidate 2 line 9."""
    line = {1: 3, 2: 9}[n]
    return lambda text: text.replace(f"Line {line} of", f"Line {line} (kinder, v{n}) of")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git configuration: autofix brings its own identity."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_DIR"):
        monkeypatch.delenv(var, raising=False)


def build_target(root: Path, config: str = CONFIG) -> Target:
    files = {"autofix.yaml": config, "prompts/system.md": PROMPT, "replay.py": "print('replay')\n",
             "data/traces.jsonl": jsonl(TRACES), "data/regression.jsonl": jsonl(REGRESSION),
             "data/labels.jsonl": jsonl(LABELS), ".gitignore": "runs/\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    triage = root / "runs" / "triage"
    triage.mkdir(parents=True)
    (triage / "latest.json").write_text(json.dumps({"clusters": [
        {"id": CLUSTER, "category": "prompt", "rationale": "the answer does not name the tool",
         "trace_ids": [t["trace_id"] for t in TRACES]}]}))
    return Target(root=root)


@pytest.fixture
def target(tmp_path: Path) -> Target:
    """The tiny target with two pending proposals, p-0001 and p-0002, both passing the gate."""
    t = build_target(tmp_path / "tiny")
    assert t.enqueue(1, edit(1)) == "p-0001"
    assert t.enqueue(2, edit(2)) == "p-0002"
    return t


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form with a csrf field"
    return found.group(1)


@dataclass
class Server:
    """`autofix serve` running in a subprocess; `info` is the JSON line it printed (url, host, port, ...)."""

    proc: subprocess.Popen
    info: dict

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    def stop(self) -> tuple[str, str]:
        """Stop it (SIGINT, as Ctrl-C); what it wrote after the JSON line (stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        out = self.proc.stdout.read() if self.proc.stdout else ""
        err = self.proc.stderr.read() if self.proc.stderr else ""
        return out, err


def start_server(config_file: Path, *args: str, timeout: float = 60) -> Server:
    """Run `autofix serve -c CONFIG --port 0 --json ARGS` and wait for the line with its URL."""
    command = [sys.executable, "-m", "autofix", "serve", "-c", str(config_file), "--port", "0", "--json", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"autofix serve printed no URL in {timeout} s: {proc.stderr.read()}") from None
    if not line:
        proc.wait()
        raise AssertionError(f"autofix serve exited {proc.returncode}: {proc.stderr.read()}")
    return Server(proc=proc, info=json.loads(line))


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start `autofix serve` subprocesses; each is stopped at the end of the test."""
    started: list[Server] = []

    def start(config_file: Path, *args: str) -> Server:
        server = start_server(config_file, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
