"""The LLM code-patch optimizer: the optimizer model writes a unified diff to the target's code surfaces.

One conversation per attempt. Each round the model answers with a diff against the files as given;
the diff is checked and applied in memory (`autofix_code_patch.patch`), the target's own tests run on
the result (`task.run_tests`), then the training cases are replayed with it (`task.evaluate`). What
went wrong (the refusal, the tests' output, the cases that still fail) is the next round's message, for
at most `rounds` repair rounds. A patch whose tests pass and whose training score beats the base's is a
proposal. The conversation sent each round is the first prompt plus the last answer and its feedback,
so it stays the same size however many rounds run.

Options (constructor keywords, or environment variables for `autofix optimize`):
`rounds` (AUTOFIX_CODE_PATCH_ROUNDS, 3), `attempts` (AUTOFIX_CODE_PATCH_ATTEMPTS, 1: independent
conversations), `cases` (AUTOFIX_CODE_PATCH_CASES, 4: failing cases shown), `max_tokens`
(AUTOFIX_CODE_PATCH_MAX_TOKENS, 2048: the answer), `temperature` (AUTOFIX_CODE_PATCH_TEMPERATURE, 0.2),
`prompt_chars` (AUTOFIX_CODE_PATCH_PROMPT_CHARS, 24000: code shown in full, most relevant files first).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from autofix.optimize import BudgetExhausted, OptimizeTask, Proposal, ReplayBatch, TestRun, optimizer
from autofix_code_patch.patch import FENCE, PatchRefused, apply_answer, diff_stat
from autofix_code_patch.prompt import SYSTEM, choose_files, failing, first_prompt, render_case

_TEST_TAIL = 2500


def _env(name: str, default: Any, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a {kind.__name__}") from None


@dataclass
class _Outcome:
    tests: TestRun | None
    batch: ReplayBatch | None
    base_score: float | None = None
    """The base's score on the same cases as `batch`."""
    screen_only: bool = False
    """`batch` is the screen (the failing cases shown to the model), not every training case."""
    budget: str = ""
    """Set when the budget ran out before every training case was replayed."""


def _mean_score(batch: ReplayBatch, ids: set[str] | None = None) -> float | None:
    scores = [c.score for c in batch.cases if c.score is not None and (ids is None or c.case_id in ids)]
    return sum(scores) / len(scores) if scores else None


def _explanation(answer: str) -> tuple[str, str]:
    """(summary line, rationale) from the text of an answer outside its diff."""
    prose = FENCE.sub("", answer).strip()
    summary = ""
    if m := re.search(r"^\s*\**summary\**\s*:\s*(.+)$", prose, re.IGNORECASE | re.MULTILINE):
        summary = m.group(1).strip()
    why = ""
    if m := re.search(r"^\s*\**why\**\s*:\s*(.+?)(?=^\s*\**summary\**\s*:|\Z)", prose, re.IGNORECASE | re.MULTILINE | re.DOTALL):
        why = m.group(1).strip()
    if not summary:
        summary = next((line.strip(" #*-") for line in prose.splitlines() if line.strip(" #*-")), "")
    return summary, (why or prose)[:2000]


def _one_line(text: str, limit: int = 100) -> str:
    text = re.sub(r"\s+", " ", text).strip().rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@optimizer("code_patch", categories=["tool_arguments", "routing"], version=1, writes_with_model=True)
