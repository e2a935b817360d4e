"""The launch gate on the helpdesk with the embedded model: a commit that fixes a planted defect, and one
that fixes it but breaks another behaviour. Prints each verdict's checks.

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python benchmarks/gate_helpdesk.py [--sandbox local|docker]

The helpdesk is copied into a fresh repository and triaged; both candidates are gated against the
tool-argument cluster (DEFECTS.md #3): the fix makes `to_tool_date` return ISO dates; the breaking
commit does the same and also answers every "how ..." question without searching.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autofix.config import load_config  # noqa: E402
from autofix.gate.runner import run_gate  # noqa: E402
from tests.optimizers.conftest import git, make_helpdesk_repo  # noqa: E402


def show(label: str, verdict, seconds: float) -> None:
    print(f"\n{label}: {'PASSED' if verdict.passed else 'REFUSED'} in {seconds:.0f} s")
    for c in verdict.checks:
        print(f"  [{'pass' if c.passed else 'FAIL'}] {c.section:10} {c.name}: {c.reason}")
    for note in verdict.notes:
        print(f"  note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sandbox", default="local", choices=["local", "docker"])
    args = parser.parse_args()
    root = make_helpdesk_repo(Path(tempfile.mkdtemp(prefix="gate-helpdesk-")))
    config = load_config(root / "autofix.yaml")
    clusters = json.loads((config.state_path / "triage" / "latest.json").read_text())["clusters"]
    tool = next(c for c in clusters if c["category"] == "tool_arguments")
    dates, router = root / "src/helpdesk/tools/dates.py", root / "src/helpdesk/router.py"
    iso = dates.read_text().replace('return day.strftime("%d/%m/%Y")', "return day.isoformat()")

    git(root, "checkout", "-q", "-b", "fix-dates")
    dates.write_text(iso)
    git(root, "commit", "-qam", "tools: ISO dates for the ticket system")
    git(root, "checkout", "-q", "-b", "fix-and-break", "main")
    dates.write_text(iso)
    router.write_text(router.read_text().replace("    if m := TIME_RELATIVE.search(question):", (
        '    if question.lower().startswith("how "):\n'
        '        return Route("answer", "how-to answered from memory")\n'
        "    if m := TIME_RELATIVE.search(question):"), 1))
    git(root, "commit", "-qam", "tools: ISO dates; router: answer how-to questions directly")
    git(root, "checkout", "-q", "main")

    print(f"helpdesk copy: {root}; cluster {tool['id']} ({tool['size']} traces)")
    for label, ref in (("fix", "fix-dates"), ("fix + break", "fix-and-break")):
        clock = time.monotonic()
        verdict = run_gate(config, ref, cluster=tool["id"], sandbox_kind=args.sandbox)
        show(label, verdict, time.monotonic() - clock)


if __name__ == "__main__":
    main()
