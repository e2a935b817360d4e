"""The sandbox records: what to run (:class:`SandboxRun`), under which limits (:class:`Limits`),
and what came of it (:class:`SandboxResult`); plus the errors the backends raise.

Both backends speak these records, so the replay room does not care where a command ran.
"""

from __future__ import annotations

import signal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

WORK_MOUNT = "/work"
"""Where the candidate's worktree target folder appears inside a Docker sandbox (read-only)."""
IO_MOUNT = "/io"
"""Where the run's io folder (cases in, results out) appears inside a Docker sandbox (read-write)."""


class SandboxError(RuntimeError):
    """A sandbox could not run a command at all (as opposed to a command that failed)."""


class SandboxUnavailable(SandboxError):
    """The requested sandbox backend cannot be used on this machine; the message says how to fix it."""


class ImageBuildError(SandboxError):
    """Building a sandbox image failed; the message ends with the tail of the build log."""


class Limits(BaseModel):
    """Resource limits of one sandboxed command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpus: float = Field(default=1.0, gt=0, description="CPU cores (Docker: a CFS quota; local: CPU seconds = cpus x timeout).")
    memory_mb: int = Field(default=1024, ge=16, description="Memory in MB (Docker: RAM, no swap; local: address space).")
    pids: int = Field(default=256, ge=8, description="Processes/threads at once (Docker: pids cgroup; local: RLIMIT_NPROC when not root).")
    output_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Bytes kept of stdout and of stderr, each.")
    tmpfs_mb: int = Field(default=256, ge=1, description="Size of the writable /tmp (Docker).")
    file_mb: int = Field(default=1024, ge=1, description="Largest file the command may write (RLIMIT_FSIZE).")


class SandboxRun(BaseModel):
    """One command to run in a sandbox.

    ``command`` is a shell command line (run with ``sh -c``) in ``workdir``. Inside Docker the
    worktree is read-only at ``/work`` and ``io_dir`` read-write at ``/io``; name files of
    ``io_dir`` in the command line with the sandbox's ``io_path(io_dir, file)`` (``/io/...`` in
    Docker, the host path locally), shell-quoted; ``$AUTOFIX_IO`` names the folder inside.
    Only ``env`` (plus a minimal ``PATH``, ``HOME``, ``LANG``, ``PYTHONDONTWRITEBYTECODE=1``,
    ``AUTOFIX_IO``) enters the sandbox, never the host environment. ``gateway_port`` is the
    one host port (on the gateway address) the command may reach, opened for this run only. ``image`` is a built image
    tag (Docker; default: the base image), ignored locally.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str = Field(min_length=1)
    workdir: Path
    io_dir: Path
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    timeout_s: float = Field(default=900, gt=0)
    limits: Limits = Field(default_factory=Limits)
    gateway_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("workdir", "io_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"invalid environment variable name {name!r}")
        return value


class SandboxResult(BaseModel):
    """What came of a sandboxed command, as a user would want to read it."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    exit_code: int | None = Field(description="The command's exit status; 128+N when killed by signal N (None if it never started).")
    timed_out: bool = False
    oom_killed: bool = False
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_s: float = 0.0
    reason: str | None = Field(default=None, description="Why it failed, in a sentence; None when it succeeded.")
    image: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}"


def fmt_bytes(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def failure_reason(
    *,
    exit_code: int | None,
    timed_out: bool,
    oom_killed: bool,
    timeout_s: float,
    memory_mb: int,
    memory_kind: str = "limit",
) -> str | None:
    """A human sentence explaining a failed run (None for a clean exit 0)."""
    if timed_out:
        return f"killed after {fmt_seconds(timeout_s)} s timeout"
    if oom_killed:
        return f"out of memory ({memory_mb} MB {memory_kind})"
    if exit_code is None:
        return "did not start"
    if exit_code == 0:
        return None
    if exit_code > 128 and exit_code - 128 < 65:
        sig = exit_code - 128
        extra = {
            signal.SIGXCPU: " (CPU time limit exceeded)",
            signal.SIGXFSZ: " (file size limit exceeded)",
            signal.SIGSEGV: " (crashed)",
        }.get(sig, "")
        return f"killed by {signal_name(sig)} (exit code {exit_code}){extra}"
    return f"exited with code {exit_code}"


class OutputBuffer:
    """Keeps at most ``cap`` bytes of a stream and remembers whether more arrived."""

    __slots__ = ("cap", "_chunks", "size", "truncated", "seen")

    def __init__(self, cap: int):
        self.cap = cap
        self._chunks: list[bytes] = []
        self.size = 0
        self.seen = 0
        self.truncated = False

    def add(self, data: bytes) -> None:
        self.seen += len(data)
        room = self.cap - self.size
        if room <= 0:
            if data:
                self.truncated = True
            return
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        self._chunks.append(data)
        self.size += len(data)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")
