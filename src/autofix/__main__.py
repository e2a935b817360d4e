from autofix.cli import app

app()
