"""Northwind Labs helpdesk assistant: answers IT and HR questions from the policy corpus and the ticket system."""

from pathlib import Path
import os


def project_root() -> Path:
    """The folder holding corpus/, prompts/, config/ and data/ (HELPDESK_ROOT overrides it)."""
    override = os.environ.get("HELPDESK_ROOT")
    return Path(override) if override else Path(__file__).resolve().parents[2]
