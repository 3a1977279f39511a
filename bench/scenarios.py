"""Time every scenario of the library, per address family.

    .venv/bin/python bench/scenarios.py [--runs N] [--no-witness]

Prints the wall time of one run_scenario() per scenario (the median of N
runs), whether it matched its expectation, and the total per family. Goal:
the whole library under 15 s per address family. Scenarios this host cannot
run are listed with the reason and left out of the total.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

GOAL_SECONDS = 15.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs per scenario and family (median shown)")
    parser.add_argument("--no-witness", action="store_true", help="without the kernel witness (tracefs)")
    args = parser.parse_args(argv)

    from tcpteardown.scenarios import all_scenarios, run_scenario
    from tcpteardown.scenarios.needs import can_run

    scenarios = all_scenarios()
    width = max(len(s.name) for s in scenarios)
    totals = {}
    all_matched = True
    print(f"{'scenario':<{width}}  {'ipv4 (s)':>9}  {'ipv6 (s)':>9}  matched")
    for scenario in scenarios:
        problem = can_run(scenario)
        if problem:
            print(f"{scenario.name:<{width}}  {'-':>9}  {'-':>9}  skipped: {problem}")
            continue
        cells, matched = [], True
        for family in ("ipv4", "ipv6"):
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                run = run_scenario(scenario.name, family=family, witness=not args.no_witness)
                times.append(time.perf_counter() - start)
                matched &= run.matches
            median = statistics.median(times)
            totals[family] = totals.get(family, 0.0) + median
            cells.append(f"{median:9.3f}")
        all_matched &= matched
        print(f"{scenario.name:<{width}}  {cells[0]}  {cells[1]}  {'yes' if matched else 'NO'}")
    for family, total in totals.items():
        print(f"total {family}: {total:.2f} s for {len(scenarios)} scenarios "
              f"(goal < {GOAL_SECONDS:.0f} s: {total / GOAL_SECONDS:.2f} of the budget)")
    return 0 if all_matched else 1


if __name__ == "__main__":
    sys.exit(main())
