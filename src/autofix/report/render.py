"""Writing a run's report: `report.md` (tables, a link to the page) and a self-contained `report.html`
(tables and inline SVG charts, no network), both from the run's final state dict.

What each shows is read once by `autofix.report.view`; `autofix.report.markdown` and
`autofix.report.page` lay it out, `autofix.report.plots` draws the charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autofix.report.markdown import render_markdown
from autofix.report.page import render_html
from autofix.report.view import OWNERS

__all__ = ["OWNERS", "render_html", "render_markdown", "write_report"]


def write_report(state: dict[str, Any], layout: Any) -> tuple[Path, Path]:
    """Write `report.html` and `report.md` into the run folder; returns their paths."""
    layout.report_md.write_text(render_markdown(state), encoding="utf-8")
    layout.report_html.write_text(render_html(state), encoding="utf-8")
    return layout.report_html, layout.report_md
