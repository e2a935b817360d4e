"""autofix's retrieval auto-research optimizer: an Optuna search over `surfaces.retrieval.space`."""
