"""The extension-point registry: names, versions, duplicates, entry-point plugins and their failures."""

from __future__ import annotations

from typing import Any

import pytest

from autofix.plugins import Registry


def test_entries_are_named_versioned_and_unique() -> None:
    reg: Registry[Any] = Registry("rule", "autofix.test-nothing-registered")
    entry = reg.add("r1", len, version=3, order=10)
    assert (entry.ref, entry.metadata["order"], entry.distribution) == ("r1@3", 10, None)
    assert reg.get("r1").obj is len and "r1" in reg and len(reg) == 1
    with pytest.raises(ValueError, match="already registered"):
        reg.add("r1", len)
    with pytest.raises(KeyError, match="no rule named 'nope'; registered: r1"):
        reg.get("nope")


def test_a_plugin_is_namespaced_and_a_broken_one_is_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    import importlib.metadata as md
    import sys

    (tmp_path / "good_plugin.py").write_text(
        "from tests_plugin_registry import REG\nREG.add('finds_things', print, version=2)\n")
    (tmp_path / "tests_plugin_registry.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[Any] = Registry("rule", "autofix.rules")
    sys.modules.pop("tests_plugin_registry", None)
    import tests_plugin_registry

    tests_plugin_registry.REG = reg

    class Dist:
        def __init__(self, name: str) -> None:
            self.name = name

    good = md.EntryPoint("good", "good_plugin", "autofix.rules")
    bad = md.EntryPoint("bad", "no_such_module_anywhere", "autofix.rules")
    object.__setattr__(good, "dist", Dist("acme-rules"))
    object.__setattr__(bad, "dist", Dist("broken-rules"))
    monkeypatch.setattr("autofix.plugins.entry_points", lambda group: [good, bad] if group == "autofix.rules" else [])
    names = [e.name for e in reg.entries()]
    assert names == ["acme-rules/finds_things"] and reg.get("acme-rules/finds_things").version == 2
    assert len(reg.warnings) == 1 and "broken-rules" in reg.warnings[0] and "ModuleNotFoundError" in reg.warnings[0]


def test_a_rule_that_raises_is_skipped_and_reported(tb, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from autofix.triage import triage_traces
    from autofix.triage.rules import rule_registry

    def explodes(facts, ctx):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")

    entry = rule_registry.add("test_explodes", explodes, order=1)
    try:
        t = tb.build("t1", docs=[], feedback=[{"kind": "thumb_down"}], answer="nothing")
        report = triage_traces([tb.trace(x) for x in [*tb.background(5), t]])
        assert report.diagnosis_of("t1").rule == "retrieval_empty"  # the other rules still decide
        assert any("test_explodes" in w and "boom" in w for w in report.warnings)
        assert "test_explodes@1" in report.rules
    finally:
        rule_registry._entries.pop(entry.name)


def test_a_plugin_module_imported_before_the_entry_points_load_keeps_its_distribution_prefix() -> None:
    """Importing an installed plugin's module directly registers it as `dist/name`, as the entry point would."""
    import importlib

    from autofix.optimize import optimizer_registry

    importlib.import_module("autofix_retrieval_search.search")
    assert "autofix-retrieval-search/retrieval_search" in {e.name for e in optimizer_registry.entries()}
    assert "retrieval_search" not in {e.name for e in optimizer_registry.entries()}
