"""The Docker sandbox: each command in a fresh, locked-down, throw-away container.

A container runs as an unprivileged user (65534 ``nobody``, or the host user when autofix is
not root), with a read-only root file system, every capability dropped, no-new-privileges,
CPU/memory(+swap)/pids limits, a size-limited tmpfs at ``/tmp``, the worktree read-only at
``/work`` (the working directory) and the io folder read-write at ``/io``. It sits on the
internal ``autofix-sandbox`` network (see :mod:`autofix.sandbox.network`): the one host
address it reaches is the model gateway's. The time limit is kept from the host (the
container is killed), output is read as it comes with a size cap (nothing past the cap is
kept, and the log driver is ``none`` so nothing reaches the disk either), and the
container is removed afterwards whatever happens. Containers whose autofix process was killed
before it could remove them are removed by the next ``DockerSandbox`` (:func:`sweep_orphans`).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from autofix.sandbox.base import (
    IO_MOUNT,
    WORK_MOUNT,
    OutputBuffer,
    SandboxError,
    SandboxResult,
    SandboxRun,
    SandboxUnavailable,
    failure_reason,
)
from autofix.sandbox.image import BASE_IMAGE, ensure_base_image, ensure_image
from autofix.sandbox.network import NETWORK_NAME, Firewall, SandboxNetwork, ensure_network

log = logging.getLogger("autofix.sandbox")

SANDBOX_USER = "65534:65534"  # nobody:nogroup
CONTAINER_LABEL = "io.autofix.sandbox"
OWNER_LABEL = "io.autofix.owner"  # "<host>:<pid>:<start ticks>" of the autofix process that made the container
DOCKERD_LOG = Path(tempfile.gettempdir()) / "dockerd.log"
_daemon_lock = threading.Lock()


def _fix_hint() -> str:
    return (
        "install and start Docker (`./bootstrap.sh` does both, or `apt-get install -y docker.io` then "
        "`dockerd &` as root), or set `replay.sandbox: local` / `replay.allow_local_fallback: true` "
        "in autofix.yaml to replay without isolation"
    )


def _ping(timeout: float = 10.0):
    """A connected DockerClient, or the exception that prevented it."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client, None
    except Exception as exc:  # DockerException, requests errors, PermissionError...
        return None, exc


