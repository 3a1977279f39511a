"""`tcpteardown list`: every scenario, one line each, whether this host can run it,
and per OS what its expectation rests on (observed, seen in a real capture, from source)."""

from __future__ import annotations

import argparse
import json
from . import add_json_schema_argument

HELP = "list the scenarios (name, one line each, what they need)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    add_json_schema_argument(parser, "list")
    parser.add_argument("--evidence", action="store_true",
                        help="under each scenario, what each OS's expectation rests on (source lines, captures)")


def run(args: argparse.Namespace) -> int:
    from ..scenarios import all_scenarios
    from ..scenarios.needs import can_run
    from ..views.contracts.scenarios import scenario_json, scenarios_json

    rows = [scenario_json(scenario, can_run(scenario)) for scenario in all_scenarios()]
    if args.json:
        print(json.dumps(scenarios_json(rows), indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        needs = f"  [needs {', '.join(row['needs'])}]" if row["needs"] else ""
        cannot = f"  (cannot run here: {row['why_not']})" if row["why_not"] else ""
        print(f"{row['name']:<{width}}  {row['summary']}{needs}{cannot}")
        print(f"{'':<{width}}  expected on " + " · ".join(
            f"{os_name}: {e['status']}" for os_name, e in row["expectations"].items()))
        if args.evidence:
            for os_name, e in row["expectations"].items():
                for line in e["evidence"]:
                    print(f"{'':<{width}}    {os_name} {line}")
    return 0
