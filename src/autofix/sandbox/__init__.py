"""Sandboxes: where a candidate's replay command runs.

Two backends behind one protocol:

- ``docker`` (:class:`~autofix.sandbox.docker_backend.DockerSandbox`): a throw-away,
  locked-down container on an internal network whose one reachable host address is the
  model gateway;
- ``local`` (:class:`~autofix.sandbox.local_backend.LocalSandbox`): a subprocess with
  resource limits and a scrubbed environment, but no isolation (it warns once).

Typical use (the replay room)::

    sandbox = get_sandbox(cfg.replay.sandbox, allow_local_fallback=cfg.replay.allow_local_fallback)
    with GatewayServer(store, host=sandbox.gateway_bind_host()) as gw:
        spec = SandboxRun(command=..., workdir=..., io_dir=..., gateway_port=gw.port,
                          env={"AUTOFIX_MODEL_BASE_URL": gw.base_url_for(sandbox.gateway_url_host()), ...})
        result = sandbox.run(spec)   # gateway_port is reachable for this run only

Name the io folder's files in the command line with ``sandbox.io_path(io_dir, file)``
(``/io/...`` in Docker, the real host path locally), shell-quoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from autofix.sandbox.base import (
    IO_MOUNT,
    WORK_MOUNT,
    ImageBuildError,
    Limits,
    SandboxError,
    SandboxResult,
    SandboxRun,
    SandboxUnavailable,
)
from autofix.sandbox.network import warn_once

__all__ = [
    "IO_MOUNT",
    "WORK_MOUNT",
    "ImageBuildError",
    "Limits",
    "Sandbox",
    "SandboxError",
    "SandboxResult",
    "SandboxRun",
    "SandboxUnavailable",
    "docker_available",
    "get_sandbox",
]


@runtime_checkable
class Sandbox(Protocol):
    """Where a command runs. ``isolates`` is False for the local backend."""

    name: str
    isolates: bool

    def gateway_bind_host(self) -> str:
        """The address the model gateway must listen on so that this sandbox reaches it."""
        ...

    def gateway_url_host(self) -> str:
        """The host (IP) the code inside uses to reach the gateway."""
        ...

    def io_path(self, io_dir: Path | str, host_path: Path | str) -> str:
        """How the command inside names ``host_path``, a file in the run's io folder."""
        ...

    def run(self, spec: SandboxRun) -> SandboxResult:
        """Run ``spec.command``; failures of the command are reported in the result, not raised."""
        ...


def get_sandbox(kind: Literal["docker", "local"] | str = "docker", allow_local_fallback: bool = False) -> Sandbox:
    """The sandbox backend named ``kind``.

    ``docker`` connects to the daemon (starting ``dockerd`` when it is installed but stopped and
    we are root). When Docker is unusable: with ``allow_local_fallback`` the local backend is
    returned with a warning saying why; without it :class:`SandboxUnavailable` says how to fix it.
    """
    if kind == "local":
        from autofix.sandbox.local_backend import LocalSandbox

        return LocalSandbox()
    if kind != "docker":
        raise ValueError(f"unknown sandbox {kind!r}: use `docker` or `local` (replay.sandbox in autofix.yaml)")
    from autofix.sandbox.docker_backend import DockerSandbox

    try:
        sandbox = DockerSandbox()
        sandbox.network()  # the internal network (and its firewall) must be possible too
        return sandbox
    except SandboxError as exc:
        if not allow_local_fallback:
            if isinstance(exc, SandboxUnavailable):
                raise
            raise SandboxUnavailable(f"Docker answers but cannot host sandboxes: {exc}") from exc
        from autofix.sandbox.local_backend import LocalSandbox

        warn_once(
            "docker-fallback",
            f"Docker sandbox unavailable, falling back to the LOCAL sandbox (no isolation): {exc}",
        )
        return LocalSandbox()


def docker_available() -> bool:
    """Whether a Docker daemon answers now (does not start one)."""
    from autofix.sandbox.docker_backend import _ping

    client, _ = _ping(timeout=5)
    if client is not None:
        client.close()
    return client is not None
