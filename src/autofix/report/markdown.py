"""The run report as Markdown (`report.md`): the same sections as the HTML page, as tables, without the
charts; it links to `report.html` for them. Text that came from traces, models or diffs is escaped so
it can neither break a table nor inject HTML into a viewer that renders Markdown."""

from __future__ import annotations

from typing import Any

from autofix.report.view import CandidateRow, ReportView, build_view


def md(value: Any) -> str:
    """Text for a Markdown table cell or list item: one line, no raw HTML, no column break."""
    text = " ".join(str(value).split())
    return text.replace("<", "&lt;").replace("|", "\\|")


def code(value: Any) -> str:
    """An inline code span that holds any text (longer backtick fences when the text has backticks)."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def block(text: str, lang: str = "") -> list[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence + lang, text.rstrip("\n"), fence]


def score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def change(base: float | None, after: float | None) -> str:
    return "-" if base is None and after is None else f"{score(base)} → {score(after)}"


def summary_line(v: ReportView) -> str:
    seconds = sum(s.seconds for s in v.stages)
    quarantined = f" ({v.quarantined} records quarantined)" if v.quarantined else ""
    return (f"{v.traces} traces, {v.failures} failures{quarantined}, {len(v.clusters)} clusters · "
            f"{len(v.candidates)} candidates ({len(v.passed)} passed the gate, {len(v.refused)} refused) · "
            f"{len(v.proposals)} waiting for approval · ${v.cost_usd:.4f} · {seconds:.1f} s of stage time")


def changes_line(v: ReportView) -> str | None:
    """`Compared with the previous triage ...: 1 new, 2 growing, 1 resolved.`, or None with nothing to say."""
    order = ["kept", "new", "growing", "shrinking", "steady", "resolved"]
    parts = ", ".join(f"{v.trend_counts[k]} {k}" for k in order if v.trend_counts.get(k))
    if v.compared and v.previous is None:
        return "No previous run to compare with: every cluster is new."
    if v.previous is not None:
        when = v.previous.get("generated_at")
        return f"Compared with the previous triage{f' of {when}' if when else ''}: {parts or 'no change'}."
    return f"Against the previous run: {parts}." if parts else None


def _candidate_rows(v: ReportView) -> list[str]:
    lines = ["| candidate | optimizer | gate | training (base → candidate) | held-out (base → candidate) | p | proposal |",
             "|---|---|---|---|---|---|---|"]
    for c in v.candidates:
        p = "-" if c.p_value is None else f"{c.p_value:.3g}"
        lines.append(f"| {code(c.id)} | {md(c.optimizer_short)} | **{c.verdict}** | {change(c.train_base, c.train_score)} | "
                     f"{change(c.heldout_base, c.heldout_score)}{f' (n={c.heldout_n})' if c.heldout_n else ''} | {p} | "
                     f"{code(c.proposal) if c.proposal else '-'} |")
    return lines


def _candidate(c: CandidateRow) -> list[str]:
    lines = [f"### {code(c.id)}: {c.verdict}", "",
             (f"{md(c.optimizer)} · cluster {code(c.cluster)} · branch {code(c.branch)} · commit {code(c.commit[:12])} · "
             f"{c.metric_calls} metric calls · ${c.cost_usd:.4f}"), ""]
    if c.target_reason:
        lines.append(f"- held-out: {md(c.target_reason)}")
    for reason in c.reasons:
        lines.append(f"- refused: {md(reason)}")
    if c.proposal:
        lines.append(f"- waiting for approval as {code(c.proposal)}")
    elif c.queue_note:
        lines.append(f"- passed, not queued: {md(c.queue_note)}")
    if c.diff.strip():
        lines += ["", *block(c.diff, "diff")]
    return lines + [""]


def render_markdown(state: dict[str, Any]) -> str:
    v = build_view(state)
    lines = [f"# autofix run {md(v.run_id)}", "", f"Started {md(v.started_at)} · {summary_line(v)}", "",
             ("Charts (scores before and after, the search trials, the candidate lineage, time per stage): "
             "[report.html](report.html)"), "", "## Clusters found", ""]
    note = changes_line(v)
    if note:
        lines += [md(note), ""]
    if v.clusters:
        lines += ["| rank | cluster | what | category | size | trend | owner |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {c.rank} | {code(c.id)} | {md(c.name) or '-'} | {md(c.category)} | {c.size} | {md(c.trend_text)} | "
                  f"{md(c.owner)} |" for c in v.clusters]
    else:
        lines.append("No failure clusters.")
    if v.resolved:
        lines += ["", "### Resolved since the previous run", "", "| cluster | what | category | size then | size now |",
                  "|---|---|---|---|---|"]
        lines += [f"| {code(r.get('id', ''))} | {md(r.get('name') or r.get('mechanism') or '-')} | "
                  f"{md(r.get('category', ''))} | {r.get('previous_size', '-')} | {r.get('size', 0)} |" for r in v.resolved]

    lines += ["", "## Owned findings (no optimizer fixes these)", ""]
    if v.owned:
        lines += ["| finding | category | traces | owner | why |", "|---|---|---|---|---|"]
        lines += [f"| {md(f.title)} ({md(f.subject)}) | {md(f.category)} | {f.size} | {md(f.owner)} | "
                  f"{md(f.rationale)} |" for f in v.owned]
    else:
        lines.append("None.")

    lines += ["", "## Candidates and their gate verdicts", ""]
    if v.candidates:
        lines += _candidate_rows(v) + [""]
        for c in v.candidates:
            lines += _candidate(c)
    else:
        lines += ["No candidate was proposed.", ""]

    lines += ["## Waiting for approval", ""]
    if v.proposals:
        lines += ["| proposal | candidate | review | approve |", "|---|---|---|---|"]
        lines += [f"| {code(p['proposal'])} | {code(p.get('candidate', ''))} | {code(v.review_command(p['proposal']))} | "
                  f"{code(v.approve_command(p['proposal']))} |" for p in v.proposals]
    else:
        lines.append("None.")
    for p in v.not_queued:
        lines.append(f"- {code(p.get('candidate', ''))} passed the gate but was not queued: {md(p.get('reason', ''))}")

    lines += ["", "## Cost and time per stage", ""]
    if v.stages:
        lines += ["| stage | what | seconds | cost (USD) |", "|---|---|---|---|"]
        lines += [f"| {md(s.stage)} | {md(s.label) if s.label != s.stage else ''} | {s.seconds:.1f} | "
                  f"{'-' if s.cost_usd is None else f'{s.cost_usd:.4f}'} |" for s in v.stages]
        lines.append(f"| **run** | | {sum(s.seconds for s in v.stages):.1f} | {v.cost_usd:.4f} |")
    else:
        lines.append(f"No stage was timed. Cost: ${v.cost_usd:.4f}.")
    if v.budget:
        lines += ["", "Budget: " + ", ".join(f"{k} {val}" for k, val in v.budget.items()) + "."]

    lines += ["", "## Not reached, not optimized, errors", ""]
    items = [md(x) for x in v.not_reached] + [f"error: {md(e)}" for e in v.errors] + \
        [f"triage warning: {md(w)}" for w in v.warnings]
    lines += [f"- {x}" for x in items] or ["Everything planned was reached."]
    return "\n".join(lines) + "\n"
