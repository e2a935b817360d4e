"""The GEPA optimizer plugin (`optimizers/gepa`, distribution `autofix-gepa`): the plugin contract on
synthetic tasks, its budgets, and one end-to-end run on the helpdesk's prompt cluster with a scripted
reflection model and the embedded model answering the replays."""

from __future__ import annotations

import json
import re
from pathlib import Path

import litellm
import pytest

from autofix.optimize import Budget, find_optimizer
from autofix.optimize.testing import check_optimizer, synthetic_task

from .conftest import make_helpdesk_repo

FIX_ANSWER_FORMAT = "{answer}\n\nSources: {sources}"
"""DEFECTS.md #4 (prompt_no_sources): render the sources under the answer."""


def gepa_factory():
    entry = find_optimizer("gepa")
    assert entry.name == "autofix-gepa/gepa", "the plugin is found through its entry point, namespaced"
    return entry.obj


def fenced(text: str, why: str = "I change the instruction.") -> str:
    """An answer in the form gepa's proposer parses: the new text within ``` fences."""
    return f"{why}\n```\n{text}\n```"


def current_text(prompt: str) -> str:
    """The file's current content, as the reflection prompt quotes it (the first fenced block)."""
    match = re.search(r"```\n(.*?)\n```", prompt, re.DOTALL)
    return match.group(1) if match else ""


# ---- the plugin contract -------------------------------------------------------------------------


def test_it_is_installed_for_prompt_and_routing_clusters():
    entry = find_optimizer("autofix-gepa/gepa")
    assert {c.value for c in entry.metadata["categories"]} == {"prompt", "routing"}
    assert entry.version == 1


def test_it_keeps_the_plugin_contract(tmp_path):
    proposals = check_optimizer(gepa_factory(), tmp_path, category="prompt",
                                answer=fenced("You answer questions: case-0, case-1, case-2."))
    assert len(proposals) == 1
    best = proposals[0]
    assert best.files == {"prompts/system.md": "You answer questions: case-0, case-1, case-2."}
    assert best.train_score == 1.0 and best.base_score == 0.0
    assert best.description.startswith("prompt: ")
    assert best.rationale == "I change the instruction."
    lineage = best.metadata["lineage"]
    assert lineage["parents"] == [0] and lineage["iteration"] == 1
    assert sorted(lineage["minibatch"]) == ["case-0", "case-1", "case-2"]
    assert best.metadata["metric_calls"] == 3


def test_a_model_that_never_helps_gives_no_proposal(tmp_path):
    proposals = check_optimizer(gepa_factory(), tmp_path, category="prompt", answer=fenced("Be helpful."))
    assert proposals == []


def test_an_unparseable_or_empty_answer_is_a_low_score_not_a_crash(tmp_path):
    assert check_optimizer(gepa_factory(), tmp_path / "a", answer="") == []
    assert check_optimizer(gepa_factory(), tmp_path / "b", answer="no fences, just words") == []


@pytest.mark.parametrize("broken", ["Answer {question", "Answer the question.", ""])
def test_a_proposal_that_breaks_the_template_is_not_replayed(tmp_path, broken):
    task, seen = synthetic_task("prompt", tmp_path, budget=Budget(max_metric_calls=30), answer=fenced(broken))
    task.surfaces[0] = task.surfaces[0].model_copy(update={"text": "Answer {question}\n"})
    assert gepa_factory()().propose(task) == []
    assert seen["evaluated_ids"] == ["case-0", "case-1", "case-2"], "only the base was replayed"
    assert seen["completions"] >= 1
    log = (tmp_path / "gepa" / "run_log.txt").read_text()
    assert "replayed nothing new" in json.loads((tmp_path / "gepa" / "autofix_summary.json").read_text())["stopped"]
    assert log.count("is not better than old score") >= 1


def test_no_prompt_files_means_no_proposal(tmp_path):
    task, seen = synthetic_task("prompt", tmp_path, answer=fenced("x"))
    task.surfaces = [s for s in task.surfaces if s.kind != "prompt"]
    logged: list[str] = []
    task.log = logged.append
    assert gepa_factory()().propose(task) == []
    assert seen["completions"] == 0 and any("no prompt files" in m for m in logged)


def test_a_killed_run_resumes_from_its_run_dir(tmp_path):
    answer = fenced("You answer questions: case-0, case-1, case-2.")
    first, _ = synthetic_task("prompt", tmp_path, answer=answer)
    assert gepa_factory()().propose(first)
    again, seen = synthetic_task("prompt", tmp_path, answer=answer)  # same work_dir
    proposals = gepa_factory()().propose(again)
    assert [p.files for p in proposals] == [{"prompts/system.md": "You answer questions: case-0, case-1, case-2."}]
    assert seen["completions"] == 0, "the resumed run found its candidates in gepa's state"
    assert "Loading gepa state" in (tmp_path / "gepa" / "run_log.txt").read_text()


