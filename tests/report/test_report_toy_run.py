"""The report of a real nightly run on the model-free toy target (`tests/graph/toy.py`): about 30 s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autofix.report import render_html, render_markdown

from ..graph.toy import make_target
from .test_report import parsed, svgs


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    from autofix.config import load_config
    from autofix.graph import RunOptions, start_run

    root = make_target(tmp_path_factory.mktemp("toy"))
    result = start_run(load_config(root / "autofix.yaml"), RunOptions(sandbox_kind="local"))
    html = Path(result.state["report"]["html"])
    return {"html": html.read_text(encoding="utf-8"), "md": (html.parent / "report.md").read_text(encoding="utf-8"),
            "state": json.loads((html.parent / "state.json").read_text(encoding="utf-8"))}


def test_the_written_report_of_a_toy_run(run) -> None:
    page = run["html"]
    charts = svgs(page)
    assert {"scores", "trials", "stages"} <= set(charts)  # a retrieval search ran: its trials are drawn
    assert "lineage" not in charts  # no GEPA on this target
    assert "PASSED" in page and "top_k" in page
    assert "missing_capability" in page and "team:product" in page  # the owned finding, with its owner
    assert "autofix review show p-0001" in page and "autofix review show p-0001" in run["md"]
    assert "[report.html](report.html)" in run["md"]
    p = parsed(page)
    assert "script" not in p.tags and all(v.startswith("#") for _, k, v in p.attrs if k == "href")
    assert "http://" not in page and "https://" not in page


def test_the_saved_state_renders_the_same_report(run) -> None:
    state = {k: v for k, v in run["state"].items() if k != "report"}
    assert render_html(state) == run["html"]
    assert render_markdown(state) == run["md"]
