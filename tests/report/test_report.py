"""The run report as a reader sees it: every section, the charts (well-formed SVG with a title, a text
alternative and axis labels), refusal reasons, the review command, trends and resolved clusters, a
self-contained page, and user text with HTML in it shown as text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from autofix.report import render_html, render_markdown
from autofix.report.view import build_view

from .states import OWNED, PROMPT, RETRIEVAL, SCRIPT, state


def svgs(page: str) -> dict[str, ET.Element]:
    """Each inline chart, parsed as XML, by its class (`scores`, `trials`, `lineage`, `stages`)."""
    out: dict[str, ET.Element] = {}
    for i, raw in enumerate(re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)):
        root = ET.fromstring(raw)  # raises on anything not well-formed
        kind = root.get("class", "").split()[-1]
        out[kind if kind not in out else f"{kind}-{i}"] = root
    return out


def texts(svg: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in svg.iter("text")]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: list[str] = []
        self.visible: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]

    def handle_data(self, data):
        self.visible.append(data)


def parsed(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    return p


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(state())


@pytest.fixture(scope="module")
def markdown() -> str:
    return render_markdown(state())


# ------------------------------------------------------------------------------------------ sections


def test_every_section_is_on_the_page(page) -> None:
    for heading in ("Clusters found", "Resolved since the previous run", "Owned findings",
                    "Candidates and their gate verdicts", "How the candidates were found", "Waiting for approval",
                    "Cost and time per stage", "Not reached, not optimized, errors"):
        assert f">{heading}<" in page, heading
    ids = set(re.findall(r"<section id='([^']+)'", page))
    assert ids == {"clusters", "findings", "candidates", "proposals", "stages", "not-reached"}
    assert set(re.findall(r"href='#([^']+)'", page)) == ids  # the navigation reaches every section


def test_every_section_is_in_the_markdown_which_links_to_the_page(markdown) -> None:
    for heading in ("## Clusters found", "### Resolved since the previous run", "## Owned findings",
                    "## Candidates and their gate verdicts", "## Waiting for approval", "## Cost and time per stage",
                    "## Not reached, not optimized, errors"):
        assert f"\n{heading}" in markdown, heading
    assert "[report.html](report.html)" in markdown
    assert "<svg" not in markdown  # tables, no charts


def test_clusters_show_their_trend_and_the_resolved_ones(page, markdown) -> None:
    for text in (page, markdown):
        assert "growing (12 → 24)" in text and "shrinking (20 → 15)" in text
        assert "routing-faq-wrong-route" in text  # resolved since the previous run
        assert "Compared with the previous triage of 2026-12-04T02:00:00" in text
        assert "1 growing, 1 shrinking" in text and "1 resolved" in text


def test_owned_findings_name_their_owner(page, markdown) -> None:
    v = build_view(state())
    owned = {(f.subject, f.owner) for f in v.owned}
    assert (f"cluster {OWNED}", "team:product") in owned  # a cluster no optimizer serves
    assert ("score:faithfulness", "evaluation owners") in owned  # a triage finding
    assert ("cluster:context-y", "evaluation owners") in owned  # an optimizer's "not optimized" finding
    assert "cluster tool-arguments-x" not in {f.subject for f in v.owned}  # fixable, only not reached this run
    assert any(x.startswith("tool-arguments-x / ") and ": not reached" in x for x in v.not_reached)
    for text in (page, markdown):
        assert "team:product" in text and "the faithfulness scorer returns 0 for every trace" in text


def test_each_candidate_has_its_verdict_and_a_refused_one_its_reasons(page, markdown) -> None:
    p = parsed(page)
    assert p.tags.count("article") == 3
    refused = page[page.index(f"id='candidate-{PROMPT.replace('&', '&amp;')}-101'"):]
    refused = refused[:refused.index("</article>")]
    assert "refused" in refused and "<ul class='reasons'>" in refused
    assert "not significant (p &gt; 0.05)" in refused
    assert "PASSED" in page and page.count("class='fail'>refused<") == 2  # its heading and the summary table
    assert "- refused: held-out answer_correct: 0.40 -> 0.45 on 12 held-out cases: not significant (p > 0.05)" \
        in markdown
    assert "+top_k: 3" in page and "```diff" in markdown


def test_proposals_waiting_come_with_the_command_to_review_them(page, markdown) -> None:
    for text in (page, markdown):
        assert "autofix review show p-0007 -c /srv/target/autofix.yaml" in text
        assert "autofix approve p-0007 --by YOU" in text
        assert "the same change was rejected before (p-0003)" in text  # passed, not queued


def test_cost_and_time_per_stage(page, markdown) -> None:
    assert f"| optimize | {RETRIEVAL} / autofix-retrieval-search/retrieval_search | 61.5 | 0.0500 |" in markdown
    assert "| **run** | | 237.6 | 0.1700 |" in markdown
    assert "$0.1700" in page and "budget_usd 2.5" in page


def test_what_was_not_reached_is_listed(page, markdown) -> None:
    for text in (page, markdown):
        assert "not reached: the run optimizes at most 2" in text
        assert "RuntimeError: the model went away" in text
        assert "triage warning: 3 records had no spans" in text
    assert "Everything planned was reached." in render_html(state(skipped=[], errors=[], triage={"traces": 1}))


# ------------------------------------------------------------------------------------------ charts


def test_the_four_charts_are_well_formed_titled_described_and_labelled(page) -> None:
    charts = svgs(page)
    assert set(charts) == {"scores", "trials", "lineage", "stages"}
    for kind, svg in charts.items():
        title, desc = svg.find("title"), svg.find("desc")
        assert title is not None and title.text, kind
        assert desc is not None and len(desc.text or "") > 40, kind  # the text alternative says what it draws
        assert svg.get("role") == "img" and svg.get("viewBox"), kind
    assert "score (mean over the slice's cases; higher is better)" in texts(charts["scores"])
    assert {"tokens per case", "training score"} <= set(texts(charts["trials"]))
    assert "generation (reflective mutations from the base)" in texts(charts["lineage"])
    assert "seconds (wall clock)" in texts(charts["stages"])


def test_the_score_chart_pairs_base_and_candidate_per_slice(page) -> None:
    svg = svgs(page)["scores"]
    desc = svg.find("desc").text
    assert f"{RETRIEVAL}/1:" in desc
    assert "training slice 0.25 → 0.90" in desc and "held-out slice (n=20) 0.30 → 0.85" in desc
    assert "held-out slice (n=12) 0.40 → 0.45" in desc
    tips = [t.text for t in svg.iter("title")]
    assert f"{RETRIEVAL}/1 held-out: base 0.30" in tips and f"{RETRIEVAL}/1 held-out: candidate 0.85" in tips


def test_the_trials_chart_marks_feasible_infeasible_the_base_and_the_proposal(page) -> None:
    svg = svgs(page)["trials"]
    tips = [t.text for t in svg.iter("title")][1:]
    assert sum(t.startswith("1 feasible trial") for t in tips) == 3
    assert sum(t.startswith("1 infeasible trial") for t in tips) == 2
    assert any(t.startswith("base: score 0.250, 300 tokens per case") for t in tips)
    assert any(t.startswith(f"proposed {RETRIEVAL}/1: score 0.900, 420 tokens per case") for t in tips)
    # infeasible trials are crosses (two lines), feasible ones dots
    assert len([g for g in svg.iter("g") if g.get("stroke") == "#b91c1c"]) >= 2
    assert "6 trials, 1 pruned, 2 infeasible" in svg.find("desc").text


def test_the_lineage_chart_draws_the_gepa_tree(page) -> None:
    svg = svgs(page)["lineage"]
    labels = texts(svg)
    for label in ("base #0", "#2", "#5 → 101", "#7 → 102"):
        assert label in labels, label
    assert "train 0.40" in labels  # the base's score
    paths = list(svg.iter("path"))
    assert len(paths) == 4  # 0->2, 2->5, 2->7, and the merge 5->7 (dashed)
    assert sum(1 for p in paths if p.get("stroke-dasharray")) == 1
    desc = svg.find("desc").text
    assert "#5 → 101: train 0.70 · refused, from #2." in desc and "(on the Pareto front)" in desc


def test_the_stage_chart_has_a_bar_per_timing(page) -> None:
    svg = svgs(page)["stages"]
    bars = [r for r in svg.iter("rect") if r.find("title") is not None]
    assert len(bars) == 6
    widths = {r.find("title").text.split(":")[0]: float(r.get("width")) for r in bars}
    assert widths[f"optimize {PROMPT} / autofix-gepa/gepa"] == max(widths.values())


def test_a_chart_without_data_is_left_out() -> None:
    gated = state()["gated"]
    no_search = [dict(c, lineage={k: v for k, v in c["lineage"].items() if k != "tradeoff"}) for c in gated]
    assert set(svgs(render_html(state(gated=no_search)))) == {"scores", "lineage", "stages"}
    no_gepa = [c for c in gated if c["cluster"] == RETRIEVAL]
    assert set(svgs(render_html(state(gated=no_gepa)))) == {"scores", "trials", "stages"}
    assert set(svgs(render_html(state(gated=no_gepa, timings=None)))) == {"scores", "trials"}
    assert svgs(render_html({})) == {}


def test_an_empty_state_still_renders_every_section() -> None:
    page, markdown = render_html({}), render_markdown({})
    assert "No candidate was proposed." in page and "No candidate was proposed." in markdown
    assert "No failure clusters." in page and "None." in markdown


# ------------------------------------------------------------------------------------------ safety


def test_the_page_is_self_contained(page) -> None:
    p = parsed(page)
    assert "script" not in p.tags and "link" not in p.tags and "img" not in p.tags and "iframe" not in p.tags
    for tag, name, value in p.attrs:
        assert name not in ("src", "srcset", "xlink:href", "action"), (tag, name)
        if name == "href":
            assert value and value.startswith("#"), value
        assert not name.startswith("on"), (tag, name)
    assert "http://" not in page and "https://" not in page
    assert "url(" not in page and "@import" not in page


def test_a_url_in_user_text_stays_text() -> None:
    s = state()
    s["clusters"][0]["rationale"] = "see https://example.com/x.png and url(https://example.com/y)"
    page = render_html(s)
    for _, name, value in parsed(page).attrs:
        assert "example.com" not in (value or ""), name


def test_html_in_user_text_is_escaped(page, markdown) -> None:
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    visible = "".join(parsed(page).visible)
    assert SCRIPT in visible  # the reader sees the text as it was
    outside_code = re.sub(r"```diff.*?```", "", markdown, flags=re.DOTALL)
    assert "<script" not in outside_code.lower() and "&lt;script>" in outside_code
    assert PROMPT.replace("&", "&amp;") in page  # an id with & is escaped, in the page and in the charts


def test_markdown_cells_cannot_break_the_table() -> None:
    s = state()
    s["clusters"][0]["name"] = "a | b\nc"
    line = next(l for l in render_markdown(s).splitlines() if RETRIEVAL in l and l.startswith("| 1 |"))
    assert "a \\| b c" in line and line.count(" | ") == 6
