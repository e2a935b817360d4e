"""The `GEPAAdapter` over a target's prompt files: gepa's candidate is `{path: text}`, a data instance
is a training case id, and an evaluation is autofix's replay of the changed files on those cases.

The engine never looks inside the trajectories: they are this module's JSON-ready records of what a
case did (answer, router decision, retrieved documents, tool calls, how the slice's measures judged
it), and `make_reflective_dataset` turns them into what the reflection model reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from gepa import EvaluationBatch

from autofix.optimize import BudgetExhausted, CaseEval, OptimizeTask

CaseId = str
Trajectory = dict[str, Any]
"""One case as the reflection model sees it: request, earlier turns, answer, what happened, feedback."""

_FIELD = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_MIN_FRAGMENT = 12
"""A prompt file's static text shorter than this says nothing about which cases used the file."""


def candidate_key(files: Mapping[str, str]) -> str:
    """A stable name for a set of changed files (the base itself is `{}`)."""
    blob = json.dumps(sorted(files.items()), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def template_fields(text: str) -> list[str]:
    """The `{name}` fields a prompt file is filled with (Python `str.format` style), in order."""
    return list(dict.fromkeys(_FIELD.findall(text)))


def template_problem(base: str, new: str) -> str | None:
    """Why `new` cannot replace `base` without a replay (None when it may be replayed)."""
    if base.strip() and not new.strip():
        return "the proposed file is empty"
    fields = template_fields(base)
    if fields:
        try:
            list(string.Formatter().parse(new))
        except ValueError as exc:
            return f"not a valid template ({exc}); literal braces are written {{{{ }}}}"
        dropped = [f for f in fields if f not in template_fields(new)]
        if dropped:
            return f"drops the template field(s) {', '.join('{' + f + '}' for f in dropped)} the assistant fills in"
    return None


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_spans(spans: Sequence[Mapping[str, Any]], limit: int = 400) -> str:
    """A compact account of a case's spans: router decision, retrieved documents, tool calls, errors."""
    parts: list[str] = []
    for span in spans:
        kind, name = span.get("kind"), span.get("name") or ""
        error = span.get("error")
        output = span.get("output")
        if kind == "router":
            decision = output if isinstance(output, Mapping) else {"action": output}
            action = decision.get("action") or "?"
            tool = f" {decision['tool']}" if decision.get("tool") else ""
            reason = f" ({_clip(decision['reason'], 80)})" if decision.get("reason") else ""
            parts.append(f"router: {action}{tool}{reason}")
        elif kind == "retrieval":
            hits = output if isinstance(output, list) else []
            docs: dict[str, str] = {}
            for hit in hits:
                if not isinstance(hit, Mapping):
                    continue
                doc = str(hit.get("doc_id") or "?")
                meta = hit.get("metadata") if isinstance(hit.get("metadata"), Mapping) else {}
                docs.setdefault(doc, str(meta.get("title") or ""))
            shown = ", ".join(f"{d} ({t})" if t else d for d, t in list(docs.items())[:5])
            parts.append(f"retrieved: {shown or 'nothing'}")
        elif kind == "tool":
            args = json.dumps(span.get("input"), ensure_ascii=False, default=str)
            parts.append(f"tool {name}({_clip(args, 120)})" + (f" -> error: {_clip(error, 120)}" if error else ""))
        elif kind == "llm":
            attributes = span.get("attributes") if isinstance(span.get("attributes"), Mapping) else {}
            if attributes.get("finish_reason") == "length":
                parts.append("model: answer cut off at the token limit")
            if error:
                parts.append(f"model error: {_clip(error, 120)}")
        elif error:
            parts.append(f"{kind} {name} error: {_clip(error, 120)}")
    return _clip("; ".join(parts), limit) if parts else "(no spans)"


def trajectory(case: CaseEval, *, output_chars: int = 500) -> Trajectory:
    turns = "\n".join(f"{m.get('role', '?')}: {_clip(m.get('content', ''), 160)}" for m in case.messages[-4:])
    answer = case.output if case.output is not None else ""
    return {
        "case_id": case.case_id,
        "request": _clip(case.input, 300),
        "earlier_turns": turns,
        "answer": _clip(answer, output_chars) if answer else f"(no answer: {_clip(case.error or 'none', 200)})",
        "what_happened": render_spans(case.spans),
        "score": case.score,
        "feedback": _clip(case.feedback, 400),
    }


def is_exercised(text: str, case: CaseEval) -> bool | None:
    """Whether `case` went through the prompt file `text`: some of its static text shows up in the
    case's model input or answer. None when the file has too little static text to tell."""
    fragments = [" ".join(f.split()) for f in _FIELD.split(text)[::2]]
    fragments = [f[:60] for f in fragments if len(f) >= _MIN_FRAGMENT]
    if not fragments:
        return None
    seen = [case.output or ""]
    for span in case.spans:
        if span.get("kind") == "llm":
            seen.append(json.dumps(span.get("input"), ensure_ascii=False, default=str))
    haystack = " ".join(" ".join(s.split()) for s in seen).replace("\\n", " ")
    haystack = " ".join(haystack.split())
    return any(f in haystack for f in fragments)


class PromptFilesAdapter:
    """gepa's `GEPAAdapter` over the prompt files of an `OptimizeTask`.

    - `evaluate` replays the files that differ from the base (`task.evaluate`), one metric call per
      case the replay cache does not answer; what it has already replayed (the base included, from
      `task.base`) it answers itself, free. An unmeasured case scores 0; a replay that failed for a
      case is that case's low score, never an exception. A proposal that cannot be a template of
      the file (empty, broken `{fields}`) scores 0 on every case without a replay.
    - `make_reflective_dataset` gives each file the batch's cases, failures first.
    - `get_adapter_state` / `set_adapter_state` keep the per-case scores and the reflections in
      gepa's run state, so a resumed run still knows them.
    """

    propose_new_texts = None  # gepa's own reflective proposer, with `reflection_lm`

    def __init__(self, task: OptimizeTask, base_files: Mapping[str, str]):
        self.task = task
        self.base = dict(base_files)
        self.evals: dict[tuple[str, CaseId], CaseEval] = {}
        self.case_scores: dict[str, dict[CaseId, float | None]] = {}
        self.reflections: dict[str, str] = {}
        """`candidate_key` of a proposed file set -> the reflection model's raw answer."""
        self.exhausted: str | None = None
        self.charged = 0
        self.reflection_calls = 0
        self.refused = 0
        base_key = candidate_key({})
        for case in task.base.cases:
            self._remember(base_key, case)

    # ---- what gepa calls ---------------------------------------------------------------

    def changed(self, candidate: Mapping[str, str]) -> dict[str, str]:
        return {path: text for path, text in candidate.items() if self.base.get(path) != text}

    def evaluate(self, batch: list[CaseId], candidate: dict[str, str],
                 capture_traces: bool = False) -> EvaluationBatch[Trajectory, str]:
        files = self.changed(candidate)
        problems = [f"{p}: {why}" for p, t in files.items() if (why := template_problem(self.base[p], t))]
        if problems:
            self.refused += 1
            self.task.log(f"proposal refused before replay: {'; '.join(problems)[:200]}")
            return self._refused(batch, "; ".join(problems), capture_traces)
        key = candidate_key(files)
        todo = [c for c in dict.fromkeys(batch) if (key, c) not in self.evals]
        charged = 0
        if todo:
            try:
                replay = self.task.evaluate(files, case_ids=todo)
            except BudgetExhausted as exc:
                self.exhausted = str(exc)
                raise
            for case in replay.cases:
                self._remember(key, case)
            charged = max(0, len(todo) - replay.cached)
            self.charged += charged
        evals = [self.evals[(key, c)] for c in batch]
        return EvaluationBatch(
            outputs=[e.output or "" for e in evals],
            scores=[float(e.score) if e.score is not None else 0.0 for e in evals],
            trajectories=[trajectory(e) for e in evals] if capture_traces else None,
            num_metric_calls=charged,
        )

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: EvaluationBatch[Trajectory, str],
                                components_to_update: list[str]) -> dict[str, list[dict[str, Any]]]:
        records = []
        for t in sorted(eval_batch.trajectories or [], key=lambda t: (t.get("score") or 0.0)):
            record: dict[str, Any] = {"Request": t["request"]}
            if t.get("earlier_turns"):
                record["Earlier turns"] = t["earlier_turns"]
            record["Answer"] = t["answer"]
            record["What happened"] = t["what_happened"]
            score = t.get("score")
            record["Feedback"] = (f"score {score:.2f}: " if score is not None else "not measured: ") + t["feedback"]
            records.append(record)
        return {name: list(records) for name in components_to_update}

    def get_adapter_state(self) -> dict[str, Any]:
        return {"case_scores": {k: dict(v) for k, v in self.case_scores.items()},
                "reflections": dict(self.reflections)}

    def set_adapter_state(self, state: dict[str, Any]) -> None:
        for key, scores in (state.get("case_scores") or {}).items():
            self.case_scores.setdefault(key, {}).update(scores)
        self.reflections.update(state.get("reflections") or {})

    # ---- what the optimizer reads --------------------------------------------------------

    def train_score(self, candidate: Mapping[str, str]) -> tuple[float | None, int]:
        """autofix's training score of a candidate (mean over measured cases) and how many training
        cases it is known on."""
        scores = self.case_scores.get(candidate_key(self.changed(candidate)), {})
        known = [s for c, s in scores.items() if c in {t.case_id for t in self.task.train}]
        measured = [s for s in known if s is not None]
        return (sum(measured) / len(measured) if measured else None), len(known)

    # ---- helpers -------------------------------------------------------------------------

    def _remember(self, key: str, case: CaseEval) -> None:
        self.evals[(key, case.case_id)] = case
        self.case_scores.setdefault(key, {})[case.case_id] = case.score

    def _refused(self, batch: list[CaseId], why: str, capture_traces: bool) -> EvaluationBatch[Trajectory, str]:
        by_id = {c.case_id: c for c in self.task.train}
        trajectories = None
        if capture_traces:
            trajectories = [{"case_id": c, "request": _clip(by_id[c].input if c in by_id else "", 300),
                             "earlier_turns": "", "answer": "(not replayed)", "what_happened": "(not replayed)",
                             "score": 0.0, "feedback": f"proposal refused before replay: {why}"} for c in batch]
        return EvaluationBatch(outputs=["" for _ in batch], scores=[0.0 for _ in batch], trajectories=trajectories,
                               num_metric_calls=0)
