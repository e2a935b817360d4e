"""The judges room: deterministic checks, rubric judges and their calibration, each judge with a version.

- `checks`: the deterministic checks (`CHECKS`, `CheckOutcome`, `check_version`, `CHECKS_VERSION`).
- `rubric`: LM rubric judges over DSPy/litellm (`LMJudge`, `Verdict`, `VerdictCache`, `aggregate_verdicts`).
- `calibration`: agreement with human labels on the golden set (`calibrate`, `judge_trust`).
- `run`: all of a target's judges on replayed cases (`judge_cases`, `judge_versions`, `judges_version`).

Importing this package is cheap; `rubric` and `calibration` import DSPy (seconds) when first used.
"""
