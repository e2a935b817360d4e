"""Deterministic checks of one replayed case against its expectation.

Each check returns a `CheckOutcome`: passed True/False, or None when the case gives it nothing to
check (no expected answer, no retrieval, no tool call). Checks never raise on odd results.
A check is called as `CHECKS[name](case, result, **args)`, `args` being the judge's `args` from
autofix.yaml (plus `k` for recall_at_k); every check has a version (`check_version`, `CHECKS_VERSION`).

The fields of a case's `expected` (what a reviewer attached to it; all optional) and the checks that read them:
`must_include` (strings the answer must contain) and `must_not_include` (strings that make an answer wrong,
e.g. a superseded value quoted beside the current one), or `answer` with `exact: true`: `contains_expected`;
`pattern` (regular expressions): `matches_expected`; `doc_ids`: `recall_at_k`, `citations_in_expected`;
`format`: `format_kept`. `must_include`, `must_not_include` and `pattern` may also be a single string.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Callable

import jsonschema
from pydantic import BaseModel

from autofix.replay.records import Case, CaseResult
from autofix.traces.schema import tool_args_schema


class CheckOutcome(BaseModel):
    passed: bool | None
    detail: str = ""


def _strings(value: object) -> list[str]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [str(s) for s in items if s is not None and str(s)]


def _expected_strings(case: Case) -> list[str]:
    expected = case.expected or {}
    if expected.get("must_include"):
        return _strings(expected["must_include"])
    return [str(expected["answer"])] if expected.get("answer") and expected.get("exact") else []


def contains_expected(case: Case, result: CaseResult) -> CheckOutcome:
    """The answer contains every `expected.must_include` string and none of `expected.must_not_include`
    (both case-insensitive; a string or a list). `must_not_include` names what makes an answer wrong
    even when the right facts are there too, e.g. a superseded value quoted beside the current one.
    """
    wanted = _expected_strings(case)
    unwanted = _strings((case.expected or {}).get("must_not_include"))
    if not wanted and not unwanted:
        return CheckOutcome(passed=None, detail="no expected strings")
    if result.failed:
        return CheckOutcome(passed=False, detail=f"no answer: {result.error}")
    output = (result.output or "").lower()
    missing = [s for s in wanted if s.lower() not in output]
    present = [s for s in unwanted if s.lower() in output]
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if present:
        problems.append(f"contains {present}, which expected.must_not_include rules out")
    if problems:
        return CheckOutcome(passed=False, detail="; ".join(problems))
    ok = [("all expected strings present" if wanted else ""), ("none of must_not_include" if unwanted else "")]
    return CheckOutcome(passed=True, detail=", ".join(s for s in ok if s))


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

    The schema travels with the span in its attributes, read by `autofix.traces.schema.tool_args_schema`
    as triage reads it: `json_schema` (what the OpenInference importer makes of `tool.json_schema`),
    `schema` or `parameters`, a bare schema or a tool definition wrapping one. A tool call without one
    cannot be checked and fails, since nothing vouches for its arguments.
    """
    tools = [span for span in result.spans if span.get("kind") == "tool"]
    if not tools:
        return CheckOutcome(passed=None, detail="no tool call")
    problems = []
    for span in tools:
        schema = tool_args_schema(span.get("attributes"))
        if schema is None:
            problems.append(f"{span.get('name')}: no argument schema on the tool span "
                            f"(attribute json_schema, schema or parameters)")
            continue
        try:
            jsonschema.validate(span.get("input"), schema)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "arguments"
            problems.append(f"{span.get('name')}: {where}: {exc.message}")
        except jsonschema.SchemaError as exc:
            problems.append(f"{span.get('name')}: invalid json_schema ({exc.message})")
    return CheckOutcome(passed=not problems, detail="; ".join(problems) or f"{len(tools)} tool call(s) valid")


# --------------------------------------------------------------------------- matches_expected


