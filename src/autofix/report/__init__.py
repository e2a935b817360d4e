"""The run report: `report.md` and a self-contained `report.html` (no network) from a run's final state."""

from autofix.report.render import render_html, render_markdown, write_report

__all__ = ["render_html", "render_markdown", "write_report"]
