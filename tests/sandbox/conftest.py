"""Fixtures of the sandbox tests: folders, and a Docker sandbox or a clean skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from autofix.sandbox import network as sandbox_network


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A worktree-like folder with a file in it, and an empty io folder."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello.txt").write_text("hello from the worktree\n")
    io = tmp_path / "io"
    io.mkdir()
    return work, io


@pytest.fixture
def fresh_warnings():
    """Forget which once-per-process warnings were said, so a test can see them again."""
    saved = set(sandbox_network._warned)
    sandbox_network._warned.clear()
    yield
    sandbox_network._warned.clear()
    sandbox_network._warned.update(saved)
