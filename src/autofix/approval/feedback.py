"""Feeding back: an approved fix's failure cases join the regression set, so the fixed failure stays tested.

After the merge, the proposal's slice (the cluster's failed traces as cases, with the expectations
reviewers labelled) is appended to `datasets.regression`, the cases not there already (by case_id), in a
commit of its own on the target branch ("autofix: 3 cases of cluster X join the regression set (proposal
p-0001)"). Each such commit is a new version of the dataset, recorded append-only in
`<state_dir>/datasets/regression.versions.jsonl`: the content sha256 of the new file, the previous one,
and the provenance (proposal, cluster, traces, approver).

A case without an expected answer still counts: the checks that need no reference (searched, no tool
error, cites sources, valid tool arguments) and the rubric judges score it; the checks comparing with an
expected answer skip it. The version's note says how many are so.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from autofix.approval.branch import (
    GitError,
    TargetBranch,
    autofix_identity,
    git,
    git_bytes,
)
from autofix.approval.records import ApprovalError, ProposalRecord
from autofix.approval.store import now
from autofix.worktrees import find_repository

VERSIONS_FILE = Path("datasets") / "regression.versions.jsonl"
"""Where dataset versions are recorded, relative to the state folder."""


class FeedbackError(ApprovalError):
    """The cases could not be added; the message names the file and what to do."""


class Provenance(BaseModel):
    proposal_id: str
    cluster: str
    trace_ids: list[str]
    approved_by: str


class DatasetVersion(BaseModel):
    """One version of the regression set, as recorded in `regression.versions.jsonl`."""

    dataset: str = "regression"
    version: int = Field(description="1 for the first version autofix recorded, then 2, 3, ...")
    at: str
    path: str = Field(description="the regression file, relative to autofix.yaml")
    sha256: str = Field(description="of the new file's content")
    previous_sha256: str
    commit: str = Field(description="the commit on the target branch that made it")
    cases_added: int
    case_ids: list[str]
    without_expected: int = Field(description="added cases no reviewer gave an expected answer")
    provenance: Provenance
    note: str = ""


class FeedbackResult(BaseModel):
    """What feeding one proposal back did."""

    added: int = 0
    already_present: int = 0
    commit: str | None = None
    version: DatasetVersion | None = None
    note: str = ""


def versions_path(config: object) -> Path:
    return config.state_path / VERSIONS_FILE  # type: ignore[attr-defined]


def read_versions(config: object) -> list[DatasetVersion]:
    """Every recorded version of the regression set, oldest first."""
    path = versions_path(config)
    if not path.is_file():
        return []
    return [DatasetVersion.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _repo_path(config: object, target: TargetBranch) -> tuple[str, str]:
    """The regression file relative to the repository root and to autofix.yaml."""
    path = config.dataset_path("regression")  # type: ignore[attr-defined]
    if path is None:
        raise FeedbackError(f"{config.file}: datasets.regression is not set; approved cases have nowhere to go")  # type: ignore[attr-defined]
    config_root = Path(config.root).resolve()  # type: ignore[attr-defined]
    repo, _ = find_repository(config_root)
    repo_root = Path(repo.working_tree_dir).resolve()
    try:
        in_repo = Path(path).resolve().relative_to(repo_root).as_posix()
    except ValueError:
        raise FeedbackError(f"{config.file}: datasets.regression ({path}) is outside the repository {repo_root}; "  # type: ignore[attr-defined]
                            f"approved cases are committed with the fix, so it must be inside") from None
    return in_repo, os.path.relpath(path, config_root)


def _case_ids(text: str, where: str) -> set[str]:
    ids: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["case_id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise FeedbackError(f"{where}:{n}: not a case (a JSON object with a case_id); fix the line and "
                                f"feed the proposal back again") from None
    return ids


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def feed_back(config: object, proposal: ProposalRecord, *, by: str,
              target: TargetBranch | None = None) -> FeedbackResult:
    """Append the proposal's slice cases to the regression set in a new commit on the target branch and record
    the new version (see the module doc). Cases already present stay as they are; nothing new, no commit."""
    from autofix.replay.datasets import load_slice
    from autofix.replay.records import DatasetError

    if not proposal.cluster:
        return FeedbackResult(note=f"{proposal.id} names no cluster: no cases to add to the regression set")
    target = target or TargetBranch.of(config)
    try:
        cases = load_slice(config, proposal.cluster).cases  # type: ignore[arg-type]
    except DatasetError as exc:
        raise FeedbackError(f"the cases of cluster {proposal.cluster} could not be read: {exc}") from None
    rel, shown = _repo_path(config, target)
    head = target.head()
    try:
        old = git_bytes(target.root, "cat-file", "blob", f"{head}:{rel}")
    except GitError:  # not in the commit yet: a new file
        old = b""
    present = _case_ids(old.decode("utf-8"), shown)
    new = [c for c in cases if c.case_id not in present]
    if not new:
        return FeedbackResult(already_present=len(cases),
                              note=f"all {len(cases)} cases of cluster {proposal.cluster} are in {shown} already")
    lines = []
    for case in new:
        data = case.model_dump(mode="json")
        if data.get("expected") is None:
            data.pop("expected", None)
        lines.append(json.dumps(data, ensure_ascii=False))
    content = old + (b"\n" if old and not old.endswith(b"\n") else b"") + ("\n".join(lines) + "\n").encode("utf-8")
    without = sum(1 for c in new if not c.expected)
    note = (f"{_plural(len(new) - without, 'case carries', 'cases carry')} a reviewer's expected answer"
            + (f"; {_plural(without, 'case has', 'cases have')} none: they serve the checks that need no reference "
               f"(searched, no tool error, cites sources, valid tool arguments) and the rubric judges, and the checks "
               f"comparing with an expected answer skip them" if without else ""))
    subject = (f"autofix: {_plural(len(new), 'case', 'cases')} of cluster {proposal.cluster} "
               f"{'joins' if len(new) == 1 else 'join'} the regression set (proposal {proposal.id})")
    body = "\n".join([
        subject, "",
        f"From the failed traces that motivated {proposal.id} ({proposal.title}): "
        + ", ".join(c.case_id for c in new) + ".",
        note + ".", "",
        f"Autofix-Proposal: {proposal.id}", f"Autofix-Cluster: {proposal.cluster}", f"Approved-by: {by}",
    ]) + "\n"
    commit = _commit_file(target, head, rel, content, body)
    target.fast_forward(commit, expected_head=head)
    version = DatasetVersion(
        version=len(read_versions(config)) + 1, at=now(), path=Path(shown).as_posix(),
        sha256=hashlib.sha256(content).hexdigest(), previous_sha256=hashlib.sha256(old).hexdigest(),
        commit=commit, cases_added=len(new), case_ids=[c.case_id for c in new], without_expected=without,
        provenance=Provenance(proposal_id=proposal.id, cluster=proposal.cluster,
                              trace_ids=[c.case_id for c in cases], approved_by=by),
        note=note)
    path = versions_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(version.model_dump_json() + "\n")
    return FeedbackResult(added=len(new), already_present=len(cases) - len(new), commit=commit, version=version,
                          note=note)


def _commit_file(target: TargetBranch, parent: str, rel: str, content: bytes, message: str) -> str:
    """A commit on top of `parent` that changes one file, made without touching any worktree or index."""
    with tempfile.TemporaryDirectory(prefix="autofix-feedback-") as tmp:
        blob_file = Path(tmp) / "content"
        blob_file.write_bytes(content)
        blob = git(target.root, "hash-object", "-w", "--no-filters", str(blob_file))
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        listed = git(target.root, "ls-tree", parent, "--", rel)
        mode = listed.split(" ", 1)[0] if listed else "100644"
        git(target.root, "read-tree", parent, env=index)
        git(target.root, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{rel}", env=index)
        tree = git(target.root, "write-tree", env=index)
        return git(target.root, "commit-tree", tree, "-p", parent, "-F", "-", input=message.encode("utf-8"),
                   env=autofix_identity())