def _helpdesk_like_task(tmp_path):
    """A synthetic task whose base replay looks like a helpdesk search answer: spans, earlier turns."""
    from autofix.optimize import CaseEval, ReplayBatch, SurfaceFile

    task, _ = synthetic_task("prompt", tmp_path)
    task.surfaces = [
        SurfaceFile(path="prompts/answer_format.md", kind="prompt", text="{answer}\n"),
        SurfaceFile(path="prompts/clarify.md", kind="prompt", text="I need a bit more detail about the system.\n"),
        SurfaceFile(path="prompts/system.md", kind="prompt",
                    text="You are the helpdesk assistant.\n\nPolicy excerpts:\n{context}\n"),
    ]
    spans = [
        {"kind": "router", "name": "route", "output": {"action": "search", "tool": None, "reason": "topic words"}},
        {"kind": "retrieval", "name": "bm25.search", "output": [
            {"doc_id": "it-laptop-001", "score": 3.2, "metadata": {"title": "Lost or stolen laptops"}},
            {"doc_id": "it-laptop-001", "score": 2.0, "metadata": {"title": "Lost or stolen laptops"}}]},
        {"kind": "tool", "name": "list_tickets", "input": {"since": "16/11/2026"}, "error": "400 Bad Request: since"},
        {"kind": "llm", "name": "chat.completions",
         "input": [{"role": "system", "content": "You are the helpdesk assistant.\n\nPolicy excerpts:\n[it-laptop-001] ..."}],
         "output": "Report it within 24 hours.", "attributes": {"finish_reason": "length"}},
    ]
    case = CaseEval(case_id="case-0", input="laptop stolen, what now?", output="Report it within 24 hours.",
                    messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
                    spans=spans, score=0.5, feedback="cites_sources: FAIL (names none of the 1 retrieved sources)")
    ok = case.model_copy(update={"case_id": "case-1", "score": 1.0, "feedback": "cites_sources: pass"})
    unmeasured = case.model_copy(update={"case_id": "case-2", "score": None, "feedback": "no measure applied"})
    task.base = ReplayBatch(commit="0" * 40, cases=[case, ok, unmeasured], score=0.75)
    return task


def test_the_reflective_dataset_shows_what_each_case_did_and_how_it_was_judged(tmp_path):
    from autofix_gepa.adapter import PromptFilesAdapter

    task = _helpdesk_like_task(tmp_path)
    adapter = PromptFilesAdapter(task, {s.path: s.text for s in task.files("prompt")})
    candidate = {s.path: s.text for s in task.files("prompt")}
    batch = adapter.evaluate(["case-1", "case-0", "case-2"], candidate, capture_traces=True)
    assert batch.scores == [1.0, 0.5, 0.0], "an unmeasured case scores 0"
    assert batch.num_metric_calls == 0, "the base is known from task.base: nothing replayed"
    dataset = adapter.make_reflective_dataset(candidate, batch, ["prompts/system.md"])
    assert list(dataset) == ["prompts/system.md"]
    first = dataset["prompts/system.md"][0]
    assert first["Request"] == "laptop stolen, what now?"
    assert first["Earlier turns"] == "user: hi\nassistant: Hello!"
    assert first["Answer"] == "Report it within 24 hours."
    happened = first["What happened"]
    assert "router: search (topic words)" in happened
    assert "retrieved: it-laptop-001 (Lost or stolen laptops)" in happened
    assert "tool list_tickets(" in happened and "400 Bad Request" in happened
    assert "cut off at the token limit" in happened
    assert first["Feedback"].startswith("score 0.00: ") or first["Feedback"].startswith("not measured")
    feedbacks = [r["Feedback"] for r in dataset["prompts/system.md"]]
    assert feedbacks[1] == "score 0.50: cites_sources: FAIL (names none of the 1 retrieved sources)"
    assert feedbacks[2] == "score 1.00: cites_sources: pass", "failures first"


def test_only_the_prompt_files_the_cases_went_through_are_evolved(tmp_path):
    from autofix_gepa.optimizer import order_prompt_files

    task = _helpdesk_like_task(tmp_path)
    assert [s.path for s in order_prompt_files(task)] == ["prompts/answer_format.md", "prompts/system.md"], (
        "clarify.md's text is in no model input or answer; answer_format.md is only a field, so it may be used")


# ---- budgets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [3, 5, 9, 16])
def test_the_metric_call_budget_is_never_exceeded(tmp_path, limit):
    versions = iter(range(1000))
    task, seen = synthetic_task("prompt", tmp_path, budget=Budget(max_metric_calls=limit))
    task.complete = lambda messages, **kw: fenced(f"You answer questions, version {next(versions)}.")
    assert gepa_factory()().propose(task) == []
    assert task.spend.metric_calls <= limit
    assert len(seen["evaluated_ids"]) <= limit
    # it stops only when what is left cannot pay for one more iteration (three training cases)
    assert limit - task.spend.metric_calls < 3


