"""What the coding model reads: the cluster, failing training cases (compact), the code files, the rules."""

from __future__ import annotations

import json
import re
from typing import Any

from autofix.optimize import CaseEval, OptimizeTask, ReplayBatch, SurfaceFile

SYSTEM = """You fix bugs in the code of an AI assistant. You are shown a cluster of its failures (what \
triage found, failing cases with what the assistant did and what failed), and the source files you may change.

Answer in this form and nothing else:
Summary: <one line: what the fix changes>
Why: <two or three sentences: the cause in the code and why the change fixes these cases>
```diff
--- a/<path as given>
+++ b/<path as given>
@@ -<start>,<count> +<start>,<count> @@
 <context line, copied exactly>
-<removed line, copied exactly>
+<added line>
```

Rules for the diff:
- a unified diff against the files exactly as given, in ONE ```diff block;
- change only the files listed under "Files you may change", with their paths as given (a/ and b/ prefixes);
- no new files, no deleted or renamed files, no mode changes;
- copy context and removed lines exactly from the file, with their indentation;
- keep the change small: fix the cause, do not rewrite unrelated code; keep the assistant's own tests passing."""

_MAX_FIELD = 400


def _short(value: Any, limit: int = _MAX_FIELD) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def span_line(span: dict[str, Any]) -> str | None:
    """One line per span that says what the assistant decided or called; None for spans that add nothing."""
    kind, name = span.get("kind"), span.get("name") or ""
    error = span.get("error")
    attrs = span.get("attributes") or {}
    if kind == "router":
        matched = attrs.get("matched")
        extra = f", matched {_short(matched, 120)}" if matched else ""
        return f"- router {name}: {_short(span.get('output'), 240)}{extra}"
    if kind == "tool":
        result = f"ERROR {_short(error, 300)}" if error else f"ok {_short(span.get('output'), 160)}"
        return f"- tool {name}({_short(span.get('input'), 240)}) -> {result}"
    if kind == "retrieval":
        hits = span.get("output") or []
        ids = [str(h.get("doc_id")) for h in hits if isinstance(h, dict)][:5]
        return f"- retrieval {name}: {len(hits)} hit(s) {', '.join(ids)}" + (f"; ERROR {_short(error, 200)}" if error else "")
    if kind == "llm":
        finish = attrs.get("finish_reason")
        return f"- llm {name}" + (f" (finish: {finish})" if finish else "") + (f"; ERROR {_short(error, 200)}" if error else "")
    if error:
        return f"- {kind} {name}: ERROR {_short(error, 300)}"
    return None


def render_case(case: CaseEval) -> str:
    score = "unmeasured" if case.score is None else f"{case.score:.2f}"
    out = [f"### case {case.case_id} (score {score})", f"request: {_short(case.input, 300)}"]
    if case.messages:
        earlier = " | ".join(f"{m.get('role')}: {_short(m.get('content'), 120)}" for m in case.messages[-2:])
        out.append(f"earlier turns: {earlier}")
    out.append(f"answer: {_short(case.output, 300) if case.output else '(none)'}")
    if case.error:
        out.append(f"error: {_short(case.error, 300)}")
    lines = [line for span in case.spans if (line := span_line(span))]
    if lines:
        out.append("what the assistant did:")
        out.extend(lines)
    out.append(f"what failed: {_short(case.feedback, 500)}")
    return "\n".join(out)


def failing(batch: ReplayBatch, limit: int) -> list[CaseEval]:
    """Up to `limit` failing cases of a batch, worst first, one per distinct request and failure."""
    bad = [c for c in batch.cases if (c.score is not None and c.score < 1.0) or (c.score is None and c.error)]
    bad.sort(key=lambda c: c.score if c.score is not None else 0.0)
    chosen, seen = [], set()
    for case in bad:
        key = (case.input.strip().lower(), case.feedback)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(case)
        if len(chosen) >= limit:
            break
    return chosen


def _relevance(surface: SurfaceFile, words: set[str]) -> int:
    text = surface.text.lower()
    return sum(text.count(w) for w in words) + sum(5 for w in words if w in surface.path.lower())


def _span_words(cases: list[CaseEval]) -> set[str]:
    words: set[str] = set()
    for case in cases:
        for span in case.spans:
            if span.get("kind") in ("router", "tool"):
                blob = json.dumps([span.get("name"), span.get("input"), span.get("output"), span.get("error")],
                                  default=str)
                words |= {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]{3,}", blob)}
    return words


def choose_files(code: list[SurfaceFile], cases: list[CaseEval], max_chars: int) -> tuple[list[SurfaceFile], list[str]]:
    """The code files shown in full (most relevant to the failing spans first, within `max_chars`) and the
    paths only listed."""
    words = _span_words(cases)
    ranked = sorted(code, key=lambda s: (-_relevance(s, words), s.path))
    shown, listed, used = [], [], 0
    for surface in ranked:
        if not shown or used + len(surface.text) <= max_chars:
            shown.append(surface)
            used += len(surface.text)
        else:
            listed.append(surface.path)
    return shown, listed


def render_files(shown: list[SurfaceFile], listed: list[str]) -> str:
    out = []
    for surface in shown:
        out.append(f"## {surface.path}\n```python\n{surface.text}```" if surface.text.endswith("\n")
                   else f"## {surface.path}\n```python\n{surface.text}\n```")
    if listed:
        out.append("Also changeable, not shown (ask for nothing; change them only if you must): " + ", ".join(listed))
    return "\n\n".join(out)


def first_prompt(task: OptimizeTask, cases: list[CaseEval], shown: list[SurfaceFile], listed: list[str]) -> str:
    cluster = task.cluster
    base = "n/a" if task.base.score is None else f"{task.base.score:.2f}"
    measured = sum(1 for c in task.base.cases if c.score is not None)
    head = [
        "# The failure cluster",
        f"category: {cluster.category.value}" + (f" ({cluster.name})" if cluster.name else ""),
        f"triage: {_short(cluster.rationale, 800) or '(no rationale)'}",
        (f"measured by: {', '.join(task.measures)}; score now {base} on {measured} training cases "
         f"(1.00 = every measure passes on every case)"),
        "",
        f"# Failing cases ({len(cases)} shown)",
        "\n\n".join(render_case(c) for c in cases) or "(none)",
        "",
        "# Files you may change (only these)",
        render_files(shown, listed),
        "",
        "Write the fix as described: Summary, Why, then one ```diff block.",
    ]
    return "\n".join(head)
