"""The LLM code-patch optimizer (`optimizers/code_patch`, the distribution `autofix-code-patch`): the plugin
contract, the strict checking of the model's diffs, the budget, and end to end on the helpdesk with a
scripted coding model fixing planted defects #3 (tool date format) and #2 (routing) while the embedded
model answers the replays."""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from autofix_code_patch.patch import PatchRefused, apply_answer, apply_diff, extract_diff

from autofix.config import load_config
from autofix.optimize import Budget, find_optimizer
from autofix.optimize.engine import optimize_cluster
from autofix.optimize.testing import check_optimizer, synthetic_task
from autofix.replay.datasets import load_slice

from .conftest import git, make_helpdesk_repo

TOOLS = "src/app/tools.py"  # the synthetic task's code surface
TOOLS_TEXT = "def tool(x):\n    return x\n"


def code_patch():
    """The optimizer as autofix finds it: through the entry point of the installed distribution."""
    return find_optimizer("autofix-code-patch/code_patch").obj


def make_diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        f"a/{path}", f"b/{path}"))


def answer(diff: str, summary: str = "fix it") -> str:
    return f"Summary: {summary}\nWhy: because.\n```diff\n{diff}```\n"


# ---- the plugin contract ------------------------------------------------------------------------


def test_installed_under_the_entry_point_for_tool_arguments_and_routing() -> None:
    entry = find_optimizer("code_patch")
    assert entry.name == "autofix-code-patch/code_patch" and entry.distribution == "autofix-code-patch"
    assert {c.value for c in entry.metadata["categories"]} == {"tool_arguments", "routing"}


def test_plugin_contract(tmp_path) -> None:
    fixed = make_diff(TOOLS, TOOLS_TEXT, "def tool(x):\n    return x + 1\n")

    def scorer(files: Mapping[str, str], case) -> float:
        return 1.0 if "x + 1" in files[TOOLS] else 0.0

    proposals = check_optimizer(code_patch(), tmp_path, category="tool_arguments",
                                answer=answer(fixed, "add one to x"), scorer=scorer)
    [p] = proposals
    assert p.files == {TOOLS: "def tool(x):\n    return x + 1\n"}
    assert p.description == "code: add one to x" and p.rationale == "because."
    assert (p.base_score, p.train_score) == (0.0, 1.0)
    assert p.metadata["rounds"] == 1 and p.metadata["tests"] == "skipped"


def test_the_imports_of_the_plugin_are_autofix_optimize_only() -> None:
    package = Path(__file__).resolve().parents[2] / "optimizers" / "code_patch" / "autofix_code_patch"
    imported = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
    assert {m for m in imported if m == "autofix" or m.startswith("autofix.")} == {"autofix.optimize"}


# ---- the diff is checked strictly before anything runs -------------------------------------------

DATES = "src/helpdesk/tools/dates.py"
ROUTER = "src/helpdesk/router.py"
ORIGINAL = {
    DATES: 'import re\n\n\ndef to_tool_date(day):\n    """Format a date."""\n    return day.strftime("%d/%m/%Y")\n',
    ROUTER: "def route(q):\n    return 'search'\n",
}
FIX = make_diff(DATES, ORIGINAL[DATES], ORIGINAL[DATES].replace('day.strftime("%d/%m/%Y")', "day.isoformat()"))


def refused(diff: str) -> str:
    with pytest.raises(PatchRefused) as info:
        apply_answer(answer(diff), ORIGINAL)
    return str(info.value)


def test_a_clean_diff_is_applied_in_memory() -> None:
    assert apply_answer(answer(FIX), ORIGINAL) == {DATES: ORIGINAL[DATES].replace('day.strftime("%d/%m/%Y")',
                                                                                  "day.isoformat()")}


def test_miscounted_hunk_headers_shifted_lines_and_unprefixed_paths_still_apply() -> None:
    sloppy = (f"--- {DATES}\n+++ {DATES}\n@@ -1,2 +1,2 @@\n def to_tool_date(day):\n"
              f'     """Format a date."""\n-    return day.strftime("%d/%m/%Y")\n+    return day.isoformat()\n')
    assert "day.isoformat()" in apply_diff(sloppy, ORIGINAL)[DATES]


