"""PLACEHOLDER written by the config helper so `autofix.cli` imports; the demo owner replaces this file."""

import typer


def demo() -> None:
    """Run the bundled demo (placeholder)."""
    typer.echo("demo: not implemented yet")
    raise typer.Exit(1)
