"""The optimize engine on the real helpdesk: what a cluster is measured by, the refusal of a cluster
nothing measures, the training part only, budgets, and candidates committed on their own branches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import load_config
from autofix.optimize import Budget, BudgetExhausted, Proposal, optimizer, optimizer_registry
from autofix.optimize.engine import optimize_cluster
from autofix.replay.datasets import split_holdout

from .conftest import git, make_helpdesk_repo


def clusters(root: Path) -> list[dict]:
    config = load_config(root / "autofix.yaml")
    return json.loads((config.state_path / "triage" / "latest.json").read_text())["clusters"]


@pytest.fixture
def isolated_registry(monkeypatch):
    """Optimizers a test registers vanish after it."""
    optimizer_registry.load_plugins()
    monkeypatch.setattr(optimizer_registry, "_entries", dict(optimizer_registry._entries))
    return optimizer_registry


def _without_labels(root: Path) -> None:
    text = (root / "autofix.yaml").read_text()
    (root / "autofix.yaml").write_text("\n".join(l for l in text.splitlines() if "labels:" not in l) + "\n")


def test_a_cluster_nothing_measures_is_refused_with_an_evaluation_finding(tmp_path, isolated_registry) -> None:
    root = make_helpdesk_repo(tmp_path, edit=_without_labels)
    called = []

    @optimizer("never_called", categories=["retrieval"])
    class NeverCalled:
        def propose(self, task):
            called.append(task)
            return []

    retrieval = next(c for c in clusters(root) if c["category"] == "retrieval")
    result = optimize_cluster(load_config(root / "autofix.yaml"), retrieval["id"], optimizer="never_called")
    assert not called and not result.candidates
    assert result.finding is not None and result.finding.category.value == "evaluation"
    assert result.finding.subject == f"cluster:{retrieval['id']}"
    assert "autofix label" in result.finding.rationale and "slices.checks.retrieval" in result.finding.rationale
    assert "autofix/" not in git(root, "branch", "--list")

    cli = CliRunner().invoke(app, ["optimize", "-c", str(root / "autofix.yaml"), "--cluster", retrieval["id"],
                                   "--optimizer", "never_called", "--json"])
    assert cli.exit_code == 3, cli.output
    assert json.loads(cli.stdout)["finding"]["category"] == "evaluation"


def test_unknown_optimizer_and_one_for_another_category_are_input_errors(tmp_path, isolated_registry) -> None:
    root = make_helpdesk_repo(tmp_path)

    @optimizer("prompt_only", categories=["prompt"])
    class PromptOnly:
        def propose(self, task):
            return []

    retrieval = next(c for c in clusters(root) if c["category"] == "retrieval")
    runner = CliRunner()
    wrong = runner.invoke(app, ["optimize", "-c", str(root / "autofix.yaml"), "--cluster", retrieval["id"],
                                "--optimizer", "prompt_only"])
    assert wrong.exit_code == 2 and "serves prompt, not retrieval" in wrong.output
    missing = runner.invoke(app, ["optimize", "-c", str(root / "autofix.yaml"), "--cluster", retrieval["id"],
                                  "--optimizer", "no_such_thing"])
    assert missing.exit_code == 2 and "no optimizer named 'no_such_thing'" in missing.output
    gone = runner.invoke(app, ["optimize", "-c", str(root / "autofix.yaml"), "--cluster", "nope"])
    assert gone.exit_code == 2 and "no cluster 'nope'" in gone.output


@pytest.mark.model
def test_an_optimizer_sees_only_the_training_part_and_never_exceeds_its_budget(tmp_path, isolated_registry) -> None:
    """One real run (embedded model, local sandbox): the task holds the training part of the split, a
    held-out case cannot be evaluated, the metric budget stops the optimizer before it is exceeded,
    and its proposal becomes a commit on autofix/<run>/<cluster>/1 that changes one surface file."""
    root = make_helpdesk_repo(tmp_path)
    prompt = next(c for c in clusters(root) if c["category"] == "prompt")
    seen: dict = {}

    @optimizer("probe", categories=["prompt"])
    class Probe:
        def propose(self, task):
            seen["train"] = [c.case_id for c in task.train]
            seen["base_calls"] = task.spend.metric_calls
            _, holdout = split_holdout([str(t) for t in prompt["trace_ids"]])
            with pytest.raises(ValueError, match="not training cases"):
                task.evaluate({}, case_ids=holdout[:1])
            path = task.files("prompt")[0]
            n = 0
            try:
                while True:
                    n += 1
                    task.evaluate({path.path: path.text + f"\nAlways name the policy you used ({n}).\n"})
            except BudgetExhausted as exc:
                seen["stopped"] = str(exc)
            return [Proposal(files={path.path: path.text + "\nAlways name the policy you used.\n"},
                             description="prompt: ask for the policy name")]

    budget = 2 * len(split_holdout([str(t) for t in prompt["trace_ids"]])[0]) + 1
    config = load_config(root / "autofix.yaml")
    result = optimize_cluster(config, prompt["id"], optimizer="probe", budget=Budget(max_metric_calls=budget),
                              sandbox_kind="local")
    target, holdout = split_holdout([str(t) for t in prompt["trace_ids"]])
    assert seen["train"] == target and not set(seen["train"]) & set(holdout)
    assert "metric-call budget" in seen["stopped"]
    assert result.runs[0].metric_calls <= budget
    assert result.measures and result.base_score is not None
    [candidate] = result.candidates
    assert candidate.branch == f"autofix/{result.run_id}/{prompt['id']}/1"
    assert candidate.files == ["prompts/" + Path(candidate.files[0]).name]
    assert git(root, "rev-parse", candidate.branch).strip() == candidate.commit
    assert "+Always name the policy you used." in candidate.diff
