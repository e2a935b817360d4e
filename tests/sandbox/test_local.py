"""The local sandbox: limits and a scrubbed environment, no isolation (and it says so)."""

from __future__ import annotations

import logging
import os
import resource
import time
from pathlib import Path

import pytest

from autofix.sandbox import Limits, SandboxRun, get_sandbox
from autofix.sandbox.local_backend import LocalSandbox


@pytest.fixture
def local(fresh_warnings) -> LocalSandbox:
    return LocalSandbox(warn=False)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    for _ in range(20):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def run(sandbox, folders, command: str, **kwargs):
    work, io = folders
    return sandbox.run(SandboxRun(command=command, workdir=work, io_dir=io, **kwargs))


def test_local_says_it_does_not_isolate_once(fresh_warnings, caplog):
    with caplog.at_level(logging.WARNING, logger="autofix.sandbox"):
        first = get_sandbox("local")
        second = get_sandbox("local")
    assert first.isolates is False and second.isolates is False
    assert first.name == "local"
    said = [r.getMessage() for r in caplog.records if "LOCAL sandbox" in r.getMessage()]
    assert len(said) == 1
    assert "NO isolation" in said[0]
    assert first.gateway_bind_host() == first.gateway_url_host() == "127.0.0.1"


def test_environment_is_scrubbed(local, folders, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    work, io = folders
    result = run(local, folders, 'env; echo "cwd=$(pwd)"', env={"AUTOFIX_MODEL": "local"})

    assert result.ok, result.reason
    lines = result.stdout.splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("cwd="))
    assert "sk-secret" not in result.stdout
    assert set(env) <= {
        "PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE", "MALLOC_ARENA_MAX", "AUTOFIX_IO", "AUTOFIX_MODEL",
        "PWD", "SHLVL", "_",  # the shell's own
    }
    assert env["AUTOFIX_MODEL"] == "local"
    assert env["AUTOFIX_IO"] == str(io)
    assert f"cwd={work}" in lines
    home = Path(env["HOME"])
    assert home != Path.home() and not home.exists()  # a throw-away home, removed afterwards


def test_io_paths_are_real_host_paths(local, folders):
    work, io = folders
    cases = io / "cases.jsonl"
    cases.write_text("{}\n")
    assert local.io_path(io, cases) == str(cases)
    result = run(local, folders, f"cp {local.io_path(io, cases)} {local.io_path(io, io / 'out.jsonl')}")
    assert result.ok and (io / "out.jsonl").read_text() == "{}\n"
    with pytest.raises(ValueError, match="not inside the sandbox io folder"):
        local.io_path(io, work / "hello.txt")


def test_timeout_kills_the_whole_process_group(local, folders):
    work, io = folders
    started = time.monotonic()
    result = run(local, folders, f"sleep 60 & echo $! > {io}/bg.pid; while :; do :; done", timeout_s=1.5)
    elapsed = time.monotonic() - started

    assert result.timed_out
    assert result.exit_code == 137
    assert result.reason == "killed after 1.5 s timeout"
    assert 1.5 <= result.duration_s < 4 and elapsed < 5
    bg = int((io / "bg.pid").read_text())
    assert not alive(bg)  # the background child went with it


def test_a_gigabyte_of_output_is_capped(local, folders):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run(local, folders, "head -c 1073741824 /dev/zero; echo done >&2", timeout_s=60)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    assert result.exit_code == 0
    assert result.stdout_truncated and not result.stderr_truncated
    assert len(result.stdout) == 10 * 1024 * 1024
    assert result.stderr == "done\n"
    assert (rss_after - rss_before) < 200 * 1024


def test_memory_limit(local, folders):
    hog = "python3 -c \"chunks = []\nwhile True: chunks.append(bytearray(b'x') * (32 * 1024 * 1024))\""
    result = run(local, folders, hog, limits=Limits(memory_mb=256), timeout_s=30)

    assert result.oom_killed
    assert result.exit_code == 1
    assert result.reason == "out of memory (256 MB address-space limit)"
    assert "MemoryError" in result.stderr
    assert not result.timed_out


def test_killed_by_a_signal_is_reported(local, folders):
    result = run(local, folders, "kill -TERM $$")
    assert result.exit_code == 143
    assert result.reason == "killed by SIGTERM (exit code 143)"


def test_file_size_limit(local, folders):
    work, io = folders
    result = run(local, folders, f"head -c 3000000 /dev/zero > {io}/big", limits=Limits(file_mb=1))
    assert result.exit_code == 128 + 25
    assert result.reason == "killed by SIGXFSZ (exit code 153) (file size limit exceeded)"
    assert (io / "big").stat().st_size == 1024 * 1024


def test_missing_workdir_is_an_error(local, tmp_path):
    from autofix.sandbox import SandboxError

    with pytest.raises(SandboxError, match="does not exist"):
        local.run(SandboxRun(command="true", workdir=tmp_path / "nope", io_dir=tmp_path / "io"))


def test_process_limit_applies_to_non_root_users(local, tmp_path, monkeypatch):
    spec = SandboxRun(command="true", workdir=tmp_path, io_dir=tmp_path / "io", limits=Limits(pids=50), timeout_s=10)
    limits = local._rlimits(spec)
    assert limits["RLIMIT_AS"] == 1024 * 1024 * 1024 and limits["RLIMIT_CORE"] == 0
    assert limits["RLIMIT_CPU"] >= 10
    if os.geteuid() == 0:
        assert "RLIMIT_NPROC" not in limits  # root ignores it; counting would only mislead
        monkeypatch.setattr(os, "geteuid", lambda: 4242)
        monkeypatch.setattr(os, "getuid", lambda: 4242)
        limits = local._rlimits(spec)
    assert 50 <= limits["RLIMIT_NPROC"] < 50 + 100000  # what the user already runs, plus the allowance
