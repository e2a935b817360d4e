"""Replay with the real parts: the helpdesk's replay command, a sandbox, the gateway and the local model."""

from __future__ import annotations

from pathlib import Path

import pytest

from autofix.models.gateway import GatewayServer
from autofix.models.usage import UsageStore
from autofix.replay import Case, replay_cases
from autofix.sandbox.local_backend import LocalSandbox

CASES = [
    Case(case_id="search", input="How many days of annual leave do full-time employees get?",
         expected={"must_include": ["27 days"]}, metadata={"now": "2026-11-20"}),
    Case(case_id="tool", input="any update on INC-1001?", metadata={"user": "alice.meyer", "now": "2026-11-20"}),
    Case(case_id="vague", input="it's not working", metadata={"now": "2026-11-20"}),
]


def replay(helpdesk, sandbox, tmp_path: Path, cases=CASES, config=None, image=None):
    store = UsageStore(tmp_path / "gateway.sqlite3")
    with GatewayServer(store, model=helpdesk.model.name, host=sandbox.gateway_bind_host(), port=0) as gateway:
        results = replay_cases(cases, config=config or helpdesk, target_dir=helpdesk.root, sandbox=sandbox,
                               gateway=gateway, replay_id="test:regression", io_root=tmp_path / "io", image=image)
    return results, store


def check_helpdesk_results(results):
    by_id = {r.case_id: r for r in results}
    assert [r.case_id for r in results] == ["search", "tool", "vague"]
    assert all(r.error is None for r in results), [r.error for r in results]
    search = by_id["search"]
    assert [s["kind"] for s in search.spans] == ["chain", "router", "retrieval", "llm"]
    assert search.usage.calls == 1 and search.usage.tokens > 0  # the gateway's record of the model call
    assert "INC-1001" in by_id["tool"].output and by_id["tool"].usage.calls == 0
    assert by_id["vague"].spans[1]["output"]["action"] == "clarify"


@pytest.mark.model
def test_local_sandbox_replays_through_the_gateway(helpdesk, tmp_path):
    results, store = replay(helpdesk, LocalSandbox(), tmp_path)
    check_helpdesk_results(results)
    assert store.run_for_key("anything") is None
    assert [c.case_id for c in store.calls("test:regression")] == ["search"]


@pytest.mark.model
@pytest.mark.docker
def test_docker_sandbox_replays_through_the_gateway(helpdesk, tmp_path, docker_sandbox):
    image = docker_sandbox.ensure_image(helpdesk.image_path, helpdesk.project)
    results, _ = replay(helpdesk, docker_sandbox, tmp_path, image=image)
    check_helpdesk_results(results)


def test_a_crashing_command_gives_failed_rows_with_the_reason(helpdesk, tmp_path):
    crashing = helpdesk.model_copy(update={"replay": helpdesk.replay.model_copy(
        update={"command": "echo 'Traceback: boom' >&2; exit 3 # {cases} {out}"})})
    results, _ = replay(helpdesk, LocalSandbox(), tmp_path, config=crashing)
    assert [r.case_id for r in results] == ["search", "tool", "vague"]
    assert all(r.failed and "exited with code 3" in r.error and "boom" in r.error for r in results)


def test_missing_and_empty_results_are_failed_rows(helpdesk, tmp_path):
    partial = helpdesk.model_copy(update={"replay": helpdesk.replay.model_copy(update={
        "command": "printf '%s\\n' '{\"case_id\": \"search\", \"output\": \"\"}' 'not json' > {out} # {cases}"})})
    results, _ = replay(helpdesk, LocalSandbox(), tmp_path, config=partial)
    by_id = {r.case_id: r for r in results}
    assert by_id["search"].error == "empty output"
    assert "wrote no result" in by_id["tool"].error and "wrote no result" in by_id["vague"].error
