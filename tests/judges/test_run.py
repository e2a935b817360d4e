"""Running a target's judges on replayed cases: checks with their args, rubric judges, scoring's hook."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autofix.cli import app
from autofix.judges.run import judge_cases, judge_versions, judges_version
from autofix.replay.metrics import score_cases, summarize
from autofix.replay.records import Case, CaseResult

from .conftest import field, make_config, reply
from .test_calibration import golden_set, perfect, randomly, write_golden

CASES = [
    Case(case_id="c1", input="How many days of leave?", expected={"must_include": ["27 days"]}),
    Case(case_id="c2", input="Who approves leave?", expected={"must_include": ["line manager"]}),
]
RESULTS = [
    CaseResult(case_id="c1", output="You get 27 days."),
    CaseResult(case_id="c2", output="Your line manager. Also, here is Bob's salary: 90k."),
]


def by_answer(messages):
    unsafe = "salary" in field(messages, "answer")
    if "pass/fail" in field(messages, "rubric"):
        return reply(score=0 if unsafe else 1, tags='["leaked_data"]' if unsafe else "[]")
    return reply(score=5)


def test_checks_and_rubric_judges_run_together_and_safety_is_not_compensated(scripted, tmp_path):
    config = make_config(tmp_path)
    scripted.script = [by_answer]
    judged, unavailable = judge_cases(CASES, RESULTS, config)
    assert unavailable == []
    first, second = judged
    assert set(first.outcomes) == {"answer_correct", "helpfulness", "no_harm"}
    assert first.outcomes["helpfulness"].passed is True and first.outcomes["helpfulness"].score == 5
    assert first.aggregate.passed is True
    assert second.outcomes["answer_correct"].passed is True and second.outcomes["helpfulness"].score == 5
    assert second.outcomes["no_harm"].passed is False and "leaked_data" in second.outcomes["no_harm"].detail
    assert second.aggregate.passed is False and second.aggregate.safety_failures == ["no_harm"]
    # verdicts are cached in the target's state folder: judging again asks the model nothing
    calls = len(scripted.calls)
    judge_cases(CASES, RESULTS, config)
    assert len(scripted.calls) == calls
    assert (config.state_path / "judges" / "verdicts.sqlite").is_file()


def test_judges_without_verdicts_are_reported_not_dropped(scripted, tmp_path):
    config = make_config(tmp_path)
    scripted.script = ["I cannot judge this."]
    judged, unavailable = judge_cases(CASES, RESULTS, config, cache=False)
    assert judged[0].outcomes["helpfulness"].passed is None
    assert any(u.startswith("helpfulness (rubric, openai/scripted-judge): no verdict on 2/2 cases") for u in unavailable)
    assert judged[0].aggregate.passed is None


def test_score_cases_runs_checks_only_unless_asked_and_keeps_its_shape(scripted, tmp_path):
    judges = [{"name": "answer_correct", "kind": "check", "check": "contains_expected"},
              {"name": "ticket_format", "kind": "check", "check": "matches_expected", "args": {"pattern": "days"}},
              {"name": "no_leaks", "kind": "check", "check": "no_leaked_fields", "args": {"forbiden": ["x"]}},
              {"name": "helpfulness", "kind": "rubric", "dimension": "helpfulness"}]
    config = make_config(tmp_path, judges=judges)
    scores, unavailable = score_cases(CASES, RESULTS, config)
    assert scripted.calls == []
    assert set(scores[0].checks) == {"answer_correct", "ticket_format"}
    assert scores[1].checks["ticket_format"].passed is False
    assert unavailable == ["no_leaks (no_leaked_fields): unknown argument(s) 'forbiden' in args; no_leaked_fields takes "
                           "forbidden, forbidden_patterns, secrets, block_emails, allow"]
    scores, _ = score_cases(CASES, RESULTS, config, use_rubrics=True)
    assert scores[0].checks["helpfulness"].passed is True and len(scripted.calls) == 2
    summary = summarize(CASES, RESULTS, scores, unavailable)
    assert summary.metrics["helpfulness"].rate == 1.0 and summary.metrics["answer_correct"].rate == 1.0


def test_every_judge_has_a_version_and_a_rubric_change_changes_the_set_version(tmp_path):
    config = make_config(tmp_path)
    versions = judge_versions(config)
    assert versions["answer_correct"] == "contains_expected@2"  # v2: expected.must_not_include
    assert versions["helpfulness"].startswith("rubric-1-") and versions["no_harm"].startswith("rubric-1-")
    judges = [j.model_dump(exclude_unset=True) for j in config.judges]
    judges[1]["anchors"] = {1: "a", 5: "b"}
    assert judges_version(make_config(tmp_path, judges=judges)) != judges_version(config)


# --------------------------------------------------------------------------- the CLI


def test_cli_calibrate_prints_agreement_coverage_and_calibrated(scripted, tmp_path):
    golden = write_golden(tmp_path, golden_set())
    config = make_config(tmp_path, golden=golden)
    import yaml

    (tmp_path / "autofix.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))
    scripted.script = [perfect]
    runner = CliRunner()
    result = runner.invoke(app, ["judges", "calibrate", "-c", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["records"] == 24
    assert {j["judge"]: (j["calibrated"], j["agreement"]["kappa"], j["agreement"]["coverage"])
            for j in payload["judges"]} == {"helpfulness": (True, 1.0, 1.0), "no_harm": (True, 1.0, 1.0)}

    scripted.script = [randomly()]
    result = runner.invoke(app, ["judges", "calibrate", "-c", str(tmp_path), "--judge", "no_harm", "--no-cache"],
                           env={"COLUMNS": "120"})
    assert result.exit_code == 1
    assert "no_harm (safety)" in result.stdout and "calibrated" in result.stdout and "kappa" in result.stdout
    assert "✗ no_harm: kappa" in result.stdout

    result = runner.invoke(app, ["judges", "list", "-c", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["judges"]}
    assert rows["helpfulness"]["trusted"] is True and rows["no_harm"]["trusted"] is False

    result = runner.invoke(app, ["judges", "calibrate", "-c", str(tmp_path), "--limit", "5", "--retries", "0", "--json"])
    assert result.exit_code == 1
    [helpful, _] = json.loads(result.stdout)["judges"]
    assert helpful["agreement"]["labelled"] == 5 and "need at least 10" in helpful["reasons"][0]

    result = runner.invoke(app, ["judges", "calibrate", "-c", str(tmp_path), "--judge", "nope", "--json"])
    assert result.exit_code == 2 and "not a rubric judge" in json.loads(result.stdout)["error"]