def test_the_dollar_budget_stops_the_reflection_model(tmp_path, scripted_model, monkeypatch):
    from autofix.optimize.lm import budgeted_completion

    monkeypatch.setattr(litellm, "model_cost", dict(litellm.model_cost))
    litellm.register_model({"scripted/optimizer": {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5,
                                                   "litellm_provider": "scripted", "mode": "chat"}})
    per_call = 100 * 1e-5 + 50 * 2e-5  # the scripted model reports 100 prompt and 50 completion tokens
    n = iter(range(1000))
    scripted_model.script = lambda messages: fenced(f"You answer questions, version {next(n)}.")
    task, _ = synthetic_task("prompt", tmp_path, budget=Budget(max_metric_calls=10_000, max_usd=0.05))
    task.complete = budgeted_completion("scripted/optimizer", task.spend)
    assert gepa_factory()().propose(task) == []
    assert scripted_model.calls, "the model was asked"
    assert task.spend.usd <= 0.05
    assert len(scripted_model.calls) * per_call <= 0.05
    summary = json.loads((tmp_path / "gepa" / "autofix_summary.json").read_text())
    assert summary["stopped"].startswith("budget: dollar budget"), summary["stopped"]


# ---- end to end on the helpdesk ------------------------------------------------------------------


def _with_optimizer_model(model: str):
    def edit(root: Path) -> None:
        path = root / "autofix.yaml"
        text = path.read_text(encoding="utf-8")
        name = "  name: autofix-local/smollm2-135m-instruct\n"
        assert name in text
        path.write_text(text.replace(name, f"{name}  optimizer: {model}\n"), encoding="utf-8")

    return edit


def _prompt_cluster(root: Path) -> str:
    from autofix.config import load_config

    config = load_config(root / "autofix.yaml")
    latest = json.loads((config.state_path / "triage" / "latest.json").read_text(encoding="utf-8"))
    return next(c["id"] for c in latest["clusters"] if c.get("category") == "prompt")


def fixing_script(messages: list[dict]) -> str:
    """The reflection model a strong model would be on the planted defect: sources under the answer,
    and an instruction to rely on the excerpts only."""
    prompt = messages[-1]["content"]
    if "`prompts/answer_format.md`" in prompt:
        return fenced(FIX_ANSWER_FORMAT, "Answers never name their policy; I render the sources under the answer.")
    if "`prompts/system.md`" in prompt:
        return fenced(current_text(prompt) + "\nRely only on the excerpts above.", "I ask for grounded answers.")
    return fenced(current_text(prompt), "No change.")


@pytest.mark.model
def test_gepa_fixes_the_planted_prompt_defect_end_to_end(tmp_path, scripted_model):
    from autofix.config import load_config
    from autofix.optimize.engine import optimize_cluster
    from autofix.replay.datasets import load_slice
    from autofix.replay.session import replay_at_ref
    from autofix.slices import measure_results, plan_measurement, slice_score

    scripted_model.script = fixing_script
    root = make_helpdesk_repo(tmp_path, edit=_with_optimizer_model("scripted/optimizer"))
    config = load_config(root / "autofix.yaml")
    cluster = _prompt_cluster(root)
    train = load_slice(config, cluster, "target").cases
    events: list[str] = []
    # the base pass over the training cases, then one GEPA iteration: a minibatch, then the rest
    budget = Budget(max_metric_calls=2 * len(train))

    result = optimize_cluster(config, cluster, optimizer="gepa", budget=budget, sandbox_kind="local",
                              on_event=events.append)

    assert result.measures[:2] == ["format_kept", "cites_sources"]
    assert [r.optimizer for r in result.runs] == ["autofix-gepa/gepa"]
    assert result.runs[0].metric_calls <= budget.max_metric_calls
    assert scripted_model.calls, "the reflection model was asked"
    assert result.candidates, f"no candidate; events: {events}"
    best = result.candidates[0]
    assert best.files == ["prompts/answer_format.md"]
    assert set(best.files) <= {p.relative_to(root).as_posix() for p in config.surface_files("prompts")}
    assert "+Sources: {sources}" in best.diff
    assert best.train.base_score is not None and best.train.score is not None
    assert best.train.score > best.train.base_score
    assert best.lineage["lineage"]["parents"] == [0]
    assert "sources" in best.rationale.lower()

    # the committed branch, replayed (the cache answers) and scored by the slice's measures, beats the base
    measure = plan_measurement(config, cluster, "prompt", train)
    scores = {}
    for ref in ("HEAD", best.commit):
        run = replay_at_ref(config, ref, train, sandbox_kind="local")
        assert not {c.case_id for c in train} - run.cached, "all answered from the cache: nothing new ran"
        measured = measure_results(config, measure, train, run.results)
        scores[ref] = slice_score(measured)
        cites = [m.outcomes["cites_sources"].passed for m in measured]
        if ref == best.commit:
            assert all(cites), "every answer now names its sources"
    assert scores[best.commit] > scores["HEAD"]
    assert scores[best.commit] == pytest.approx(best.train.score)
