"""The `autofix` command line: a thin layer over the Python API, one module per command group."""

import typer

from autofix.cli import config_cmd, demo_cmd, gateway_cmd, rules_cmd, triage_cmd, worktrees_cmd

app = typer.Typer(
    name="autofix",
    help="Turn production failures of an AI assistant into reviewed, validated fixes.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(gateway_cmd.app, name="gateway")
app.add_typer(worktrees_cmd.app, name="worktrees")
app.add_typer(rules_cmd.app, name="rules")
app.add_typer(__import__("autofix.cli.judges_cmd", fromlist=["app"]).app, name="judges")
app.command("demo")(demo_cmd.demo)
app.command("replay")(__import__("autofix.cli.replay_cmd", fromlist=["replay"]).replay)
app.command("triage")(triage_cmd.triage)
app.command("run")(__import__("autofix.cli.run_cmd", fromlist=["run"]).run)
app.command("resume")(__import__("autofix.cli.run_cmd", fromlist=["resume"]).resume)
app.command("gate")(__import__("autofix.cli.gate_cmd", fromlist=["gate"]).gate)
app.command("optimize")(__import__("autofix.cli.optimize_cmd", fromlist=["optimize"]).optimize)
app.add_typer(__import__("autofix.cli.optimize_cmd", fromlist=["optimizers_app"]).optimizers_app, name="optimizers")
app.command("label")(__import__("autofix.cli.label_cmd", fromlist=["label"]).label)
# approval: the queue (`review list|show`), `approve` and `reject`
_review = __import__("autofix.cli.review_cmd", fromlist=["review_app"])
app.add_typer(_review.review_app, name="review")
app.command("approve")(_review.approve)
app.command("reject")(_review.reject)
app.command("serve")(__import__("autofix.cli.serve_cmd", fromlist=["serve"]).serve)
