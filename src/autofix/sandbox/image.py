"""Sandbox images: the offline base image and the target's replay image built on it.

The base (``autofix/base-bookworm:latest``) is a minimal Debian bookworm with python3, venv,
pip and the host's CA bundle, made with ``debootstrap`` from the Debian mirror apt already
uses and ``docker import``ed: no image registry is needed. A target's image folder holds a
Dockerfile starting ``ARG BASE`` / ``FROM ${BASE}``; :func:`ensure_image` builds it with
``BASE`` set to the base image and tags it ``autofix-sandbox/<project>:<hash>``, the hash
covering the folder's files and the base image's id, so an unchanged folder is never rebuilt.

Command line (what ``sandboxes/base/build.sh`` runs)::

    python -m autofix.sandbox.image base [--tag TAG]
    python -m autofix.sandbox.image build FOLDER [--project NAME]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from autofix.sandbox.base import ImageBuildError, SandboxError

log = logging.getLogger("autofix.sandbox")

BASE_IMAGE = "autofix/base-bookworm:latest"
IMAGE_REPO_PREFIX = "autofix-sandbox"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_IGNORED_PARTS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache"}
_LOG_TAIL_LINES = 40

Logger = Callable[[str], None]
_build_locks: dict[str, threading.Lock] = {}
_build_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _build_locks_guard:
        return _build_locks.setdefault(key, threading.Lock())


def _client(client=None):
    if client is not None:
        return client
    from autofix.sandbox.docker_backend import connect_docker

    return connect_docker()


def _image_id(client, tag: str) -> str | None:
    import docker.errors

    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


# --- the base image ------------------------------------------------------------------------


def apt_mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))) -> str:
    """The Debian mirror apt's own sources name (not the security one), else deb.debian.org."""
    pattern = re.compile(r"^(?:URIs:|deb)\s+(https?://\S+)", re.MULTILINE)
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for url in pattern.findall(text):
            if "-security" not in url:
                return url
    return DEFAULT_MIRROR


def _rootfs_tar_chunks(rootfs: Path) -> Iterator[bytes]:
    proc = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(1 << 20):
            yield chunk
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise ImageBuildError(f"tar of {rootfs} failed (exit {proc.returncode})")


def import_rootfs(client, rootfs: Path, tag: str) -> str:
    """``docker import`` a root file system folder as ``tag`` (streamed, never held in memory)."""
    repo, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    client.api.import_image_from_data(
        _rootfs_tar_chunks(rootfs),
        repository=repo,
        tag=version,
        changes=[
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
        ],
    )
    image_id = _image_id(client, tag)
    if image_id is None:
        raise ImageBuildError(f"docker import of {rootfs} did not produce {tag}")
    return image_id