def test_two_files_and_git_headers() -> None:
    both = ("diff --git a/src/helpdesk/router.py b/src/helpdesk/router.py\nindex 1111111..2222222 100644\n"
            + make_diff(ROUTER, ORIGINAL[ROUTER], "def route(q):\n    return 'answer'\n") + FIX)
    assert set(apply_answer(answer(both), ORIGINAL)) == {DATES, ROUTER}


@pytest.mark.parametrize("path, reason", [
    ("src/helpdesk/replay.py", "not a file you may change"),
    ("src/helpdesk/../helpdesk/tools/dates.py", "'..' climbs out"),
    ("/work/src/helpdesk/tools/dates.py", "absolute path"),
    (".git/hooks/post-commit", "nothing under .git"),
])
def test_paths_outside_the_code_surfaces_are_refused(path, reason) -> None:
    diff = FIX.replace(f"a/{DATES}", path).replace(f"b/{DATES}", path)
    assert reason in refused(diff)


@pytest.mark.parametrize("header, reason", [
    ("diff --git a/{p} b/{p}\nold mode 100644\nnew mode 100755\n", "changes a file mode"),
    ("diff --git a/{p} b/{p}\nindex 1111111..2222222 120000\n", "symlink"),
    ("diff --git a/{p} b/{p}\ndeleted file mode 100644\n", "deletes a file"),
    ("diff --git a/{p} b/{p}\nsimilarity index 90%\nrename from {p}\nrename to src/x.py\n", "renames"),
])
def test_mode_symlink_delete_and_rename_headers_are_refused(header, reason) -> None:
    assert reason in refused(header.format(p=DATES) + FIX)


def test_new_files_and_deletions_are_refused() -> None:
    new_file = f"--- /dev/null\n+++ b/{ROUTER}\n@@ -0,0 +1 @@\n+x = 1\n"
    assert "creates" in refused(new_file)
    deletion = f"--- a/{ROUTER}\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def route(q):\n-    return 'search'\n"
    assert "deletes" in refused(deletion)


def test_a_hunk_that_does_not_apply_is_refused_naming_the_line() -> None:
    stale = FIX.replace('-    return day.strftime("%d/%m/%Y")', '-    return day.strftime("%m/%d/%Y")')
    assert "'return day.strftime(\"%m/%d/%Y\")' is not in the file" in refused(stale)


def test_answers_without_a_usable_diff_are_refused() -> None:
    with pytest.raises(PatchRefused, match="holds no unified diff"):
        extract_diff("I would change the date format to ISO.")
    with pytest.raises(PatchRefused, match="holds code, not a unified diff"):
        extract_diff("Here is the fix:\n```python\ndef to_tool_date(day):\n    return day.isoformat()\n```\n")
    with pytest.raises(PatchRefused, match="not inside a ```diff fenced block"):
        extract_diff(FIX)
    with pytest.raises(PatchRefused, match="not closed"):
        extract_diff("```diff\n" + FIX)
    assert "changes nothing" in refused(f"--- a/{ROUTER}\n+++ b/{ROUTER}\n@@ -1,2 +1,2 @@\n def route(q):\n"
                                        "     return 'search'\n")
    broken = make_diff(ROUTER, ORIGINAL[ROUTER], "def route(q):\n    return 'search'(\n")
    assert "no longer compiles" in refused(broken)


# ---- rounds and budget ----------------------------------------------------------------------------


def _plus_n(files, case) -> float:  # `x + n` passes case-0 .. case-(n-1)
    m = re.search(r"x \+ (\d+)", files[TOOLS])
    return 1.0 if m and int(case.case_id.split("-")[1]) < int(m.group(1)) else 0.0


def _patches(*ns: int):
    replies = iter(answer(make_diff(TOOLS, TOOLS_TEXT, f"def tool(x):\n    return x + {n}\n")) for n in ns)
    return lambda messages, **kw: next(replies)


