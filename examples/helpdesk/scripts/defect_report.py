"""Per planted defect: how the regression cases that exercise it fared in a replay.

    python examples/helpdesk/scripts/defect_report.py RUN_DIR     (a folder holding results.jsonl, e.g. from autofix demo)

Joins the run's per-case checks with data/regression_gold.jsonl (the defect each case exercises) and prints,
per defect label, the number of cases and how many failed each check. For measuring, not used by autofix.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = [json.loads(line) for line in (Path(sys.argv[1]) / "results.jsonl").read_text().splitlines()]
    gold = {row["case_id"]: row for row in map(json.loads, (ROOT / "data" / "regression_gold.jsonl").read_text().splitlines())}
    cases: Counter[str] = Counter()
    failed: dict[str, Counter[str]] = defaultdict(Counter)
    checks: set[str] = set()
    for result in results:
        label = str(gold[result["case_id"]]["defect"] or "none")
        cases[label] += 1
        failed[label]["error"] += result["error"] is not None
        for name, outcome in result["checks"].items():
            checks.add(name)
            failed[label][name] += outcome["passed"] is False
    columns = sorted(checks)
    print(f"{'defect':<24}{'cases':>6}" + "".join(f"{c:>22}" for c in columns))
    for label in sorted(cases):
        print(f"{label:<24}{cases[label]:>6}" + "".join(f"{failed[label][c]:>22}" for c in columns))
    print("(cells: cases failing the check; a check that does not apply to a case is not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