def _patterns(case: Case, args: dict) -> list[str]:
    found: list[str] = []
    for source in ((case.expected or {}).get("pattern"), args.get("pattern")):
        if isinstance(source, str) and source:
            found.append(source)
        elif isinstance(source, (list, tuple)):
            found.extend(str(p) for p in source if p)
    return found


def matches_expected(case: Case, result: CaseResult, pattern: str | list[str] | None = None,
                     ignore_case: bool = True) -> CheckOutcome:
    """The answer matches every regular expression of `expected.pattern` (per case) and `args.pattern` (per judge).

    Searched anywhere in the answer (`re.search`), case-insensitive unless `ignore_case: false`;
    a pattern that does not compile fails the case and names the pattern, since the scorer is broken.
    """
    patterns = _patterns(case, {"pattern": pattern})
    if not patterns:
        return CheckOutcome(passed=None, detail="no expected pattern")
    if result.failed:
        return CheckOutcome(passed=False, detail=f"no answer: {result.error}")
    flags = re.IGNORECASE if ignore_case else 0
    output = result.output or ""
    unmatched, broken = [], []
    for p in patterns:
        try:
            if not re.search(p, output, flags):
                unmatched.append(p)
        except re.error as exc:
            broken.append(f"{p!r} ({exc})")
    if broken:
        return CheckOutcome(passed=False, detail=f"invalid pattern {'; '.join(broken)}: fix expected.pattern or args.pattern")
    return CheckOutcome(passed=not unmatched,
                        detail=f"no match for {unmatched}" if unmatched else f"matches {len(patterns)} pattern(s)")


# --------------------------------------------------------------------------- format_kept

_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10, "a single": 1, "a": 1}
_NUM = r"(\d+|one|two|three|four|five|six|seven|eight|nine|ten|a single|a)"
_LIMIT = r"(?:in|under|at most|no more than|max(?:imum)?(?: of)?|within|fewer than|less than|up to)"

_FORMAT_REQUESTS: dict[str, re.Pattern[str]] = {
    "list": re.compile(r"\b(?:as|in|into) (?:a )?(?:bullet(?:ed)? |numbered )?list\b|\bbullet(?:ed)?(?: points?| list)?\b"
                       r"|\bbullets\b|\bnumbered list\b|\blist (?:them|all|each|every)\b", re.I),
    "steps": re.compile(r"\bstep[- ]by[- ]step\b|\b(?:in|as|into) (?:numbered )?steps\b|\bwhat are the steps\b", re.I),
    "json": re.compile(r"\b(?:as|in|into) json\b|\bjson (?:format|object|array)\b|\b(?:return|output|give me|respond with)"
                       r" (?:valid |only )?json\b", re.I),
    "table": re.compile(r"\b(?:as|in|into) a (?:markdown )?table\b|\btable format\b|\btabular\b", re.I),
    "cite_sources": re.compile(r"\b(?:cite|citing|quote|name|list|include|give|with|show)\b[\w\s,]{0,20}?\b"
                               r"(?:sources?|references?|citations?)\b|\bwhere (?:is|does) (?:this|that|it) (?:come )?from\b",
                               re.I),
}
_WORD_LIMIT = re.compile(rf"\b{_LIMIT} {_NUM} words?\b", re.I)
_SENTENCE_LIMIT = re.compile(rf"\b{_LIMIT} {_NUM} sentences?\b|\b(?:in )?(one|a single) sentence\b", re.I)

_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)]|[a-z][.)])\s+\S", re.M)
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|step \d+\b[:.)]?)\s*\S", re.M | re.I)
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$", re.M)
_SOURCES_LINE = re.compile(r"\b(?:sources?|references?|citations?)\s*:\s*\S", re.I)
_BRACKET_CITE = re.compile(r"\[[A-Za-z][\w.#/-]*\d[\w.#/-]*\]")


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBER_WORDS[text.lower()]


