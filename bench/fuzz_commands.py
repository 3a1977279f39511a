"""A longer bit-flip run through the commands than CI's (tests/test_commands_fuzz.py).

    python bench/fuzz_commands.py [--files N] [--seed S]

Same property, each command a separate process as a user runs it: explain,
plot and diff on a bundle with 1-3 flipped bits give a result or one error
line, exit 0/1/2, never a traceback, within a time limit. Prints the count
of runs per exit status and every failure.
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

LIMIT_SECONDS = 60


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    import test_commands_fuzz as fuzz

    rng = random.Random(args.seed)
    statuses: collections.Counter = collections.Counter()
    failures = []
    with tempfile.TemporaryDirectory(prefix="fuzz-commands-") as workdir:
        work = Path(workdir)
        for n in range(args.files):
            source = rng.choice(fuzz.STORED)
            path = work / f"{n}-{source.name}"
            path.write_bytes(fuzz.flipped(source, rng, 1 + rng.randrange(3)))
            for command in fuzz.command_lines(path, work):
                try:
                    result = subprocess.run([sys.executable, "-m", "tcpteardown", *command], capture_output=True,
                                            text=True, timeout=LIMIT_SECONDS)
                except subprocess.TimeoutExpired:
                    failures.append((command, f"no answer within {LIMIT_SECONDS} s"))
                    continue
                statuses[result.returncode] += 1
                if result.returncode not in (0, 1, 2) or "Traceback" in result.stderr:
                    failures.append((command, result.stderr[-2000:]))
            if failures:
                kept = Path(tempfile.mkdtemp(prefix="fuzz-commands-failure-"))
                (kept / path.name).write_bytes(path.read_bytes())
                print(f"kept the failing file in {kept}", file=sys.stderr)
                break
    runs = sum(statuses.values())
    print(f"{args.files} flipped bundles, {runs} command runs: "
          + ", ".join(f"exit {code}: {count}" for code, count in sorted(statuses.items())))
    for command, problem in failures:
        print(f"FAILED {' '.join(command)}\n{problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
