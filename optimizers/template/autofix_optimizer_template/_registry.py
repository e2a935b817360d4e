"""Imported by autofix through the entry point: it only imports the decorated optimizers."""

from autofix_optimizer_template.prompt_append import PromptAppend  # noqa: F401
