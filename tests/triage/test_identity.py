"""Cluster ids that last from one night to the next while the mechanism is the same, and the comparison with
the previous run (new, growing, shrinking, steady, resolved): on the helpdesk's production traces split into
nights by timestamp, and on an airline agent's traces (another shape: chat messages, many tool steps, no
task type)."""

from __future__ import annotations

import json
import random
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import load_config
from autofix.triage import run_triage, triage_traces
from autofix.triage.identity import (
    ClusterSnapshot,
    PreviousRun,
    assign_identities,
    load_previous,
    term_profile,
    trend_of,
)

HELPDESK = Path(__file__).resolve().parents[2] / "examples" / "helpdesk"
BRANCH_SAFE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
CUT = "2026-11-12"  # the helpdesk's traces run from 2026-11-02 to 2026-11-20
runner = CliRunner()


# ----------------------------------------------------------------------------- the helpdesk, night by night


@pytest.fixture(scope="module")
def helpdesk_rows() -> list[dict[str, Any]]:
    return [json.loads(x) for x in (HELPDESK / "data" / "traces.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]


@pytest.fixture
def helpdesk(tmp_path: Path) -> Path:
    root = tmp_path / "helpdesk"
    shutil.copytree(HELPDESK, root, ignore=shutil.ignore_patterns("runs", "__pycache__", ".pytest_cache"))
    return root


def night(root: Path, rows: list[dict[str, Any]], **kwargs: Any):  # noqa: ANN201
    """One nightly triage of `rows` (written as the target's traces), rules only."""
    (root / "data" / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return run_triage(load_config(root / "autofix.yaml"), **kwargs)


def by_mechanism(report) -> dict[str, Any]:  # noqa: ANN001
    out = {c.mechanism: c for c in report.clusters}
    assert len(out) == len(report.clusters), "one cluster per mechanism on the helpdesk"
    return out


def traces_of(report, rule: str) -> set[str]:  # noqa: ANN001
    return {t for c in report.clusters if c.mechanism.split("|")[0] == rule for t in c.trace_ids}


def test_two_nights_on_the_same_traces_give_the_same_ids(helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    first = night(helpdesk, helpdesk_rows)
    second = night(helpdesk, helpdesk_rows)
    assert first.changes.previous is None and {c.trend for c in first.clusters} == {"new"}
    assert first.changes.counts["new"] == len(first.clusters) >= 10
    assert [(c.id, c.size) for c in second.clusters] == [(c.id, c.size) for c in first.clusters]
    assert {c.trend for c in second.clusters} == {"steady"} and not second.changes.resolved
    assert second.changes.counts == {"kept": len(first.clusters), "new": 0, "growing": 0, "shrinking": 0,
                                     "steady": len(first.clusters), "resolved": 0}
    assert {c.matched_by for c in second.changes.clusters} == {"members"}
    assert {f.trace_id: cid for f, _, cid in second.failure_list()} == {f.trace_id: cid for f, _, cid in first.failure_list()}
    assert all(BRANCH_SAFE.match(c.id) for c in first.clusters)
    # the ids name the mechanism: a run with no history at all (state wiped) gives them again
    fresh = night(helpdesk, helpdesk_rows, previous=False)
    assert [c.id for c in fresh.clusters] == [c.id for c in first.clusters]
    assert by_mechanism(first)["tool_arguments_invalid|list_tickets"].id == "tool-arguments-unknown-invalid-list-tickets"


def test_traces_added_keep_the_ids_of_known_mechanisms_and_show_growth(helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    everything = night(helpdesk, helpdesk_rows, write=False, previous=False)
    tickets = traces_of(everything, "tool_arguments_invalid")
    assert len(tickets) >= 20
    # night 1: the traces before the 12th, without the ticket-list failures (that mechanism starts on night 2)
    first = night(helpdesk, [r for r in helpdesk_rows if r["timestamp"] < CUT and r["trace_id"] not in tickets])
    assert not traces_of(first, "tool_arguments_invalid")
    second = night(helpdesk, helpdesk_rows)  # night 2: every trace so far
    one, two = by_mechanism(first), by_mechanism(second)
    assert set(one) < set(two)
    for mech, c in one.items():  # each mechanism of night 1 keeps its id
        assert two[mech].id == c.id and two[mech].previous_size == c.size
        assert two[mech].trend == trend_of(two[mech].size, c.size)
    new = two["tool_arguments_invalid|list_tickets"]
    assert new.trend == "new" and new.previous_size is None and new.id == "tool-arguments-unknown-invalid-list-tickets"
    assert set(new.trace_ids) == tickets
    counts = second.changes.counts
    assert (counts["kept"], counts["new"], counts["resolved"]) == (len(one), 1, 0)
    assert counts["growing"] >= 8  # a cumulative file: most clusters more than 10% bigger
    assert counts["growing"] + counts["steady"] + counts["shrinking"] == len(one)
    # what latest.json says now, and what the next run compares with
    latest = json.loads((helpdesk / "runs" / "triage" / "latest.json").read_text())
    assert latest["changes"]["counts"] == counts
    assert {c["id"]: c["trend"] for c in latest["clusters"]} == {c.id: c.trend for c in second.clusters}
    assert latest["changes"]["previous"]["report"] == first.report_path


def test_separate_nightly_windows_keep_every_id(helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    """Nights that share no trace (each run reads its own night): the same mechanisms keep their ids."""
    first = night(helpdesk, [r for r in helpdesk_rows if r["timestamp"] < CUT])
    second = night(helpdesk, [r for r in helpdesk_rows if r["timestamp"] >= CUT])
    one, two = by_mechanism(first), by_mechanism(second)
    assert set(one) == set(two)
    assert {m: c.id for m, c in one.items()} == {m: c.id for m, c in two.items()}
    assert second.changes.counts["kept"] == len(one) and not second.changes.resolved
    assert {c.matched_by for c in second.changes.clusters} <= {"terms", "mechanism"}  # no trace in common
    assert {c.trend for c in second.clusters} == {"growing", "shrinking", "steady"}


def test_a_mechanism_whose_traces_are_gone_is_resolved_and_its_id_not_given_again(helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    first = night(helpdesk, helpdesk_rows)
    stale = by_mechanism(first)["stale_document"]
    gone = set(stale.trace_ids)
    second = night(helpdesk, [r for r in helpdesk_rows if r["trace_id"] not in gone])
    assert stale.id not in {c.id for c in second.clusters}
    [resolved] = second.changes.resolved
    assert (resolved.id, resolved.previous_size, resolved.size, resolved.mechanism) == (stale.id, stale.size, 0, "stale_document")
    assert second.changes.counts["resolved"] == 1 and second.changes.counts["kept"] == len(first.clusters) - 1
    assert second.retired_ids == [stale.id]
    others = {c.id for c in first.clusters} - {stale.id}
    assert others == {c.id for c in second.clusters}
    # it comes back the night after: a new cluster, with an id of its own (the old one is retired)
    third = night(helpdesk, helpdesk_rows)
    back = by_mechanism(third)["stale_document"]
    assert back.trend == "new" and back.id != stale.id and back.id.startswith(stale.id + "-")
    assert third.retired_ids == [stale.id] and not third.changes.resolved


def test_the_cli_shows_the_changes_and_json_carries_them(helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    def triage(rows: list[dict[str, Any]], *flags: str) -> str:
        (helpdesk / "data" / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        result = runner.invoke(app, ["triage", "-c", str(helpdesk), "--no-llm", *flags])
        assert result.exit_code == 0, result.output
        return result.stdout

    out = triage([r for r in helpdesk_rows if r["timestamp"] < CUT])
    assert "since the previous run: none to compare with (first run), every cluster is new" in out
    doc = json.loads(triage(helpdesk_rows, "--json"))
    n = len(doc["clusters"])
    assert doc["changes"]["counts"]["kept"] == n and doc["changes"]["previous"]["clusters"] == n
    assert [c["trend"] for c in doc["clusters"]] == [c["trend"] for c in doc["changes"]["clusters"]]
    assert {c["trend"] for c in doc["clusters"]} <= {"growing", "steady"} and "growing" in {c["trend"] for c in doc["clusters"]}
    grown = next(c for c in doc["changes"]["clusters"] if c["trend"] == "growing")
    out = triage(helpdesk_rows)
    assert re.search(rf"since the previous run \(\d{{4}}-\d\d-\d\d \d\d:\d\d, {n} clusters\): {n} kept \(0 growing, "
                     rf"0 shrinking, {n} steady\), 0 new, 0 resolved", out), out
    assert re.search(rf"{re.escape(grown['id'])}[^\n]*│\s*{grown['size']}\s*│\s*steady\s*│", out), out  # the trend column
    # the night the stale documents are gone: one resolved row, its size then and now
    stale = next(c for c in doc["clusters"] if c["mechanism"] == "stale_document")
    out = triage([r for r in helpdesk_rows if r["trace_id"] not in set(stale["trace_ids"])])
    assert f"{n - 1} kept" in out and "1 resolved" in out
    assert re.search(rf"resolved\s+{re.escape(stale['id'])}\s+{stale['size']}\s+0 *\n", out), out


def test_an_unreadable_previous_report_is_a_warning_and_every_cluster_new(helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    (helpdesk / "runs" / "triage").mkdir(parents=True)
    (helpdesk / "runs" / "triage" / "latest.json").write_text('{"clusters": "oops"}')
    report = night(helpdesk, helpdesk_rows[:200])
    assert {c.trend for c in report.clusters} == {"new"} and report.changes.previous is None
    assert any("latest.json: the previous triage report cannot be read" in w for w in report.warnings)
    missing = night(helpdesk, helpdesk_rows[:200], previous=helpdesk / "nope.json")
    assert any("nope.json: no such previous triage report" in w for w in missing.warnings)


def test_a_report_written_before_mechanisms_were_recorded_still_hands_its_ids_over(helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    first = night(helpdesk, helpdesk_rows)
    latest = helpdesk / "runs" / "triage" / "latest.json"
    old = json.loads(latest.read_text())
    for i, c in enumerate(old["clusters"]):  # as the reports of the old ids were: no mechanism, a hash in the id
        for key in ("mechanism", "signatures", "keywords", "trend", "previous_size"):
            c.pop(key)
        c["id"] = f"{c['category'].replace('_', '-')}-unknown-{(c['top_terms'] or ['x'])[0]}-{i:06x}"
    old.pop("changes"), old.pop("retired_ids")
    latest.write_text(json.dumps(old))
    second = night(helpdesk, helpdesk_rows)
    assert sorted(c.id for c in second.clusters) == sorted(c["id"] for c in old["clusters"])
    assert len(second.clusters) == len(first.clusters) and {c.trend for c in second.clusters} == {"steady"}


# ----------------------------------------------------------------------------- an airline agent: one mechanism, two topics

REWARD_OK = [{"name": "reward", "value": 1.0, "source": "tau-bench"}]
REWARD_FAIL = [{"name": "reward", "value": 0.0, "source": "tau-bench"}]
DEPARTED = "Error: reservation cannot be cancelled: the flight has already departed"
TOPICS = {
    "refund": ["Please cancel my reservation {r} and refund the money", "cancel reservation {r}, I want my refund",
               "refund and cancel booking {r} please", "I need a refund, cancel reservation {r}"],
    "storm": ["The storm closed the airport, cancel flight {r}", "cancel {r} because of the snow storm",
              "storm warning: cancel my flight {r}", "airport closed by the storm, cancel {r}"],
    "wedding": ["My sister's wedding moved, cancel trip {r}", "cancel {r}, the wedding is off",
                "wedding postponed so cancel {r}", "the wedding was cancelled, cancel {r} too"],
}


def airline_refusal(ab, tid: str, request: str, minute: int) -> dict[str, Any]:  # noqa: ANN001
    """A cancellation the airline's business rule refuses (the flight departed): the same mechanism whatever is asked."""
    steps = [ab.llm({"tool_calls": [{"name": "get_reservation_details"}]}),
             ab.tool("get_reservation_details", {"reservation_id": "SDZQKO"}, {"status": "flown"}),
             ab.llm({"tool_calls": [{"name": "cancel_reservation"}]}),
             ab.tool("cancel_reservation", {"reservation_id": "SDZQKO"}, None, DEPARTED),
             ab.llm("I'm sorry, the reservation could not be cancelled.")]
    return ab.build(tid, request, steps, answer="I'm sorry, the reservation could not be cancelled.", scores=REWARD_FAIL,
                    at=ab.T0 + timedelta(minutes=minute))


def airline_night(ab, tag: str, sizes: dict[str, int]) -> list[dict[str, Any]]:  # noqa: ANN001
    """One night of the agent: healthy conversations and `sizes[topic]` refused cancellations per topic, new trace ids."""
    healthy = [("Check my reservation ZFA04Y please", "get_reservation_details", {"reservation_id": "ZFA04Y"}),
               ("Find a direct flight from JFK to SEA on 2024-05-20", "search_direct_flight", {"origin": "JFK"}),
               ("Cancel reservation EHGLP3, my plans changed", "cancel_reservation", {"reservation_id": "EHGLP3"})]
    rows = []
    for k in range(12):
        request, tool, args = healthy[k % 3]
        rows.append(ab.build(f"{tag}-ok-{k}", request, [ab.llm({"tool_calls": [{"name": tool}]}), ab.tool(tool, args, {"ok": True}),
                                                        ab.llm("All set.")], scores=REWARD_OK, at=ab.T0 + timedelta(minutes=k)))
    for topic, n in sizes.items():
        for k in range(n):
            rows.append(airline_refusal(ab, f"{tag}-{topic}-{k}", TOPICS[topic][k % 4].format(r=f"#{4000 + k}"), 60 + k))
    return rows


def agent_triage(ab, rows: list[dict[str, Any]], previous=None):  # noqa: ANN001, ANN201
    # a tighter distance than the default keeps the topics of one mechanism apart
    return triage_traces([ab.trace(t) for t in rows], distance_threshold=0.4, previous=previous)


def topic_ids(report) -> dict[str, str]:  # noqa: ANN001
    """topic -> cluster id (each cluster holds one topic's traces)."""
    out = {}
    for c in report.clusters:
        [topic] = {t.split("-")[1] for t in c.trace_ids}
        out[topic] = c.id
    return out


def test_one_mechanism_on_two_topics_keeps_two_ids(ab) -> None:  # noqa: ANN001
    first = agent_triage(ab, airline_night(ab, "n1", {"refund": 4, "storm": 4}))
    assert {c.mechanism for c in first.clusters} == {"tool_rejected_by_business_rule|cancel_reservation"}
    ids = topic_ids(first)
    base = "prompt-unknown-tool-rejected-by-business-rule-cancel"
    assert len(ids) == 2 and len(set(ids.values())) == 2
    assert min(ids.values()) == base and max(ids.values()).startswith(base + "-")  # a disambiguator, only one
    # night 2: all new traces, other sizes, the topics in the other order
    second = agent_triage(ab, airline_night(ab, "n2", {"storm": 2, "refund": 6}), previous=first)
    assert topic_ids(second) == ids
    trends = {c.id: (c.trend, c.previous_size, c.size) for c in second.clusters}
    assert trends == {ids["refund"]: ("growing", 4, 6), ids["storm"]: ("shrinking", 4, 2)}
    assert {c.matched_by for c in second.changes.clusters} == {"terms"}
    # night 3: the storm is over, a wedding is off: refund kept, storm resolved, wedding new with an id of its own
    third = agent_triage(ab, airline_night(ab, "n3", {"refund": 6, "wedding": 4}), previous=second)
    got = topic_ids(third)
    assert got["refund"] == ids["refund"] and got["wedding"] not in ids.values() and got["wedding"].startswith(base + "-")
    assert [r.id for r in third.changes.resolved] == [ids["storm"]]
    assert {c.id: c.trend for c in third.clusters} == {ids["refund"]: "steady", got["wedding"]: "new"}
    # night 4: the storm is back, beside a wedding: the storm's id stays retired
    fourth = agent_triage(ab, airline_night(ab, "n4", {"refund": 6, "wedding": 4, "storm": 3}), previous=third)
    again = topic_ids(fourth)
    assert again["refund"] == ids["refund"] and again["wedding"] == got["wedding"]
    assert again["storm"] not in {*ids.values(), got["wedding"]} and ids["storm"] in fourth.retired_ids


def test_the_same_input_gives_the_same_ids(ab) -> None:  # noqa: ANN001
    first = agent_triage(ab, airline_night(ab, "n1", {"refund": 4, "storm": 4}))
    rows = airline_night(ab, "n2", {"refund": 5, "storm": 3, "wedding": 4})
    runs = [agent_triage(ab, rows, previous=first) for _ in range(2)]
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    runs.append(agent_triage(ab, shuffled, previous=first))
    assert len({tuple(sorted((c.id, c.size, c.trend) for c in r.clusters)) for r in runs}) == 1
    assert len({tuple(sorted(topic_ids(r).items())) for r in runs}) == 1
    # without history the fresh ids do not depend on the input order either
    alone = [agent_triage(ab, rs) for rs in (rows, shuffled)]
    assert topic_ids(alone[0]) == topic_ids(alone[1])


# ----------------------------------------------------------------------------- the matching itself


def snap(cid: str, traces: range | list[str], words: list[str], mechanism: str = "rule_a|tool",
         category: str = "retrieval") -> ClusterSnapshot:
    ids = [f"t{i}" for i in traces] if isinstance(traces, range) else traces
    return ClusterSnapshot(id=cid, category=category, task_type="policy_qa", mechanism=mechanism,
                           signatures=frozenset({mechanism}), size=len(ids), trace_ids=frozenset(ids),
                           profile=term_profile(words), keywords=tuple(words))


BASE = "retrieval-policy-qa-rule-a-tool"  # cluster_id("retrieval", "policy_qa", "rule_a|tool")


def test_a_split_keeps_the_id_on_the_bigger_part_and_names_the_other() -> None:
    prev = PreviousRun(clusters=[snap(BASE, range(10), ["leave", "carry"])])
    out = assign_identities([snap("", range(3), ["leave", "carry"]), snap("", range(3, 10), ["leave", "days"])], prev)
    assert out.ids == [f"{BASE}-leave", BASE]
    assert [(c.trend, c.matched_by) for c in out.changes.clusters] == [("new", None), ("shrinking", "members")]
    # an id of the old shape is kept as it is; the other part then needs no disambiguator
    prev = PreviousRun(clusters=[snap("retrieval-policy-qa-leave-3f2a1b", range(10), ["leave", "carry"])])
    out = assign_identities([snap("", range(3), ["leave", "carry"]), snap("", range(3, 10), ["leave", "days"])], prev)
    assert out.ids == [BASE, "retrieval-policy-qa-leave-3f2a1b"]


def test_no_match_across_mechanisms_or_categories_and_a_floor_on_similarity() -> None:
    prev = PreviousRun(clusters=[snap("p1", range(5), ["leave", "carry"]), snap("p2", range(5, 9), ["parking", "permit"])])
    new = [snap("", range(5), ["leave", "carry"], mechanism="rule_b|tool"),  # same traces, another mechanism
           snap("", range(5, 9), ["parking", "permit"], category="context"),  # same traces, another category
           snap("", ["x1", "x2"], ["vpn", "token"]),  # all new, about something else: below the floor
           snap("", ["y1", "y2"], ["parking", "permit", "berlin"])]  # all new, about parking: p2
    out = assign_identities(new, prev)
    assert out.ids[3] == "p2" and out.changes.clusters[3].matched_by == "terms"
    assert set(out.ids[:3]).isdisjoint({"p1", "p2"})
    assert [r.id for r in out.changes.resolved] == ["p1"]
    assert out.retired_ids == ["p1"]


def test_fresh_ids_never_take_an_id_used_before() -> None:
    prev = PreviousRun(clusters=[snap("other", range(3), ["vpn"], mechanism="rule_c")], retired_ids=[BASE, f"{BASE}-leave"])
    out = assign_identities([snap("", ["n1", "n2"], ["leave", "carry"]), snap("", ["n3"], ["leave", "parking"])], prev)
    assert out.ids == [f"{BASE}-carry", f"{BASE}-parking"]
    assert set(out.retired_ids) == {BASE, f"{BASE}-leave", "other"}
    out = assign_identities([snap("", ["n1"], ["leave"]), snap("", ["n2"], ["leave"])], prev)
    assert out.ids == [f"{BASE}-2", f"{BASE}-3"]  # no word left to tell them apart: a number


def test_trends_have_a_small_tolerance() -> None:
    assert trend_of(5, None) == "new"
    assert trend_of(10, 10) == trend_of(11, 10) == trend_of(9, 10) == trend_of(33, 30) == "steady"
    assert trend_of(12, 10) == trend_of(2, 1) == "growing"
    assert trend_of(8, 10) == trend_of(0, 3) == "shrinking"


def test_the_previous_report_is_read_without_its_failure_details(tmp_path: Path, helpdesk: Path, helpdesk_rows) -> None:  # noqa: ANN001
    report = night(helpdesk, helpdesk_rows)
    path = Path(report.report_path)
    text = path.read_text()
    # a broken failure_details section proves they are not parsed: the summary comes first, one key a line
    broken = tmp_path / "report.json"
    broken.write_text(text[: text.index('  "failure_details": [') + 30] + "not json at all")
    prev = load_previous(broken)
    assert [c.id for c in prev.clusters] == [c.id for c in report.clusters]
    assert prev.report == report.report_path and prev.traces == report.traces
    assert load_previous(tmp_path / "none.json") is None
