"""Imported by autofix through the entry point: it only imports the decorated optimizer."""

from autofix_retrieval_search.search import RetrievalSearch  # noqa: F401
