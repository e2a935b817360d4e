"""The run report: `report.md` and a self-contained `report.html` (no network) from a run's final state.

`view` reads what a reader sees from the state; `markdown` and `page` lay it out; `plots` draws the
charts as inline SVG with `svg`'s primitives; `render` writes both files.
"""

from autofix.report.render import render_html, render_markdown, write_report

__all__ = ["render_html", "render_markdown", "write_report"]
