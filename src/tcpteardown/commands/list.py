"""`tcpteardown list`: every scenario, one line each, and whether this host can run it."""

from __future__ import annotations

import argparse
import json

HELP = "list the scenarios (name, one line each, what they need)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")


def run(args: argparse.Namespace) -> int:
    from ..scenarios import all_scenarios
    from ..scenarios.needs import can_run

    rows = []
    for scenario in all_scenarios():
        problem = can_run(scenario)
        rows.append({"name": scenario.name, "summary": scenario.summary, "family": scenario.family_group,
                     "needs": list(scenario.needs), "runnable": problem is None, "why_not": problem})
    if args.json:
        print(json.dumps({"scenarios": rows}, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        needs = f"  [needs {', '.join(row['needs'])}]" if row["needs"] else ""
        cannot = f"  (cannot run here: {row['why_not']})" if row["why_not"] else ""
        print(f"{row['name']:<{width}}  {row['summary']}{needs}{cannot}")
    return 0