def test_a_refused_diff_goes_back_to_the_model_with_the_reason(tmp_path) -> None:
    task, _ = synthetic_task("tool_arguments", tmp_path, scorer=lambda files, case: float("x + 1" in files[TOOLS]))
    seen: list[list[dict]] = []
    good = answer(make_diff(TOOLS, TOOLS_TEXT, "def tool(x):\n    return x + 1\n"))
    replies = iter([answer(make_diff("src/app/other.py", "a\n", "b\n")), good])

    def complete(messages, **kwargs):
        seen.append(messages)
        return next(replies)

    task.complete = complete
    [p] = code_patch()(rounds=3).propose(task)
    assert "src/app/other.py: not a file you may change" in seen[1][-1]["content"]
    assert seen[1][-2]["role"] == "assistant" and "other.py" in seen[1][-2]["content"]
    assert p.metadata["rounds"] == 2 and p.metadata["refused_diffs"] == 1


def test_repair_rounds_are_bounded(tmp_path) -> None:
    task, seen = synthetic_task("routing", tmp_path, answer="no diff here", budget=Budget(max_metric_calls=30))
    assert code_patch()(rounds=2).propose(task) == []
    assert seen["completions"] == 3  # the first answer and two repairs
    lines = (tmp_path / "code_patch_transcript.jsonl").read_text().splitlines()
    assert [json.loads(line)["verdict"] for line in lines] == ["refused"] * 3


def test_the_loop_stops_at_the_dollar_budget(tmp_path) -> None:
    # the synthetic model charges $0.01 a call: $0.025 pays for two answers
    task, seen = synthetic_task("tool_arguments", tmp_path, answer="no diff", budget=Budget(max_usd=0.025))
    logged: list[str] = []
    task.log = logged.append
    assert code_patch()(rounds=5).propose(task) == []
    assert seen["completions"] == 3 and task.spend.usd == pytest.approx(0.02)  # the third was refused
    assert any("budget spent" in m and "dollar budget" in m for m in logged)


def test_the_loop_stops_at_the_metric_budget_and_keeps_what_it_found(tmp_path) -> None:
    task, _ = synthetic_task("tool_arguments", tmp_path, budget=Budget(max_metric_calls=10), scorer=_plus_n)
    task.complete = _patches(1, 2, 3, 4, 5)
    proposals = code_patch()(rounds=5).propose(task)
    # the base replay took 3 calls, two patches 6 more; the third patch's replay would break 10
    assert task.spend.metric_calls == 9
    assert [round(p.train_score, 2) for p in proposals] == [0.67, 0.33]


def test_a_failing_model_keeps_what_was_found_or_raises_when_nothing_was(tmp_path) -> None:
    task, _ = synthetic_task("tool_arguments", tmp_path / "found", scorer=_plus_n)
    replies = _patches(1)
    answers = iter([lambda: replies(None), lambda: (_ for _ in ()).throw(RuntimeError("context window exceeded"))])
    task.complete = lambda messages, **kw: next(answers)()
    [p] = code_patch()(rounds=3).propose(task)
    assert p.train_score == pytest.approx(1 / 3)

    task, _ = synthetic_task("tool_arguments", tmp_path / "none", scorer=_plus_n)
    task.complete = lambda messages, **kw: (_ for _ in ()).throw(RuntimeError("context window exceeded"))
    with pytest.raises(RuntimeError, match="context window"):
        code_patch()().propose(task)


def test_a_patch_is_screened_on_the_failing_cases_shown_before_every_case_is_replayed(tmp_path) -> None:
    task, seen = synthetic_task("tool_arguments", tmp_path, scorer=_plus_n)
    task.complete = _patches(0, 1)  # `x + 0` fixes none of them: screened out on case-0 alone
    [p] = code_patch()(cases=1, rounds=1).propose(task)
    assert seen["evaluated_ids"] == ["case-0", "case-1", "case-2",  # the base
                                     "case-0",  # the screen of x + 0
                                     "case-0", "case-0", "case-1", "case-2"]  # x + 1: screen, then all
    assert p.train_score == pytest.approx(1 / 3) and p.metadata["scored_on"] == "3 training cases"


