"""Template of an autofix optimizer plugin (see optimizers/README.md)."""
