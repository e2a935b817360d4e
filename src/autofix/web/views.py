"""The pages of the review page, as HTML: the queue, one proposal, a cluster's labelling page, a message page.

Views only render what they are given (records of `autofix.approval`, cases of a slice, labels); reading the
store and deciding live in `autofix.web.app`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autofix.web.html import (
    Html,
    banner,
    diff_block,
    e,
    facts,
    hidden,
    num,
    ok,
    path_part,
    short,
    status,
    table,
)

MAX_EXAMPLES = 20


def proposal_url(pid: str) -> str:
    return f"/proposals/{path_part(pid)}"


def labels_url(cluster: str) -> str:
    return f"/clusters/{path_part(cluster)}/labels"


def _cluster_link(cluster: str | None) -> Html:
    if not cluster:
        return Html("-")
    return Html(f'<a href="{e(labels_url(cluster))}">{e(cluster)}</a>')


def held_out(verdict: Any) -> str:
    """The verdict's held-out improvement: `+0.50 (0.17 → 0.67, n=6)`, or its value alone, or `-`."""
    checks = [c for c in verdict.checks if c.section == "target"]
    check = next((c for c in checks if c.name.startswith("held-out")), checks[0] if checks else None)
    if check is None or check.value is None:
        return "-"
    d = check.detail or {}
    if isinstance(d.get("base"), (int, float)) and isinstance(d.get("candidate"), (int, float)):
        n = f", n={d['n']}" if d.get("n") is not None else ""
        return f"{check.value:+.2f} ({d['base']:.2f} → {d['candidate']:.2f}{n})"
    return f"{check.value:+.4g}"


# --------------------------------------------------------------------------------------------- the queue


@dataclass
class ClusterRow:
    id: str
    category: str
    size: int
    labelled: int


def queue_page(records: list[Any], clusters: list[ClusterRow], clusters_note: str | None) -> Html:
    pending = [r for r in records if r.status == "pending"]
    others = sorted((r for r in records if r.status != "pending"), key=lambda r: r.created_at, reverse=True)
    counts = {s: sum(1 for r in records if r.status == s) for s in ("pending", "approved", "merged", "rejected")}
    summary = " · ".join(f"{n} {s}" for s, n in counts.items())
    rows = []
    for r in pending + others:
        rows.append([
            Html(f'<a href="{e(proposal_url(r.id))}">{e(r.id)}</a>'), status(r.status), r.title,
            _cluster_link(r.cluster), r.optimizer or "-", held_out(r.verdict),
            f"{len(r.verdict.fixed)} / {len(r.verdict.regressed)}", r.created_at,
            r.decided_by or "",
        ])
    if rows:
        queue = table(["id", "status", "what", "cluster", "optimizer", "held-out improvement", "fixed / regressed",
                       "created", "decided by"], rows, cls="queue")
    else:
        queue = Html('<p class="muted">Nothing queued: only candidates that pass <code>autofix gate</code> '
                     'enter the queue.</p>')
    if clusters:
        label_rows = [[_cluster_link(c.id), c.category, c.size, f"{c.labelled} of {c.size}"] for c in clusters]
        labelling = table(["cluster", "category", "failed traces", "labelled"], label_rows, cls="clusters")
    else:
        labelling = Html(f'<p class="muted">{e(clusters_note or "No clusters.")}</p>')
    return Html(f"""<h1>Approval queue</h1>
<p class="muted">{e(summary)}. Pending proposals first; open one to read its diff and verdict, then approve or
reject it.</p>
{queue}
<h2>Label slice cases</h2>
<p class="muted">A cluster's failed traces are scored by what a reviewer says a right answer holds.</p>
{labelling}""")


# --------------------------------------------------------------------------------------------- a proposal


@dataclass
class DecisionForm:
    """What the decision forms show: the values typed (kept after a refusal) and the reviewer's name."""

    csrf: str
    by: str = ""
    note: str = ""
    reason: str = ""
    revalidate: bool = False


