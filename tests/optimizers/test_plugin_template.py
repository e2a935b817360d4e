"""A plugin written from optimizers/template in a temporary folder is installed like any distribution,
discovered through the entry-point group autofix.optimizers, passes the plugin test suite, and is run
by `autofix optimize`."""

from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import load_config
from autofix.optimize import optimizer_registry
from autofix.optimize.testing import check_optimizer

from .conftest import git, make_helpdesk_repo

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "optimizers" / "template"


@pytest.fixture
def researcher_plugin(tmp_path, monkeypatch) -> str:
    """optimizers/template copied, renamed as a researcher would, and pip-installed into a folder on sys.path."""
    src = tmp_path / "my-optimizer"
    shutil.copytree(TEMPLATE, src)
    shutil.move(src / "autofix_optimizer_template", src / "my_optimizer")
    for path in [src / "pyproject.toml", *(src / "my_optimizer").glob("*.py")]:
        path.write_text(path.read_text().replace("autofix_optimizer_template", "my_optimizer")
                        .replace("autofix-optimizer-template", "my-optimizer"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    # a fresh look at the entry points, as a new process would have
    monkeypatch.setattr(optimizer_registry, "_entries", dict(optimizer_registry._entries))
    monkeypatch.setattr(optimizer_registry, "_plugins_loaded", False)
    yield "my-optimizer/prompt_append"
    for name in [m for m in sys.modules if m.startswith("my_optimizer")]:
        del sys.modules[name]


def test_the_template_is_discovered_and_passes_the_plugin_suite(researcher_plugin, tmp_path) -> None:
    listed = CliRunner().invoke(app, ["optimizers", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows[researcher_plugin] == {"name": researcher_plugin, "categories": ["prompt"],
                                       "distribution": "my-optimizer"}
    factory = optimizer_registry.get(researcher_plugin).obj
    proposals = check_optimizer(factory, tmp_path / "suite", category="prompt",
                                answer="Mention case-0 case-1 case-2 in every answer.")
    assert proposals and proposals[0].train_score == 1.0


def test_plugins_import_only_the_public_optimize_api() -> None:
    """Code under optimizers/ imports `autofix.optimize` (and its `testing` suite in tests), nothing deeper."""
    allowed = {"autofix.optimize", "autofix.optimize.testing"}
    offenders = []
    for path in (REPO / "optimizers").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("autofix.") or name == "autofix":
                    if name not in allowed:
                        offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, offenders


@pytest.mark.model
def test_autofix_optimize_runs_the_researchers_plugin(researcher_plugin, tmp_path, scripted_model) -> None:
    def use_scripted(root: Path) -> None:
        text = (root / "autofix.yaml").read_text()
        (root / "autofix.yaml").write_text(text.replace("model:\n", "model:\n  optimizer: scripted/optimizer\n", 1))

    root = make_helpdesk_repo(tmp_path, edit=use_scripted)
    scripted_model.script = lambda messages: ("End every answer with a line 'Sources:' naming the policy "
                                              "documents you used, by their title.")
    config = load_config(root / "autofix.yaml")
    prompt = next(c for c in json.loads((config.state_path / "triage" / "latest.json").read_text())["clusters"]
                  if c["category"] == "prompt")
    out = CliRunner().invoke(app, ["optimize", "-c", str(root / "autofix.yaml"), "--cluster", prompt["id"],
                                   "--optimizer", researcher_plugin, "--max-metric-calls", "40", "--sandbox", "local",
                                   "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["optimizers"][0]["optimizer"] == researcher_plugin
    assert result["optimizers"][0]["metric_calls"] <= 40 and result["optimizers"][0]["stopped"] is None
    assert scripted_model.calls, "the plugin asked the optimizer model"
    # whether the 135M model follows the new instruction is not up to the plugin: a candidate exists only
    # when the training score rose, and then it is a commit on its own branch
    for candidate in result["candidates"]:
        assert git(root, "rev-parse", candidate["branch"]).strip() == candidate["commit"]
        assert "+End every answer with a line 'Sources:'" in candidate["diff"]
