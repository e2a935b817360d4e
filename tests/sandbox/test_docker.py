"""The Docker sandbox against hostile commands, on the real daemon.

Each test runs something a broken or malicious candidate could run and asserts what a user
reads in the SandboxResult: the exit code, the reason, the flags, the duration.
"""

from __future__ import annotations

import http.server
import json
from datetime import datetime, timezone
import os
import resource
import shlex
import socket
import subprocess
import threading

import pytest

from autofix.sandbox import ImageBuildError, Limits, SandboxError, SandboxRun
from autofix.sandbox.docker_backend import CONTAINER_LABEL
from autofix.sandbox.image import import_rootfs, image_tag
from autofix.sandbox.network import CHAIN, Firewall

pytestmark = pytest.mark.docker


def run(sandbox, folders, command: str, **kwargs):
    work, io = folders
    return sandbox.run(SandboxRun(command=command, workdir=work, io_dir=io, **kwargs))


def py(code: str) -> str:
    return "python3 -c " + shlex.quote(code)


_TESTS_STARTED = datetime.now(timezone.utc)


def _created(container) -> datetime:
    stamp = container.attrs["Created"].rstrip("Z")  # nanoseconds: keep microseconds for fromisoformat
    whole, _, frac = stamp.partition(".")
    return datetime.fromisoformat(f"{whole}.{(frac or '0')[:6]}").replace(tzinfo=timezone.utc)


def leftover_containers(sandbox) -> list:
    """Sandbox containers these tests left behind: created since they started, with a pytest tmp_path mounted.
    Containers of other autofix processes on this machine (a benchmark, an earlier killed run) are not theirs."""
    return [
        c for c in sandbox.client.containers.list(all=True, filters={"label": CONTAINER_LABEL})
        if _created(c) >= _TESTS_STARTED and any("/pytest-" in (m.get("Source") or "") for m in c.attrs.get("Mounts", []))
    ]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def host_ipv4_addresses() -> list[str]:
    """This machine's IPv4 addresses, loopback excepted (from `ip -j addr`)."""
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    return [
        info["local"]
        for link in json.loads(out)
        for info in link.get("addr_info", [])
        if info.get("family") == "inet" and not info["local"].startswith("127.")
    ]


def serve(host: str) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the container ---------------------------------------------------------------------------


def test_a_plain_command_runs_unprivileged_in_the_worktree(docker_sandbox, folders):
    work, io = folders
    result = run(docker_sandbox, folders, "id -u; pwd; cat hello.txt; echo oops >&2; exit 3")

    assert result.exit_code == 3
    assert result.reason == "exited with code 3"
    assert not result.ok and not result.timed_out and not result.oom_killed
    uid, cwd, text = result.stdout.splitlines()
    assert uid != "0"
    assert cwd == "/work"
    assert text == "hello from the worktree"
    assert result.stderr == "oops\n"
    assert result.backend == "docker" and result.image == "autofix/base-bookworm:latest"
    assert 0 < result.duration_s < 10
    assert docker_sandbox.isolates is True
    assert leftover_containers(docker_sandbox) == []


def test_only_io_and_tmp_are_writable(docker_sandbox, folders):
    work, io = folders
    command = (
        "for target in /work/new.txt /work/hello.txt /etc/evil /usr/bin/evil /evil /io/out.txt /tmp/scratch; do "
        "  if (echo x > $target) 2>/dev/null; then echo $target:writable; else echo $target:refused; fi; "
        "done"
    )
    result = run(docker_sandbox, folders, command)

    assert result.exit_code == 0, result.stderr
    seen = dict(line.split(":") for line in result.stdout.split())
    assert seen == {
        "/work/new.txt": "refused",
        "/work/hello.txt": "refused",
        "/etc/evil": "refused",
        "/usr/bin/evil": "refused",
        "/evil": "refused",
        "/io/out.txt": "writable",
        "/tmp/scratch": "writable",
    }
    assert (work / "hello.txt").read_text() == "hello from the worktree\n"
    assert not (work / "new.txt").exists()
    # the result file is on the host, owned (again) by whoever owns the io folder
    out = io / "out.txt"
    assert out.read_text() == "x\n"
    assert out.stat().st_uid == io.stat().st_uid == os.getuid()


