"""Calibrating rubric judges on a golden set: the agreement maths, the decision, persistence, trust, and
optimizing the judge's few-shot demos against the labels (scripted model at the litellm boundary)."""

from __future__ import annotations

import json
import random
import re

import pytest

from autofix.judges.calibration import (
    CalibrationThresholds,
    GoldenError,
    calibrate,
    calibration_path,
    cohen_kappa,
    judge_trust,
    load_calibration,
    load_golden,
    program_path,
    spearman,
)

from .conftest import field, make_config, reply

# --------------------------------------------------------------------------- the maths


def test_cohen_kappa_matches_the_textbook_values():
    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    # Wikipedia's example: 50 items, 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    sklearn = pytest.importorskip("sklearn.metrics")
    assert cohen_kappa(a, b) == pytest.approx(sklearn.cohen_kappa_score(a, b))
    # both raters always say the same one thing: kappa is undefined, not 1
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None
    assert cohen_kappa([], []) is None


def test_spearman_uses_average_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    scipy = pytest.importorskip("scipy.stats")
    x, y = [1, 2, 2, 3, 5, 4, 1], [2, 2, 3, 3, 5, 5, 1]
    assert spearman(x, y) == pytest.approx(scipy.spearmanr(x, y).statistic)
    assert spearman([3, 3, 3], [1, 2, 3]) is None


# --------------------------------------------------------------------------- a synthetic golden set


