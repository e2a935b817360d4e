"""The records, choosing a backend, and what happens where Docker or iptables is unusable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autofix.sandbox import Limits, Sandbox, SandboxRun, SandboxUnavailable, get_sandbox
from autofix.sandbox import docker_backend
from autofix.sandbox.base import OutputBuffer, failure_reason
from autofix.sandbox.image import apt_mirror, folder_hash, image_tag, repo_name
from autofix.sandbox.local_backend import LocalSandbox
from autofix.sandbox.network import Firewall, SandboxNetwork


def test_sandbox_run_defaults(tmp_path: Path):
    spec = SandboxRun(command="true", workdir=tmp_path / "." / "", io_dir=tmp_path / "io")
    assert spec.limits == Limits(cpus=1.0, memory_mb=1024, pids=256, output_bytes=10 * 1024 * 1024, tmpfs_mb=256)
    assert spec.timeout_s == 900 and spec.env == {} and spec.image is None and spec.gateway_port is None
    assert spec.workdir == tmp_path.resolve()
    with pytest.raises(ValueError):
        SandboxRun(command="true", workdir=tmp_path, io_dir=tmp_path, env={"A=B": "x"})


def test_failure_reasons_read_like_sentences():
    common = dict(timeout_s=900, memory_mb=1024)
    assert failure_reason(exit_code=0, timed_out=False, oom_killed=False, **common) is None
    assert failure_reason(exit_code=137, timed_out=True, oom_killed=False, **common) == "killed after 900 s timeout"
    assert failure_reason(exit_code=137, timed_out=False, oom_killed=True, **common) == "out of memory (1024 MB limit)"
    assert failure_reason(exit_code=2, timed_out=False, oom_killed=False, **common) == "exited with code 2"
    assert failure_reason(exit_code=137, timed_out=False, oom_killed=False, **common) == "killed by SIGKILL (exit code 137)"
    assert failure_reason(exit_code=152, timed_out=False, oom_killed=False, **common).endswith("(CPU time limit exceeded)")


def test_output_buffer_keeps_the_cap_and_flags_the_rest():
    buf = OutputBuffer(10)
    for chunk in (b"12345", b"67890abc", b"more"):
        buf.add(chunk)
    assert buf.text() == "1234567890" and buf.truncated and buf.seen == 17
    exact = OutputBuffer(4)
    exact.add(b"1234")
    assert not exact.truncated


def test_image_names_and_hashes(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    h1 = folder_hash(tmp_path)
    (tmp_path / "__pycache__" / "junk.pyc").write_bytes(b"other junk")
    assert folder_hash(tmp_path) == h1  # caches do not count
    assert folder_hash(tmp_path, extra="another base") != h1
    (tmp_path / "requirements.txt").write_text("numpy\n")
    assert folder_hash(tmp_path) != h1
    assert repo_name("Help Desk!") == "help-desk" and repo_name("___") == "target"
    assert image_tag(tmp_path, "helpdesk").startswith("autofix-sandbox/helpdesk:")


def test_apt_mirror_reads_deb822_and_one_line_sources(tmp_path: Path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\n# http://snapshot.debian.org/archive/debian/x\nURIs: http://mirror.example/debian\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
    )
    assert apt_mirror((deb822,)) == "http://mirror.example/debian"
    legacy = tmp_path / "sources.list"
    legacy.write_text("deb http://security.example/debian-security bookworm-security main\ndeb https://m.example/debian bookworm main\n")
    assert apt_mirror((tmp_path / "missing", legacy)) == "https://m.example/debian"
    assert apt_mirror((tmp_path / "missing",)) == "http://deb.debian.org/debian"


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown sandbox 'vm'"):
        get_sandbox("vm")


def _no_docker(monkeypatch, *, installed: bool):
    monkeypatch.setattr(docker_backend, "_ping", lambda timeout=10.0: (None, ConnectionError("no socket")))
    real_which = docker_backend.shutil.which
    monkeypatch.setattr(
        docker_backend.shutil, "which",
        lambda name, *a, **k: ("/usr/sbin/dockerd" if installed else None) if name == "dockerd" else real_which(name, *a, **k),
    )
    monkeypatch.delenv("DOCKER_HOST", raising=False)


def test_without_docker_and_without_fallback_the_error_says_how_to_fix_it(monkeypatch):
    _no_docker(monkeypatch, installed=False)
    with pytest.raises(SandboxUnavailable) as caught:
        get_sandbox("docker", allow_local_fallback=False)
    message = str(caught.value)
    assert "Docker is not installed" in message
    assert "apt-get install -y docker.io" in message
    assert "replay.sandbox: local" in message and "allow_local_fallback" in message


def test_installed_but_stopped_daemon_is_not_started_when_told_not_to(monkeypatch):
    _no_docker(monkeypatch, installed=True)
    with pytest.raises(SandboxUnavailable, match="the Docker daemon is not running"):
        docker_backend.connect_docker(start_daemon=False)


def test_without_docker_the_fallback_is_local_and_says_why(monkeypatch, caplog, fresh_warnings):
    _no_docker(monkeypatch, installed=False)
    with caplog.at_level(logging.WARNING, logger="autofix.sandbox"):
        sandbox = get_sandbox("docker", allow_local_fallback=True)
    assert isinstance(sandbox, LocalSandbox) and not sandbox.isolates
    assert isinstance(sandbox, Sandbox)
    text = caplog.text
    assert "Docker sandbox unavailable, falling back to the LOCAL sandbox" in text
    assert "Docker is not installed" in text


def test_firewall_without_usable_iptables_warns_and_does_not_crash(caplog, fresh_warnings):
    net = SandboxNetwork(name="autofix-sandbox", id="x", bridge="br-autofix", subnet="172.30.0.0/16", gateway="172.30.0.1")
    firewall = Firewall(net, iptables="/nonexistent/iptables")
    with caplog.at_level(logging.WARNING, logger="autofix.sandbox"):
        assert firewall.ensure() is False
        assert firewall.allow(8000) is False
    assert not firewall.enforced
    assert "Sandbox firewall not installed" in caplog.text
    assert "bind host services to 127.0.0.1" in caplog.text
    assert caplog.text.count("Sandbox firewall not installed") == 1