def _verdict(verdict: Any, title: str) -> Html:
    outcome = '<span class="pass">passed</span>' if verdict.passed else '<span class="fail">refused</span>'
    rows = [[c.section, c.name, num(c.value), num(c.threshold), num(c.margin), ok(c.passed), c.reason]
            for c in verdict.checks]
    notes = "".join(f'<p class="hint">note: {e(n)}</p>' for n in verdict.notes)
    judges = ", ".join(f"{k} {v}" for k, v in verdict.judges.items()) or "-"
    return Html(f"""<h2>{e(title)}: {outcome}</h2>
<p class="hint">policy {e(verdict.policy)} · judges {e(judges)} · {e(verdict.unchanged)} case{"" if verdict.unchanged == 1 else "s"} unchanged ·
created {e(verdict.created_at)}</p>
{table(["section", "check", "value", "threshold", "margin", "pass/fail", "reason"], rows, cls="verdict")}
{notes}""")


def _examples(kind: str, changes: list[Any]) -> Html:
    if not changes:
        return Html("")
    parts = []
    for c in changes[:MAX_EXAMPLES]:
        where = c.dataset + (f", trace {c.trace_id}" if c.trace_id else "")
        base = c.base_output if c.base_output is not None else "(no output)"
        cand = c.candidate_output if c.candidate_output is not None else "(no output)"
        parts.append(f"""<div class="card {kind}" id="{e(kind)}-{e(c.case_id)}">
<h3>{e(c.case_id)} <span class="muted">({e(where)}) {e(c.metric)}: {e(num(c.base))} → {e(num(c.candidate))}</span></h3>
<div class="label">input</div><pre>{e(c.input)}</pre>
<div class="pair"><div><div class="label">base output</div><pre>{e(base)}</pre></div>
<div><div class="label">candidate output</div><pre>{e(cand)}</pre></div></div></div>""")
    more = (f'<p class="muted">… and {len(changes) - MAX_EXAMPLES} more (<code>autofix review show ID --json</code> '
            f"lists them all)</p>" if len(changes) > MAX_EXAMPLES else "")
    return Html(f'<h2>{len(changes)} {e(kind)}</h2><div class="examples">{"".join(parts)}{more}</div>')


