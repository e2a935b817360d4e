"""Triage on inputs as they come: declared score scales and their warnings, traces without timestamps, a folder
of exports as `datasets.traces`, and `autofix triage` failing when it reads nothing. The traces are a
code-review bot's (1-10 judge scores, a lower-is-better toxicity score), not the helpdesk's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import ConfigError, load_config
from autofix.traces import Trace
from autofix.triage import run_triage
from autofix.triage.detection import DetectionSettings, OutOfScaleScores, detect
from autofix.triage.pipeline import triage_traces

runner = CliRunner()

CONFIG = """\
project: review-bot
replay:
  command: python -m bot.replay --cases {cases} --out {out}
  sandbox: local
surfaces:
  prompts: [prompts/*.md]
datasets:
  traces: %(traces)s
  regression: data/regression.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
  - {name: clarity, kind: rubric, dimension: clarity, scale: [1, 4], threshold: 3}
triage:
  llm_classifier: false
%(triage)s"""


def make_target(tmp_path: Path, *, traces: str = "data/traces.jsonl", triage: str = "") -> Path:
    files = {
        "autofix.yaml": CONFIG % {"traces": traces, "triage": triage},
        "prompts/review.md": "Review the diff.\n",
        "data/regression.jsonl": '{"case_id": "c1", "input": "review PR 1"}\n',
    }
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    return tmp_path


def review(tid: str, scores: list[dict] | None = None, *, session: str | None = None, text: str | None = None,
           ts: object = "2026-03-06T08:00:00Z", **over) -> dict:
    """A code-review bot's trace: fetch the diff (tool), then one llm call; judged by evaluators."""
    t = {
        "trace_id": tid,
        "session_id": session,
        "input": text or f"Review pull request {tid}",
        "output": "Looks good, one nit on line 12.",
        "spans": [
            {"kind": "tool", "name": "fetch_diff", "input": {"pr": tid}, "output": "diff --git ...", "start_ms": 0, "end_ms": 40},
            {"kind": "llm", "name": "reviewer", "input": "diff", "output": "Looks good", "start_ms": 40, "end_ms": 900},
        ],
        "scores": scores or [],
        "metadata": {"task_type": "code_review"},
    }
    if ts is not None:
        t["timestamp"] = ts
    t.update(over)
    return t


def judged(trace: dict, settings: DetectionSettings):  # noqa: ANN201
    return detect(Trace.model_validate(trace), settings)


# --------------------------------------------------------------------------- score scales, detection


def test_a_declared_scale_reads_a_1_to_10_judge() -> None:
    s = DetectionSettings(score_scales={"correctness": (1, 10, 7, True)})
    low = judged(review("a", [{"name": "correctness", "value": 4}]), s)
    assert [sig[2] for sig in low.signals] == ["score correctness=4 is under its pass mark 7"]
    assert low.signals[0][4] == 0.75  # halfway between the mark and the bottom of the scale
    high = judged(review("b", [{"name": "correctness", "value": 9}]), s)
    assert high.signals == [] and high.passing_scores == [("correctness", 9.0, pytest.approx(2 / 3))]


def test_lower_is_better_fails_over_the_mark_and_on_a_true_boolean() -> None:
    s = DetectionSettings(score_scales={"toxicity": (0, 1, 0.2, False), "leaked_secret": (0, 1, 0.5, False)})
    bad = judged(review("a", [{"name": "toxicity", "value": 0.6}]), s)
    assert bad.signals[0][2] == "score toxicity=0.6 is over its pass mark 0.2 (lower is better)"
    assert judged(review("b", [{"name": "toxicity", "value": 0.05}]), s).signals == []
    assert judged(review("c", [{"name": "leaked_secret", "value": True}]), s).signals[0][2] == "score leaked_secret is true"
    assert judged(review("d", [{"name": "leaked_secret", "value": False}]), s).signals == []


def test_an_undeclared_score_off_the_default_scale_is_counted_not_read() -> None:
    s = DetectionSettings()
    det = judged(review("a", [{"name": "faithfulness", "value": 5}, {"name": "relevance", "value": 0.2}]), s)
    assert [sig[1] for sig in det.signals] == ["low_score"] and "relevance" in det.signals[0][2]
    assert det.out_of_scale == [("faithfulness", 5.0)]


def test_a_rubric_judges_scale_applies_to_scores_named_after_it() -> None:
    s = DetectionSettings(judge_scales={"clarity": (1, 4, 3)})
    assert judged(review("a", [{"name": "clarity", "value": 2}]), s).signals[0][2] == "score clarity=2 is under its pass mark 3"
    assert judged(review("b", [{"name": "clarity", "value": 4}]), s).signals == []
    assert judged(review("c", [{"name": "clarity", "value": 7}]), s).out_of_scale == [("clarity", 7.0)]


def test_out_of_scale_warnings_are_once_per_name_and_say_what_to_declare() -> None:
    s = DetectionSettings(judge_scales={"clarity": (1, 4, 3)}, score_scales={"correctness": (1, 10, 7, True)})
    seen = OutOfScaleScores()
    for name, value in [("faithfulness", 5), ("faithfulness", 3), ("faithfulness", 4), ("clarity", 0),
                        ("correctness", 11), ("correctness", 0)]:
        seen.add(name, float(value))
    other = OutOfScaleScores()
    other.add("faithfulness", 2.0)
    seen.merge(other)
    assert seen.warnings(s) == [
        "score 'clarity' has values down to 0 (1 score), outside the scale [1, 4] of the rubric judge 'clarity', so "
        "it was not read: declare triage.scores.clarity.range in autofix.yaml (e.g. {range: [low, high], pass: <mark>})",
        "score 'correctness' has values from 0 to 11 (2 scores), outside its declared scale [1, 10] "
        "(triage.scores.correctness.range), so they were not read: fix triage.scores.correctness.range in autofix.yaml, "
        "or the scorer",
        "score 'faithfulness' has values up to 5 (4 scores), outside the default scale [0, 1], so they were not read: "
        "declare triage.scores.faithfulness.range in autofix.yaml (e.g. {range: [low, high], pass: <mark>})",
    ]


def test_triage_traces_reports_the_warning_once_and_the_scores_become_readable_once_declared() -> None:
    traces = [Trace.model_validate(review(f"r{i}", [{"name": "faithfulness", "value": v}])) for i, v in enumerate([1.5, 2, 5, 4])]
    report = triage_traces(traces, DetectionSettings())
    assert report.failures == 0
    assert len(report.warnings) == 1 and report.warnings[0].startswith("score 'faithfulness' has values up to 5 (4 scores)")
    declared = triage_traces(traces, DetectionSettings(score_scales={"faithfulness": (1, 5, 3, True)}))
    assert declared.warnings == [] and declared.failures == 2


# --------------------------------------------------------------------------- score scales, configuration


def test_triage_scores_in_autofix_yaml(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path, triage="""\
  scores:
    correctness: {range: [1, 10], pass: 7}
    toxicity: {pass: 0.2, higher_is_better: false}
    style: {range: [0, 100]}
""")
    write_jsonl(root / "data/traces.jsonl", [])
    cfg = load_config(root)
    s = DetectionSettings.from_config(cfg)
    assert s.score_mark("correctness")[:4] == (1, 10, 7, True)
    assert s.score_mark("toxicity")[:4] == (0, 1, 0.2, False)
    assert s.score_mark("style")[:4] == (0, 100, 50, True)  # pass defaults to the middle of the range
    assert s.score_mark("clarity")[:4] == (1, 4, 3, True) and s.score_mark("clarity").origin == "judge"
    assert s.score_mark("anything")[:4] == (0, 1, 0.5, True) and s.notes == []


def test_the_old_pass_mark_mapping_still_works_with_a_deprecation_warning(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path, triage="""\
  thresholds:
    scores: {relevance: 0.7, clarity: 2, bleu: 30}
""")
    write_jsonl(root / "data/traces.jsonl", [review("a", [{"name": "relevance", "value": 0.6}, {"name": "clarity", "value": 2}])])
    s = DetectionSettings.from_config(load_config(root))
    assert s.score_mark("relevance")[:3] == (0, 1, 0.7)
    assert s.score_mark("clarity")[:3] == (1, 4, 2)  # on the rubric judge's scale
    assert s.score_mark("bleu")[:3] == (0, 60, 30)  # a mark off [0, 1] keeps the old guess, and says so
    assert s.notes[0].startswith("triage.thresholds.scores is deprecated (it still works): write the pass marks as "
                                 "triage.scores: {relevance: {pass: 0.7}, clarity: {pass: 2}, bleu: {pass: 30}}")
    assert "declare triage.scores.bleu: {range: [low, high], pass: 30}" in s.notes[1]
    report = run_triage(load_config(root), write=False)
    assert report.failures == 1 and report.warnings == s.notes


@pytest.mark.parametrize(
    ("triage", "where", "message"),
    [
        ("  scores:\n    correctness: {range: [1, 10], pass: 11}\n", "triage.scores.correctness", "pass mark 11 is outside the range [1, 10]"),
        ("  scores:\n    correctness: {range: [10, 1]}\n", "triage.scores.correctness.range", "range [10, 1] must go from low to high"),
        ("  scores:\n    correctness: {range: [1, 10], passes: 3}\n", "triage.scores.correctness", "passes"),
        ("  scores:\n    relevance: {pass: 0.6}\n  thresholds:\n    scores: {relevance: 0.7}\n", "triage.thresholds.scores.relevance",
         "given twice"),
    ],
)
def test_bad_score_declarations_name_the_key(tmp_path: Path, triage: str, where: str, message: str, write_jsonl) -> None:
    root = make_target(tmp_path, triage=triage)
    write_jsonl(root / "data/traces.jsonl", [])
    with pytest.raises(ConfigError) as err:
        load_config(root)
    text = str(err.value)
    assert where in text and message in text


# --------------------------------------------------------------------------- the triage run and the CLI


def test_the_cli_shows_the_scale_warning_and_json_carries_it(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path)
    write_jsonl(root / "data/traces.jsonl", [review(f"r{i}", [{"name": "faithfulness", "value": v}])
                                             for i, v in enumerate([1, 5, 0.2])])
    result = runner.invoke(app, ["triage", "-c", str(root)])
    assert result.exit_code == 0, result.output
    assert "warning: score 'faithfulness' has values up to 5 (1 score), outside the default scale [0, 1]" in result.output
    assert "declare triage.scores.faithfulness.range" in result.output
    doc = json.loads(runner.invoke(app, ["triage", "-c", str(root), "--json"]).stdout)
    assert doc["failures"] == 1 and len(doc["warnings"]) == 1
    latest = json.loads((root / "runs/triage/latest.json").read_text())
    assert latest["warnings"] == doc["warnings"]


def test_traces_without_timestamps_are_triaged_in_file_order(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path)
    rows = [
        review("u1", session="dev-7", text="Review PR 88 for race conditions in the cache", ts=None),
        review("other", session="dev-8", text="Summarise PR 90", ts=None),
        review("u2", session="dev-7", text="Review PR 88 again for race conditions in the cache layer", ts=None),
        review("dated", session="dev-9", ts=1772784000),
    ]
    write_jsonl(root / "data/traces.jsonl", rows)
    report = run_triage(load_config(root), write=False)
    assert report.traces == 4 and report.quarantined == 0
    assert report.failures == 1
    failure, diagnosis, _ = next(report.failure_list())
    assert failure.trace_id == "u1" and failure.timestamp is None
    assert failure.signals[0].name == "rephrase" and "next (in file order: no timestamps)" in failure.signals[0].detail
    assert report.warnings == ["3 traces have no timestamp: rephrases within their sessions were found in file order"]


def test_traces_without_timestamps_read_in_parallel_give_the_same_result(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path)
    rows = []
    for k in range(40):
        rows.append(review(f"a{k}", [{"name": "faithfulness", "value": 4}], session=f"s{k}", text=f"Review PR {k} for leaks", ts=None))
        rows.append(review(f"b{k}", session=f"s{k}", text=f"Review PR {k} again for leaks please", ts=None))
    write_jsonl(root / "data/traces.jsonl", rows)
    cfg = load_config(root)
    one = run_triage(cfg, write=False, workers=1)
    two = run_triage(cfg, write=False, workers=2, parallel_min_bytes=1)
    assert two.timings_s.get("workers") == 2.0
    assert (one.traces, one.failures) == (two.traces, two.failures) == (80, 40)
    assert sorted(f.trace_id for f, _, _ in one.failure_list()) == sorted(f.trace_id for f, _, _ in two.failure_list())
    assert one.warnings == two.warnings
    assert one.warnings[0].startswith("score 'faithfulness' has values up to 4 (40 scores)")


def test_a_folder_as_datasets_traces(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path, traces="exports")
    write_jsonl(root / "exports/day1.jsonl", [review("d1", [{"name": "helpful", "value": 0.1}])])
    write_jsonl(root / "exports/day2/part-0.jsonl", ['{"trace_id": "broken"', review("d2")])
    cfg = load_config(root)
    assert cfg.dataset_path("traces") == (root / "exports").resolve()
    result = runner.invoke(app, ["triage", "-c", str(root), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["traces"], doc["failures"], doc["quarantined"]) == (2, 1, 1)
    [bad] = [json.loads(line) for line in Path(doc["quarantine"]).read_text().splitlines()]
    assert (Path(bad["file"]).relative_to(root / "exports").as_posix(), bad["line"]) == ("day2/part-0.jsonl", 1)


def test_a_missing_traces_folder_is_a_config_error(tmp_path: Path) -> None:
    root = make_target(tmp_path, traces="exports")
    with pytest.raises(ConfigError, match="datasets.traces: not found: exports"):
        load_config(root)


def test_triage_fails_when_every_record_is_quarantined(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path)
    write_jsonl(root / "data/traces.jsonl", [review("a", spans="none"), review("b", scores=[{"value": 1}]), "{oops"])
    result = runner.invoke(app, ["triage", "-c", str(root)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    qfile = next((root / "runs/triage").glob("2*/quarantine.jsonl"))
    assert "error: no trace could be read: 3 records in 1 file, all 3 quarantined (schema 2, invalid_json 1)" in out
    assert str(qfile) in out.replace(" ", "") or str(qfile) in result.output.replace("\n", "")
    assert "failures: 0" not in out


def test_triage_fails_on_an_empty_folder_or_file_but_not_when_since_left_everything_out(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path, traces="exports")
    (root / "exports").mkdir()
    empty = runner.invoke(app, ["triage", "-c", str(root), "--json"])
    assert empty.exit_code == 1
    assert json.loads(empty.stdout)["error"].startswith("no trace file in ")

    write_jsonl(root / "exports/day1.jsonl", [])
    blank = runner.invoke(app, ["triage", "-c", str(root), "--json"])
    assert blank.exit_code == 1 and "holds no record" in json.loads(blank.stdout)["error"]

    write_jsonl(root / "exports/day1.jsonl", [review("old", ts="2020-01-01T00:00:00Z")])
    later = runner.invoke(app, ["triage", "-c", str(root), "--json", "--since", "2026-01-01"])
    assert later.exit_code == 0 and json.loads(later.stdout)["traces"] == 0


def test_config_validate_summarises_a_traces_folder(tmp_path: Path, write_jsonl) -> None:
    root = make_target(tmp_path, traces="exports")
    write_jsonl(root / "exports/a.jsonl", [review("a"), review("b")])
    write_jsonl(root / "exports/more/b.jsonl", [review("c")])
    result = runner.invoke(app, ["config", "validate", "-c", str(root / "autofix.yaml")])
    assert result.exit_code == 0, result.output
    assert "traces: exports (2 files, 3 lines)" in result.output


def test_slices_of_a_folder_of_undated_traces_replay_without_a_clock(tmp_path: Path, write_jsonl) -> None:
    from autofix.replay.datasets import load_dataset, trace_to_case

    root = make_target(tmp_path, traces="exports")
    write_jsonl(root / "exports/day1.jsonl", [review("u1", [{"name": "helpful", "value": 0.1}], ts=None)])
    write_jsonl(root / "exports/day2.jsonl", [review("d1", [{"name": "helpful", "value": 0.2}], ts=1772784000)])
    cfg = load_config(root)
    report = run_triage(cfg)
    [cluster] = report.clusters
    cases = {c.case_id: c for c in load_dataset(cfg, f"slice:{cluster.id}").cases}
    assert set(cases) == {"u1", "d1"}
    assert "now" not in cases["u1"].metadata and cases["d1"].metadata["now"] == "2026-03-06T08:00:00+00:00"
    assert trace_to_case(Trace.model_validate(review("x", ts=None))).metadata == {"task_type": "code_review"}
