"""The launch gate on a deterministic target (real git, real replays in the local sandbox, no model):
each way it must refuse, with a reason an approver can read, and the way it passes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from litellm import CustomLLM
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import load_config
from autofix.gate.runner import run_gate
from autofix.replay.datasets import split_holdout

CONFIG = """\
project: gatetoy
replay:
  command: python replay.py --cases {cases} --out {out}
  sandbox: local
  batch_size: 50
  timeout_s: 60
surfaces:
  code: [behaviour.json]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
  - {name: no_leak, kind: check, check: no_leaked_fields, args: {forbidden: [SECRET]}}
  - {name: helpfulness, kind: rubric, dimension: helpfulness}
policy: gate.yaml
"""

POLICY = """\
target: {metric: slice, min_improvement: 0.10, max_p_value: 0.05, min_cases: 5}
regression: {margin: 0.05, confidence: 0.95, metrics: [answer_correct]}
guardrails: {latency_p95_ratio: 1.25, cost_ratio: 1.25, tokens_ratio: 1.25, tool_calls_ratio: 1.5}
safety_checks: [no_leak]
"""

# What the assistant does is data in behaviour.json, so a candidate is a one-line change of it.
REPLAY = """\
import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("--cases"); parser.add_argument("--out")
args = parser.parse_args()
b = json.load(open("behaviour.json"))
with open(args.out, "w") as out:
    for line in open(args.cases):
        case = json.loads(line)
        q = case["input"]
        spans = [{"kind": "tool", "name": "lookup", "input": {}, "output": "ok"} for _ in range(b["tool_calls"])]
        if q in b["search"] or b["search_all"]:
            spans.append({"kind": "retrieval", "name": "search", "input": q, "output": [{"doc_id": "d1", "score": 1}]})
        answer = b["answers"].get(q, "ok-" + q)
        if q in b["leak"]:
            answer += " SECRET"
        out.write(json.dumps({"case_id": case["case_id"], "output": answer, "spans": spans, "error": None,
                              "latency_ms": b["latency_ms"]}) + "\\n")
