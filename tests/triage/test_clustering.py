"""Clustering and ranking: near-duplicates together, task types apart, stable ids, owners."""

from __future__ import annotations

import re
from types import SimpleNamespace

from autofix.triage import triage_traces
from autofix.triage.clustering import ClusterItem, cluster_id, cluster_items, owner_for, routing_lives_in_code

BRANCH_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def items(texts: list[str], task_type: str = "policy_qa", category: str = "retrieval", signature: str = "rule_a",
          start: int = 0) -> list[ClusterItem]:
    return [ClusterItem(start + i, category, task_type, t, signature, 1.0) for i, t in enumerate(texts)]


LEAVE = ["How many days of annual leave can I carry over?", "how many annual leave days carry over",
         "annual leave carry over days limit?", "How many leave days can I carry over to next year?"]
PARKING = ["How do I get a parking permit in Berlin?", "berlin parking permit how to get",
           "parking permit for the Berlin office?"]


def groups_of(result) -> list[set[int]]:  # noqa: ANN001
    return sorted((set(g.members) for g in result), key=min)


def test_near_duplicates_group_and_task_types_separate() -> None:
    xs = items(LEAVE) + items(PARKING, start=10) + items(LEAVE[:2], task_type="howto", start=20)
    result = cluster_items(xs)
    got = groups_of(result)
    assert {0, 1, 2, 3} in got or any({0, 1, 2, 3} <= g for g in got)
    assert not any(g & {20, 21} and g & {0, 1, 2, 3} for g in got)  # other task type: apart
    howto = [g for g in result if g.task_type == "howto"]
    assert len(howto) == 1 and sorted(howto[0].members) == [20, 21]


def test_different_requests_with_different_mechanisms_stay_apart() -> None:
    xs = items(LEAVE, signature="fragmentary_retrieval") + items(PARKING, signature="retrieval_empty", start=10)
    got = groups_of(cluster_items(xs))
    assert {0, 1, 2, 3} in got and {10, 11, 12} in got


def test_one_mechanism_on_different_requests_is_one_cluster() -> None:
    xs = items(LEAVE + PARKING, signature="answered_without_retrieval|time-relative")
    assert len(cluster_items(xs)) == 1


def test_cluster_names_come_from_the_members() -> None:
    xs = items(LEAVE, signature="a") + items(PARKING, signature="b", start=10)
    by_first = {min(g.members): g for g in cluster_items(xs)}
    assert set(by_first[0].top_terms) & {"leave", "carry", "annual"}
    assert set(by_first[10].top_terms) & {"parking", "permit", "berlin"}


def test_large_groups_cluster_a_sample_and_assign_the_rest() -> None:
    xs = items(LEAVE * 100, signature="a") + items(PARKING * 100, signature="b", start=1000)
    result = cluster_items(xs, sample_size=50)
    assert sum(len(g.members) for g in result) == len(xs)
    got = groups_of(result)
    assert set(range(400)) in got and set(range(1000, 1300)) in got


def test_empty_texts_do_not_break_clustering() -> None:
    xs = items(["", "   ", "?!"], signature="a")
    result = cluster_items(xs)
    assert sum(len(g.members) for g in result) == 3


def test_cluster_ids_are_branch_safe_and_named_by_the_mechanism() -> None:
    a = cluster_id("tool_arguments", "ticket list/é", "tool_arguments_invalid|list_tickets")
    assert BRANCH_SAFE.match(a) and ".." not in a and not a.endswith(".lock")
    assert a == cluster_id("tool_arguments", "ticket list/é", "tool_arguments_invalid|list_tickets")
    assert a != cluster_id("tool_arguments", "ticket list/é", "tool_arguments_invalid|lookup_ticket")
    assert a == "tool-arguments-ticket-list-invalid-list-tickets"  # the category is not said twice
    assert cluster_id("tool_arguments", "ticket list/é", "tool_arguments_invalid|list_tickets", "since") == a + "-since"
    assert cluster_id("unclassified", "unknown", "none") == "unclassified-unknown-unexplained"
    long = cluster_id("routing", "policy_qa", "answered_without_retrieval|time-relative question answered from the clock")
    assert long == "routing-policy-qa-answered-without-retrieval-time-relative"


def test_owners() -> None:
    code_router = SimpleNamespace(surfaces=SimpleNamespace(code=["src/app/router.py"], prompts=[]),
                                  surface_files=lambda kind: [])
    prompts_only = SimpleNamespace(surfaces=SimpleNamespace(code=[], prompts=["prompts/*.md"]), surface_files=lambda kind: [])
    assert routing_lives_in_code(code_router) and not routing_lives_in_code(prompts_only)
    assert owner_for("routing", code_router) == "optimizer:code_patch"
    assert owner_for("routing", prompts_only) == "optimizer:gepa"
    assert owner_for("prompt") == "optimizer:gepa"
    assert owner_for("retrieval") == owner_for("context") == "optimizer:retrieval"
    assert owner_for("tool_arguments", code_router) == "optimizer:code_patch"
    assert owner_for("data_freshness") == "team:knowledge-base"
    assert owner_for("missing_capability") == "team:product"
    assert owner_for("infrastructure") == "team:platform"
    assert owner_for("model_limitation") == "team:ml"
    assert owner_for("evaluation") == "team:evaluation"
    assert owner_for("unclassified") == "team:triage"


def test_ranking_is_size_times_priority_times_fixability(tb) -> None:
    thumb = [{"kind": "thumb_down"}]
    traces = [*tb.background(10)]
    # 3 retrieval failures (fixable), 3 missing-capability failures (a product team's), 1 empty retrieval
    for i in range(3):
        traces.append(tb.build(f"frag{i}", "How many days can I carry over, and who approves it?", feedback=thumb, top_k=2,
                               docs=[tb.doc("hr-leave-001", "See section 3 of the leave policy.", chunk_id="hr-leave-001#3")],
                               answer="I couldn't find who approves it."))
        traces.append(tb.build(f"cap{i}", "Reset my password for me.", feedback=thumb,
                               docs=[tb.doc("it-pw-001", "Reset it in MyAccess.")], answer="I can't; use MyAccess yourself."))
    traces.append(tb.build("empty", "What is the parking rule in Austin?", docs=[], feedback=thumb))
    report = triage_traces([tb.trace(t) for t in traces])
    frag, cap = report.cluster_of("frag0"), report.cluster_of("cap0")
    assert frag.size == 3 and cap.size == 3
    assert abs(frag.score - frag.size * frag.priority * frag.fixability) < 1e-3
    assert frag.fixable and not cap.fixable and cap.fixability < 1
    assert frag.rank < cap.rank
    assert [c.rank for c in report.clusters] == list(range(1, len(report.clusters) + 1))
    assert all(BRANCH_SAFE.match(c.id) for c in report.clusters)
    assert "retrieval span" in frag.rationale and frag.evidence
    assert cap.category.value == "missing_capability" and cap.owner == "team:product"
    assert report.cluster_of("empty").id != frag.id  # another mechanism on another request
