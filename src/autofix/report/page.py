"""The run report as one self-contained HTML page (`report.html`): inline CSS and inline SVG charts, no
script, no font, image or style sheet from anywhere else, so it opens the same offline, attached to a
mail or archived. Every piece of text that came from the state is escaped."""

from __future__ import annotations

from typing import Any

from autofix.report import plots
from autofix.report.markdown import change, changes_line, summary_line
from autofix.report.svg import esc
from autofix.report.view import CandidateRow, ReportView, build_view

CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#1f2937}
h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #e5e7eb;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d1d5db;padding:3px 7px;text-align:left;
vertical-align:top}th{background:#f3f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:.6em;overflow:auto}.add{color:#065f12}.del{color:#9b1111}
.pass{color:#065f12;font-weight:bold}.fail{color:#9b1111;font-weight:bold}.muted{color:#6b7280}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0}.card{border:1px solid #e5e7eb;border-radius:6px;
padding:.4em .8em;min-width:7em}.card b{display:block;font-size:1.4em}nav a{margin-right:1em}
figure{margin:1em 0}figcaption{color:#4b5563;font-size:.9em}svg.plot{max-width:100%;height:auto}
article.candidate{border-left:4px solid #d1d5db;padding-left:.8em;margin:1em 0}
article.candidate.passed{border-color:#15803d}article.candidate.refused{border-color:#b91c1c}
ul.reasons li{color:#9b1111}code{background:#f3f4f6;padding:0 .2em}
.trend-new{color:#1d4ed8}.trend-growing{color:#b91c1c}.trend-shrinking{color:#15803d}.trend-steady{color:#6b7280}
"""

SECTIONS = [("clusters", "Clusters"), ("findings", "Owned findings"), ("candidates", "Candidates"),
            ("proposals", "Waiting for approval"), ("stages", "Cost and time"), ("not-reached", "Not reached")]


def _figure(svg: str | None, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>" if svg else ""


def _diff(diff: str) -> str:
    out = []
    for line in diff.splitlines():
        cls = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "")
        out.append(f'<span class="{cls}">{esc(line)}</span>' if cls else esc(line))
    return "<pre>" + "\n".join(out) + "</pre>"


def _verdict(c: CandidateRow) -> str:
    cls = "pass" if c.passed else "fail"
    return f"<span class='{cls}'>{esc(c.verdict)}</span>"


def _cards(v: ReportView) -> str:
    cards = [(v.failures, f"failures of {v.traces} traces"), (len(v.clusters), "clusters"),
             (len(v.owned), "owned findings"), (len(v.passed), "candidates passed"),
             (len(v.refused), "candidates refused"), (len(v.proposals), "waiting for approval"),
             (f"${v.cost_usd:.4f}", "cost"), (f"{sum(s.seconds for s in v.stages):.0f} s", "of stage time")]
    return "<div class='cards'>" + "".join(f"<div class='card'><b>{esc(n)}</b>{esc(label)}</div>"
                                           for n, label in cards) + "</div>"


def _clusters(v: ReportView) -> list[str]:
    out = ["<section id='clusters'><h2>Clusters found</h2>"]
    note = changes_line(v)
    if note:
        out.append(f"<p>{esc(note)}</p>")
    if v.clusters:
        out.append("<table><tr><th>rank</th><th>cluster</th><th>what</th><th>category</th><th>size</th><th>trend</th>"
                   "<th>owner</th><th>optimized</th></tr>")
        for c in v.clusters:
            out.append(f"<tr><td class='num'>{esc(c.rank)}</td><td><code>{esc(c.id)}</code></td><td>{esc(c.name)}</td>"
                       f"<td>{esc(c.category)}</td><td class='num'>{c.size}</td>"
                       f"<td class='trend-{esc(c.trend or 'none')}'>{esc(c.trend_text)}</td><td>{esc(c.owner)}</td>"
                       f"<td>{'yes' if c.optimized else 'no'}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No failure clusters.</p>")
    if v.resolved:
        out.append("<h3>Resolved since the previous run</h3><table><tr><th>cluster</th><th>what</th><th>category</th>"
                   "<th>size then</th><th>size now</th></tr>")
        out += [f"<tr><td><code>{esc(r.get('id', ''))}</code></td><td>{esc(r.get('name') or r.get('mechanism') or '')}</td>"
                f"<td>{esc(r.get('category', ''))}</td><td class='num'>{esc(r.get('previous_size', '-'))}</td>"
                f"<td class='num'>{esc(r.get('size', 0))}</td></tr>" for r in v.resolved]
        out.append("</table>")
    return out + ["</section>"]


def _findings(v: ReportView) -> list[str]:
    out = [("<section id='findings'><h2>Owned findings</h2><p class='muted'>Failures no optimizer fixes: each goes "
           "to the owner its category maps to.</p>")]
    if not v.owned:
        return out + ["<p>None.</p></section>"]
    out.append("<table><tr><th>finding</th><th>category</th><th>traces</th><th>owner</th><th>why</th><th>from</th></tr>")
    out += [f"<tr><td>{esc(f.title)}<br><span class='muted'>{esc(f.subject)}</span></td><td>{esc(f.category)}</td>"
            f"<td class='num'>{f.size}</td><td><b>{esc(f.owner)}</b></td><td>{esc(f.rationale)}</td>"
            f"<td class='muted'>{esc(f.source)}</td></tr>" for f in v.owned]
    return out + ["</table></section>"]


def _candidate(v: ReportView, c: CandidateRow) -> str:
    state = "passed" if c.passed else "refused"
    parts = [(f"<article class='candidate {state}' id='candidate-{esc(c.id.replace('/', '-'))}'>"
             f"<h3><code>{esc(c.id)}</code> ({esc(c.optimizer_short)}): {_verdict(c)}</h3>"),
             (f"<p>cluster <code>{esc(c.cluster)}</code> · branch <code>{esc(c.branch)}</code> · commit "
             f"<code>{esc(c.commit[:12])}</code> · training {esc(change(c.train_base, c.train_score))} · "
             f"{c.metric_calls} metric calls · ${c.cost_usd:.4f}</p>")]
    if c.target_reason:
        parts.append(f"<p>held-out: {esc(c.target_reason)}</p>")
    if c.reasons:
        parts.append("<p>Refused because:</p><ul class='reasons'>" + "".join(f"<li>{esc(r)}</li>" for r in c.reasons)
                     + "</ul>")
    if c.proposal:
        parts.append(f"<p>Waiting for approval as <code>{esc(c.proposal)}</code>: "
                     f"<code>{esc(v.review_command(c.proposal))}</code></p>")
    elif c.queue_note:
        parts.append(f"<p>Passed, not queued: {esc(c.queue_note)}</p>")
    if c.diff.strip():
        parts.append(f"<details><summary>diff ({len(c.diff.splitlines())} lines)</summary>{_diff(c.diff)}</details>")
    return "".join(parts) + "</article>"


def _candidates(v: ReportView) -> list[str]:
    out = ["<section id='candidates'><h2>Candidates and their gate verdicts</h2>"]
    if not v.candidates:
        return out + ["<p>No candidate was proposed.</p></section>"]
    out.append(_figure(plots.score_plot(v.candidates),
                       "Each candidate against the base on the training slice the optimizer saw and on the held-out "
                       "slice the gate replayed; the gate decides on the held-out slice."))
    out.append("<table><tr><th>candidate</th><th>optimizer</th><th>gate</th><th>training</th><th>held-out</th>"
               "<th>p</th><th>proposal</th></tr>")
    for c in v.candidates:
        p = "-" if c.p_value is None else f"{c.p_value:.3g}"
        n = f" (n={c.heldout_n})" if c.heldout_n else ""
        out.append(f"<tr><td><code>{esc(c.id)}</code></td><td>{esc(c.optimizer_short)}</td><td>{_verdict(c)}</td>"
                   f"<td>{esc(change(c.train_base, c.train_score))}</td>"
                   f"<td>{esc(change(c.heldout_base, c.heldout_score) + n)}</td><td class='num'>{p}</td>"
                   f"<td>{f'<code>{esc(c.proposal)}</code>' if c.proposal else '-'}</td></tr>")
    out.append("</table>")
    out += [_candidate(v, c) for c in v.candidates]
    searches = plots.trials_plots(v.candidates)
    trees = plots.lineage_plots(v.candidates)
    if searches or trees:
        out.append("<h3>How the candidates were found</h3>")
    for cluster, svg in searches:
        out.append(_figure(svg, f"The retrieval search on {cluster}: every completed trial's training score against "
                                f"its tokens per case; infeasible trials broke a guardrail; circled trials were proposed."))
    for cluster, svg in trees:
        out.append(_figure(svg, f"GEPA on {cluster}: the candidates each proposal descends from, with their training "
                                f"scores where recorded."))
    return out + ["</section>"]


def _proposals(v: ReportView) -> list[str]:
    out = ["<section id='proposals'><h2>Waiting for approval</h2>"]
    if v.proposals:
        out.append("<table><tr><th>proposal</th><th>candidate</th><th>branch</th><th>review it</th><th>approve it</th></tr>")
        out += [f"<tr><td><code>{esc(p['proposal'])}</code></td><td><code>{esc(p.get('candidate', ''))}</code></td>"
                f"<td><code>{esc(p.get('branch', ''))}</code></td><td><code>{esc(v.review_command(p['proposal']))}</code>"
                f"</td><td><code>{esc(v.approve_command(p['proposal']))}</code></td></tr>" for p in v.proposals]
        out.append("</table><p class='muted'>Or all of them in the browser: <code>autofix serve</code>.</p>")
    else:
        out.append("<p>None.</p>")
    if v.not_queued:
        out.append("<ul>" + "".join(f"<li><code>{esc(p.get('candidate', ''))}</code> passed the gate but was not "
                                    f"queued: {esc(p.get('reason', ''))}</li>" for p in v.not_queued) + "</ul>")
    return out + ["</section>"]


def _stages(v: ReportView) -> list[str]:
    out = ["<section id='stages'><h2>Cost and time per stage</h2>",
           _figure(plots.stage_plot(v.stages), "Wall-clock seconds per stage; the optimize and gate branches run in "
                                               "parallel, so they can add up to more than the run took.")]
    if v.stages:
        out.append("<table><tr><th>stage</th><th>what</th><th>seconds</th><th>cost (USD)</th></tr>")
        out += [f"<tr><td>{esc(s.stage)}</td><td>{esc(s.label) if s.label != s.stage else ''}</td>"
                f"<td class='num'>{s.seconds:.1f}</td>"
                f"<td class='num'>{'-' if s.cost_usd is None else f'{s.cost_usd:.4f}'}</td></tr>" for s in v.stages]
        out.append(f"<tr><th>run</th><th></th><th class='num'>{sum(s.seconds for s in v.stages):.1f}</th>"
                   f"<th class='num'>{v.cost_usd:.4f}</th></tr></table>")
    else:
        out.append(f"<p>No stage was timed. Cost: ${v.cost_usd:.4f}.</p>")
    if v.budget:
        out.append("<p>Budget: " + esc(", ".join(f"{k} {val}" for k, val in v.budget.items())) + ".</p>")
    return out + ["</section>"]


def _not_reached(v: ReportView) -> list[str]:
    items = [esc(x) for x in v.not_reached] + [f"error: {esc(e)}" for e in v.errors] + \
        [f"triage warning: {esc(w)}" for w in v.warnings]
    body = "<ul>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>" if items else "<p>Everything planned was reached.</p>"
    return [f"<section id='not-reached'><h2>Not reached, not optimized, errors</h2>{body}</section>"]


def render_html(state: dict[str, Any]) -> str:
    v = build_view(state)
    title = f"autofix run {v.run_id}"
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
             f"<header><h1>{esc(title)}</h1><p class='muted'>started {esc(v.started_at)}"
             + (f" · <code>{esc(v.config)}</code>" if v.config else "") + "</p>",
             f"<p>{esc(summary_line(v))}</p>", _cards(v),
             "<nav>" + "".join(f"<a href='#{key}'>{esc(label)}</a>" for key, label in SECTIONS) + "</nav></header>"]
    for section in (_clusters, _findings, _candidates, _proposals, _stages, _not_reached):
        parts += section(v)
    parts.append("</body></html>")
    return "".join(parts)
