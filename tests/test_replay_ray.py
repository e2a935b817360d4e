"""Replay batches as Ray tasks on a local Ray instance (`replay.executor: ray`), with the real parts."""

from __future__ import annotations

import json

import pytest

from autofix.sandbox.local_backend import LocalSandbox
from tests.test_replay import CASES, check_helpdesk_results, replay

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def on_ray(config, **replay_fields):
    return config.model_copy(update={"replay": config.replay.model_copy(
        update={"executor": "ray", **replay_fields})})


@pytest.mark.model
def test_batches_replay_as_ray_tasks_through_the_gateway(helpdesk, tmp_path, local_ray):
    config = on_ray(helpdesk, batch_size=1)  # three batches, three tasks
    results, store = replay(helpdesk, LocalSandbox(), tmp_path, config=config)
    check_helpdesk_results(results)
    assert [c.case_id for c in store.calls("test:regression")] == ["search"]
    # The driver wrote each task's files where a threaded replay writes them.
    batches = sorted((tmp_path / "io").iterdir())
    assert [b.name for b in batches] == ["batch-0000", "batch-0001", "batch-0002"]
    for batch, case in zip(batches, CASES):
        assert json.loads((batch / "cases.jsonl").read_text())["case_id"] == case.case_id
        assert json.loads((batch / "results.jsonl").read_text())["case_id"] == case.case_id
        assert json.loads((batch / "sandbox.json").read_text())["exit_code"] == 0


@pytest.mark.model
@pytest.mark.docker
def test_ray_tasks_run_batches_in_docker_sandboxes(helpdesk, tmp_path, local_ray, docker_sandbox):
    image = docker_sandbox.ensure_image(helpdesk.image_path, helpdesk.project)
    results, _ = replay(helpdesk, docker_sandbox, tmp_path, config=on_ray(helpdesk, batch_size=2), image=image)
    check_helpdesk_results(results)


def test_a_failing_command_on_ray_gives_failed_rows_with_the_reason(helpdesk, tmp_path, local_ray):
    crashing = on_ray(helpdesk, batch_size=2, command="echo 'Traceback: boom' >&2; exit 3 # {cases} {out}")
    results, _ = replay(helpdesk, LocalSandbox(), tmp_path, config=crashing)
    assert [r.case_id for r in results] == ["search", "tool", "vague"]
    assert all(r.failed and r.infrastructure and "exited with code 3" in r.error and "boom" in r.error
               for r in results)
