"""The local "sandbox": a subprocess on this machine, with limits but WITHOUT isolation.

It exists so that autofix runs where Docker does not. The command runs with ``sh -c`` in the
worktree, in its own session and process group, with a scrubbed environment (only the run's
``env`` plus ``PATH``, a throw-away ``HOME`` and ``LANG``) and ``resource`` limits:
``RLIMIT_AS`` (memory, as address space), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_CORE``
and, when not root (root ignores it), ``RLIMIT_NPROC``. The time limit kills the whole
process group; output is read as it comes and kept up to the cap.

What it does NOT do: the command can read and write every file this user can (the worktree
is writable, so is the rest of the disk), reach the network and every host service, and a
process that leaves its session escapes the kill. Use the Docker backend for untrusted code.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autofix.sandbox.base import OutputBuffer, SandboxError, SandboxResult, SandboxRun, failure_reason
from autofix.sandbox.network import warn_once

LOCAL_WARNING = (
    "autofix is using the LOCAL sandbox: replayed code runs as a plain subprocess of this user, "
    "with resource limits but NO isolation. It can read and write this user's files, reach the "
    "network and host services, and read anything this user can. Use `replay.sandbox: docker` "
    "(with Docker installed) for code you do not fully trust."
)

_OOM_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")

# Runs in the child before the command: sets the limits, then execs the shell. A separate
# interpreter instead of preexec_fn, which is unsafe when the parent has threads (it does).
_LAUNCHER = """
import json, os, resource, signal, sys
for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores these, and exec would pass that on
    signal.signal(getattr(signal, name), signal.SIG_DFL)
for name, value in json.loads(sys.argv[1]).items():
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError) as exc:
        print(f"autofix local sandbox: cannot set {name}: {exc}", file=sys.stderr)
os.execv("/bin/sh", ["sh", "-c", sys.argv[2]])
"""


def _user_tasks(uid: int) -> int:
    """Processes and threads this user runs now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return count


def _default_path() -> str:
    here = str(Path(sys.executable).parent)  # autofix's own interpreter first (its venv)
    return ":".join([here, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])


class LocalSandbox:
    """Runs commands as subprocesses with limits; does not isolate (and says so once)."""

    name = "local"
    isolates = False

    def __init__(self, *, warn: bool = True):
        if warn:
            warn_once("local-sandbox", LOCAL_WARNING)

    def gateway_bind_host(self) -> str:
        return "127.0.0.1"

    def gateway_url_host(self) -> str:
        return "127.0.0.1"

    def io_path(self, io_dir: Path | str, host_path: Path | str) -> str:
        """The command sees real host paths: ``host_path`` itself (checked to be in ``io_dir``)."""
        io_dir = Path(io_dir).expanduser().resolve()
        host = Path(host_path).expanduser().resolve()
        if host != io_dir and io_dir not in host.parents:
            raise ValueError(f"{host} is not inside the sandbox io folder {io_dir}")
        return str(host)

    def _rlimits(self, spec: SandboxRun) -> dict[str, int]:
        limits = spec.limits
        cpu_s = math.ceil(spec.timeout_s * max(limits.cpus, 1.0)) + 5  # the wall-clock limit normally wins
        values = {
            "RLIMIT_AS": limits.memory_mb * 1024 * 1024,
            "RLIMIT_CPU": cpu_s,
            "RLIMIT_FSIZE": limits.file_mb * 1024 * 1024,
            "RLIMIT_CORE": 0,
        }
        if os.geteuid() != 0:  # root is exempt from RLIMIT_NPROC; for others it counts all their tasks
            values["RLIMIT_NPROC"] = _user_tasks(os.getuid()) + limits.pids
        return values

    def run(self, spec: SandboxRun) -> SandboxResult:
        if not spec.workdir.is_dir():
            raise SandboxError(f"the sandbox work folder {spec.workdir} does not exist")
        spec.io_dir.mkdir(parents=True, exist_ok=True)
        limits = spec.limits
        home = tempfile.mkdtemp(prefix="autofix-sandbox-home-")
        env = {
            "PATH": _default_path(),
            "HOME": home,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MALLOC_ARENA_MAX": "2",  # glibc arenas reserve address space, which RLIMIT_AS counts
            "AUTOFIX_IO": str(spec.io_dir),
            **spec.env,
        }
        stdout, stderr = OutputBuffer(limits.output_bytes), OutputBuffer(limits.output_bytes)
        started = time.monotonic()
        deadline = started + spec.timeout_s
        timed_out = False
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(self._rlimits(spec)), spec.command],
                cwd=spec.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            shutil.rmtree(home, ignore_errors=True)
            raise SandboxError(f"cannot start the local sandbox command: {exc}") from exc
        pgid = proc.pid  # start_new_session: the child leads its own group

        def kill_group() -> None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        sel.register(proc.stdout, selectors.EVENT_READ, stdout)
        sel.register(proc.stderr, selectors.EVENT_READ, stderr)
        drain_until: float | None = None  # after the command ends: a short grace to read what is left
        try:
            while sel.get_map():
                now = time.monotonic()
                if drain_until is None:
                    if proc.poll() is not None:
                        kill_group()  # like a container: when the command ends, its leftovers go too
                        drain_until = now + 2.0
                    elif now >= deadline:
                        timed_out = True
                        kill_group()
                        proc.wait()
                        drain_until = now + 2.0
                elif now >= drain_until:
                    break
                wait = min(0.2, max(0.0, (drain_until or deadline) - now))
                for key, _ in sel.select(timeout=wait):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        key.data.add(data)
                    else:
                        sel.unregister(key.fileobj)
            if proc.poll() is None:  # pipes closed early; wait for the exit within the time limit
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
                    kill_group()
                    proc.wait()
            kill_group()
        finally:
            sel.close()
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()
            if proc.poll() is None:
                kill_group()
                proc.wait()
            shutil.rmtree(home, ignore_errors=True)
        duration = time.monotonic() - started
        code = proc.returncode
        exit_code = 128 - code if code < 0 else code
        if timed_out and code >= 0:
            timed_out = False  # it ended on its own just as the limit struck
        err_text = stderr.text()
        oom = (not timed_out and exit_code != 0 and any(m in err_text[-20000:] for m in _OOM_MARKERS))
        return SandboxResult(
            backend=self.name,
            exit_code=exit_code,
            timed_out=timed_out,
            oom_killed=oom,
            stdout=stdout.text(),
            stderr=err_text,
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            duration_s=round(duration, 3),
            reason=failure_reason(
                exit_code=exit_code,
                timed_out=timed_out,
                oom_killed=oom,
                timeout_s=spec.timeout_s,
                memory_mb=limits.memory_mb,
                memory_kind="address-space limit",
            ),
        )