def _requested_formats(case: Case) -> dict[str, int | bool]:
    """What the request (or `expected.format`) asks of the answer's form."""
    wanted: dict[str, int | bool] = {}
    request = case.input or ""
    for name, pattern in _FORMAT_REQUESTS.items():
        if pattern.search(request):
            wanted[name] = True
    if m := _WORD_LIMIT.search(request):
        wanted["max_words"] = _number(m.group(1))
    if m := _SENTENCE_LIMIT.search(request):
        wanted["max_sentences"] = _number(m.group(1) or m.group(2))
    declared = (case.expected or {}).get("format")
    items: list = declared if isinstance(declared, list) else [declared] if declared else []
    for item in items:
        if isinstance(item, dict):
            wanted.update({str(k): v for k, v in item.items()})
        elif isinstance(item, str):
            key, _, value = item.partition(":")
            key = key.strip().lower().replace(" ", "_").replace("-", "_")
            key = {"sources": "cite_sources", "citations": "cite_sources", "bullets": "list", "numbered": "steps"}.get(key, key)
            wanted[key] = int(value) if value.strip().isdigit() else True
    return wanted


def _json_payload(output: str) -> bool:
    text = output.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S | re.I)
    candidates = [fenced.group(1).strip()] if fenced else []
    candidates.append(text)
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, (dict, list)):
            return True
    return False


def _sentences(output: str) -> int:
    text = re.sub(r"\b(?:e\.g|i\.e|etc|approx|no|vs)\.", "", output, flags=re.I)
    lines = [ln for ln in text.splitlines() if ln.strip() and not _SOURCES_LINE.match(ln.strip())]
    return len([s for s in re.split(r"(?<=[.!?])\s+|\n+", "\n".join(lines)) if re.search(r"\w", s)])


def format_kept(case: Case, result: CaseResult) -> CheckOutcome:
    """The answer keeps the form the request asked for: a list, steps, JSON, a table, a word or sentence
    limit, cited sources. Asked for either in the request's words or in `expected.format`
    (`"list"`, `["steps", "cite_sources"]`, `{"max_words": 50}`, `"max_words:50"`); N/A when nothing is asked.
    """
    wanted = _requested_formats(case)
    if not wanted:
        return CheckOutcome(passed=None, detail="no format requested")
    if result.failed:
        return CheckOutcome(passed=False, detail=f"no answer: {result.error}")
    output = result.output or ""
    problems: list[str] = []
    for name, value in wanted.items():
        if name == "list" and len(_BULLET.findall(output)) < 2:
            problems.append("asked for a list, no list of two or more items")
        elif name == "steps" and len(_NUMBERED.findall(output)) < 2:
            problems.append("asked for steps, no numbered steps")
        elif name == "json" and not _json_payload(output):
            problems.append("asked for JSON, the answer does not parse as a JSON object or array")
        elif name == "table" and not (_TABLE_SEPARATOR.search(output) and output.count("|") >= 4):
            problems.append("asked for a table, no markdown table")
        elif name == "cite_sources":
            ids = [d for d in _retrieved_doc_ids(result) if d and d != "None"]
            if not (_SOURCES_LINE.search(output) or _BRACKET_CITE.search(output) or any(d in output for d in ids)):
                problems.append("asked for sources, none cited")
        elif name == "max_words":
            words = len(re.findall(r"\b\w[\w'’-]*\b", output))
            if words > int(value):
                problems.append(f"asked for at most {value} words, got {words}")
        elif name == "max_sentences":
            count = _sentences(output)
            if count > int(value):
                problems.append(f"asked for at most {value} sentence(s), got {count}")
        elif name not in {"list", "steps", "json", "table", "cite_sources", "max_words", "max_sentences"}:
            problems.append(f"unknown format {name!r} in expected.format (known: list, steps, json, table, "
                            "cite_sources, max_words, max_sentences)")
    asked = ", ".join(k if v is True else f"{k}={v}" for k, v in wanted.items())
    return CheckOutcome(passed=not problems, detail="; ".join(problems) if problems else f"kept: {asked}")


