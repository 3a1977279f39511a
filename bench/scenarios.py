"""Time the whole scenario library per address family, as a user runs it.

    .venv/bin/python bench/scenarios.py [--no-separate] [--no-witness]

For each family: `tcpteardown run --all [--ipv6]` (one process: scapy, the
kernel witness and the library load once), then, as the reference in the
same run, one `tcpteardown run NAME` process per scenario (what it took
before `--all`). Wall time end to end, through the CLI; prints the ratio
and what each process spends importing (`python -X importtime`). Goal
(issue 13): `run --all` under 8 s per family. Needs capture privilege.

Never a test: timing lives here, printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

GOAL_SECONDS = 8.0
CLI = [sys.executable, "-m", "tcpteardown"]


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - began, done


def import_seconds(argv: list[str]) -> dict[str, float]:
    """Seconds spent importing each heavy package (all its modules' own times) in one run of `argv`."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], capture_output=True, text=True,
                          timeout=600)
    found = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| +(\S+)$", line)
        if match:
            package = match.group(2).split(".")[0]
            if package in ("scapy", "matplotlib", "numpy", "tcpteardown"):
                found[package] = found.get(package, 0) + int(match.group(1)) / 1e6
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-separate", action="store_true", help="skip the one-process-per-scenario reference")
    parser.add_argument("--no-witness", action="store_true", help="without the kernel witness (tracefs)")
    args = parser.parse_args(argv)
    extra = ["--no-witness"] if args.no_witness else []

    from tcpteardown.scenarios import all_scenarios
    from tcpteardown.scenarios.needs import can_run

    runnable = [s.name for s in all_scenarios() if not can_run(s)]
    print(f"{len(runnable)} scenarios runnable here; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    failed = False
    for family in ("ipv4", "ipv6"):
        flags = ["--ipv6"] if family == "ipv6" else []
        wall, done = timed([*CLI, "run", "--all", *flags, *extra])
        failed |= done.returncode != 0
        print(f"{family}: run --all             {wall:6.2f} s  exit {done.returncode}  "
              f"(goal < {GOAL_SECONDS:.0f} s: {'met' if wall < GOAL_SECONDS else 'NOT met'})")
        print("      " + (done.stdout.strip().splitlines() or ["(no output)"])[-1])
        if not args.no_separate:
            separate = 0.0
            for name in runnable:
                seconds, one = timed([*CLI, "run", name, *flags, *extra])
                separate += seconds
                failed |= one.returncode != 0
            print(f"{family}: {len(runnable)} separate processes {separate:6.2f} s  "
                  f"(run --all takes {wall / separate:.2f}x of it)")
    imports = import_seconds([*CLI, "run", "--all", *extra])
    print("imports in one run --all process: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(imports.items())))
    listing = import_seconds([*CLI, "list"])
    print("imports in `tcpteardown list`:    " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(listing.items())))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