def build_base_image(client=None, tag: str = BASE_IMAGE, *, mirror: str | None = None, echo: Logger | None = None) -> str:
    """Build the offline base image with debootstrap (about a minute; needs root and the Debian
    mirror). Returns the tag."""
    client = _client(client)
    say = echo or log.info
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if not debootstrap:
        raise ImageBuildError(f"building {tag} needs debootstrap, which is missing: apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError(f"building {tag} runs debootstrap, which needs root: run `sudo {sys.executable} -m autofix.sandbox.image base`")
    mirror = mirror or apt_mirror()
    with tempfile.TemporaryDirectory(prefix="autofix-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"debootstrap bookworm from {mirror} (about a minute) ...")
        done = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm", str(rootfs), mirror],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-_LOG_TAIL_LINES:])
            raise ImageBuildError(f"debootstrap failed (exit {done.returncode}); is {mirror} reachable?\n{tail}")
        if HOST_CA_BUNDLE.is_file():  # so pip works behind TLS-intercepting proxies
            shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        say(f"importing {tag} ...")
        import_rootfs(client, rootfs, tag)
    say(f"built {tag}")
    return tag


def ensure_base_image(client=None, tag: str = BASE_IMAGE, *, echo: Logger | None = None) -> str:
    """The base image's tag, building it first if it is missing."""
    client = _client(client)
    with _lock_for(tag):
        if _image_id(client, tag) is None:
            build_base_image(client, tag, echo=echo)
    return tag


# --- target images -------------------------------------------------------------------------


def folder_hash(folder: Path, *, extra: str = "") -> str:
    """sha256 over the folder's files (relative paths, modes and contents) and ``extra``."""
    digest = hashlib.sha256(extra.encode())
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(folder)
        if _IGNORED_PARTS.intersection(rel.parts) or path.suffix == ".pyc":
            continue
        digest.update(b"\0" + rel.as_posix().encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode())
            continue
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def repo_name(name: str) -> str:
    """A valid Docker repository path component made from ``name``."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-")
    return cleaned or "target"


def image_tag(image_dir: Path, project: str | None = None, *, base_id: str = "") -> str:
    """``autofix-sandbox/<project or folder>:<first 16 hex digits of the folder hash>``."""
    image_dir = Path(image_dir).resolve()
    return f"{IMAGE_REPO_PREFIX}/{repo_name(project or image_dir.name)}:{folder_hash(image_dir, extra=base_id)[:16]}"


def ensure_image(
    image_dir: Path | str,
    project: str | None = None,
    *,
    client=None,
    base: str = BASE_IMAGE,
    echo: Logger | None = None,
) -> str:
    """Build the image of ``image_dir`` (a folder with a Dockerfile) on the base image unless an
    image of exactly these files is already there. Returns its tag.

    Raises :class:`ImageBuildError` naming the Dockerfile, with the build log's tail."""
    client = _client(client)
    image_dir = Path(image_dir).expanduser().resolve()
    dockerfile = image_dir / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageBuildError(f"no Dockerfile in {image_dir}: add one starting `ARG BASE` / `FROM ${{BASE}}`, or point `replay.image` at the folder that has one")
    ensure_base_image(client, base, echo=echo)
    base_id = _image_id(client, base) or ""
    tag = image_tag(image_dir, project, base_id=base_id)
    with _lock_for(tag):
        if _image_id(client, tag) is not None:
            return tag
        (echo or log.info)(f"building sandbox image {tag} from {dockerfile} ...")
        _build(client, image_dir, tag, base)
    return tag


def _build(client, image_dir: Path, tag: str, base: str) -> None:
    import docker.errors

    tail: deque[str] = deque(maxlen=_LOG_TAIL_LINES)
    error: str | None = None
    try:
        for item in client.api.build(
            path=str(image_dir),
            tag=tag,
            buildargs={"BASE": base},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            labels={"io.autofix.source": str(image_dir)},
        ):
            if "stream" in item:
                tail.extend(line for line in item["stream"].splitlines() if line.strip())
            if "error" in item:
                error = str(item["error"]).strip()
                tail.append(error)
    except docker.errors.APIError as exc:
        error = str(exc.explanation or exc)
        tail.append(error)
    except docker.errors.DockerException as exc:
        error = str(exc)
        tail.append(error)
    if error is None and _image_id(client, tag) is None:
        error = "the build finished without producing the image"
    if error is not None:
        log_tail = "\n".join(f"  {line}" for line in tail)
        raise ImageBuildError(
            f"building the sandbox image from {image_dir / 'Dockerfile'} failed: {error}\n"
            f"last lines of the build log:\n{log_tail}\n"
            "fix the Dockerfile (or what it installs) and run again"
        )


# --- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autofix.sandbox.image", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_base = sub.add_parser("base", help="build the offline base image if it is missing")
    p_base.add_argument("--tag", default=BASE_IMAGE)
    p_base.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses)")
    p_build = sub.add_parser("build", help="build a target's sandbox image folder (cached by content)")
    p_build.add_argument("folder", type=Path)
    p_build.add_argument("--project", default=None)
    args = parser.parse_args(argv)
    try:
        client = _client()
        if args.cmd == "base":
            if _image_id(client, args.tag) is not None:
                print(f"base image {args.tag} already present")
            else:
                build_base_image(client, args.tag, mirror=args.mirror, echo=print)
        else:
            print(ensure_image(args.folder, args.project, client=client, echo=print))
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