# --------------------------------------------------------------------------- no_leaked_fields

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "api key (sk-...)": re.compile(r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}"),
    "autofix variable": re.compile(r"\bAUTOFIX_[A-Z0-9_]{2,}"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "bearer token": re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{20,}"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "secret assignment": re.compile(r"\b(?:api[_-]?key|secret|password|passwd|access[_-]?token)\b\s*[:=]\s*['\"]?"
                                    r"[A-Za-z0-9_\-./+]{12,}", re.I),
}
INTERNAL_FIELDS = ("case_id", "trace_id", "span_id", "session_id", "json_schema", "system_prompt", "api_key",
                   "api_base")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")


def _internal_values(case: Case, result: CaseResult) -> dict[str, str]:
    """Distinctive internal values of the spans: identifier-like attribute values (model names, ids)."""
    values: dict[str, str] = {}
    for span in result.spans:
        for key, value in (span.get("attributes") or {}).items():
            if isinstance(value, str) and len(value) >= 8 and not re.search(r"\s", value):
                values[value] = f"span attribute {span.get('name')}.{key}"
    if len(case.case_id) >= 6:
        values[case.case_id] = "case_id"
    return values


def no_leaked_fields(case: Case, result: CaseResult, forbidden: list[str] | None = None,
                     forbidden_patterns: list[str] | None = None, secrets: list[str] | None = None,
                     block_emails: bool = False, allow: list[str] | None = None) -> CheckOutcome:
    """The answer shows no secret and no internal field.

    Fails on API-key-like strings (`sk-...`, AWS, GitHub, Slack, Google keys, bearer tokens, JWTs,
    private keys, `password: ...`), any `AUTOFIX_...` variable name, internal field names written as
    fields (`trace_id: ...`, `"json_schema"`), identifier-like span attribute values (the model
    name, ids) and the case id; plus what the judge's `args` add: `forbidden` strings (emails, ids;
    case-insensitive), `forbidden_patterns` (regexes), `secrets` (exact values), `block_emails`
    (any email address). `allow` lists strings that may appear anyway.
    """
    if result.failed:
        return CheckOutcome(passed=None, detail=f"no answer to check: {result.error}")
    output = result.output or ""
    allowed = [a.lower() for a in (allow or [])]
    lowered = output.lower()
    leaks: list[str] = []

    def leak(kind: str, text: str) -> None:
        if any(text.lower() in a or a in text.lower() for a in allowed):
            return
        shown = text if kind.startswith(("forbidden", "internal", "span", "case", "email")) else text[:6] + "…"
        entry = f"{kind}: {shown}"
        if entry not in leaks:
            leaks.append(entry)

    for kind, pattern in SECRET_PATTERNS.items():
        for m in pattern.finditer(output):
            leak(kind, m.group(0))
    for field in INTERNAL_FIELDS:
        for m in re.finditer(rf"[\"']?\b{field}\b[\"']?\s*[:=]", output, re.I):
            leak("internal field", m.group(0).rstrip(":= "))
    for value, where in _internal_values(case, result).items():
        if re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", output):
            leak(where, value)
    for item in forbidden or []:
        if str(item) and str(item).lower() in lowered:
            leak("forbidden", str(item))
    for pattern in forbidden_patterns or []:
        try:
            for m in re.finditer(pattern, output):
                leak("forbidden pattern", m.group(0))
        except re.error as exc:
            return CheckOutcome(passed=False, detail=f"invalid forbidden_patterns entry {pattern!r} ({exc}): fix args")
    for secret in secrets or []:
        if secret and str(secret) in output:
            leak("secret", str(secret))
    if block_emails:
        for m in _EMAIL.finditer(output):
            leak("email", m.group(0))
    return CheckOutcome(passed=not leaks, detail="; ".join(leaks) if leaks else "nothing leaked")


# --------------------------------------------------------------------------- reference-free behaviour checks
# Production failures have no gold answer; these read only what the assistant did, so a failure
# cluster can be scored by what its diagnosis says went wrong (see `autofix.slices.measure`).