def golden_set(n: int = 24, seed: int = 1) -> list[dict]:
    """Labelled records whose answer carries its true quality ("quality=4"), so a scripted judge can be perfect."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        quality = [1, 2, 3, 4, 5][i % 5]
        safe = i % 4 != 0
        records.append({
            "case_id": f"g-{i:03d}", "input": f"question {i}", "expected": {"answer": "27 days"},
            "output": f"answer {i} quality={quality} safe={int(safe)} {rng.random():.3f}",
            "evidence": {"passages": [{"doc_id": "hr-leave-001", "text": "27 days of leave"}]},
            "labels": {"helpfulness": quality, "safety": "pass" if safe else "fail"},
        })
    return records


def write_golden(tmp_path, records) -> str:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "data" / "judge_golden.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return "data/judge_golden.jsonl"


def perfect(messages):
    answer = field(messages, "answer")
    if "pass/fail" in field(messages, "rubric"):
        return reply(score=re.search(r"safe=(\d)", answer).group(1))
    return reply(score=re.search(r"quality=(\d)", answer).group(1))


def randomly(seed=7):
    rng = random.Random(seed)

    def answer(messages):
        return reply(score=rng.randint(0, 1) if "pass/fail" in field(messages, "rubric") else rng.randint(1, 5))
    return answer


def test_a_perfect_judge_has_kappa_one_and_is_calibrated(scripted, tmp_path):
    config = make_config(tmp_path, golden=write_golden(tmp_path, golden_set()))
    scripted.script = [perfect]
    results = {r.judge: r for r in calibrate(config)}
    helpful, safety = results["helpfulness"], results["no_harm"]
    assert helpful.kind == "scale" and safety.kind == "pass_fail"
    for r in (helpful, safety):
        assert r.agreement.kappa == 1.0 and r.agreement.coverage == 1.0 and r.agreement.accuracy == 1.0
        assert r.calibrated and r.reasons == []
    assert helpful.agreement.exact == 1.0 and helpful.agreement.within_one == 1.0
    assert helpful.agreement.spearman == pytest.approx(1.0)
    assert len(scripted.calls) == 48


def test_a_random_judge_has_low_kappa_and_is_not_calibrated(scripted, tmp_path):
    config = make_config(tmp_path, golden=write_golden(tmp_path, golden_set(60)))
    scripted.script = [randomly()]
    for r in calibrate(config, use_cache=False):
        assert abs(r.agreement.kappa) < 0.3, r.agreement
        assert not r.calibrated and any("kappa" in reason for reason in r.reasons)


def test_a_judge_that_gives_few_verdicts_fails_on_coverage(scripted, tmp_path):
    config = make_config(tmp_path, golden=write_golden(tmp_path, golden_set()))
    def half(messages):  # every other case never gets a valid answer, retries or not
        return perfect(messages) if int(field(messages, "answer").split()[1]) % 2 else "I think it is good."
    scripted.script = [half]
    [r] = calibrate(config, ["helpfulness"])
    assert r.agreement.coverage < 0.9 and not r.calibrated
    assert any("coverage" in reason for reason in r.reasons)
    assert any(c.status == "no verdict" and c.error for c in r.cases)


def test_too_few_labels_calibrate_nothing(scripted, tmp_path):
    config = make_config(tmp_path, golden=write_golden(tmp_path, golden_set(6)))
    scripted.script = [perfect]
    [r] = calibrate(config, ["helpfulness"])
    assert not r.calibrated and "need at least 10" in r.reasons[0]
    [r] = calibrate(config, ["helpfulness"], thresholds=CalibrationThresholds(min_labels=5))
    assert r.calibrated


def test_records_without_a_label_for_a_judge_are_left_out_and_bad_labels_named(scripted, tmp_path):
    records = golden_set(12)
    for r in records[:4]:
        del r["labels"]["safety"]
    config = make_config(tmp_path, golden=write_golden(tmp_path, records))
    scripted.script = [perfect]
    [r] = calibrate(config, ["no_harm"], thresholds=CalibrationThresholds(min_labels=5))
    assert r.agreement.labelled == 8
    records[5]["labels"]["helpfulness"] = 9
    write_golden(tmp_path, records)
    with pytest.raises(GoldenError, match=r"g-005.*not on its scale 1-5"):
        calibrate(config, ["helpfulness"])


def test_a_broken_golden_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text('{"case_id": "a", "input": "q", "output": "x", "labels": {}}\n{not json\n', encoding="utf-8")
    with pytest.raises(GoldenError, match=r"golden.jsonl:2: not a golden record"):
        load_golden(path)


def test_results_are_saved_and_the_gate_trusts_only_the_calibrated_unchanged_judge(scripted, tmp_path):
    golden = write_golden(tmp_path, golden_set())
    config = make_config(tmp_path, golden=golden)
    assert judge_trust(config, "helpfulness")[0] is False  # never calibrated
    scripted.script = [perfect]
    calibrate(config, ["helpfulness"])
    scripted.script = [randomly()]
    calibrate(config, ["no_harm"], use_cache=False)
    stored = load_calibration(config)
    assert set(stored) == {"helpfulness", "no_harm"} and calibration_path(config).is_file()
    assert judge_trust(config, "helpfulness") == (True, judge_trust(config, "helpfulness")[1])
    trusted, why = judge_trust(config, "no_harm")
    assert not trusted and "not calibrated" in why
    # the same judge with other anchors is another judge: its old calibration does not count
    judges = [j.model_dump(exclude_unset=True) for j in config.judges]
    judges[1]["anchors"] = {1: "Useless.", 5: "Perfect."}
    changed = make_config(tmp_path, judges=judges, golden=golden)
    trusted, why = judge_trust(changed, "helpfulness")
    assert not trusted and "changed since it was calibrated" in why
    assert judge_trust(config, "answer_correct")[0] is False


def test_unknown_judge_names_are_refused(tmp_path):
    config = make_config(tmp_path, golden=write_golden(tmp_path, golden_set(3)))
    with pytest.raises(ValueError, match="not a rubric judge.*helpfulness, no_harm"):
        calibrate(config, ["answer_correct"])


# --------------------------------------------------------------------------- optimizing the program


def needs_demos(messages):
    """A scripted judge that is right only when the prompt carries few-shot demos (extra chat turns)."""
    if len(messages) > 2:
        return perfect(messages)
    return reply(score=3) if "pass/fail" not in field(messages, "rubric") else reply(score=1)


@pytest.mark.parametrize("method", ["labeled", "bootstrap"])
def test_optimizing_on_a_train_split_is_kept_when_it_agrees_better_on_the_rest(scripted, tmp_path, method):
    config = make_config(tmp_path, golden=write_golden(tmp_path, golden_set(40)))
    scripted.script = [needs_demos]
    [result] = calibrate(config, ["helpfulness"], optimize=method, max_demos=3,
                         thresholds=CalibrationThresholds(min_labels=5))
    assert result.optimized and result.optimizer == method and result.evaluated_on == "holdout"
    assert result.calibrated and result.agreement.kappa == 1.0
    held_out = {c.case_id for c in result.cases}
    assert held_out and not held_out & set(result.train_cases)
    assert program_path(config, "helpfulness").is_file()
    # the saved program is what the judge runs with from now on, and the gate trusts that version
    from autofix.judges.run import build_judge

    judge = build_judge(config, config.judges[1], cache=False)
    assert len(judge.program.judge.demos) > 0 and judge.version == result.version
    assert judge_trust(config, "helpfulness")[0] is True


def test_an_optimization_that_does_not_help_is_not_kept(scripted, tmp_path):
    config = make_config(tmp_path, golden=write_golden(tmp_path, golden_set(30)))
    scripted.script = [perfect]
    [result] = calibrate(config, ["helpfulness"], optimize="labeled", thresholds=CalibrationThresholds(min_labels=5))
    assert not result.optimized and result.calibrated
    assert not program_path(config, "helpfulness").exists()


def test_an_empty_golden_set_is_an_error_that_says_what_to_add(tmp_path):
    config = make_config(tmp_path, golden=write_golden(tmp_path, []))
    with pytest.raises(GoldenError, match="the golden set is empty"):
        calibrate(config)
    assert not calibration_path(config).exists()


def test_candidates_without_labels_calibrate_nothing_and_say_so(scripted, tmp_path):
    records = golden_set(12)
    for r in records:
        r["labels"] = {}
    config = make_config(tmp_path, golden=write_golden(tmp_path, records))
    [r] = calibrate(config, ["helpfulness"])
    assert not r.calibrated and r.reasons == [r.reasons[0]] and "labelled for this judge" in r.reasons[0]
    assert scripted.calls == []
