"""Deterministic checks of one replayed case against its expectation.

Each check returns a `CheckOutcome`: passed True/False, or None when the case gives it nothing to
check (no expected answer, no retrieval, no tool call). Checks never raise on odd results.
"""

from __future__ import annotations

import re
from typing import Callable

import jsonschema
from pydantic import BaseModel

from autofix.replay.records import Case, CaseResult

CHECKS_VERSION = "checks-1"


class CheckOutcome(BaseModel):
    passed: bool | None
    detail: str = ""


def _expected_strings(case: Case) -> list[str]:
    expected = case.expected or {}
    if expected.get("must_include"):
        return [str(s) for s in expected["must_include"]]
    return [str(expected["answer"])] if expected.get("answer") and expected.get("exact") else []


def contains_expected(case: Case, result: CaseResult) -> CheckOutcome:
    """The answer contains every `expected.must_include` string (case-insensitive)."""
    wanted = _expected_strings(case)
    if not wanted:
        return CheckOutcome(passed=None, detail="no expected strings")
    if result.failed:
        return CheckOutcome(passed=False, detail=f"no answer: {result.error}")
    output = (result.output or "").lower()
    missing = [s for s in wanted if s.lower() not in output]
    return CheckOutcome(passed=not missing, detail=f"missing {missing}" if missing else "all expected strings present")


def _retrieved_doc_ids(result: CaseResult) -> list[str]:
    return [str(hit.get("doc_id")) for span in result.spans if span.get("kind") == "retrieval"
            for hit in (span.get("output") or []) if isinstance(hit, dict)]


def recall_at_k(case: Case, result: CaseResult, k: int = 5) -> CheckOutcome:
    """Every expected document is among the first k retrieved (over all retrieval spans)."""
    expected = set((case.expected or {}).get("doc_ids") or [])
    if not expected:
        return CheckOutcome(passed=None, detail="no expected documents")
    retrieved = list(dict.fromkeys(_retrieved_doc_ids(result)))[:k]
    missing = sorted(expected - set(retrieved))
    return CheckOutcome(passed=not missing, detail=f"not retrieved: {missing}" if missing else f"all in top {k}")


def citations_in_expected(case: Case, result: CaseResult) -> CheckOutcome:
    """The answer cites at least one expected document id, and cites no document it did not retrieve."""
    expected = set((case.expected or {}).get("doc_ids") or [])
    if not expected:
        return CheckOutcome(passed=None, detail="no expected documents")
    output = result.output or ""
    known = set(_retrieved_doc_ids(result)) | expected
    cited = {doc_id for doc_id in known if re.search(rf"(?<![\w-]){re.escape(doc_id)}(?![\w-])", output)}
    if not cited:
        return CheckOutcome(passed=False, detail="no document cited")
    good = cited & expected
    return CheckOutcome(passed=bool(good), detail=f"cited {sorted(cited)}")


def tool_args_valid(case: Case, result: CaseResult) -> CheckOutcome:
    """Every tool call's arguments validate against the JSON schema the tool span declares.

    The schema travels with the span as the `json_schema` attribute (OpenInference's `tool.json_schema`);
    a tool call without one cannot be checked and fails, since nothing vouches for its arguments.
    """
    tools = [span for span in result.spans if span.get("kind") == "tool"]
    if not tools:
        return CheckOutcome(passed=None, detail="no tool call")
    problems = []
    for span in tools:
        schema = (span.get("attributes") or {}).get("json_schema")
        if not isinstance(schema, dict):
            problems.append(f"{span.get('name')}: no json_schema attribute on the tool span")
            continue
        try:
            jsonschema.validate(span.get("input"), schema)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "arguments"
            problems.append(f"{span.get('name')}: {where}: {exc.message}")
        except jsonschema.SchemaError as exc:
            problems.append(f"{span.get('name')}: invalid json_schema ({exc.message})")
    return CheckOutcome(passed=not problems, detail="; ".join(problems) or f"{len(tools)} tool call(s) valid")


CHECKS: dict[str, Callable[..., CheckOutcome]] = {
    "contains_expected": contains_expected,
    "recall_at_k": recall_at_k,
    "citations_in_expected": citations_in_expected,
    "tool_args_valid": tool_args_valid,
}