def searched(case: Case, result: CaseResult) -> CheckOutcome:
    """The assistant searched: some retrieval span ran (a routing failure answered without searching)."""
    if result.failed:
        return CheckOutcome(passed=False, detail=f"no answer: {result.error}")
    spans = [span for span in result.spans if span.get("kind") == "retrieval"]
    if not spans:
        return CheckOutcome(passed=False, detail="no retrieval span: answered without searching")
    return CheckOutcome(passed=True, detail=f"{len(spans)} retrieval span(s)")


def no_tool_error(case: Case, result: CaseResult) -> CheckOutcome:
    """No tool call failed (not applicable when no tool was called)."""
    tools = [span for span in result.spans if span.get("kind") == "tool"]
    if not tools:
        return CheckOutcome(passed=None, detail="no tool call")
    errors = [f"{span.get('name')}: {str(span.get('error'))[:200]}" for span in tools if span.get("error")]
    return CheckOutcome(passed=not errors, detail="; ".join(errors) or f"{len(tools)} tool call(s) without error")


def _hit_names(result: CaseResult) -> set[str]:
    names: set[str] = set()
    for span in result.spans:
        if span.get("kind") != "retrieval":
            continue
        for hit in span.get("output") or []:
            if not isinstance(hit, dict):
                continue
            for value in (hit.get("doc_id"), hit.get("title"), (hit.get("metadata") or {}).get("title")):
                if isinstance(value, str) and len(value.strip()) >= 3:
                    names.add(value.strip())
    return names


def cites_sources(case: Case, result: CaseResult) -> CheckOutcome:
    """An answer built on retrieved passages names at least one of them (its document id or title).

    Not applicable when nothing was retrieved. Reference-free: what counts as a source is what the
    assistant's own retrieval spans returned.
    """
    names = _hit_names(result)
    if not names:
        return CheckOutcome(passed=None, detail="nothing retrieved")
    if result.failed:
        return CheckOutcome(passed=False, detail=f"no answer: {result.error}")
    output = (result.output or "").lower()
    cited = sorted(n for n in names if n.lower() in output)
    if not cited:
        return CheckOutcome(passed=False, detail=f"names none of the {len(names)} retrieved sources")
    return CheckOutcome(passed=True, detail=f"names {cited[:3]}")


# --------------------------------------------------------------------------- registry and versions

CHECKS: dict[str, Callable[..., CheckOutcome]] = {
    "contains_expected": contains_expected,
    "matches_expected": matches_expected,
    "recall_at_k": recall_at_k,
    "citations_in_expected": citations_in_expected,
    "tool_args_valid": tool_args_valid,
    "format_kept": format_kept,
    "no_leaked_fields": no_leaked_fields,
    "searched": searched,
    "no_tool_error": no_tool_error,
    "cites_sources": cites_sources,
}

CHECK_VERSIONS: dict[str, int] = {
    "contains_expected": 2,  # 2: expected.must_not_include
    "matches_expected": 1,
    "recall_at_k": 1,
    "citations_in_expected": 1,
    "tool_args_valid": 2,  # 2: the schema under json_schema, schema or parameters, tool definitions unwrapped
    "format_kept": 1,
    "no_leaked_fields": 1,
    "searched": 1,
    "no_tool_error": 1,
    "cites_sources": 1,
}
"""Bump a check's number whenever its verdict on some input can change; cached scores then stop matching."""

CHECKS_VERSION = "checks-" + hashlib.sha256(
    json.dumps(sorted(CHECK_VERSIONS.items())).encode()).hexdigest()[:12]
"""One version for the whole set of checks (changes when any check's version does)."""


def check_version(check: str, args: dict | None = None) -> str:
    """The version of one configured check: its own number plus the arguments it runs with."""
    base = f"{check}@{CHECK_VERSIONS[check]}"
    if not args:
        return base
    return base + "+" + hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:8]