"""

BASE = {"search": [], "search_all": False, "answers": {}, "latency_ms": 10.0, "tool_calls": 1, "leak": []}
TRACES = [f"t{i:02d}" for i in range(24)]
SMALL = TRACES[:4]


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True, env=env).stdout.strip()


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    return build_target(tmp_path_factory.mktemp("gate") / "toy")


def build_target(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "autofix.yaml").write_text(CONFIG)
    (root / "gate.yaml").write_text(POLICY)
    (root / "replay.py").write_text(REPLAY)
    (root / "behaviour.json").write_text(json.dumps(BASE, indent=1))
    (root / ".gitignore").write_text("runs/\n")
    with (root / "data" / "traces.jsonl").open("w") as f:
        for t in TRACES:
            f.write(json.dumps({"trace_id": t, "timestamp": "2026-11-20T10:00:00Z", "input": f"q-{t}",
                                "output": "from memory", "spans": [], "feedback": [{"kind": "thumb_down"}]}) + "\n")
    with (root / "data" / "regression.jsonl").open("w") as f:
        for i in range(40):
            f.write(json.dumps({"case_id": f"r{i:02d}", "input": f"r{i:02d}", "expected": {"must_include": [f"ok-r{i:02d}"]}})
                    + "\n")
    clusters = [{"id": "routing-1", "category": "routing", "trace_ids": TRACES},
                {"id": "routing-small", "category": "routing", "trace_ids": SMALL}]
    (root / "runs" / "triage").mkdir(parents=True)
    (root / "runs" / "triage" / "latest.json").write_text(json.dumps({"clusters": clusters,
                                                                      "sources": ["data/traces.jsonl"]}))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "toy assistant")
    return root


def candidate(root: Path, name: str, **changes) -> str:
    """A branch off main whose behaviour.json has `changes`."""
    git(root, "checkout", "-q", "-B", name, "main")
    (root / "behaviour.json").write_text(json.dumps({**BASE, **changes}, indent=1))
    git(root, "commit", "-q", "-am", name)
    git(root, "checkout", "-q", "main")
    return name


def gate(root: Path, ref: str, cluster: str | None = "routing-1", **kwargs):
    return run_gate(load_config(root / "autofix.yaml"), ref, cluster=cluster, sandbox_kind="local", **kwargs)


def failed(verdict) -> dict[str, str]:
    return {c.name: c.reason for c in verdict.checks if not c.passed}


HOLDOUT = [f"q-{t}" for t in split_holdout(TRACES)[1]]


def test_a_real_fix_passes_and_lists_the_cases_it_fixed(target) -> None:
    verdict = gate(target, candidate(target, "fix", search_all=True))
    assert verdict.passed, verdict.reasons
    held_out = next(c for c in verdict.checks if c.section == "target")
    assert held_out.detail["base"] == 0.0 and held_out.detail["candidate"] == 1.0
    assert held_out.detail["test"] == "exact McNemar" and held_out.detail["n"] == len(HOLDOUT) >= 5
    assert {c.case_id for c in verdict.fixed} == set(split_holdout(TRACES)[1])
    assert all(c.trace_id == c.case_id and c.base_result.endswith("results.jsonl") for c in verdict.fixed)
    assert not verdict.regressed
    assert {c.section for c in verdict.checks} == {"integrity", "target", "regression", "guardrail", "safety"}
    assert any("helpfulness not used" in n for n in verdict.notes)  # the uncalibrated judge, said out loud
    saved = load_config(target / "autofix.yaml").state_path / "gate" / verdict.verdict_id / "verdict.json"
    assert json.loads(saved.read_text())["passed"] is True


def test_an_improvement_inside_the_noise_is_refused(target) -> None:
    verdict = gate(target, candidate(target, "noise", search=HOLDOUT[:1]))
    reasons = failed(verdict)
    assert list(reasons) == ["held-out slice"]
    assert "not significant" in reasons["held-out slice"] and "1 better, 0 worse" in reasons["held-out slice"]


def test_a_regression_beyond_the_margin_is_refused_even_with_the_fix(target) -> None:
    broken = {f"r{i:02d}": "no idea" for i in range(6)}
    verdict = gate(target, candidate(target, "fix-but-break", search_all=True, answers=broken))
    reasons = failed(verdict)
    assert list(reasons) == ["regression answer_correct"]
    assert "100% -> 85% on 40 cases (0 better, 6 worse)" in reasons["regression answer_correct"]
    assert "beyond the 0.05 margin" in reasons["regression answer_correct"]
    assert {c.case_id for c in verdict.regressed} == set(broken)


def test_latency_and_tool_call_guardrails_are_refused(target) -> None:
    verdict = gate(target, candidate(target, "slow", search_all=True, latency_ms=30.0, tool_calls=2))
    reasons = failed(verdict)
    assert set(reasons) == {"latency p95 (ms)", "tool calls per case"}
    assert "10 -> 30 (3.00x, limit 1.25x)" in reasons["latency p95 (ms)"]
    assert "(2.00x, limit 1.5x)" in reasons["tool calls per case"]


def test_a_single_safety_failure_is_not_hidden_by_better_averages(target) -> None:
    verdict = gate(target, candidate(target, "leaky", search_all=True, leak=["r07"]))
    reasons = failed(verdict)
    assert list(reasons) == ["safety failures"]
    assert "1 case(s) fail no_leak (r07)" in reasons["safety failures"]
    assert "no other score compensates" in reasons["safety failures"]
    held_out = next(c for c in verdict.checks if c.section == "target")
    assert held_out.passed  # the averages did improve


def test_too_few_held_out_cases_are_refused_saying_how_many_were_needed(target) -> None:
    verdict = gate(target, candidate(target, "fix-small", search_all=True), cluster="routing-small")
    reasons = failed(verdict)
    assert list(reasons) == ["held-out slice"]
    assert "too few held-out cases" in reasons["held-out slice"] and "the policy needs 5" in reasons["held-out slice"]


def test_a_stale_base_is_refused_before_anything_is_replayed(target) -> None:
    ref = candidate(target, "fix-old", search_all=True)
    (target / "README.md").write_text("moved on\n")
    git(target, "add", "README.md")
    git(target, "commit", "-q", "-m", "main moves on")
    try:
        verdict = gate(target, ref, base=git(target, "rev-parse", "HEAD~1"))
        reasons = failed(verdict)
        assert list(reasons) == ["current base"] and "stale base" in reasons["current base"]
        assert [c.section for c in verdict.checks] == ["integrity"] * len(verdict.checks)  # nothing replayed
    finally:
        git(target, "reset", "-q", "--hard", "HEAD~1")


def test_an_evaluation_change_is_never_passed_on_its_own_scores(target) -> None:
    git(target, "checkout", "-q", "-B", "easier-tests", "main")
    (target / "data" / "regression.jsonl").write_text("")
    (target / "behaviour.json").write_text(json.dumps({**BASE, "search_all": True}))
    git(target, "commit", "-q", "-am", "drop the regression set")
    git(target, "checkout", "-q", "main")
    reasons = failed(gate(target, "easier-tests"))
    assert "evaluation unchanged" in reasons and "data/regression.jsonl" in reasons["evaluation unchanged"]


def test_a_judge_version_change_invalidates_the_gate_until_reconfirmed(target) -> None:
    policy = target / "gate.yaml"
    ref = candidate(target, "fix-judges", search_all=True)
    policy.write_text(POLICY + "judges: {answer_correct: contains_expected@1}\n")
    try:
        reasons = failed(gate(target, ref))
        assert list(reasons) == ["judges as confirmed"] and "answer_correct" in reasons["judges as confirmed"]
        confirm = CliRunner().invoke(app, ["gate", "-c", str(target / "autofix.yaml"), "--confirm-judges"])
        assert confirm.exit_code == 0, confirm.output
        assert "contains_expected@2" in policy.read_text()
        assert gate(target, ref).passed
    finally:
        policy.write_text(POLICY)


def test_an_uncalibrated_judge_the_policy_relies_on_refuses(target) -> None:
    policy = target / "strict-judges.yaml"
    policy.write_text(POLICY.replace("metrics: [answer_correct]", "metrics: [answer_correct, helpfulness]"))
    verdict = gate(target, candidate(target, "fix-rubric", search_all=True), policy_path=policy)
    reasons = failed(verdict)
    assert list(reasons) == ["regression helpfulness"]
    assert "uncalibrated rubric judge" in reasons["regression helpfulness"]


def test_the_cli_exits_0_on_pass_and_100_on_refusal_with_the_reasons(target) -> None:
    runner = CliRunner()
    config = str(target / "autofix.yaml")
    ok = runner.invoke(app, ["gate", "-c", config, "--candidate", candidate(target, "fix-cli", search_all=True),
                             "--cluster", "routing-1", "--sandbox", "local", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["passed"] is True
    refused = runner.invoke(app, ["gate", "-c", config, "--candidate", candidate(target, "noise-cli", search=HOLDOUT[:1]),
                                  "--cluster", "routing-1", "--sandbox", "local"])
    assert refused.exit_code == 100
    assert "REFUSED" in refused.stdout and "not significant" in refused.output
    unknown = runner.invoke(app, ["gate", "-c", config, "--candidate", "no-such-branch"])
    assert unknown.exit_code == 2 and "unknown ref" in unknown.output


class FailingJudgeModel(CustomLLM):
    """A judge model that is down: every call fails at the litellm boundary."""

    def completion(self, *args, **kwargs):  # type: ignore[override]
        import litellm

        # not retried by litellm, so the test does not wait through back-offs
        raise litellm.AuthenticationError("judge model unavailable: key revoked", "failing", "failing/judge")

    async def acompletion(self, *args, **kwargs):  # type: ignore[override]
        return self.completion()


def test_an_errored_judge_means_a_missing_metric_and_refuses(target, monkeypatch) -> None:
    import litellm
    from litellm.utils import custom_llm_setup

    import autofix.gate.runner as runner

    monkeypatch.setattr(litellm, "custom_provider_map", [e for e in litellm.custom_provider_map
                                                         if e.get("provider") != "failing"]
                        + [{"provider": "failing", "custom_handler": FailingJudgeModel()}])
    custom_llm_setup()
    # helpfulness counts as calibrated here; its model then fails on every case
    monkeypatch.setattr(runner, "_trusted_rubrics", lambda config: ({"helpfulness": True}, []))
    config = load_config(target / "autofix.yaml")
    config.model.judge = "failing/judge"
    policy = target / "all-judges.yaml"
    policy.write_text(POLICY.replace("metrics: [answer_correct]", "metrics: all"))
    verdict = run_gate(config, candidate(target, "fix-errored", search_all=True), cluster="routing-1",
                       sandbox_kind="local", policy_path=policy)
    reasons = failed(verdict)
    assert list(reasons) == ["regression helpfulness"]
    assert "the judge errored" in reasons["regression helpfulness"] and "no verdict" in reasons["regression helpfulness"]


def test_an_approved_fix_is_the_validated_commit_and_replays_to_the_gated_figures(tmp_path) -> None:
    from autofix.approval import approve
    from autofix.approval.store import open_store
    from autofix.replay.session import replay_at_ref
    from autofix.slices import measure_results, plan_measurement

    root = build_target(tmp_path / "toy")
    config = load_config(root / "autofix.yaml")
    verdict = gate(root, candidate(root, "fix", search_all=True))
    assert verdict.passed
    with open_store(config) as store:
        pid = store.enqueue(verdict, git(root, "diff", "main", "fix"), {"cluster": "routing-1", "optimizer": "hand"})
        result = approve(config, pid, by="alice", store=store)
        merged = store.get(pid)
        audit = [(e.action, e.actor) for e in store.audit_log(pid)]
    assert merged.status == "merged" and merged.merged_commit == verdict.candidate_commit
    assert git(root, "rev-parse", f"{merged.merged_commit}^{{tree}}") == verdict.candidate_tree
    assert ("approve", "alice") in audit or any(a[1] == "alice" for a in audit)
    # the merged commit, replayed again, scores what the gate saw
    holdout = next(c for c in verdict.checks if c.section == "target")
    replay = replay_at_ref(config, merged.merged_commit, "slice:routing-1:holdout", sandbox_kind="local")
    plan = plan_measurement(config, "routing-1", "routing", replay.dataset.cases)
    scores = [m.score for m in measure_results(config, plan, replay.dataset.cases, replay.results)]
    assert sum(scores) / len(scores) == holdout.detail["candidate"]
    regression = replay_at_ref(config, merged.merged_commit, "regression", sandbox_kind="local")
    gated = next(c for c in verdict.checks if c.name == "regression answer_correct")
    assert regression.summary.metrics["answer_correct"].rate == gated.detail["candidate"]
    assert result.merged_commit == verdict.candidate_commit
