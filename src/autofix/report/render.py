"""Rendering a run's state as Markdown and as one self-contained HTML page.

Sections: the clusters found (with their trend against the previous run when triage gives one), the
owned findings no optimizer fixes (with the owner each category maps to), each candidate with its
gate verdict, the proposals waiting for approval, what was not reached, and time and cost per stage.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

OWNERS = {
    "prompt": "optimizer (prompt) / assistant team",
    "retrieval": "optimizer (retrieval) / search team",
    "routing": "optimizer (routing) / assistant team",
    "tool_arguments": "optimizer (code) / tool owners",
    "missing_capability": "product",
    "context": "optimizer (retrieval) / assistant team",
    "memory": "assistant team",
    "data_freshness": "knowledge-base owners",
    "model_limitation": "ML platform",
    "infrastructure": "platform",
    "evaluation": "evaluation owners",
    "unclassified": "triage (needs a look)",
}
"""Who owns a category's fix when no optimizer can make it (DESIGN.md: the owner follows from the category)."""


def _score(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def _sections(state: dict[str, Any]) -> dict[str, Any]:
    clusters = state.get("clusters", [])
    job_clusters = {j["cluster"] for j in state.get("jobs", [])}
    owned = [c for c in clusters if c["id"] not in job_clusters]
    gated = sorted(state.get("gated", []), key=lambda c: c["id"])
    return {"clusters": clusters, "owned": owned, "findings": state.get("findings", []), "gated": gated,
            "proposals": [p for p in state.get("proposals", []) if p.get("proposal")],
            "skipped": state.get("skipped", []), "errors": state.get("errors", []),
            "timings": state.get("timings", {}), "triage": state.get("triage", {})}


def render_markdown(state: dict[str, Any]) -> str:
    s = _sections(state)
    t = s["triage"]
    lines = [f"# autofix run {state.get('run_id', '')}", "",
             f"Started {state.get('started_at', '?')} · {t.get('traces', 0)} traces, {t.get('failures', 0)} failures, "
             f"{len(s['clusters'])} clusters · {len(s['gated'])} candidates, {len(s['proposals'])} waiting for approval · "
             f"${float(state.get('cost_usd', 0.0)):.4f}", "", "## Clusters", "",
             "| rank | cluster | category | size | trend | owner |", "|---|---|---|---|---|---|"]
    for c in s["clusters"]:
        lines.append(f"| {c.get('rank', '')} | `{c['id']}` | {c['category']} | {c['size']} | {c.get('trend') or '-'} | "
                     f"{OWNERS.get(c['category'], c.get('owner', ''))} |")
    lines += ["", "## Owned findings (no optimizer fixes these)", ""]
    for c in s["owned"]:
        lines.append(f"- **{c['category']}** `{c['id']}` ({c['size']} failures), owner: "
                     f"{OWNERS.get(c['category'], '?')}: {c.get('rationale', '')}")
    for f in s["findings"]:
        lines.append(f"- **{f['category']}** {f['title']} ({f['traces']} traces), owner: "
                     f"{OWNERS.get(f['category'], '?')}: {f['rationale']}")
    lines += ["", "## Candidates and their gate verdicts", ""]
    if not s["gated"]:
        lines.append("No candidate was proposed.")
    for c in s["gated"]:
        g = c.get("gate") or {}
        lines.append(f"### `{c['id']}` ({c['optimizer']}): {'PASSED' if g.get('passed') else 'refused'}")
        lines.append(f"branch `{c['branch']}` · training {_score(c['train'].get('base_score'))} -> "
                     f"{_score(c['train'].get('score'))} · {c.get('metric_calls', 0)} metric calls · ${c.get('cost_usd', 0):.4f}")
        for reason in g.get("reasons", []):
            lines.append(f"- refused: {reason}")
        lines += ["", "```diff", c["diff"].rstrip(), "```", ""]
    lines += ["## Waiting for approval", ""]
    for p in s["proposals"]:
        lines.append(f"- `{p['proposal']}`: candidate `{p['candidate']}` (`autofix review show {p['proposal']}`)")
    if not s["proposals"]:
        lines.append("None.")
    if s["skipped"] or s["errors"]:
        lines += ["", "## Not reached, not optimized, errors", ""]
        lines += [f"- {x.get('cluster', '')} / {x.get('optimizer', '')}: {x['reason']}" for x in s["skipped"]]
        lines += [f"- error: {e}" for e in s["errors"]]
    lines += ["", "## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s["timings"].items()]
    return "\n".join(lines) + "\n"


_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
pre{background:#f6f6f6;padding:.6em;overflow:auto}.add{color:#065f12}.del{color:#9b1111}
.pass{color:#065f12;font-weight:bold}.fail{color:#9b1111;font-weight:bold}"""


def _diff_html(diff: str) -> str:
    out = []
    for line in diff.splitlines():
        cls = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "")
        out.append(f'<span class="{cls}">{html.escape(line)}</span>' if cls else html.escape(line))
    return "<pre>" + "\n".join(out) + "</pre>"


def render_html(state: dict[str, Any]) -> str:
    s = _sections(state)
    e = html.escape
    t = s["triage"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>autofix run {e(state.get('run_id', ''))}</title>"
             f"<style>{_CSS}</style></head><body><h1>autofix run {e(state.get('run_id', ''))}</h1>",
             f"<p>{t.get('traces', 0)} traces, {t.get('failures', 0)} failures, {len(s['clusters'])} clusters · "
             f"{len(s['gated'])} candidates, {len(s['proposals'])} waiting for approval · "
             f"${float(state.get('cost_usd', 0.0)):.4f}</p><h2>Clusters</h2><table><tr><th>rank</th><th>cluster</th>"
             "<th>category</th><th>size</th><th>trend</th><th>owner</th></tr>"]
    for c in s["clusters"]:
        parts.append(f"<tr><td>{c.get('rank', '')}</td><td><code>{e(c['id'])}</code></td><td>{e(c['category'])}</td>"
                     f"<td>{c['size']}</td><td>{e(str(c.get('trend') or '-'))}</td>"
                     f"<td>{e(OWNERS.get(c['category'], ''))}</td></tr>")
    parts.append("</table><h2>Owned findings</h2><ul>")
    for c in s["owned"]:
        parts.append(f"<li><b>{e(c['category'])}</b> <code>{e(c['id'])}</code> ({c['size']}), owner "
                     f"{e(OWNERS.get(c['category'], '?'))}: {e(c.get('rationale', ''))}</li>")
    for f in s["findings"]:
        parts.append(f"<li><b>{e(f['category'])}</b> {e(f['title'])}, owner {e(OWNERS.get(f['category'], '?'))}: "
                     f"{e(f['rationale'])}</li>")
    parts.append("</ul><h2>Candidates and their gate verdicts</h2>")
    for c in s["gated"]:
        g = c.get("gate") or {}
        verdict = "<span class='pass'>PASSED</span>" if g.get("passed") else "<span class='fail'>refused</span>"
        parts.append(f"<h3><code>{e(c['id'])}</code> ({e(c['optimizer'])}): {verdict}</h3><p>branch "
                     f"<code>{e(c['branch'])}</code> · training {_score(c['train'].get('base_score'))} → "
                     f"{_score(c['train'].get('score'))}</p><ul>"
                     + "".join(f"<li>{e(r)}</li>" for r in g.get("reasons", [])) + "</ul>" + _diff_html(c["diff"]))
    parts.append("<h2>Waiting for approval</h2><ul>")
    parts += [f"<li><code>{e(p['proposal'])}</code>: <code>autofix review show {e(p['proposal'])}</code></li>"
              for p in s["proposals"]] or ["<li>None.</li>"]
    parts.append("</ul>")
    if s["skipped"] or s["errors"]:
        parts.append("<h2>Not reached, not optimized, errors</h2><ul>")
        parts += [f"<li>{e(x.get('cluster', ''))} / {e(x.get('optimizer', ''))}: {e(x['reason'])}</li>" for x in s["skipped"]]
        parts += [f"<li>error: {e(x)}</li>" for x in s["errors"]]
        parts.append("</ul>")
    parts.append("<h2>Time per stage</h2><table>" + "".join(
        f"<tr><td>{e(k)}</td><td>{v:.1f} s</td></tr>" for k, v in s["timings"].items()) + "</table></body></html>")
    return "".join(parts)


def write_report(state: dict[str, Any], layout: Any) -> tuple[Path, Path]:
    """Write `report.html` and `report.md` into the run folder; returns their paths."""
    layout.report_md.write_text(render_markdown(state), encoding="utf-8")
    layout.report_html.write_text(render_html(state), encoding="utf-8")
    return layout.report_html, layout.report_md
