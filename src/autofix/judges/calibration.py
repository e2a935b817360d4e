"""Calibrating rubric judges against human labels, so the gate trusts only the judges that agree with people.

The golden set (`datasets.golden` in autofix.yaml) is JSONL, one labelled case a line::

    {"case_id", "input", "expected", "output", "evidence", "labels": {"helpfulness": 4, "safety": "pass"}}

A judge's label is `labels[<judge name>]`, else `labels[<dimension>]`; a scale label is an integer on
the judge's scale, a pass/fail label `pass`/`fail` (also true/false, yes/no, 1/0). Records without a
label for a judge are not used for it.

`calibrate_judge` runs the judge on every labelled record and measures agreement: coverage (share of
records with a verdict), pass/fail accuracy and Cohen's kappa (a scale judge's pass is score >=
threshold, on both sides), and for scales exact and within-one accuracy and Spearman's rho. A judge
is `calibrated` when it meets `CalibrationThresholds` (kappa >= 0.6, coverage >= 0.9, within-one >=
0.8 for scales, at least 10 labelled records). `calibrate` does this for the judges of a config,
optionally first optimizing each judge's DSPy program on a train split of the labels (few-shot
demos: `dspy.LabeledFewShot` or `dspy.BootstrapFewShot`) and keeping it only when it agrees better
on the held-out rest; results go to `<state>/judges/calibration.json`, optimized programs to
`<state>/judges/programs/<judge>.json`. `judge_trust` tells the gate whether a judge, as configured
now (same version), was calibrated.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autofix.config import AutofixConfig, RubricJudge
from autofix.jsonl import read_case_records
from autofix.judges.rubric import Evidence, JudgeProgram, LMJudge, Verdict

__all__ = [
    "Agreement",
    "CalibrationResult",
    "CalibrationThresholds",
    "CaseAgreement",
    "GoldenError",
    "GoldenRecord",
    "calibrate",
    "calibrate_judge",
    "calibration_path",
    "cohen_kappa",
    "judge_trust",
    "load_calibration",
    "load_golden",
    "measure_agreement",
    "optimize_judge",
    "save_calibration",
    "spearman",
]

ProgressCallback = Callable[[int], None]


class GoldenError(ValueError):
    """The golden set cannot be read; the message names the file, the line and the fix."""


class GoldenRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    case_id: str = Field(min_length=1)
    input: str
    expected: Any = None
    output: str | None = ""
    evidence: Any = None
    labels: dict[str, Any] = Field(default_factory=dict)
    label_notes: str | None = Field(default=None, description="The labeller's reasons; optimizer demos use them.")


def load_golden(path: str | Path) -> list[GoldenRecord]:
    """Read a golden-set JSONL file; a bad line is an error naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise GoldenError(f"{path}: golden set not found (set `datasets.golden` in autofix.yaml to a labelled JSONL file)")
    return read_case_records(path, GoldenRecord, error=GoldenError, what="a golden record",
                             hint='; each line needs {"case_id", "input", "output", "labels": {...}}')


# --------------------------------------------------------------------------- labels

_PASS = {"pass", "passed", "true", "yes", "ok", "safe", "good"}
_FAIL = {"fail", "failed", "false", "no", "unsafe", "bad"}


def label_of(judge: LMJudge, record: GoldenRecord) -> tuple[int | None, bool] | None:
    """(score label or None, pass label) of a record for a judge; None when it has no label for it.

    Raises GoldenError for a label that is neither on the judge's scale nor pass/fail."""
    raw = record.labels.get(judge.name, record.labels.get(judge.spec.dimension))
    if raw is None:
        return None
    low, high = judge.scale
    if isinstance(raw, bool):
        return (int(raw) if judge.spec.safety else None), raw
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _PASS or word in _FAIL:
            passed = word in _PASS
            return (int(passed) if judge.spec.safety else None), passed
        try:
            raw = float(word)
        except ValueError:
            raw = None
    if isinstance(raw, (int, float)) and float(raw).is_integer() and low <= raw <= high:
        score = int(raw)
        return score, (score == 1 if judge.spec.safety else score >= judge.threshold)
    raise GoldenError(
        f"case {record.case_id}: label {record.labels.get(judge.name, record.labels.get(judge.spec.dimension))!r} "
        f"for {judge.name} is not on its scale {low}-{high} nor pass/fail; fix the label"
    )


