"""The process-wide bound on running sandboxes: candidates replayed in parallel share `replay.max_sandboxes`."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from autofix.replay import Case
from autofix.sandbox.local_backend import LocalSandbox
from tests.test_replay import replay


class MeetingSandbox(LocalSandbox):
    """The local sandbox, counting runs at once; each run waits (up to 2 s) for another to join it."""

    def __init__(self):
        super().__init__(warn=False)
        self.lock, self.running, self.most = threading.Lock(), 0, 0
        self.joined = threading.Event()

    def run(self, spec):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            if self.running > 1:
                self.joined.set()
        self.joined.wait(timeout=2)
        try:
            return super().run(spec)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("limit", [1, 2])
def test_parallel_replays_share_the_sandbox_bound(helpdesk, tmp_path, limit) -> None:
    config = helpdesk.model_copy(update={"replay": helpdesk.replay.model_copy(update={
        "command": "true {cases} {out}", "batch_size": 1, "max_sandboxes": limit})})
    sandbox = MeetingSandbox()
    cases = [Case(case_id=f"c{n}", input="hello") for n in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two candidates' replays at once, one batch each
        done = [pool.submit(replay, helpdesk, sandbox, tmp_path / f"r{n}", cases=cases[n:n + 1], config=config)
                for n in range(2)]
        results = [r for future in done for r in future.result()[0]]
    assert len(results) == 2 and all("wrote no result" in r.error for r in results)
    assert sandbox.most == limit
