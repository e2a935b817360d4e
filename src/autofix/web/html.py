"""Small server-side HTML: escaping, the page frame with its own CSS, and the pieces pages share.

No template engine and no JavaScript: every page is a few f-strings. The rule that keeps them safe: a value
from outside (a diff, a case's input, a reviewer's note, an id) goes through `e()`; only `Html` values
(built here) are inserted as they are.
"""

from __future__ import annotations

import html as _html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote


class Html(str):
    """A string that is already HTML (built by this module or a view), inserted without escaping."""


def e(value: Any) -> Html:
    """`value` as text inside HTML (an `Html` value is kept as it is)."""
    if isinstance(value, Html):
        return value
    return Html(_html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(sep.join(e(p) for p in parts))


def path_part(value: str) -> str:
    """One segment of a URL path (a proposal id, a cluster id)."""
    return quote(value, safe="")


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def short(value: Any) -> str:
    """A value of an audit entry's detail: commit and tree ids cut to 12 characters."""
    if isinstance(value, str):
        return value[:12] if len(value) == 40 and all(c in "0123456789abcdef" for c in value) else value
    if isinstance(value, list):
        return ", ".join(short(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


STATUS_CLASSES = {"pending": "pending", "approved": "approved", "merged": "merged", "rejected": "rejected"}


def status(value: str) -> Html:
    return Html(f'<span class="pill {STATUS_CLASSES.get(value, "")}">{e(value)}</span>')


def ok(passed: bool | None) -> Html:
    if passed is None:
        return Html('<span class="muted">n/a</span>')
    return Html('<span class="pass">✓ pass</span>' if passed else '<span class="fail">✗ fail</span>')


def banner(kind: str, message: Any) -> Html:
    """A message at the top of a page: kind `done`, `error` (a refusal, bad input) or `warn`."""
    role = "alert" if kind == "error" else "status"
    return Html(f'<div class="banner {e(kind)}" role="{role}">{e(message)}</div>')


def diff_block(diff: str) -> Html:
    """A unified diff with its added, removed, hunk and file lines coloured."""
    lines = []
    for line in (diff or "(empty diff)").splitlines():
        if line.startswith(("diff --git", "index ", "+++ ", "--- ", "new file", "deleted file", "similarity",
                            "rename ")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        lines.append(f'<span class="{cls}">{e(line) or " "}</span>')
    return Html('<pre class="diff">' + "".join(lines) + "</pre>")  # each line a block: no newline between


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], *, cls: str = "") -> Html:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return Html(f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def facts(rows: Iterable[tuple[str, Any]]) -> Html:
    """A two-column list of facts (`dl`)."""
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    return Html(f'<dl class="facts">{items}</dl>')


def hidden(name: str, value: str) -> Html:
    return Html(f'<input type="hidden" name="{e(name)}" value="{e(value)}">')


CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#d8dde6; --bg:#f6f7f9; --card:#fff; --accent:#2f5bd3;
        --ok:#137a3a; --bad:#b42318; --warn:#a15c00; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg);
       background:var(--bg); }
header.top { background:#1d2330; color:#fff; padding:.6rem 1.5rem; display:flex; gap:1.5rem; align-items:baseline; }
header.top a { color:#fff; text-decoration:none; font-weight:600; }
header.top .where { color:#aab3c5; font-size:.85rem; margin-left:auto; }
main { max-width:1200px; margin:0 auto; padding:1rem 1.5rem 3rem; }
h1 { font-size:1.4rem; margin:.6rem 0 .8rem; } h2 { font-size:1.1rem; margin:1.6rem 0 .5rem; }
h3 { font-size:1rem; margin:.2rem 0 .4rem; }
a { color:var(--accent); }
section.card, div.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:.8rem 1rem;
       margin:.8rem 0; }
table { border-collapse:collapse; width:100%; background:var(--card); font-size:.9rem; }
th, td { border:1px solid var(--line); padding:.3rem .5rem; text-align:left; vertical-align:top; }
th { background:#eef1f5; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.muted { color:var(--muted); }
.pill { display:inline-block; padding:0 .5rem; border-radius:999px; font-size:.8rem; font-weight:600;
        border:1px solid currentColor; }
.pill.pending { color:var(--warn); } .pill.approved { color:var(--accent); } .pill.merged { color:var(--ok); }
.pill.rejected { color:var(--bad); }
.pass { color:var(--ok); font-weight:600; } .fail { color:var(--bad); font-weight:600; }
.banner { padding:.6rem .9rem; border-radius:6px; margin:.8rem 0; border:1px solid; white-space:pre-wrap; }
.banner.done { background:#e9f7ef; border-color:#9fd8b5; }
.banner.error { background:#fdecea; border-color:#f1aca5; }
.banner.warn { background:#fff6e5; border-color:#f0cf8f; }
pre { margin:0; white-space:pre-wrap; word-break:break-word; font:13px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre.diff { background:#fbfbfc; border:1px solid var(--line); border-radius:6px; padding:.5rem; overflow-x:auto; }
pre.diff span { display:block; padding:0 .3rem; }
pre.diff .add { background:#e6ffec; color:#0b5d27; } pre.diff .del { background:#ffebe9; color:#8e1b12; }
pre.diff .hunk { color:#6639ba; background:#f4f0fb; } pre.diff .file { color:var(--muted); font-weight:600; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.2rem 1rem; margin:0; }
dl.facts dt { font-weight:600; color:var(--muted); } dl.facts dd { margin:0; word-break:break-word; }
.examples .pair { display:grid; grid-template-columns:1fr 1fr; gap:.6rem; margin-top:.4rem; }
.examples .pair > div { border:1px solid var(--line); border-radius:4px; padding:.4rem; background:#fbfbfc; }
.examples .fixed { border-left:4px solid var(--ok); } .examples .regressed { border-left:4px solid var(--bad); }
.label { font-size:.8rem; font-weight:600; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
.decide { display:grid; grid-template-columns:1fr 1fr; gap:1rem; }
form label { display:block; margin:.5rem 0 .15rem; font-weight:600; font-size:.9rem; }
form input[type=text], form textarea { width:100%; padding:.35rem .45rem; border:1px solid #b9c1ce; border-radius:4px;
       font:inherit; }
form textarea { min-height:3.2rem; }
form .check { font-weight:400; display:flex; gap:.4rem; align-items:flex-start; }
button { margin-top:.7rem; padding:.45rem 1rem; border-radius:4px; border:1px solid; font:inherit; font-weight:600;
         cursor:pointer; }
button.approve { background:var(--ok); color:#fff; border-color:var(--ok); }
button.reject { background:#fff; color:var(--bad); border-color:var(--bad); }
button.save { background:var(--accent); color:#fff; border-color:var(--accent); }
.hint { font-size:.85rem; color:var(--muted); margin:.2rem 0; }
details summary { cursor:pointer; font-weight:600; margin:.4rem 0; }
code { font:13px ui-monospace, "DejaVu Sans Mono", monospace; background:#eef1f5; padding:0 .2rem; border-radius:3px; }
"""


def page(title: str, body: Html, *, project: str, where: str = "") -> Html:
    """A whole page: the header (project, the queue link, where the queue lives) and `body`."""
    return Html(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{e(title)} · autofix</title><style>{CSS}</style></head>
<body><header class="top"><a href="/">autofix · {e(project)}</a><a href="/">queue</a>
<span class="where">{e(where)}</span></header>
<main>{body}</main></body></html>
""")


__all__ = ["Html", "banner", "diff_block", "e", "facts", "hidden", "join", "num", "ok", "page", "path_part",
           "short", "status", "table"]