def test_when_the_budget_ends_after_the_screen_the_patch_is_proposed_on_what_was_replayed(tmp_path) -> None:
    task, _ = synthetic_task("tool_arguments", tmp_path, scorer=_plus_n, budget=Budget(max_metric_calls=5))
    task.complete = _patches(1, 2, 3)
    [p] = code_patch()(cases=1, rounds=3).propose(task)
    assert task.spend.metric_calls == 4  # base 3 + screen 1: all three cases again would break 5
    assert (p.base_score, p.train_score) == (0.0, 1.0)
    assert p.metadata["scored_on"].startswith("1 of 3 training cases (the failing cases shown; budget:")


# ---- end to end on the helpdesk: scripted coding model, real replays ------------------------------

ABOUT_THE_DATE = '''# Only questions about the date or time itself are answered from the clock.
ABOUT_THE_CLOCK = re.compile(
    r"\\b(what('?s| is) the (date|time)|what (day|date|time) is it|which day is it)\\b", re.I
)
'''


def _fix_dates(text: str) -> str:
    return text.replace('return day.strftime("%d/%m/%Y")', "return day.isoformat()")


def _fix_router(text: str) -> str:
    fixed = text.replace("VAGUE = re.compile(", ABOUT_THE_DATE + "VAGUE = re.compile(", 1)
    return fixed.replace("    if m := TIME_RELATIVE.search(question):",
                         "    if (m := TIME_RELATIVE.search(question)) and ABOUT_THE_CLOCK.search(question):", 1)


def _break_dates(text: str) -> str:  # fixes the format but changes the default window the tests pin
    return _fix_dates(text).replace("timedelta(days=30)", "timedelta(days=14)")


def _with_scripted_optimizer(root: Path) -> None:
    config = root / "autofix.yaml"
    text = config.read_text()
    config.write_text(text.replace("  name: autofix-local/smollm2-135m-instruct\n",
                                   "  name: autofix-local/smollm2-135m-instruct\n  optimizer: scripted/optimizer\n", 1))


def _scripted_optimizer_short_answers(root: Path) -> None:
    """As `_with_scripted_optimizer`, and the assistant's answers cut at 48 tokens instead of 256: the routing
    test replays every answer with the embedded model, and what it checks (searching) is decided before."""
    _with_scripted_optimizer(root)
    assistant = root / "src" / "helpdesk" / "assistant.py"
    text = assistant.read_text()
    assert "ANSWER_MAX_TOKENS = 256\n" in text
    assistant.write_text(text.replace("ANSWER_MAX_TOKENS = 256\n", "ANSWER_MAX_TOKENS = 48\n"))


def _cluster(root: Path, category: str) -> str:
    config = load_config(root / "autofix.yaml")
    latest = json.loads((config.state_path / "triage" / "latest.json").read_text())
    return next(c["id"] for c in latest["clusters"] if c["category"] == category)


def _assert_candidate(root: Path, result, path: str, *, verified: bool = True) -> None:
    assert result.candidates, [r.model_dump() for r in result.runs]
    best = result.candidates[0]
    assert best.optimizer == "autofix-code-patch/code_patch"
    assert git(root, "rev-parse", "--verify", best.branch).strip() == best.commit
    assert git(root, "diff", "--name-only", f"{best.base_commit}..{best.branch}").split() == [path]
    assert best.files == [path]
    assert best.lineage["tests"] == "passed"
    assert best.train.verified is verified and best.train.score > best.train.base_score
    assert best.description.startswith("code: ")


