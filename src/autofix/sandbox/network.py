"""The sandbox network: one internal Docker network whose only reachable address is the gateway.

``docker network create --internal`` keeps containers off the internet (no route out, no
outside DNS), but a container on it still reaches *the host itself*: the network's gateway
address and every other host address (docker0's 172.17.0.1, the LAN address) through the
host's INPUT chain, i.e. any host service listening on 0.0.0.0. So, besides the network,
:class:`Firewall` installs iptables rules on the network's bridge interface:

    -A INPUT -i br-autofix -j AUTOFIX-SANDBOX                       (first rule of INPUT)
    -A AUTOFIX-SANDBOX -d <gateway> -p tcp --dport <port> -j ACCEPT  (one per allowed port)
    -A AUTOFIX-SANDBOX -p tcp -j REJECT --reject-with tcp-reset     (fails fast, no hang)
    -A AUTOFIX-SANDBOX -j DROP

so a container reaches exactly the model gateway (bound to the gateway address) and nothing
else on the host. The rules are idempotent (checked with ``iptables -C`` before adding),
serialized by a file lock across processes, and survive as long as the kernel's ruleset
(they are not persisted across reboots; they are re-installed by the next run).

Where iptables is not usable (not root, the binary missing, a kernel without netfilter), a
warning says so once and containers can then reach host services listening on 0.0.0.0 or
on the bridge addresses: bind such services to 127.0.0.1 (which containers never reach).
Docker's own rules for internal networks still keep them off the internet and off other
containers' networks.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autofix.sandbox.base import SandboxError

log = logging.getLogger("autofix.sandbox")

NETWORK_NAME = "autofix-sandbox"
BRIDGE_NAME = "br-autofix"
CHAIN = "AUTOFIX-SANDBOX"
NETWORK_LABEL = "io.autofix.sandbox-network"


_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning on ``autofix.sandbox``, once per process for ``key``
    (printed to stderr even where logging is not configured)."""
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message)


@dataclass(frozen=True)
class SandboxNetwork:
    """The Docker network sandboxes run on, and the host address they may reach."""

    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str