def test_io_paths_map_to_io_mount(docker_sandbox, folders):
    work, io = folders
    cases = io / "cases.jsonl"
    cases.write_text('{"case_id": "c1"}\n')
    inside = docker_sandbox.io_path(io, cases)
    assert inside == "/io/cases.jsonl"
    result = run(docker_sandbox, folders, f"cat {shlex.quote(inside)} > /io/copy.jsonl && echo $AUTOFIX_IO")
    assert result.ok, result.reason
    assert result.stdout.strip() == "/io"
    assert (io / "copy.jsonl").read_text() == '{"case_id": "c1"}\n'
    with pytest.raises(ValueError, match="not inside the sandbox io folder"):
        docker_sandbox.io_path(io, work / "hello.txt")


def test_host_environment_secrets_stay_outside(docker_sandbox, folders, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    result = run(docker_sandbox, folders, "env", env={"AUTOFIX_MODEL": "local"})

    assert result.ok
    assert "sk-secret" not in result.stdout and "aws-secret" not in result.stdout
    names = {line.split("=", 1)[0] for line in result.stdout.splitlines()}
    assert "OPENAI_API_KEY" not in names
    assert "AUTOFIX_MODEL=local" in result.stdout.splitlines()
    assert "HOME=/tmp" in result.stdout.splitlines()


# --- the network -----------------------------------------------------------------------------


NET_PROBE = """
import socket, sys, urllib.request
def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "open"
    except OSError as exc:
        return "blocked"
def http(url):
    try:
        return urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError:
        return "blocked"
for name, what in zip(sys.argv[1::2], sys.argv[2::2]):
    print(name, http(what) if what.startswith("http") else tcp(*what.split(",")))
"""


def test_network_reaches_the_gateway_and_nothing_outside(docker_sandbox, folders):
    gateway = serve(docker_sandbox.gateway_bind_host())
    try:
        port = gateway.server_address[1]
        url = f"http://{docker_sandbox.gateway_url_host()}:{port}/"
        checks = ["gateway", url, "internet", "1.1.1.1,53"]
        command = py(NET_PROBE) + " " + " ".join(shlex.quote(c) for c in checks)
        result = run(docker_sandbox, folders, command, gateway_port=port, timeout_s=30)
    finally:
        gateway.shutdown()
        gateway.server_close()

    assert result.ok, result.stderr
    seen = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert seen == {"gateway": "hello from the host", "internet": "blocked"}


def test_host_services_other_than_the_gateway_are_blocked(docker_sandbox, folders):
    if not docker_sandbox.firewall_enforced:
        pytest.skip(f"iptables unusable here ({docker_sandbox.firewall.problem}): host services are not filtered")
    gw_host = docker_sandbox.gateway_url_host()
    others = [a for a in host_ipv4_addresses() if a != gw_host]  # docker0's 172.17.0.1, the LAN address...
    assert others, "expected the host to have addresses besides the sandbox gateway"
    gateway = serve(docker_sandbox.gateway_bind_host())
    other = serve("0.0.0.0")  # a host service that listens everywhere, on another port
    try:
        gw_port, other_port = gateway.server_address[1], other.server_address[1]
        # the host service really is up and reachable from the host itself
        with socket.create_connection(("127.0.0.1", other_port), timeout=2):
            pass
        checks = [
            "gateway", f"http://{gw_host}:{gw_port}/",
            "other-port-on-gateway-address", f"http://{gw_host}:{other_port}/",
        ]
        for address in others:
            checks += [f"host-{address}", f"http://{address}:{other_port}/"]
        command = py(NET_PROBE) + " " + " ".join(shlex.quote(c) for c in checks)
        result = run(docker_sandbox, folders, command, gateway_port=gw_port, timeout_s=30)
    finally:
        for server in (gateway, other):
            server.shutdown()
            server.server_close()

    assert result.ok, result.stderr
    seen = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert seen == {
        "gateway": "hello from the host",
        "other-port-on-gateway-address": "blocked",
        **{f"host-{address}": "blocked" for address in others},
    }


def test_firewall_opens_the_gateway_port_only_while_needed(docker_sandbox, folders):
    if not docker_sandbox.firewall_enforced:
        pytest.skip(f"iptables unusable here ({docker_sandbox.firewall.problem})")
    net = docker_sandbox.network()
    firewall = docker_sandbox.firewall
    gateway = serve(net.gateway)
    port = gateway.server_address[1]
    opening = f"-A {CHAIN} -d {net.gateway}/32 -p tcp -m tcp --dport {port} -j ACCEPT"
    try:
        assert opening not in firewall.rules()
        # during a run the port is open (and the sandbox reaches it), afterwards closed again
        result = run(docker_sandbox, folders, py(NET_PROBE) + f" gateway http://{net.gateway}:{port}/", gateway_port=port)
        assert result.stdout == "gateway hello from the host\n"
        assert opening not in firewall.rules()

        assert firewall.allow(port) and firewall.allow(port)  # two concurrent runs
        rules = firewall.rules()
        assert rules.count(opening) == 1
        again = Firewall(net)  # a second autofix process installs the same rules: nothing changes
        assert again.ensure()
        assert again.rules() == rules
        jumps = [r for r in again._ipt("-S", "INPUT").stdout.splitlines() if CHAIN in r]
        assert jumps == [f"-A INPUT -i {net.bridge} -j {CHAIN}"]
        assert rules[-1] == f"-A {CHAIN} -j DROP"
        firewall.release(port)
        assert opening in firewall.rules()  # the other run still needs it
        firewall.release(port)
        assert opening not in firewall.rules()
    finally:
        gateway.shutdown()
        gateway.server_close()


def test_stale_openings_are_closed(docker_sandbox):
    if not docker_sandbox.firewall_enforced:
        pytest.skip(f"iptables unusable here ({docker_sandbox.firewall.problem})")
    net = docker_sandbox.network()
    stale = ["-d", f"{net.gateway}/32", "-p", "tcp", "-m", "tcp", "--dport", "1", "-j", "ACCEPT"]
    firewall = Firewall(net)
    assert firewall.ensure()
    firewall._ipt("-I", CHAIN, "1", *stale)  # as left by a process killed mid-run; nothing listens on port 1
    assert any("--dport 1 " in r for r in firewall.rules())
    assert Firewall(net).ensure()
    assert not any("--dport 1 " in r for r in firewall.rules())


# --- limits ----------------------------------------------------------------------------------


FORK_COUNTER = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        n += 1
except OSError as exc:
    print(n, exc.strerror)
"""


def test_fork_bomb_hits_the_pids_limit(docker_sandbox, folders):
    limits = Limits(pids=64)
    counted = run(docker_sandbox, folders, py(FORK_COUNTER), limits=limits, timeout_s=30)
    assert counted.ok, counted.stderr
    forks, error = counted.stdout.split(" ", 1)
    assert int(forks) < 64
    assert error.strip() == "Resource temporarily unavailable"

    bomb = run(docker_sandbox, folders, "bomb() { bomb | bomb & }; bomb; while :; do :; done", limits=limits, timeout_s=4)
    assert bomb.timed_out
    assert bomb.exit_code == 137
    assert bomb.reason == "killed after 4 s timeout"
    assert bomb.duration_s < 10
    # the host survived and so does the next sandbox
    assert run(docker_sandbox, folders, "echo alive").stdout == "alive\n"
    assert leftover_containers(docker_sandbox) == []


def test_memory_hog_is_killed_and_reported(docker_sandbox, folders):
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(b'x') * (32 * 1024 * 1024))"
    result = run(docker_sandbox, folders, py(hog), limits=Limits(memory_mb=128), timeout_s=60)

    assert result.oom_killed
    assert result.exit_code == 137
    assert result.reason == "out of memory (128 MB limit)"
    assert not result.timed_out
    assert result.duration_s < 30


def test_endless_loop_is_killed_at_the_timeout(docker_sandbox, folders):
    result = run(docker_sandbox, folders, "while :; do :; done", timeout_s=2)

    assert result.timed_out
    assert result.exit_code == 137
    assert result.reason == "killed after 2 s timeout"
    assert 2 <= result.duration_s < 5
    assert leftover_containers(docker_sandbox) == []


def test_a_gigabyte_of_output_is_capped_without_filling_memory(docker_sandbox, folders):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    result = run(docker_sandbox, folders, "head -c 1073741824 /dev/zero; echo done >&2", timeout_s=90)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    assert result.exit_code == 0
    assert result.stdout_truncated and not result.stderr_truncated
    assert len(result.stdout) == Limits().output_bytes == 10 * 1024 * 1024
    assert result.stderr == "done\n"
    assert (rss_after - rss_before) < 200 * 1024, f"peak memory grew by {(rss_after - rss_before) // 1024} MB"


def test_stderr_has_its_own_cap(docker_sandbox, folders):
    result = run(docker_sandbox, folders, "head -c 100000 /dev/zero >&2; echo fine", limits=Limits(output_bytes=4096))
    assert result.ok
    assert result.stdout == "fine\n" and not result.stdout_truncated
    assert result.stderr_truncated and len(result.stderr) == 4096


# --- failures of the sandbox itself ----------------------------------------------------------


def test_container_is_removed_when_the_run_breaks(docker_sandbox, folders, monkeypatch):
    def broken_attach(*args, **kwargs):
        raise RuntimeError("attach broke")

    monkeypatch.setattr(docker_sandbox.client.api, "attach", broken_attach)
    with pytest.raises(RuntimeError, match="attach broke"):
        run(docker_sandbox, folders, "echo never")
    monkeypatch.undo()
    assert leftover_containers(docker_sandbox) == []


def test_missing_image_is_a_clear_error(docker_sandbox, folders):
    with pytest.raises(SandboxError, match="image autofix-sandbox/nope:missing not found"):
        run(docker_sandbox, folders, "true", image="autofix-sandbox/nope:missing")
    assert leftover_containers(docker_sandbox) == []


# --- images ----------------------------------------------------------------------------------


@pytest.fixture
def image_cleanup(docker_sandbox):
    tags: list[str] = []
    yield tags
    for tag in tags:
        try:
            docker_sandbox.client.images.remove(tag, force=True)
        except Exception:
            pass


def test_ensure_image_builds_once_per_folder_content(docker_sandbox, folders, tmp_path, image_cleanup, monkeypatch):
    folder = tmp_path / "My Target"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        "ARG BASE=autofix/base-bookworm:latest\nFROM ${BASE}\nCOPY marker.txt /opt/marker.txt\n"
    )
    (folder / "marker.txt").write_text("version 1\n")

    tag = docker_sandbox.ensure_image(folder, project="Help Desk")
    image_cleanup.append(tag)
    assert tag.startswith("autofix-sandbox/help-desk:") and len(tag.split(":")[1]) == 16

    # unchanged folder: the same tag and no build at all
    import autofix.sandbox.image as image_mod

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt an unchanged folder")

    monkeypatch.setattr(image_mod, "_build", no_build)
    assert docker_sandbox.ensure_image(folder, project="Help Desk") == tag
    monkeypatch.undo()

    result = run(docker_sandbox, folders, "cat /opt/marker.txt", image=tag)
    assert result.stdout == "version 1\n"

    # a changed file: a new tag
    (folder / "marker.txt").write_text("version 2\n")
    tag2 = docker_sandbox.ensure_image(folder, project="Help Desk")
    image_cleanup.append(tag2)
    assert tag2 != tag and tag2 == image_tag(folder, "Help Desk", base_id=docker_sandbox.client.images.get("autofix/base-bookworm:latest").id)


def test_failed_build_shows_the_log_tail(docker_sandbox, tmp_path, image_cleanup):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN echo installing things && exit 7\n")
    with pytest.raises(ImageBuildError) as caught:
        docker_sandbox.ensure_image(folder)
    message = str(caught.value)
    assert str(folder / "Dockerfile") in message
    assert "installing things" in message  # the log tail
    assert "returned a non-zero code: 7" in message


def test_missing_dockerfile_is_a_clear_error(docker_sandbox, tmp_path):
    with pytest.raises(ImageBuildError, match="no Dockerfile in"):
        docker_sandbox.ensure_image(tmp_path)


def test_import_rootfs_makes_an_image_with_the_base_settings(docker_sandbox, tmp_path, image_cleanup):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hello").write_text("hi\n")
    tag = "autofix-test/import-probe:latest"
    image_cleanup.append(tag)
    import_rootfs(docker_sandbox.client, rootfs, tag)
    config = docker_sandbox.client.images.get(tag).attrs["Config"]
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in config["Env"]
    assert config["Cmd"] == ["python3"]


def test_links_and_fifos_left_in_io_are_removed(docker_sandbox, folders):
    work, io = folders
    result = run(docker_sandbox, folders, "ln -s /etc/shadow /io/results.jsonl; mkfifo /io/pipe; mkdir /io/sub; echo ok > /io/sub/real.txt")
    assert result.ok, result.stderr
    assert not (io / "results.jsonl").is_symlink() and not (io / "results.jsonl").exists()
    assert not (io / "pipe").exists()
    assert (io / "sub" / "real.txt").read_text() == "ok\n"


def test_concurrent_runs_do_not_mix(docker_sandbox, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int):
        work, io = tmp_path / f"w{i}", tmp_path / f"io{i}"
        work.mkdir()
        (work / "n.txt").write_text(str(i))
        return docker_sandbox.run(SandboxRun(command="cat n.txt; cat n.txt > /io/echo.txt", workdir=work, io_dir=io))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert [r.stdout for r in results] == ["0", "1", "2", "3"]
    assert [(tmp_path / f"io{i}" / "echo.txt").read_text() for i in range(4)] == ["0", "1", "2", "3"]
    assert leftover_containers(docker_sandbox) == []


def test_private_cases_file_is_readable_inside(docker_sandbox, folders):
    work, io = folders
    cases = io / "cases.jsonl"
    cases.write_text("secret case\n")
    cases.chmod(0o600)  # e.g. written under umask 077
    result = run(docker_sandbox, folders, "cat /io/cases.jsonl")
    assert result.stdout == "secret case\n"
    assert cases.stat().st_uid == os.getuid() and (cases.stat().st_mode & 0o777) == 0o600


def test_get_sandbox_docker_gives_the_isolating_backend(docker_sandbox):
    import ipaddress

    from autofix.sandbox import Sandbox, get_sandbox

    sandbox = get_sandbox("docker", allow_local_fallback=False)
    assert isinstance(sandbox, Sandbox)
    assert sandbox.name == "docker" and sandbox.isolates is True
    net = sandbox.network()
    assert net.name == "autofix-sandbox"
    assert sandbox.gateway_bind_host() == sandbox.gateway_url_host() == net.gateway
    assert ipaddress.ip_address(net.gateway) in ipaddress.ip_network(net.subnet)
    attrs = sandbox.client.networks.get(net.id).attrs
    assert attrs["Internal"] is True


def test_a_container_of_a_killed_autofix_process_is_swept_by_the_next_sandbox(docker_sandbox, folders):
    import signal
    import sys
    import time

    from autofix.sandbox.docker_backend import OWNER_LABEL, DockerSandbox, owner_identity

    work, io = folders
    script = ("from pathlib import Path\nfrom autofix.sandbox import SandboxRun\n"
              "from autofix.sandbox.docker_backend import DockerSandbox\n"
              f"DockerSandbox(start_daemon=False).run(SandboxRun(command='sleep 120', workdir=Path({str(work)!r}), "
              f"io_dir=Path({str(io)!r}), timeout_s=150))\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        owner = None
        while time.monotonic() < deadline and owner is None:
            time.sleep(0.5)
            owner = owner_identity(proc.pid)
            mine = docker_sandbox.client.containers.list(filters={"label": f"{OWNER_LABEL}={owner}"})
            owner = owner if mine and mine[0].status == "running" else None
        assert owner is not None, "the child process never started its sandbox container"
        DockerSandbox(start_daemon=False)  # its owner is alive: the container stays
        assert docker_sandbox.client.containers.list(filters={"label": f"{OWNER_LABEL}={owner}"})
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert docker_sandbox.client.containers.list(filters={"label": f"{OWNER_LABEL}={owner}"}), \
            "a SIGKILLed process cannot remove its container"
        DockerSandbox(start_daemon=False)
        assert docker_sandbox.client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"}) == []
    finally:
        proc.kill()
