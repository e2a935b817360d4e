"""Imported by autofix through the entry point: it only imports the decorated optimizer."""

from autofix_code_patch.optimizer import CodePatch  # noqa: F401