def _network_view(net) -> SandboxNetwork:
    attrs = net.attrs
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    v4 = [c for c in configs if c.get("Subnet") and ":" not in c["Subnet"]]
    if not v4:
        raise SandboxError(f"Docker network {attrs.get('Name')} has no IPv4 subnet; remove it: docker network rm {attrs.get('Name')}")
    subnet = v4[0]["Subnet"]
    gateway = v4[0].get("Gateway") or str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    bridge = (attrs.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{attrs['Id'][:12]}"
    return SandboxNetwork(name=attrs["Name"], id=attrs["Id"], bridge=bridge, subnet=subnet, gateway=gateway)


def _is_ours(attrs: dict, bridge: str) -> bool:
    options = attrs.get("Options") or {}
    return (
        attrs.get("Driver") == "bridge"
        and attrs.get("Internal") is True
        and options.get("com.docker.network.bridge.name") == bridge
        and options.get("com.docker.network.bridge.enable_icc") == "false"
    )


def ensure_network(client, name: str = NETWORK_NAME, bridge: str = BRIDGE_NAME) -> SandboxNetwork:
    """Get or create the internal sandbox network (bridge interface ``bridge``, no inter-container
    traffic). A same-named network with other settings is replaced when nothing uses it."""
    import docker.errors

    def find():
        return [n for n in client.networks.list(names=[name]) if n.name == name]

    for net in find():
        net.reload()
        if _is_ours(net.attrs, bridge):
            return _network_view(net)
        if net.attrs.get("Containers"):
            raise SandboxError(
                f"Docker network {name} exists with other settings (it must be an internal bridge named "
                f"{bridge}) and containers use it; stop them and run: docker network rm {name}"
            )
        log.info("replacing Docker network %s (wrong settings)", name)
        net.remove()
    try:
        net = client.networks.create(
            name,
            driver="bridge",
            internal=True,
            check_duplicate=True,
            options={
                "com.docker.network.bridge.name": bridge,
                "com.docker.network.bridge.enable_icc": "false",
            },
            labels={NETWORK_LABEL: "1"},
        )
    except docker.errors.APIError as exc:
        existing = find()
        if not existing:  # not a race with another process: a real failure
            raise SandboxError(f"cannot create the Docker network {name}: {exc.explanation or exc}") from exc
        net = existing[0]
    net.reload()
    return _network_view(net)


# --- firewall ------------------------------------------------------------------------------

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def _default_runner(args: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


class Firewall:
    """iptables rules that let the sandbox bridge reach only ``gateway``'s allowed TCP ports.

    :meth:`ensure` installs the base rules (everything from the bridge to the host refused) and
    :meth:`allow` opens one port on the gateway address. Both are idempotent. ``enforced`` tells
    whether the rules are in place; when iptables is not usable they are not, and a warning says
    what that means (nothing raises).
    """

    def __init__(
        self,
        network: SandboxNetwork,
        *,
        chain: str = CHAIN,
        iptables: str | None = None,
        runner: Runner | None = None,
        lock_path: Path | None = None,
    ):
        self.network = network
        self.chain = chain
        self.iptables = iptables or shutil.which("iptables") or shutil.which("iptables", path="/usr/sbin:/sbin")
        self._run = runner or _default_runner
        self._lock_path = lock_path or Path(tempfile.gettempdir()) / "autofix-sandbox-firewall.lock"
        self._thread_lock = threading.Lock()
        self._allowed: dict[int, int] = {}  # port -> runs of this process that need it
        self._ready = False
        self.enforced = False
        self.problem: str | None = None

    # plumbing -------------------------------------------------------------------------

    def _ipt(self, *args: str) -> subprocess.CompletedProcess:
        assert self.iptables
        cmd = [self.iptables, "-w", "5", *args]
        try:
            return self._run(cmd)
        except (OSError, subprocess.SubprocessError) as exc:
            return subprocess.CompletedProcess(cmd, 127, "", str(exc))

    def _ensure_rule(self, table_chain: str, rule: list[str], *, insert_at: int | None = None) -> None:
        if self._ipt("-C", table_chain, *rule).returncode == 0:
            return
        op = ["-I", table_chain, str(insert_at)] if insert_at else ["-A", table_chain]
        done = self._ipt(*op, *rule)
        if done.returncode != 0:
            raise OSError(f"iptables {' '.join(op + rule)}: {done.stderr.strip() or done.stdout.strip()}")

    def _unusable(self) -> str | None:
        if not self.iptables:
            return "the iptables command is not installed (apt-get install iptables)"
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            return "autofix is not running as root, and only root may change iptables rules"
        probe = self._ipt("-S", "INPUT")
        if probe.returncode != 0:
            return f"iptables does not work here ({(probe.stderr or probe.stdout).strip()})"
        return None

    def _warn(self) -> None:
        warn_once(
            f"firewall:{self.network.bridge}",
            f"Sandbox firewall not installed: {self.problem}. Containers on the Docker network "
            f"{self.network.name} still cannot reach the internet or other containers, but they CAN reach "
            f"host services listening on 0.0.0.0 or on a bridge address (e.g. {self.network.gateway}, "
            "172.17.0.1): bind host services to 127.0.0.1, or run autofix as root so it can add the rules.",
        )

    # public ---------------------------------------------------------------------------

    def ensure(self) -> bool:
        """Install the base rules (idempotent). Returns whether they are enforced."""
        with self._thread_lock:
            if self._ready:
                return self.enforced
            self.problem = self._unusable()
            if self.problem is None:
                try:
                    with _file_lock(self._lock_path):
                        self._install_base()
                    self.enforced = True
                except (OSError, subprocess.SubprocessError) as exc:
                    self.problem = f"adding the rules failed ({exc})"
            self._ready = True
            if not self.enforced:
                self._warn()
            return self.enforced

    def _port_rule(self, port: int) -> list[str]:
        return ["-d", f"{self.network.gateway}/32", "-p", "tcp", "-m", "tcp", "--dport", str(int(port)), "-j", "ACCEPT"]

    def allow(self, port: int) -> bool:
        """Let the sandbox reach ``gateway:port`` over TCP until as many :meth:`release` calls
        (reference-counted, so concurrent runs share the opening; idempotent in iptables)."""
        if not self.ensure():
            return False
        with self._thread_lock:
            if self._allowed.get(port, 0) == 0:
                try:
                    with _file_lock(self._lock_path):
                        self._ensure_rule(self.chain, self._port_rule(port), insert_at=1)
                except (OSError, subprocess.SubprocessError) as exc:
                    self.problem = f"opening port {port} failed ({exc})"
                    warn_once(f"firewall-port:{port}", f"Sandbox firewall: {self.problem}; the gateway will not be reachable.")
                    return False
            self._allowed[port] = self._allowed.get(port, 0) + 1
            return True

    def release(self, port: int) -> None:
        """Undo one :meth:`allow`; the port closes again when no run of this process needs it."""
        with self._thread_lock:
            left = self._allowed.get(port, 0) - 1
            if left > 0:
                self._allowed[port] = left
                return
            self._allowed.pop(port, None)
            if not self.enforced:
                return
            with _file_lock(self._lock_path):
                while self._ipt("-D", self.chain, *self._port_rule(port)).returncode == 0:
                    pass

    def rules(self) -> list[str]:
        """The chain's current rules (``iptables -S`` lines), for reports and tests."""
        if not self.iptables:
            return []
        out = self._ipt("-S", self.chain)
        return out.stdout.splitlines() if out.returncode == 0 else []

    def _install_base(self) -> None:
        if self._ipt("-S", self.chain).returncode != 0:
            created = self._ipt("-N", self.chain)
            if created.returncode != 0 and "exists" not in (created.stderr or ""):
                raise OSError(f"iptables -N {self.chain}: {created.stderr.strip()}")
        # Openings left by an earlier network (another gateway address) or by a process that
        # died mid-run (nothing listens on that port any more) are stale: close them.
        listening = _listening_ports(self.network.gateway)
        for line in self._ipt("-S", self.chain).stdout.splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "-A" and "-d" in parts and "--dport" in parts:
                dest = parts[parts.index("-d") + 1]
                port = int(parts[parts.index("--dport") + 1])
                if dest != f"{self.network.gateway}/32" or (listening is not None and port not in listening):
                    self._ipt("-D", *parts[1:])
        reject_tcp = ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]
        try:
            self._ensure_rule(self.chain, reject_tcp)
        except OSError:  # no REJECT target in this kernel: DROP below still holds
            pass
        self._ensure_rule(self.chain, ["-j", "DROP"])
        self._ensure_rule("INPUT", ["-i", self.network.bridge, "-j", self.chain], insert_at=1)

    def remove(self) -> None:
        """Remove the rules (the jump from INPUT and the chain). For tests and uninstalling."""
        if not self.iptables:
            return
        with _file_lock(self._lock_path):
            while self._ipt("-D", "INPUT", "-i", self.network.bridge, "-j", self.chain).returncode == 0:
                pass
            self._ipt("-F", self.chain)
            self._ipt("-X", self.chain)
        with self._thread_lock:
            self._ready = False
            self.enforced = False
            self._allowed.clear()


def _listening_ports(address: str) -> set[int] | None:
    """TCP ports listening on ``address`` (or on 0.0.0.0) now, from /proc/net/tcp (None: unknown)."""
    try:
        packed = ipaddress.IPv4Address(address).packed[::-1].hex().upper()
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except (OSError, ValueError):
        return None
    ports = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # LISTEN
            host, _, port = fields[1].partition(":")
            if host in (packed, "00000000"):
                ports.add(int(port, 16))
    return ports


class _file_lock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def __enter__(self):
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
