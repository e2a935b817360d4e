"""A rubric judge on the real embedded model (SmolLM2-135M-Instruct): it must give verdicts or a clean
"no verdict", never raise and never a made-up score. What it did is printed (run with -s to see it)."""

from __future__ import annotations

import json

import pytest

from autofix.config import DEFAULT_MODEL
from autofix.judges.rubric import LMJudge
from autofix.replay.records import Case, CaseResult

from .conftest import HELPFULNESS

CASES = [
    (Case(case_id="right", input="How many days of annual leave do I get?",
          expected={"answer": "27 days per calendar year."}),
     CaseResult(case_id="right", output="You get 27 days of annual leave per calendar year.", spans=[
         {"kind": "retrieval", "name": "bm25.search", "output": [
             {"doc_id": "hr-leave-001", "score": 3.0, "text": "Full-time employees get 27 days of annual leave."}]}])),
    (Case(case_id="wrong", input="How many days of annual leave do I get?",
          expected={"answer": "27 days per calendar year."}),
     CaseResult(case_id="wrong", output="You get 10 days of leave.", spans=[])),
]


@pytest.mark.model
def test_the_embedded_model_gives_verdicts_or_a_clean_no_verdict():
    judge = LMJudge(HELPFULNESS, DEFAULT_MODEL, retries=0)  # a call takes seconds idle, minutes on a busy machine
    seen = []
    for case, result in CASES:
        verdict = judge.judge_case(case, result)
        seen.append({"case": case.case_id, **verdict.model_dump(include={"status", "score", "passed", "confidence",
                                                                          "failure_tags", "attempts", "error"})})
        if verdict.status == "verdict":
            assert verdict.score in range(1, 6) and verdict.passed == (verdict.score >= 3)
        else:
            assert verdict.score is None and verdict.passed is None and verdict.error
    print("\nembedded model as a judge:\n" + json.dumps(seen, indent=2))