def _lineage(record: Any) -> Html:
    lin = record.lineage
    ids = lin.trace_ids
    traces = (f"{len(ids)}: " + ", ".join(ids[:30]) + (f" and {len(ids) - 30} more" if len(ids) > 30 else "")
              if ids else "-")
    rows: list[tuple[str, Any]] = [
        ("motivating traces", traces), ("cluster", _cluster_link(lin.cluster)), ("optimizer", lin.optimizer or "-"),
        ("run", lin.run_id or "-"), ("branch", lin.branch or "-"),
        ("models", ", ".join(f"{k}: {v}" for k, v in lin.models.items()) or "-"),
        ("cost", f"${lin.cost_usd:.4f}"), ("metric calls", lin.metric_calls),
    ]
    if lin.description:
        rows.append(("description", lin.description))
    if lin.rationale:
        rows.append(("rationale", lin.rationale))
    for key, value in (lin.model_extra or {}).items():
        rows.append((key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    return Html(f'<h2>Lineage</h2><div class="card">{facts(rows)}</div>')


def _history(log: list[Any]) -> Html:
    rows = []
    for entry in log:
        detail = "  ".join(f"{k}={short(v)}" for k, v in entry.detail.items()
                           if k != "verdict" and v not in (None, "", []))
        rows.append([entry.at, entry.actor, entry.action, detail[:600]])
    return Html("<h2>History</h2>" + table(["at", "actor", "action", "detail"], rows, cls="history"))


def _decision_forms(record: Any, form: DecisionForm) -> Html:
    if record.status not in ("pending", "approved") or record.merged_commit:
        return Html("")
    action = proposal_url(record.id)
    finishing = ('<p class="hint">This proposal was approved but its merge did not finish: approving again '
                 "finishes it.</p>" if record.status == "approved" else "")
    checked = " checked" if form.revalidate else ""
    return Html(f"""<h2 id="decide">Decide</h2>
<div class="decide">
<form class="card" method="post" action="{e(action)}/approve" accept-charset="utf-8" id="approve-form">
<h3>Approve</h3>{finishing}
<p class="hint">Fast-forwards the target branch to exactly the validated commit {e(record.commit[:12])} (tree
{e(record.tree[:12])}), then adds the slice's cases to the regression set.</p>
{hidden("csrf", form.csrf)}
<label for="approve-by">Your name</label>
<input type="text" id="approve-by" name="by" value="{e(form.by)}" required autocomplete="name">
<label for="approve-note">Note (optional)</label>
<textarea id="approve-note" name="note">{e(form.note)}</textarea>
<label class="check"><input type="checkbox" name="revalidate" value="on" id="approve-revalidate"{checked}>
<span>If the target branch moved since validation, re-apply the change on its head and run the gate again; merge
only if it passes (this can take minutes).</span></label>
<button type="submit" class="approve" id="approve-button">Approve and merge</button>
</form>
<form class="card" method="post" action="{e(action)}/reject" accept-charset="utf-8" id="reject-form">
<h3>Reject</h3>
<p class="hint">The reason is recorded; later runs do not propose the same change for this cluster again.</p>
{hidden("csrf", form.csrf)}
<label for="reject-by">Your name</label>
<input type="text" id="reject-by" name="by" value="{e(form.by)}" required autocomplete="name">
<label for="reject-reason">Reason</label>
<textarea id="reject-reason" name="reason" required>{e(form.reason)}</textarea>
<button type="submit" class="reject" id="reject-button">Reject</button>
</form>
</div>""")


def proposal_page(record: Any, log: list[Any], form: DecisionForm, messages: list[tuple[str, str]]) -> Html:
    rows: list[tuple[str, Any]] = [
        ("status", status(record.status)), ("cluster", _cluster_link(record.cluster)),
        ("optimizer", record.optimizer or "-"), ("held-out improvement", held_out(record.verdict)),
        ("branch", record.branch or "-"), ("commit", f"{record.commit} (tree {record.tree[:12]})"),
        ("base", f"{record.base_commit} (tree {record.base_tree[:12]})"), ("queued", record.created_at),
    ]
    rows += record.decision_rows()
    shown = "".join(banner(kind, text) for kind, text in messages)
    revalidated = (_verdict(record.revalidated_verdict, f"Re-validation {record.revalidated_verdict.verdict_id}")
                   if record.revalidated_verdict is not None else "")
    return Html(f"""<h1>{e(record.id)} · {e(record.title)}</h1>
{shown}
<div class="card">{facts(rows)}</div>
{_verdict(record.verdict, f"Verdict {record.verdict.verdict_id}")}
{revalidated}
{_examples("fixed", record.verdict.fixed)}
{_examples("regressed", record.verdict.regressed)}
<h2>Diff {e(record.base_commit[:12])}..{e(record.commit[:12])}</h2>
{diff_block(record.diff)}
{_lineage(record)}
{_history(log)}
{_decision_forms(record, form)}""")


# --------------------------------------------------------------------------------------------- labelling


@dataclass
class LabelForm:
    """The labelling form of one case: the values typed (kept after bad input)."""

    csrf: str
    by: str = ""
    values: Mapping[str, str] = field(default_factory=dict)
    case_id: str | None = None
    """The case these values were typed for (its form is open); the other forms start empty."""


@dataclass
class CaseView:
    case: Any
    part: str
    """`training` or `held out`."""
    answer: Any = None
    label: Any = None


def _text(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        value = value["content"]
    return value if isinstance(value, str) else ("" if value is None else json.dumps(value, ensure_ascii=False))


def _label_facts(label: Any) -> Html:
    names = {"must_include": "must include", "must_not_include": "must not include", "doc_ids": "documents",
             "answer": "reference answer", "pattern": "pattern", "format": "format"}
    rows: list[tuple[str, Any]] = []
    for key, value in label.expected.items():
        rows.append((names.get(key, key), "; ".join(map(str, value)) if isinstance(value, list) else value))
    rows.append(("by", f"{label.labeled_by} at {label.labeled_at}"))
    if label.note:
        rows.append(("note", label.note))
    return facts(rows)


def _label_form(cluster: str, view: CaseView, form: LabelForm) -> Html:
    cid = view.case.case_id
    mine = form.case_id == cid
    v = form.values if mine else {}
    opened = " open" if mine else ""  # closed until clicked (a cluster may have many cases), open after bad input
    summary = "Replace the label" if view.label is not None else "Add a label"
    slug = path_part(cid)
    return Html(f"""<details{opened}><summary>{summary}</summary>
<form method="post" action="{e(labels_url(cluster))}#case-{e(slug)}" accept-charset="utf-8" class="label-form"
 id="label-form-{e(slug)}">
{hidden("csrf", form.csrf)}{hidden("case_id", cid)}
<label for="by-{e(slug)}">Your name</label>
<input type="text" id="by-{e(slug)}" name="by" value="{e(v.get("by", form.by))}" required>
<label for="must-{e(slug)}">Must include (one fact per line)</label>
<textarea id="must-{e(slug)}" name="must_include">{e(v.get("must_include", ""))}</textarea>
<label for="mustnot-{e(slug)}">Must not include (one per line)</label>
<textarea id="mustnot-{e(slug)}" name="must_not_include">{e(v.get("must_not_include", ""))}</textarea>
<label for="docs-{e(slug)}">Document ids (comma- or line-separated)</label>
<input type="text" id="docs-{e(slug)}" name="doc_ids" value="{e(v.get("doc_ids", ""))}">
<label for="answer-{e(slug)}">Reference answer (optional)</label>
<textarea id="answer-{e(slug)}" name="answer">{e(v.get("answer", ""))}</textarea>
<label for="note-{e(slug)}">Note (optional)</label>
<input type="text" id="note-{e(slug)}" name="note" value="{e(v.get("note", ""))}">
<button type="submit" class="save">Save label</button>
</form></details>""")


def labels_page(cluster: str, info: Mapping[str, Any], cases: list[CaseView], *, labels_file: str | None,
                labels_hint: str, form: LabelForm, messages: list[tuple[str, str]]) -> Html:
    shown = "".join(banner(kind, text) for kind, text in messages)
    labelled = sum(1 for c in cases if c.label is not None)
    head_rows: list[tuple[str, Any]] = [("category", info.get("category", "?")), ("failed traces", len(cases)),
                                        ("labelled", f"{labelled} of {len(cases)}")]
    if info.get("rationale"):
        head_rows.append(("diagnosis", info["rationale"]))
    head_rows.append(("labels file", labels_file or "not set"))
    if labels_file is None:
        shown += banner("warn", f"Labels cannot be saved: datasets.labels is not set in autofix.yaml. Add\n\n"
                                f"{labels_hint}\n\n(the file is created by the first label) and restart autofix serve.")
    parts = []
    for view in cases:
        case = view.case
        turns = "".join(f'<pre><span class="muted">{e(t.role)}:</span> {e(_text(t.content))}</pre>'
                        for t in case.messages or [])
        history = f'<div class="label">earlier turns</div>{turns}' if turns else ""
        answer = (f'<div class="label">answer given</div><pre>{e(_text(view.answer))}</pre>'
                  if view.answer is not None else "")
        current = (f'<div class="label">current label</div>{_label_facts(view.label)}' if view.label is not None
                   else '<p class="muted">No label yet.</p>')
        form_html = _label_form(cluster, view, form) if labels_file is not None else ""
        parts.append(f"""<section class="card case" id="case-{e(path_part(case.case_id))}">
<h3>{e(case.case_id)} <span class="muted">({e(view.part)})</span></h3>
{history}<div class="label">input</div><pre>{e(case.input)}</pre>
{answer}{current}{form_html}</section>""")
    return Html(f"""<h1>Label cluster {e(cluster)}</h1>
{shown}
<div class="card">{facts(head_rows)}</div>
<p class="hint">Say what a right answer holds; checks read it when the slice is scored. A new label for a case
replaces its earlier one (the file is append-only: the last line for a case wins).</p>
{"".join(parts) or '<p class="muted">The cluster has no cases.</p>'}""")


# --------------------------------------------------------------------------------------------- messages


def message_page(title: str, message: str, *, kind: str = "error", back: str | None = "/") -> Html:
    link = f'<p><a href="{e(back)}">back to the queue</a></p>' if back else ""
    return Html(f"<h1>{e(title)}</h1>{banner(kind, message)}{link}")


__all__ = ["CaseView", "ClusterRow", "DecisionForm", "LabelForm", "held_out", "labels_page", "labels_url",
           "message_page", "proposal_page", "proposal_url", "queue_page"]
