"""Replay at a ref with the replay cache, on real git repositories.

The first part uses a small target of its own (a replay command that answers from its prompt file,
no model), so that every rule of the cache is checked quickly: what hits, what invalidates, what
is never cached, where the worktree goes. The last part replays the bundled helpdesk with the
real model, in Docker and in the local sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autofix.config import load_config
from autofix.demo import bundled_example
from autofix.replay.cache import CACHE_FILENAME, ReplayCache
from autofix.replay.datasets import load_dataset, split_holdout
from autofix.replay.records import Case, DatasetError, reproducible_part
from autofix.replay.refs import WORKTREE, RefError, resolve_ref
from autofix.replay.session import replay_at_ref
from autofix.sandbox.local_backend import LocalSandbox

TOY_CONFIG = """\
project: toy
replay:
  command: python replay.py --cases {cases} --out {out}
  sandbox: local
  batch_size: 2
  timeout_s: 60
surfaces:
  prompts: [prompts/*.md]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
"""

# Answers "<prompt> | <input>"; "crash-me" is a failure the target reports itself, "vanish" gets
# no result row at all (what a crash or a kill looks like from outside).
TOY_REPLAY = """\
import argparse, json, pathlib, time
parser = argparse.ArgumentParser()
parser.add_argument("--cases"); parser.add_argument("--out")
args = parser.parse_args()
prompt = pathlib.Path("prompts/system.md").read_text().strip()
with open(args.out, "w") as out:
    for line in open(args.cases):
        case = json.loads(line)
        if case["input"] == "vanish":
            continue
        if case["input"] == "crash-me":
            row = {"case_id": case["case_id"], "output": None, "error": "ValueError: boom", "spans": []}
        else:
            row = {"case_id": case["case_id"], "output": f"{prompt} | {case['input']}",
                   "spans": [{"kind": "chain", "name": "answer"}], "error": None, "latency_ms": 1.0}
        out.write(json.dumps(row) + "\\n")
"""

# Asks the model gateway, giving up after 0.5 s (what a client timeout looks like).
TOY_CALLER = """\
import argparse, json, os, urllib.request
parser = argparse.ArgumentParser()
parser.add_argument("--cases"); parser.add_argument("--out")
args = parser.parse_args()
with open(args.out, "w") as out:
    for line in open(args.cases):
        case = json.loads(line)
        request = urllib.request.Request(
            os.environ["AUTOFIX_MODEL_BASE_URL"] + "/chat/completions",
            json.dumps({"messages": [{"role": "user", "content": case["input"]}]}).encode(),
            {"Authorization": "Bearer " + os.environ["AUTOFIX_MODEL_API_KEY"], "X-Autofix-Case": case["case_id"],
             "Content-Type": "application/json"})
        try:
            answer = json.loads(urllib.request.urlopen(request, timeout=0.5).read())
            row = {"case_id": case["case_id"], "output": answer["choices"][0]["message"]["content"]}
        except Exception as exc:
            row = {"case_id": case["case_id"], "output": None, "error": f"model unreachable: {exc}"}
        out.write(json.dumps(row) + "\\n")
"""

REGRESSION = [
    {"case_id": "c1", "input": "hello", "expected": {"must_include": ["hello"]}},
    {"case_id": "c2", "input": "parking", "expected": {"must_include": ["be brief"]}},
    {"case_id": "c3", "input": "vpn", "metadata": {"now": "2026-11-20"}},
]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=cwd,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.delenv("GIT_DIR", raising=False)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A monorepo with the toy target in services/toy (its state folder `runs/` is NOT git-ignored)."""
    repo = tmp_path / "mono"
    write(repo, {"README.md": "# mono\n", "services/other/x.py": "print(1)\n"})
    write(repo / "services/toy", {
        "autofix.yaml": TOY_CONFIG,
        "replay.py": TOY_REPLAY,
        "call_model.py": TOY_CALLER,
        "prompts/system.md": "be brief\n",
        "data/regression.jsonl": jsonl(REGRESSION),
        "data/traces.jsonl": "",
    })
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "toy")
    return repo / "services/toy"


def replay(target: Path, ref: str = WORKTREE, dataset="regression", **kwargs):
    return replay_at_ref(load_config(target / "autofix.yaml"), ref, dataset, sandbox=LocalSandbox(warn=False),
                         **kwargs)


def outputs(run) -> dict[str, str | None]:
    return {r.case_id: r.output for r in run.results}


def worktrees(target: Path) -> list[str]:
    return [line for line in git(target, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


# ------------------------------------------------------------------------------- refs and the cache


def test_second_replay_of_a_commit_is_answered_from_the_cache(toy: Path) -> None:
    first = replay(toy, "HEAD")
    assert first.cache_hits == 0 and first.summary.cases == 3 and first.summary.failed_cases == 0
    assert outputs(first)["c1"] == "be brief | hello"
    assert first.ref.commit == git(toy, "rev-parse", "HEAD")
    assert first.ref.tree == git(toy, "rev-parse", "HEAD:services/toy")
    assert (first.replay_dir / "io").is_dir()

    second = replay(toy, "main")  # another name for the same commit
    assert second.cache_hits == second.summary.cases == 3
    assert second.sandbox is None and not (second.replay_dir / "io").exists()  # nothing ran
    assert outputs(second) == outputs(first)
    assert second.summary.metrics["answer_correct"] == first.summary.metrics["answer_correct"]
    rows = [json.loads(line) for line in (second.replay_dir / "results.jsonl").read_text().splitlines()]
    assert all(row["cached"] for row in rows) and rows[0]["checks"]["answer_correct"]["passed"] is True
    assert json.loads((second.replay_dir / "replay.json").read_text())["cache_hits"] == 3
    assert (toy / "runs" / CACHE_FILENAME).is_file()
    assert len(worktrees(toy)) == 1  # the temporary worktree is gone


def test_a_changed_prompt_is_a_new_tree_and_the_old_commit_still_hits(toy: Path) -> None:
    old = replay(toy, "HEAD")
    old_sha = old.ref.commit
    (toy / "prompts/system.md").write_text("be very brief\n")
    git(toy, "commit", "-qam", "new prompt")
    git(toy, "tag", "v2")

    new = replay(toy, "v2")
    assert new.ref.tree != old.ref.tree and new.cache_hits == 0
    assert outputs(new)["c1"] == "be very brief | hello"

    again = replay(toy, old_sha)
    assert again.cache_hits == 3 and outputs(again)["c1"] == "be brief | hello"


def test_a_change_outside_the_target_folder_keeps_the_cache(toy: Path) -> None:
    replay(toy, "HEAD")
    (toy.parent / "other/x.py").write_text("print(2)\n")
    git(toy, "commit", "-qam", "elsewhere")
    assert replay(toy, "HEAD").cache_hits == 3


def test_worktree_with_an_uncommitted_change_differs_from_head(toy: Path) -> None:
    clean = resolve_ref(load_config(toy / "autofix.yaml"), WORKTREE)
    assert clean.tree == git(toy, "rev-parse", "HEAD:services/toy") and not clean.dirty

    at_head = replay(toy, "HEAD")
    assert replay(toy, WORKTREE).cache_hits == 3  # unchanged working tree = HEAD's tree

    (toy / "prompts/system.md").write_text("answer in French\n")
    dirty = replay(toy, WORKTREE)
    assert dirty.ref.dirty and dirty.ref.tree != at_head.ref.tree and dirty.cache_hits == 0
    assert outputs(dirty)["c1"] == "answer in French | hello"
    assert outputs(replay(toy, "HEAD"))["c1"] == "be brief | hello"  # HEAD is the commit, not the disk

    # The replays wrote into runs/ (not git-ignored here); that does not change the working tree's hash.
    again = replay(toy, WORKTREE)
    assert again.ref.tree == dirty.ref.tree and again.cache_hits == 3

    (toy / "prompts/extra.md").write_text("an untracked file counts too\n")
    assert resolve_ref(load_config(toy / "autofix.yaml"), WORKTREE).tree != dirty.ref.tree
    assert "prompts/extra.md" not in git(toy, "ls-files")  # the repository's index was not touched


def test_a_killed_replays_worktree_is_removed_by_prune(toy: Path) -> None:
    from autofix.replay.refs import checkout
    from autofix.worktrees import default_worktrees_dir, prune

    config = load_config(toy / "autofix.yaml")
    left = checkout(config, resolve_ref(config, "HEAD"), "replay-killed")
    target = left.__enter__()  # never exited: what a kill -9 leaves
    assert (target / "autofix.yaml").is_file() and target.parent.parent.name == "ref-0"
    assert len(worktrees(toy)) == 2
    report = prune(config.root, worktrees_dir=default_worktrees_dir(config))
    assert report.ok and len(report.removed_worktrees) == 1 and len(worktrees(toy)) == 1
    assert not target.exists()


def test_worktree_replay_outside_git(tmp_path: Path) -> None:
    target = tmp_path / "plain"
    write(target, {"autofix.yaml": TOY_CONFIG, "replay.py": TOY_REPLAY, "prompts/system.md": "hi\n",
                   "data/regression.jsonl": jsonl(REGRESSION), "data/traces.jsonl": ""})
    first = replay(target, WORKTREE)
    assert first.ref.commit is None and first.ref.tree.startswith("files-sha256:")
    assert replay(target, WORKTREE).cache_hits == 3
    with pytest.raises(RefError, match="not inside a git repository"):
        replay(target, "HEAD")


def test_unknown_ref_is_an_error_naming_what_to_give(toy: Path) -> None:
    with pytest.raises(RefError, match="unknown ref 'no-such-branch'.*HEAD, or WORKTREE"):
        replay(toy, "no-such-branch")
    assert len(worktrees(toy)) == 1


def test_infrastructure_failures_are_not_cached_target_failures_are(toy: Path) -> None:
    cases = [Case(case_id="ok", input="hello"), Case(case_id="crash", input="crash-me"),
             Case(case_id="gone", input="vanish")]
    first = replay(toy, "HEAD", cases)
    by_id = {r.case_id: r for r in first.results}
    assert by_id["crash"].error == "ValueError: boom" and not by_id["crash"].infrastructure
    assert "wrote no result" in by_id["gone"].error and by_id["gone"].infrastructure

    second = replay(toy, "HEAD", cases)
    assert second.cached == {"ok", "crash"}  # the missing row is replayed again
    assert {r.case_id: r.error for r in second.results} == {r.case_id: r.error for r in first.results}


def test_a_timed_out_batch_is_not_cached(toy: Path) -> None:
    config = load_config(toy / "autofix.yaml")
    slow = config.model_copy(update={"replay": config.replay.model_copy(
        update={"command": "sleep 30 # {cases} {out}", "timeout_s": 1})})
    run = replay_at_ref(slow, "HEAD", "regression", sandbox=LocalSandbox(warn=False))
    assert run.summary.failed_cases == 3 and all("timeout" in r.error for r in run.results)
    assert ReplayCache.for_config(config).count() == 0
    assert replay_at_ref(slow, "HEAD", "regression", sandbox=LocalSandbox(warn=False)).cache_hits == 0


def slow_model(delays: dict[str, float]):
    """A scripted LM at the litellm boundary: answers "fine", after a delay per question."""
    import asyncio

    import litellm

    async def acompletion(**kwargs):
        await asyncio.sleep(delays.get(kwargs["messages"][-1]["content"], 0.0))
        return litellm.ModelResponse(model="scripted", choices=[{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "fine"}}],
                                     usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    return acompletion


def test_a_model_call_the_caller_gave_up_on_is_not_cached(toy: Path, tmp_path: Path, monkeypatch) -> None:
    import litellm

    from autofix.models.gateway import GatewayServer

    monkeypatch.setattr(litellm, "acompletion", slow_model({"slow": 2.0}))
    config = load_config(toy / "autofix.yaml")
    calling = config.model_copy(update={"replay": config.replay.model_copy(
        update={"command": "python call_model.py --cases {cases} --out {out}"})})
    cases = [Case(case_id="quick", input="quick"), Case(case_id="slow", input="slow")]
    with GatewayServer(tmp_path / "gw.sqlite3", model="openai/scripted", port=0) as gateway:
        first = replay_at_ref(calling, "HEAD", cases, sandbox=LocalSandbox(warn=False), gateway=gateway)
        by_id = {r.case_id: r for r in first.results}
        assert by_id["quick"].output == "fine" and not by_id["quick"].infrastructure
        # The target reported the failure, but the gateway saw its caller hang up: infrastructure.
        assert "model unreachable" in by_id["slow"].error and by_id["slow"].infrastructure
        assert by_id["slow"].usage.errors == 1
        [call] = gateway.store.calls(first.replay_id, "slow")
        assert call.status == "error" and "hung up" in call.error
        assert not gateway.inflight.cases(first.replay_id)

        second = replay_at_ref(calling, "HEAD", cases, sandbox=LocalSandbox(warn=False), gateway=gateway)
        assert second.cached == {"quick"}


def test_a_replays_token_budget_is_enforced_at_the_gateway_and_the_refused_cases_are_unmeasured(
        toy: Path, tmp_path: Path, monkeypatch) -> None:
    import litellm

    from autofix.models.gateway import GatewayServer
    from autofix.models.usage import Budget

    monkeypatch.setattr(litellm, "acompletion", slow_model({}))  # every answer: 4 tokens
    config = load_config(toy / "autofix.yaml")
    calling = config.model_copy(update={"replay": config.replay.model_copy(
        update={"command": "python call_model.py --cases {cases} --out {out}", "batch_size": 1})})
    cases = [Case(case_id=f"q{n}", input=f"question {n}") for n in range(3)]
    with GatewayServer(tmp_path / "gw.sqlite3", model="openai/scripted", port=0) as gateway:
        run = replay_at_ref(calling, "HEAD", cases, sandbox=LocalSandbox(warn=False), gateway=gateway, parallel=1,
                            model_budget=Budget(tokens=8))
        answered = [r for r in run.results if r.output == "fine"]
        refused = [r for r in run.results if r.output != "fine"]
        assert len(answered) == 2 and len(refused) == 1  # 4 + 4 tokens spent, the third call is refused
        assert refused[0].infrastructure and "429" in refused[0].error
        assert gateway.store.budget_status(run.replay_id).spent_tokens == 8
    # the refused case is not cached: a later replay with budget left answers it
    assert ReplayCache.for_config(config).count() == 2


def test_no_cache_replays_everything(toy: Path) -> None:
    replay(toy, "HEAD")
    assert replay(toy, "HEAD", use_cache=False).cache_hits == 0
    assert replay(toy, "HEAD", limit=2).cache_hits == 2


# ------------------------------------------------------------------------------- datasets


def write_triage(target: Path, clusters: list[dict], traces: list[dict]) -> None:
    write(target, {"data/traces.jsonl": jsonl(traces)})
    state = target / "runs" / "triage"
    state.mkdir(parents=True, exist_ok=True)
    (state / "latest.json").write_text(json.dumps({"clusters": clusters}))


def trace(n: int, **extra) -> dict:
    return {"trace_id": f"t{n:03d}", "timestamp": "2026-11-20T09:30:00Z", "input": f"question {n}",
            "output": "bad answer", "metadata": {"user": "alice", "task_type": "howto"}, **extra}


def test_a_slice_is_the_failed_traces_of_a_cluster(toy: Path) -> None:
    traces = [trace(n) for n in range(40)] + [trace(99, metadata={"now": "2026-01-01"}, input={"text": "dict input"})]
    ids = [t["trace_id"] for t in traces]
    write_triage(toy, [{"id": "retrieval-1", "category": "retrieval", "trace_ids": ids[:30]},
                       {"id": "prompt-1", "trace_ids": ids[30:]}], traces)
    config = load_config(toy / "autofix.yaml")

    whole = load_dataset(config, "slice:retrieval-1")
    assert [c.case_id for c in whole.cases] == ids[:30]
    first = whole.cases[0]
    assert first.input == "question 0" and first.expected is None
    assert first.metadata == {"user": "alice", "task_type": "howto", "now": "2026-11-20T09:30:00+00:00"}

    other = {c.case_id: c for c in load_dataset(config, "slice:prompt-1").cases}
    assert other["t099"].metadata["now"] == "2026-01-01" and other["t099"].input == "dict input"

    target = load_dataset(config, "slice:retrieval-1:target")
    holdout = load_dataset(config, "slice:retrieval-1:holdout")
    target_ids, holdout_ids = [c.case_id for c in target.cases], [c.case_id for c in holdout.cases]
    assert set(target_ids).isdisjoint(holdout_ids) and sorted(target_ids + holdout_ids) == sorted(ids[:30])
    assert 3 <= len(holdout_ids) <= 15  # about 30 %
    assert load_dataset(config, "slice:retrieval-1:holdout").cases == holdout.cases  # deterministic
    # A trace stays on its side when the cluster grows.
    grown_target, grown_holdout = split_holdout(ids[:30] + [f"new-{i}" for i in range(20)])
    assert set(holdout_ids) <= set(grown_holdout) and set(target_ids) <= set(grown_target)

    run = replay(toy, WORKTREE, "slice:retrieval-1:holdout")
    assert run.summary.cases == len(holdout_ids) and run.dataset.name == "slice:retrieval-1:holdout"
    assert "answer_correct" not in run.summary.metrics  # no expected answers: the check does not apply


def test_a_slice_reads_the_trace_files_triage_read(toy: Path, tmp_path: Path) -> None:
    export = tmp_path / "exports" / "prod.jsonl"
    export.parent.mkdir()
    export.write_text(jsonl([trace(1), trace(2)]))
    state = toy / "runs" / "triage"
    state.mkdir(parents=True)
    (state / "latest.json").write_text(json.dumps({"traces": 2, "sources": [str(export)],
                                                   "clusters": [{"id": "c1", "trace_ids": ["t002", "t001"]}]}))
    assert (toy / "data/traces.jsonl").read_text() == ""  # not datasets.traces
    dataset = load_dataset(load_config(toy / "autofix.yaml"), "slice:c1")
    assert [c.case_id for c in dataset.cases] == ["t002", "t001"] and dataset.source == export


def test_small_slices_split_into_two_non_empty_parts() -> None:
    for ids in (["a", "b"], ["x1", "x2", "x3"], [f"t{i}" for i in range(5)]):
        target, holdout = split_holdout(ids)
        assert target and holdout and sorted(target + holdout) == sorted(ids)
    assert split_holdout(["only"]) in ((["only"], []), ([], ["only"]))


def test_slice_errors_say_what_to_do(toy: Path) -> None:
    config = load_config(toy / "autofix.yaml")
    with pytest.raises(DatasetError, match="run autofix triage first"):
        load_dataset(config, "slice:anything")
    write_triage(toy, [{"id": "c1", "trace_ids": ["t001", "t777"]}], [trace(1)])
    with pytest.raises(DatasetError, match=r"no cluster 'c9'.*clusters: c1"):
        load_dataset(config, "slice:c9")
    with pytest.raises(DatasetError, match=r"1 trace\(s\) of cluster 'c1' are not in .*t777"):
        load_dataset(config, "slice:c1")
    with pytest.raises(DatasetError, match="slice:<cluster>:holdout"):
        load_dataset(config, "slice:c1:other")
    with pytest.raises(DatasetError, match="unknown dataset 'nope.jsonl'"):
        load_dataset(config, "nope.jsonl")


def test_a_jsonl_file_is_a_dataset(toy: Path, tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(jsonl([{"case_id": "m1", "input": "hello", "expected": {"must_include": ["HELLO"]}}]))
    run = replay(toy, "HEAD", str(path))
    assert run.dataset.kind == "file" and run.summary.metrics["answer_correct"].passed == 1


# ------------------------------------------------------------------------------- the command line


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, "-m", "autofix", "replay", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_cli_json_shape_and_cache_hits(toy: Path) -> None:
    config = str(toy / "autofix.yaml")
    first = cli("-c", config, "--ref", "HEAD", "--dataset", "regression", "--sandbox", "local", "--json")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert {"ref", "commit", "cases", "failed_cases", "metrics", "latency_ms", "cost_usd", "tokens", "tool_calls",
            "cache_hits"} <= set(out)
    assert out["ref"] == "HEAD" and out["commit"] == git(toy, "rev-parse", "HEAD")
    assert out["cases"] == 3 and out["failed_cases"] == 0 and out["cache_hits"] == 0
    assert out["metrics"]["answer_correct"] == {"passed": 2, "applicable": 2, "rate": 1.0}
    assert set(out["latency_ms"]) == {"p50", "p95"} and out["tool_calls"] == 0
    assert Path(out["replay_dir"]).parent == toy / "runs" / "replays"
    assert json.loads((Path(out["replay_dir"]) / "replay.json").read_text()) == out

    second = cli("-c", config, "--ref", "HEAD", "--json", "--limit", "2")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["cache_hits"] == 2

    table = cli("-c", config, "--ref", "HEAD", "--sandbox", "local")
    assert table.returncode == 0, table.stderr
    assert "answer_correct" in table.stdout and "100% (2/2)" in table.stdout and "3/3 from the cache" in table.stdout


def test_cli_errors_exit_non_zero_with_a_clear_message(toy: Path) -> None:
    config = str(toy / "autofix.yaml")
    bad_ref = cli("-c", config, "--ref", "nowhere", "--json")
    assert bad_ref.returncode == 2 and "unknown ref 'nowhere'" in bad_ref.stderr and bad_ref.stdout == ""
    bad_dataset = cli("-c", config, "--dataset", "slice:c1")
    assert bad_dataset.returncode == 2 and "run autofix triage first" in bad_dataset.stderr
    bad_file = cli("-c", config, "--dataset", "missing.jsonl")
    assert bad_file.returncode == 2 and "unknown dataset 'missing.jsonl'" in bad_file.stderr
    bad_sandbox = cli("-c", config, "--sandbox", "vm")
    assert bad_sandbox.returncode == 2 and "unknown sandbox 'vm'" in bad_sandbox.stderr


# ------------------------------------------------------------------------------- the helpdesk, real model


@pytest.fixture(scope="module")
def helpdesk_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled helpdesk (as it is on disk, data included) committed in a repository of its own."""
    root = tmp_path_factory.mktemp("helpdesk") / "helpdesk"
    shutil.copytree(bundled_example().parent, root, ignore=shutil.ignore_patterns("runs", "__pycache__", ".pytest_cache"))
    (root / ".gitignore").write_text("runs/\n")
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "helpdesk"]):
        subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                       check=True, capture_output=True, env=env)
    return root


def test_helpdesk_cases_do_not_depend_on_their_batch(helpdesk_repo) -> None:
    """A ticket one case creates is not seen by the next case of the batch: each result stands alone,
    as the cache (one result per case) and batching (any split) assume. No model call is involved."""
    config = load_config(helpdesk_repo / "autofix.yaml")
    meta = {"user": "farid.aziz", "now": "2026-11-23"}
    cases = [Case(case_id=f"open-{n}", input="Please open a ticket: I can't access the finance share", metadata=meta)
             for n in range(2)] + [Case(case_id="list", input="which tickets did I open in the last 10 days?",
                                        metadata=meta)]
    together = replay_at_ref(config, "HEAD", cases, sandbox=LocalSandbox(warn=False), use_cache=False)
    alone = replay_at_ref(config, "HEAD", cases[2:], sandbox=LocalSandbox(warn=False), use_cache=False)
    first, second, listing = together.results
    assert first.error is None and "INC-" in first.output and first.output == second.output
    assert listing.output == alone.results[0].output and "finance share" not in listing.output


def gateway_calls(config) -> int:
    path = config.state_path / "gateway.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


@pytest.mark.model
@pytest.mark.docker
def test_helpdesk_replays_the_same_in_docker_and_locally_then_from_the_cache(helpdesk_repo, docker_sandbox) -> None:
    config = load_config(helpdesk_repo / "autofix.yaml")
    local = replay_at_ref(config, "HEAD", "regression", limit=10, sandbox=LocalSandbox(warn=False))
    docker = replay_at_ref(config, "HEAD", "regression", limit=10, sandbox=docker_sandbox, use_cache=False)
    assert local.sandbox == "local" and docker.sandbox == "docker"
    assert local.summary.failed_cases == 0, [r.error for r in local.results if r.error]
    assert docker.summary.failed_cases == 0, [r.error for r in docker.results if r.error]
    assert local.summary.tokens > 0
    for a, b in zip(local.results, docker.results):
        assert reproducible_part(a) == reproducible_part(b), a.case_id
    assert local.summary.metrics == docker.summary.metrics

    calls = gateway_calls(config)
    cached = replay_at_ref(config, "HEAD", "regression", limit=10, sandbox=docker_sandbox)
    assert cached.cache_hits == cached.summary.cases == 10
    assert gateway_calls(config) == calls  # the gateway was not asked anything
    assert [reproducible_part(r) for r in cached.results] == [reproducible_part(r) for r in local.results]
    assert cached.summary.tokens == local.summary.tokens  # cost and tokens of a cached case are what it cost


@pytest.mark.model
def test_helpdesk_cli_replays_a_commit_then_answers_it_from_the_cache(helpdesk_repo) -> None:
    config = str(helpdesk_repo / "autofix.yaml")
    first = cli("-c", config, "--ref", "HEAD", "--dataset", "regression", "--limit", "3", "--sandbox", "local",
                "--json", "--no-cache")
    assert first.returncode == 0, first.stderr[-2000:]
    out = json.loads(first.stdout)
    assert out["cases"] == 3 and out["failed_cases"] == 0 and out["tokens"] > 0 and out["cache_hits"] == 0
    assert {"answer_correct", "retrieval_recall", "cites_expected_docs"} <= set(out["metrics"])
    warm = cli("-c", config, "--ref", "main", "--limit", "3", "--json")
    assert warm.returncode == 0, warm.stderr[-2000:]
    # --no-cache neither read nor wrote the cache; this replay ran (in the configured sandbox), the next one hits.
    assert json.loads(warm.stdout)["cache_hits"] in (0, 3)
    hit = cli("-c", config, "--ref", "main", "--limit", "3", "--json")
    assert json.loads(hit.stdout)["cache_hits"] == 3