class CodePatch:
    """The optimizer model writes a unified diff to the code surfaces; kept if the target's tests pass and the training score rises."""

    def __init__(self, *, rounds: int | None = None, attempts: int | None = None, cases: int | None = None,
                 max_tokens: int | None = None, temperature: float | None = None, prompt_chars: int | None = None):
        self.rounds = rounds if rounds is not None else _env("AUTOFIX_CODE_PATCH_ROUNDS", 3, int)
        self.attempts = attempts if attempts is not None else _env("AUTOFIX_CODE_PATCH_ATTEMPTS", 1, int)
        self.cases = cases if cases is not None else _env("AUTOFIX_CODE_PATCH_CASES", 4, int)
        self.max_tokens = max_tokens if max_tokens is not None else _env("AUTOFIX_CODE_PATCH_MAX_TOKENS", 2048, int)
        self.temperature = temperature if temperature is not None else _env("AUTOFIX_CODE_PATCH_TEMPERATURE", 0.2, float)
        self.prompt_chars = prompt_chars if prompt_chars is not None else _env("AUTOFIX_CODE_PATCH_PROMPT_CHARS", 24000, int)
        if self.rounds < 0 or self.attempts < 1 or self.cases < 1:
            raise ValueError("code_patch: rounds >= 0, attempts >= 1 and cases >= 1")

    # ---- the protocol ---------------------------------------------------------------------

    def propose(self, task: OptimizeTask) -> list[Proposal]:
        code = task.files("code")
        if not code:
            task.log("no code surface (autofix.yaml surfaces.code is empty): nothing to patch")
            return []
        if task.run_tests is None:
            task.log("the target declares no tests (autofix.yaml `tests`): tests skipped, patches are checked by "
                     "replay only")
        base_texts = {s.path: s.text for s in code}
        cases = failing(task.base, self.cases)
        screen = [c.case_id for c in cases] if len(cases) < len(task.base.cases) else []
        shown, listed = choose_files(code, cases, self.prompt_chars)
        prompt = first_prompt(task, cases, shown, listed)
        found: dict[tuple, Proposal] = {}
        tried: dict[tuple, _Outcome] = {}
        transcript = task.work_dir / "code_patch_transcript.jsonl"
        transcript.parent.mkdir(parents=True, exist_ok=True)
        (task.work_dir / "code_patch_prompt.md").write_text(f"{SYSTEM}\n\n---\n\n{prompt}\n", encoding="utf-8")
        try:
            for attempt in range(1, self.attempts + 1):
                perfect = self._conversation(task, attempt, prompt, base_texts, screen, found, tried, transcript)
                if perfect or len(found) >= task.max_candidates:
                    break
        except BudgetExhausted as exc:
            task.log(f"budget spent, stopping with {len(found)} proposal(s): {exc}")
        ranked = sorted(found.values(), key=lambda p: p.train_score or 0.0, reverse=True)
        return ranked[: task.max_candidates]

    # ---- one conversation -------------------------------------------------------------------

    def _conversation(self, task: OptimizeTask, attempt: int, prompt: str, base_texts: dict[str, str],
                      screen: list[str], found: dict[tuple, Proposal], tried: dict[tuple, _Outcome],
                      transcript) -> bool:
        """Rounds of answer -> check -> feedback; True when a patch passed every measured case."""
        last: tuple[str, str] | None = None  # (answer, feedback) of the previous round
        refused = 0
        kept_here = 0
        for n in range(1, self.rounds + 2):  # the first answer, then up to `rounds` repairs
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
            if last is not None:
                messages += [{"role": "assistant", "content": last[0]}, {"role": "user", "content": last[1]}]
            try:
                answer = task.complete(messages, max_tokens=self.max_tokens, temperature=self.temperature)
            except BudgetExhausted:
                raise
            except Exception as exc:  # the model failed (context too long, provider down): stop, keep what was found
                task.log(f"attempt {attempt} round {n}: the optimizer model failed: {type(exc).__name__}: {exc}")
                _append(transcript, {"attempt": attempt, "round": n, "verdict": "model error",
                                     "reason": f"{type(exc).__name__}: {exc}"})
                if not found:
                    raise
                return False
            step = {"attempt": attempt, "round": n, "answer": answer}
            if kept_here and re.match(r"^\W*done\b", answer.strip(), re.IGNORECASE):
                _append(transcript, {**step, "verdict": "done"})
                task.log(f"attempt {attempt} round {n}: the model is done")
                return False
            try:
                files = apply_answer(answer, base_texts)
            except PatchRefused as exc:
                refused += 1
                task.log(f"attempt {attempt} round {n}: diff refused: {exc}")
                _append(transcript, {**step, "verdict": "refused", "reason": str(exc)})
                last = (answer, (f"Your diff was refused: {exc}\n\nAnswer again in the same form (Summary, Why, one "
                                 f"```diff block) with a diff against the ORIGINAL files as given above."))
                continue
            key = tuple(sorted(files.items()))
            outcome = tried.get(key)
            if outcome is None:
                outcome = tried[key] = self._check(task, files, screen)
            stat = diff_stat(base_texts, files)
            if outcome.tests is not None and not outcome.tests.passed:
                task.log(f"attempt {attempt} round {n}: {stat}: the target's tests failed (exit "
                         f"{outcome.tests.exit_code})")
                _append(transcript, {**step, "verdict": "tests failed", "tests": outcome.tests.output[-_TEST_TAIL:]})
                last = (answer, self._tests_feedback(outcome.tests))
                continue
            batch = outcome.batch
            assert batch is not None
            base, score = outcome.base_score, batch.score
            beats = score is not None and (base is None or score > base + 1e-9)
            scope = (f"on the {len(batch.cases)} failing cases shown" if outcome.screen_only
                     else "training score")
            task.log(f"attempt {attempt} round {n}: {stat}: {scope} {_fmt(base)} -> {_fmt(score)}"
                     + (" (kept)" if beats else ""))
            verdict = "kept" if beats else "no better"
            _append(transcript, {**step, "verdict": verdict + (" (screen only)" if outcome.screen_only else ""),
                                 "score": score, "base_score": base, "cases": len(batch.cases)})
            if beats:
                kept_here += 1
                if key not in found:
                    summary, why = _explanation(answer)
                    found[key] = Proposal(
                        files=files,
                        description=f"code: {_one_line(summary or stat)}",
                        rationale=why,
                        train_score=score,
                        base_score=base,
                        metadata={"rounds": n, "attempt": attempt, "tests": "skipped" if outcome.tests is None
                                  else "passed", "refused_diffs": refused, "changed": stat,
                                  "scored_on": (f"{len(batch.cases)} of {len(task.base.cases)} training cases "
                                                f"(the failing cases shown; {outcome.budget})"
                                                if outcome.screen_only else f"{len(batch.cases)} training cases"),
                                  "optimizer_model": task.optimizer_model},
                    )
                if outcome.budget:
                    raise BudgetExhausted(outcome.budget)
                if score is not None and score >= 1.0 - 1e-9:
                    return True
                if len(found) >= task.max_candidates:
                    return False
            last = (answer, self._score_feedback(task, outcome, beats))
        return False

    def _check(self, task: OptimizeTask, files: dict[str, str], screen: list[str]) -> _Outcome:
        """Tests, then the screen (the failing cases shown), then every training case; each step only when
        the one before passed. The screen's cases are answered from the replay cache in the full replay."""
        tests = task.run_tests(files) if task.run_tests is not None else None
        if tests is not None and not tests.passed:
            return _Outcome(tests, None)  # a patch breaking the tests is not worth a replay
        if screen:
            shown = task.evaluate(files, case_ids=screen)
            base = _mean_score(task.base, set(screen))
            if shown.score is None or (base is not None and shown.score <= base + 1e-9):
                return _Outcome(tests, shown, base, screen_only=True)
            try:
                full = task.evaluate(files)
            except BudgetExhausted as exc:
                return _Outcome(tests, shown, base, screen_only=True, budget=f"budget: {exc}")
            return _Outcome(tests, full, task.base.score)
        return _Outcome(tests, task.evaluate(files), task.base.score)

    # ---- feedback ---------------------------------------------------------------------------

    @staticmethod
    def _tests_feedback(tests: TestRun) -> str:
        tail = tests.output[-_TEST_TAIL:].strip() or "(no output)"
        return (f"Your diff applied, but the assistant's own tests failed with it (exit code {tests.exit_code}). "
                f"The end of their output:\n```\n{tail}\n```\n\nFix the cause without breaking what the tests check. "
                f"Answer again in the same form with a complete diff against the ORIGINAL files as given above.")

    def _score_feedback(self, task: OptimizeTask, outcome: _Outcome, kept: bool) -> str:
        batch = outcome.batch
        assert batch is not None
        base_by_id = {c.case_id: c for c in task.base.cases}
        worse = [c for c in batch.cases if c.score is not None and (base_by_id.get(c.case_id) is not None)
                 and (base_by_id[c.case_id].score or 0.0) > c.score + 1e-9]
        still = failing(batch, self.cases)
        scope = "On the failing cases shown above, the score" if outcome.screen_only else "Training score"
        tests = "the tests passed" if outcome.tests is not None else "the assistant declares no tests"
        head = (f"Your diff applied and {tests}. {scope}: {_fmt(outcome.base_score)} before, "
                f"{_fmt(batch.score)} with your diff.")
        if kept:
            head += " It is kept as a candidate."
        parts = [head]
        if worse:
            parts.append(f"{len(worse)} case(s) got worse than before, e.g.:\n\n" + render_case(worse[0]))
        if still:
            parts.append("Cases that still fail:\n\n" + "\n\n".join(render_case(c) for c in still))
        ask = ("If you can also fix these, answer in the same form with an improved complete diff against the "
               "ORIGINAL files; otherwise answer DONE." if kept else
               "Answer again in the same form with a complete diff against the ORIGINAL files as given above.")
        parts.append(ask)
        return "\n\n".join(parts)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _append(path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