def _dockerd_running() -> bool:
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def connect_docker(*, start_daemon: bool = True, wait_s: float = 30.0):
    """A DockerClient talking to a live daemon. Starts ``dockerd`` (as ``bootstrap.sh`` does) when
    it is installed but not running and we are root; raises :class:`SandboxUnavailable` saying
    how to fix it otherwise."""
    client, error = _ping()
    if client is not None:
        return client
    remote = os.environ.get("DOCKER_HOST", "")
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/sbin:/usr/bin")
    if isinstance(error, PermissionError) or "Permission denied" in str(error):
        raise SandboxUnavailable(
            f"Docker is running but this user may not use it ({error}): add the user to the `docker` group "
            f"(`usermod -aG docker $USER`, then log in again) or run autofix as root; or {_fix_hint()}"
        )
    if remote and not remote.startswith("unix://"):
        raise SandboxUnavailable(f"the Docker daemon at DOCKER_HOST={remote} does not answer ({error}); {_fix_hint()}")
    if not start_daemon or dockerd is None:
        what = "Docker is not installed" if dockerd is None else "the Docker daemon is not running"
        raise SandboxUnavailable(f"{what} ({error}); {_fix_hint()}")
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            f"the Docker daemon is not running and only root can start it: `sudo dockerd >{DOCKERD_LOG} 2>&1 &` "
            f"or `sudo systemctl start docker`; or {_fix_hint()}"
        )
    with _daemon_lock:
        client, error = _ping()
        if client is not None:
            return client
        if not _dockerd_running():
            log.warning("starting dockerd (log: %s)", DOCKERD_LOG)
            with open(DOCKERD_LOG, "ab") as out:
                subprocess.Popen(
                    [dockerd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            client, error = _ping(timeout=5)
            if client is not None:
                return client
            time.sleep(0.5)
    tail = ""
    try:
        tail = "\n".join(DOCKERD_LOG.read_text(errors="replace").splitlines()[-15:])
    except OSError:
        pass
    raise SandboxUnavailable(f"dockerd did not answer within {wait_s:g} s ({error}); its log {DOCKERD_LOG} ends:\n{tail}\n{_fix_hint()}")


def _start_ticks(pid: int) -> str | None:
    """When a process started (clock ticks since boot, /proc/<pid>/stat), or None when there is no such process.
    With the pid it names one process, even after the pid is reused."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def owner_identity(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '?'}"


def _owner_gone(owner: str) -> bool:
    """Whether the process an owner label names has ended (False when it runs on another host: cannot tell)."""
    host, _, rest = owner.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _start_ticks(int(pid)) != ticks


def sweep_orphans(client) -> list[str]:
    """Remove the sandbox containers whose autofix process is gone (killed mid-run, so its own clean-up
    never ran); returns their names. Containers of live processes, or of other hosts sharing the
    daemon, are left alone; unlabelled ones (from before owners were recorded) go once they have exited."""
    import docker.errors

    removed = []
    for container in client.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
        owner = container.labels.get(OWNER_LABEL)
        orphan = _owner_gone(owner) if owner else container.status in ("exited", "dead")
        if not orphan:
            continue
        try:
            container.remove(force=True)
            removed.append(container.name)
        except docker.errors.APIError as exc:  # NotFound included: someone else removed it first
            log.debug("could not remove orphaned sandbox container %s: %s", container.name, exc)
    if removed:
        log.warning("removed %d sandbox containers left by killed autofix runs: %s", len(removed), ", ".join(removed))
    return removed


class DockerSandbox:
    """Runs :class:`SandboxRun` commands in throw-away containers on the internal sandbox network."""

    name = "docker"
    isolates = True

    def __init__(
        self,
        client=None,
        *,
        network_name: str = NETWORK_NAME,
        default_image: str = BASE_IMAGE,
        firewall: bool = True,
        start_daemon: bool = True,
    ):
        self.client = client or connect_docker(start_daemon=start_daemon)
        sweep_orphans(self.client)
        self.network_name = network_name
        self.default_image = default_image
        self._use_firewall = firewall
        self._network: SandboxNetwork | None = None
        self.firewall: Firewall | None = None
        self._lock = threading.Lock()

    # network --------------------------------------------------------------------------

    def network(self) -> SandboxNetwork:
        """The sandbox network (created on first use, with its firewall rules)."""
        with self._lock:
            if self._network is None:
                self._network = ensure_network(self.client, self.network_name)
                if self._use_firewall:
                    self.firewall = Firewall(self._network)
                    self.firewall.ensure()
            return self._network

    def gateway_bind_host(self) -> str:
        """The address the model gateway must listen on: the sandbox network's gateway address."""
        return self.network().gateway

    def gateway_url_host(self) -> str:
        """The host name the code inside uses to reach the gateway (the same address)."""
        return self.network().gateway

    @property
    def firewall_enforced(self) -> bool:
        self.network()
        return bool(self.firewall and self.firewall.enforced)

    # paths and images -----------------------------------------------------------------

    def io_path(self, io_dir: Path | str, host_path: Path | str) -> str:
        """How the command inside names ``host_path`` (a file in ``io_dir``): ``/io/...``."""
        io_dir = Path(io_dir).expanduser().resolve()
        host = Path(host_path).expanduser().resolve()
        try:
            rel = host.relative_to(io_dir)
        except ValueError:
            raise ValueError(f"{host} is not inside the sandbox io folder {io_dir}") from None
        return "/".join([IO_MOUNT, *rel.parts])

    def ensure_image(self, image_dir: Path | str, project: str | None = None) -> str:
        """Build (if needed) the image of a target's image folder; returns its tag."""
        return ensure_image(image_dir, project, client=self.client, base=self.default_image)

    # running --------------------------------------------------------------------------

    def _prepare_io(self, io_dir: Path) -> tuple[str, tuple[int, int] | None]:
        """The container user, and the io folder's owner to restore afterwards (None: unchanged)."""
        if os.geteuid() != 0:
            return f"{os.getuid()}:{os.getgid()}", None
        st = io_dir.stat()
        uid, gid = (int(x) for x in SANDBOX_USER.split(":"))
        os.chown(io_dir, uid, gid)  # the sandbox user owns the folder (and the cases in it) while it runs
        for root, dirs, files in os.walk(io_dir):
            for name in dirs + files:
                try:
                    os.lchown(os.path.join(root, name), uid, gid)
                except OSError:
                    pass
        return SANDBOX_USER, (st.st_uid, st.st_gid)

    @staticmethod
    def _restore_io(io_dir: Path, owner: tuple[int, int] | None) -> None:
        if owner is None:
            return
        uid, gid = owner
        try:
            os.chown(io_dir, uid, gid)
            for root, dirs, files in os.walk(io_dir):  # does not follow symlinks
                for name in dirs + files:
                    try:
                        os.lchown(os.path.join(root, name), uid, gid)
                    except OSError:
                        pass
        except OSError as exc:
            log.warning("could not give %s back to uid %s: %s", io_dir, uid, exc)

    @staticmethod
    def _sanitize_io(io_dir: Path) -> None:
        """Remove what the sandbox left in the io folder that is not a plain file or folder:
        a symlink (to /etc/shadow, say) or a FIFO would make the host read what it must not,
        or hang."""
        removed = []
        for root, dirs, files in os.walk(io_dir):
            for name in dirs + files:
                path = os.path.join(root, name)
                try:
                    mode = os.lstat(path).st_mode
                    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                        os.unlink(path)
                        removed.append(os.path.relpath(path, io_dir))
                except OSError:
                    pass
        if removed:
            log.warning("removed %d links/special files the sandbox made in %s: %s", len(removed), io_dir, ", ".join(removed[:10]))

    def run(self, spec: SandboxRun) -> SandboxResult:
        import docker.errors
        import requests.exceptions
        from docker.types import LogConfig, Mount, Ulimit

        if not spec.workdir.is_dir():
            raise SandboxError(f"the sandbox work folder {spec.workdir} does not exist")
        spec.io_dir.mkdir(parents=True, exist_ok=True)
        net = self.network()
        image = spec.image or ensure_base_image(self.client, self.default_image)
        limits = spec.limits
        env = {
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AUTOFIX_IO": IO_MOUNT,
            **spec.env,
        }  # PATH: the image's own (e.g. its venv), unless spec.env sets one
        file_bytes = limits.file_mb * 1024 * 1024
        container = None
        owner: tuple[int, int] | None = None
        opened = False
        stdout, stderr = OutputBuffer(limits.output_bytes), OutputBuffer(limits.output_bytes)
        try:
            if spec.gateway_port is not None and self.firewall is not None:
                opened = self.firewall.allow(spec.gateway_port)  # open for this run only
            user, owner = self._prepare_io(spec.io_dir)
            try:
                container = self.client.containers.create(
                    image,
                    entrypoint=["sh", "-c"],  # replaces any ENTRYPOINT of the image
                    command=[spec.command],
                    user=user,
                    working_dir=WORK_MOUNT,
                    environment=env,
                    network=net.name,
                    hostname="sandbox",
                    mounts=[
                        Mount(WORK_MOUNT, str(spec.workdir), type="bind", read_only=True),
                        Mount(IO_MOUNT, str(spec.io_dir), type="bind", read_only=False),
                    ],
                    read_only=True,
                    tmpfs={"/tmp": f"rw,nosuid,nodev,size={limits.tmpfs_mb}m,mode=1777"},
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    nano_cpus=int(limits.cpus * 1e9),
                    mem_limit=f"{limits.memory_mb}m",
                    memswap_limit=f"{limits.memory_mb}m",
                    pids_limit=limits.pids,
                    oom_score_adj=500,  # if the host runs short, the sandbox dies first
                    ulimits=[Ulimit(name="fsize", soft=file_bytes, hard=file_bytes)],
                    sysctls={"net.ipv6.conf.all.disable_ipv6": "1"},
                    log_config=LogConfig(type="none"),
                    labels={CONTAINER_LABEL: "1", OWNER_LABEL: owner_identity()},
                    stdin_open=False,
                    tty=False,
                    detach=True,
                )
            except docker.errors.ImageNotFound as exc:
                raise SandboxError(
                    f"sandbox image {image} not found: build it with DockerSandbox.ensure_image(<folder>) "
                    f"or `python -m autofix.sandbox.image build <folder>`"
                ) from exc
            except docker.errors.APIError as exc:
                raise SandboxError(f"Docker refused to create the sandbox container: {exc.explanation or exc}") from exc

            # Attach before starting so no output is lost; a thread drains it into capped buffers.
            stream = self.client.api.attach(container.id, stdout=True, stderr=True, stream=True, demux=True, logs=False)

            def pump() -> None:
                try:
                    for out, err in stream:
                        if out:
                            stdout.add(out)
                        if err:
                            stderr.add(err)
                except Exception:  # the connection closes when the container is killed/removed
                    pass

            reader = threading.Thread(target=pump, name=f"sandbox-output-{container.short_id}", daemon=True)
            reader.start()
            try:
                container.start()
            except docker.errors.APIError as exc:
                stream.close()
                raise SandboxError(f"Docker could not start the sandbox container: {exc.explanation or exc}") from exc
            started = time.monotonic()  # the command runs from here (start itself takes ~0.5 s)
            timed_out = False
            exit_code: int | None = None
            try:
                status = container.wait(timeout=spec.timeout_s)
                exit_code = int(status.get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                if time.monotonic() - started < spec.timeout_s * 0.95:  # not the limit: Docker broke
                    raise SandboxError(f"lost the Docker daemon while waiting for the sandbox: {exc}") from exc
                timed_out = True
                try:
                    container.kill()
                except docker.errors.APIError:
                    pass  # it ended at the same moment
                try:
                    exit_code = int(container.wait(timeout=30).get("StatusCode", -1))
                except Exception:
                    exit_code = None
            duration = time.monotonic() - started
            reader.join(timeout=5)
            stream.close()  # frees the connection; ends the reader if something still held it open
            reader.join(timeout=2)
            oom = False
            try:
                container.reload()
                oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
            except docker.errors.APIError:
                pass
            if timed_out and exit_code is not None and exit_code < 128:
                timed_out = False  # it finished on its own just as the limit struck
            return SandboxResult(
                backend=self.name,
                exit_code=exit_code,
                timed_out=timed_out,
                oom_killed=oom and not timed_out,
                stdout=stdout.text(),
                stderr=stderr.text(),
                stdout_truncated=stdout.truncated,
                stderr_truncated=stderr.truncated,
                duration_s=round(duration, 3),
                reason=failure_reason(
                    exit_code=exit_code,
                    timed_out=timed_out,
                    oom_killed=oom and not timed_out,
                    timeout_s=spec.timeout_s,
                    memory_mb=limits.memory_mb,
                ),
                image=image,
            )
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    log.warning("could not remove sandbox container %s: %s", container.short_id, exc)
            self._sanitize_io(spec.io_dir)
            self._restore_io(spec.io_dir, owner)
            if opened:
                self.firewall.release(spec.gateway_port)
