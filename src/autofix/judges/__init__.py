"""The judges room: deterministic checks and (later) rubric judges, each with a version."""