# --------------------------------------------------------------------------- agreement maths


def cohen_kappa(a: list[Any], b: list[Any]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (both always say one same thing)."""
    if len(a) != len(b):
        raise ValueError("raters must rate the same items")
    n = len(a)
    if n == 0:
        return None
    categories = sorted(set(a) | set(b), key=str)
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in categories)
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho (Pearson on average ranks); None when either side is constant or too short."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = _ranks(list(map(float, x))), _ranks(list(map(float, y)))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sx = math.sqrt(sum((r - mx) ** 2 for r in rx))
    sy = math.sqrt(sum((r - my) ** 2 for r in ry))
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


class CaseAgreement(BaseModel):
    case_id: str
    label: int | None
    label_passed: bool
    status: str
    score: int | None = None
    passed: bool | None = None
    error: str | None = None


class Agreement(BaseModel):
    labelled: int = Field(description="Records with a label for this judge.")
    judged: int = Field(description="Of those, records the judge gave a verdict on.")
    coverage: float | None = Field(description="judged / labelled.")
    accuracy: float | None = Field(default=None, description="Pass/fail agreement on judged records.")
    kappa: float | None = Field(default=None, description="Cohen's kappa of pass/fail on judged records.")
    exact: float | None = Field(default=None, description="Scales: share of judged records scored as labelled.")
    within_one: float | None = Field(default=None, description="Scales: share scored within one of the label.")
    spearman: float | None = Field(default=None, description="Scales: Spearman's rho of scores and labels.")


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def measure_agreement(cases: list[CaseAgreement], *, scale: bool = True) -> Agreement:
    """Agreement of verdicts with labels; `scale=False` (pass/fail judges) skips the score measures."""
    judged = [c for c in cases if c.status == "verdict"]
    n = len(cases)
    agreement = Agreement(labelled=n, judged=len(judged), coverage=_r(len(judged) / n) if n else None)
    if not judged:
        return agreement
    human = [c.label_passed for c in judged]
    model = [bool(c.passed) for c in judged]
    agreement.accuracy = _r(sum(h == m for h, m in zip(human, model)) / len(judged))
    agreement.kappa = _r(cohen_kappa(human, model))
    scored = [c for c in judged if c.label is not None and c.score is not None]
    if scored and scale:
        agreement.exact = _r(sum(c.score == c.label for c in scored) / len(scored))
        agreement.within_one = _r(sum(abs(c.score - c.label) <= 1 for c in scored) / len(scored))
        agreement.spearman = _r(spearman([c.label for c in scored], [c.score for c in scored]))
    return agreement


# --------------------------------------------------------------------------- the decision


class CalibrationThresholds(BaseModel):
    """What agreement with people a judge needs before the gate trusts it."""

    model_config = ConfigDict(extra="forbid")

    min_kappa: float = Field(default=0.6, description="Cohen's kappa of pass/fail against the labels.")
    min_coverage: float = Field(default=0.9, description="Share of labelled records with a verdict.")
    min_within_one: float = Field(default=0.8, description="Scale judges: share within one point of the label.")
    min_labels: int = Field(default=10, description="Fewer labelled records than this prove nothing.")


class CalibrationResult(BaseModel):
    judge: str
    dimension: str
    safety: bool
    kind: Literal["pass_fail", "scale"]
    version: str = Field(description="The judge version calibrated; a changed judge needs calibrating again.")
    model: str
    golden: str = Field(description="The golden-set file.")
    golden_sha256: str
    evaluated_on: Literal["all", "holdout"] = "all"
    optimized: bool = False
    optimizer: str | None = None
    train_cases: list[str] = Field(default_factory=list)
    agreement: Agreement
    thresholds: CalibrationThresholds
    calibrated: bool
    reasons: list[str] = Field(default_factory=list, description="Why not calibrated (empty when calibrated).")
    created_at: str
    cases: list[CaseAgreement] = Field(default_factory=list)


def decide(agreement: Agreement, kind: str, thresholds: CalibrationThresholds) -> tuple[bool, list[str]]:
    reasons: list[str] = []
    t = thresholds
    if agreement.labelled < t.min_labels:
        reasons.append(f"only {agreement.labelled} labelled record(s); need at least {t.min_labels}")
    if agreement.labelled == 0:
        return False, ["no record of the golden set is labelled for this judge (labels: {<judge name or "
                       "dimension>: <score or pass/fail>}})"]
    if agreement.coverage is None or agreement.coverage < t.min_coverage:
        reasons.append(f"coverage {_fmt(agreement.coverage)} < {t.min_coverage} (too many cases without a verdict)")
    if agreement.judged:
        if agreement.kappa is None:
            reasons.append("kappa undefined: labels and verdicts are all one same class; label cases of both classes")
        elif agreement.kappa < t.min_kappa:
            reasons.append(f"kappa {agreement.kappa:.2f} < {t.min_kappa}")
        if kind == "scale" and agreement.within_one is not None and agreement.within_one < t.min_within_one:
            reasons.append(f"within-one accuracy {agreement.within_one:.2f} < {t.min_within_one}")
    return not reasons, reasons


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def calibrate_judge(
    judge: LMJudge,
    records: list[GoldenRecord],
    *,
    thresholds: CalibrationThresholds | None = None,
    golden: str | Path = "",
    evaluated_on: Literal["all", "holdout"] = "all",
    progress: ProgressCallback | None = None,
) -> CalibrationResult:
    """Run `judge` on every record labelled for it and measure its agreement with the labels."""
    thresholds = thresholds or CalibrationThresholds()
    cases: list[CaseAgreement] = []
    for record in records:
        label = label_of(judge, record)
        if label is None:
            continue
        verdict: Verdict = judge.judge(Evidence.from_record(record.model_dump()))
        cases.append(CaseAgreement(case_id=record.case_id, label=label[0], label_passed=label[1],
                                   status=verdict.status, score=verdict.score, passed=verdict.passed,
                                   error=verdict.error))
        if progress:
            progress(1)
    kind = "pass_fail" if judge.spec.safety else "scale"
    agreement = measure_agreement(cases, scale=kind == "scale")
    calibrated, reasons = decide(agreement, kind, thresholds)
    golden_path = Path(golden) if golden else None
    return CalibrationResult(
        judge=judge.name, dimension=judge.spec.dimension, safety=judge.spec.safety, kind=kind,
        version=judge.version, model=judge.model, golden=str(golden or ""),
        golden_sha256=_sha256_file(golden_path) if golden_path else "", evaluated_on=evaluated_on,
        agreement=agreement, thresholds=thresholds, calibrated=calibrated, reasons=reasons,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), cases=cases,
    )


# --------------------------------------------------------------------------- optimization


INPUT_FIELDS = ("dimension", "rubric", "request", "evidence", "answer", "expected_answer")


def _example(judge: LMJudge, record: GoldenRecord) -> Any:
    import dspy

    label = label_of(judge, record)
    assert label is not None
    score = label[0] if label[0] is not None else (judge.scale[1] if label[1] else judge.scale[0])
    rationale = (record.labels.get(f"{judge.name}_rationale") or record.labels.get("rationale")
                 or record.label_notes)
    fields = {**judge.program_inputs(Evidence.from_record(record.model_dump())), "score": score,
              "confidence": 1.0, "failure_tags": list(record.labels.get("failure_tags") or [])}
    if rationale:
        fields["rationale"] = str(rationale)
    return dspy.Example(**fields).with_inputs(*INPUT_FIELDS)


def optimize_judge(
    judge: LMJudge,
    train: list[GoldenRecord],
    *,
    method: Literal["labeled", "bootstrap"] = "bootstrap",
    max_demos: int = 4,
    seed: int = 0,
) -> JudgeProgram:
    """A new `JudgeProgram` with few-shot demos chosen from the labelled `train` records.

    `labeled`: `dspy.LabeledFewShot`, the human labels as demos. `bootstrap`: `dspy.BootstrapFewShot`,
    the judge's own outputs on train records it scored within one of the label (so demos carry a
    rationale), topped up with labelled demos. The judge itself is not changed."""
    import dspy

    examples = [_example(judge, r) for r in train if label_of(judge, r) is not None]
    if not examples:
        raise ValueError(f"no labelled record for {judge.name} in the train split")
    student = JudgeProgram()
    if method == "labeled":
        return dspy.LabeledFewShot(k=max_demos).compile(student, trainset=examples, sample=True)

    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        try:
            return abs(int(prediction.score) - int(example.score)) <= (0 if judge.spec.safety else 1)
        except (TypeError, ValueError, AttributeError):
            return False

    optimizer = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=max_demos, max_labeled_demos=max_demos,
                                      max_rounds=1, max_errors=len(examples) + 1)
    random.Random(seed).shuffle(examples)
    with dspy.context(lm=judge.lm, adapter=judge.adapter):
        return optimizer.compile(student, trainset=examples)


def _split(records: list[GoldenRecord], train_fraction: float, seed: int) -> tuple[list[GoldenRecord], list[GoldenRecord]]:
    """A stable split by a hash of the case id (seeded)."""
    def bucket(r: GoldenRecord) -> float:
        digest = hashlib.sha256(f"{seed}:{r.case_id}".encode()).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF
    train = [r for r in records if bucket(r) < train_fraction]
    test = [r for r in records if bucket(r) >= train_fraction]
    return train, test


def _better(a: CalibrationResult, b: CalibrationResult) -> bool:
    """Whether `a` agrees with the labels better than `b`: calibrated first, then kappa, coverage, within-one."""
    def key(r: CalibrationResult) -> tuple:
        g = r.agreement
        return (r.calibrated, g.kappa if g.kappa is not None else -2, g.coverage or 0, g.within_one or 0)
    return key(a) > key(b)


# --------------------------------------------------------------------------- persistence and trust


def judges_dir(config: AutofixConfig) -> Path:
    return config.state_path / "judges"


def calibration_path(config: AutofixConfig) -> Path:
    return judges_dir(config) / "calibration.json"


def program_path(config: AutofixConfig, judge_name: str) -> Path:
    return judges_dir(config) / "programs" / f"{judge_name}.json"


def save_calibration(config: AutofixConfig, results: list[CalibrationResult]) -> Path:
    """Merge `results` (by judge name) into `<state>/judges/calibration.json`."""
    path = calibration_path(config)
    stored = load_calibration(config)
    stored.update({r.judge: r for r in results})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({name: r.model_dump(mode="json") for name, r in sorted(stored.items())}, indent=2),
                   encoding="utf-8")
    tmp.replace(path)
    return path


def load_calibration(config: AutofixConfig) -> dict[str, CalibrationResult]:
    path = calibration_path(config)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: CalibrationResult.model_validate(value) for name, value in data.items()}
    except (json.JSONDecodeError, ValidationError, AttributeError) as exc:
        raise GoldenError(f"{path}: unreadable calibration results ({exc.__class__.__name__}); delete it and run "
                          "`autofix judges calibrate` again") from None


def judge_trust(config: AutofixConfig, judge_name: str, *, judge: LMJudge | None = None) -> tuple[bool, str]:
    """Whether the gate may trust rubric judge `judge_name` as configured now, and why (not).

    Trusted only when a stored calibration of the same judge version (same prompt, rubric, model and
    demos) says calibrated."""
    from autofix.judges.run import build_judge

    spec = next((j for j in config.judges if j.name == judge_name), None)
    if not isinstance(spec, RubricJudge):
        return False, f"{judge_name} is not a rubric judge of this target"
    judge = judge or build_judge(config, spec, cache=False)
    stored = load_calibration(config).get(judge_name)
    if stored is None:
        return False, f"{judge_name} was never calibrated: run `autofix judges calibrate --judge {judge_name}`"
    if stored.version != judge.version:
        return False, (f"{judge_name} changed since it was calibrated (version {stored.version} -> {judge.version}): "
                       "calibrate it again")
    if not stored.calibrated:
        return False, f"{judge_name} is not calibrated: {'; '.join(stored.reasons)}"
    return True, f"{judge_name} calibrated (kappa {_fmt(stored.agreement.kappa)}, coverage {_fmt(stored.agreement.coverage)})"


def calibrate(
    config: AutofixConfig,
    judges: list[str] | None = None,
    *,
    golden: str | Path | None = None,
    lm: Any = None,
    model: str | None = None,
    thresholds: CalibrationThresholds | None = None,
    optimize: Literal["labeled", "bootstrap"] | None = None,
    train_fraction: float = 0.5,
    max_demos: int = 4,
    seed: int = 0,
    limit: int | None = None,
    retries: int = 2,
    use_cache: bool = True,
    save: bool = True,
    progress: ProgressCallback | None = None,
) -> list[CalibrationResult]:
    """Calibrate the rubric judges of `config` (all, or those named) on the golden set; save the results.

    With `optimize`, each judge's program is first optimized on a `train_fraction` split of the
    labels; the baseline and the optimized program are both measured on the held-out rest, and the
    optimized one is kept (saved to `<state>/judges/programs/<judge>.json`) only when it agrees better.
    `model` replaces `model.judge`; `lm` replaces the DSPy LM altogether (tests); `limit` keeps the first
    N records of the golden set (a quick look; too few to calibrate on); `retries` per invalid output."""
    from autofix.judges.run import build_judge, verdict_cache

    specs = [j for j in config.judges if isinstance(j, RubricJudge)]
    if judges:
        unknown = [n for n in judges if n not in {s.name for s in specs}]
        if unknown:
            names = ", ".join(s.name for s in specs) or "(none)"
            raise ValueError(f"not a rubric judge of {config.file}: {', '.join(unknown)}; rubric judges: {names}")
        specs = [s for s in specs if s.name in judges]
    if golden is None:
        if not config.datasets.golden:
            raise GoldenError(f"{config.file}: no golden set: add `datasets.golden: <labelled JSONL>`")
        golden = config.path(config.datasets.golden)
    records = load_golden(golden)[:limit] if limit else load_golden(golden)
    if not records:
        raise GoldenError(f"{golden}: the golden set is empty; add labelled records "
                          '({"case_id", "input", "output", "evidence", "labels": {...}}, one a line)')
    cache = verdict_cache(config) if use_cache else None
    results: list[CalibrationResult] = []
    for spec in specs:
        judge = build_judge(config, spec, lm=lm, cache=cache, model=model, retries=retries)
        if not optimize:
            results.append(calibrate_judge(judge, records, thresholds=thresholds, golden=golden, progress=progress))
            continue
        labelled = [r for r in records if label_of(judge, r) is not None]
        train, test = _split(labelled, train_fraction, seed)
        if not train or not test:
            raise GoldenError(f"{golden}: {len(labelled)} labelled record(s) for {spec.name} cannot be split into "
                              "train and test; label more cases")
        baseline = calibrate_judge(judge, test, thresholds=thresholds, golden=golden, evaluated_on="holdout",
                                   progress=progress)
        program = optimize_judge(judge, train, method=optimize, max_demos=max_demos, seed=seed)
        tuned = build_judge(config, spec, lm=lm, cache=cache, program=program, model=model, retries=retries)
        candidate = calibrate_judge(tuned, test, thresholds=thresholds, golden=golden, evaluated_on="holdout",
                                    progress=progress)
        candidate = candidate.model_copy(update={"optimized": True, "optimizer": optimize,
                                                 "train_cases": [r.case_id for r in train]})
        if _better(candidate, baseline):
            if save:
                tuned.save_program(program_path(config, spec.name))
            results.append(candidate)
        else:
            results.append(baseline.model_copy(update={"train_cases": [r.case_id for r in train]}))
    if save and results:
        save_calibration(config, results)
    return results