@pytest.mark.model
def test_fixes_the_tool_date_format_with_a_scripted_coding_model(tmp_path, scripted_model) -> None:
    root = make_helpdesk_repo(tmp_path, edit=_with_scripted_optimizer)
    original = (root / DATES).read_text()

    def script(messages: list[dict]) -> str:
        assert "category: tool_arguments" in messages[1]["content"]
        return answer(make_diff(DATES, original, _fix_dates(original)), "format tool dates as ISO YYYY-MM-DD")

    scripted_model.script = script
    cluster = _cluster(root, "tool_arguments")
    result = optimize_cluster(load_config(root / "autofix.yaml"), cluster, optimizer="code_patch",
                              budget=Budget(max_metric_calls=60, max_usd=1.0), sandbox_kind="local")
    assert result.measures == ["tool_args_valid", "no_tool_error"]
    _assert_candidate(root, result, DATES)
    best = result.candidates[0]
    assert best.train.base_score == 0.0 and best.train.score == 1.0
    assert '-    return day.strftime("%d/%m/%Y")' in best.diff and "+    return day.isoformat()" in best.diff
    # what the coding model was shown: the cluster, the failing tool calls with their arguments, the code
    prompt = scripted_model.calls[0][1]["content"]
    assert "tool list_tickets(" in prompt and "ERROR 400 Bad Request: since:" in prompt
    assert "tool_args_valid: FAIL" in prompt and f"## {DATES}" in prompt and original in prompt
    assert len(scripted_model.calls) == 1  # a perfect score ends the conversation


@pytest.mark.model
@pytest.mark.parametrize("sandbox", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_patch_breaking_the_tests_is_repaired_in_the_next_round(tmp_path, scripted_model, sandbox, request) -> None:
    if sandbox == "docker":
        request.getfixturevalue("docker_sandbox")  # skips where Docker or its base image is missing
    root = make_helpdesk_repo(tmp_path, edit=_with_scripted_optimizer)
    original = (root / DATES).read_text()

    def script(messages: list[dict]) -> str:
        if "tests failed" in messages[-1]["content"]:
            return answer(make_diff(DATES, original, _fix_dates(original)), "ISO dates, default window kept")
        return answer(make_diff(DATES, original, _break_dates(original)), "ISO dates and a shorter default window")

    scripted_model.script = script
    result = optimize_cluster(load_config(root / "autofix.yaml"), _cluster(root, "tool_arguments"),
                              optimizer="code_patch", budget=Budget(max_metric_calls=60, max_usd=1.0),
                              sandbox_kind=sandbox)
    _assert_candidate(root, result, DATES)
    [best] = result.candidates
    assert best.lineage["rounds"] == 2 and "timedelta(days=14)" not in best.diff
    repair = scripted_model.calls[1][-1]["content"]
    assert "test_parse_since" in repair and "failed" in repair  # pytest's own report went back to the model


@pytest.mark.model
def test_fixes_the_routing_defect_with_a_scripted_coding_model(tmp_path, scripted_model) -> None:
    root = make_helpdesk_repo(tmp_path, edit=_scripted_optimizer_short_answers)
    original = (root / ROUTER).read_text()

    def script(messages: list[dict]) -> str:
        assert "category: routing" in messages[1]["content"]
        return answer(make_diff(ROUTER, original, _fix_router(original)),
                      "answer from the clock only questions about the date or time itself")

    scripted_model.script = script
    config = load_config(root / "autofix.yaml")
    cluster = _cluster(root, "routing")
    train = len(load_slice(config, cluster, "target").cases)
    # a tight budget: the base replay, then the patch on the 4 failing cases shown to the model, and no more
    result = optimize_cluster(config, cluster, optimizer="code_patch", budget=Budget(max_metric_calls=train + 4),
                              sandbox_kind="local")
    assert "searched" in result.measures
    _assert_candidate(root, result, ROUTER, verified=False)
    best = result.candidates[0]
    assert best.lineage["scored_on"].startswith(f"4 of {train} training cases (the failing cases shown; budget:")
    assert result.runs[0].metric_calls == train + 4
    # every replayed case now searches (`searched` passes), none did at the base
    replays = config.state_path / "optimize" / result.run_id / cluster / "autofix-code-patch-code_patch" / "replays"
    base_run, screen_run = sorted(replays.glob("e*/results.jsonl"))
    searched = [[any(s["kind"] == "retrieval" for s in json.loads(line)["spans"]) for line in run.read_text().splitlines()]
                for run in (base_run, screen_run)]
    assert (len(searched[0]), len(searched[1])) == (train, 4)
    assert not any(searched[0]) and all(searched[1])
    assert best.train.score > 0.49 and best.train.base_score == 0.0  # searched passes; answers may still miss facts
    prompt = scripted_model.calls[0][1]["content"]
    assert "time-relative question answered from the clock" in prompt and "searched: FAIL" in prompt
