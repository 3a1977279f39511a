#!/usr/bin/env python3
"""Check that every XNU source file the Darwin expectations cite exists at the cited tag.

    python scripts/check-xnu-citations.py PATH-TO-XNU-GIT-DIR

Needs a clone (or bare mirror) of apple-oss-distributions/xnu, which CI does
not have; run it when changing a citation in tcpteardown.scenarios.xnu.
Exit 0 when all exist, 1 naming the missing ones.
"""

import subprocess
import sys


def main(argv) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from tcpteardown.scenarios import all_scenarios
    from tcpteardown.scenarios.xnu import XNU_TAG

    darwin = [s.expectation("Darwin") for s in all_scenarios() if s.expectation("Darwin")]
    cited = {e.where.split()[1] for expectation in darwin for e in expectation.evidence if e.kind == "source"}
    listing = set(subprocess.run(["git", "-C", argv[0], "ls-tree", "-r", "--name-only", XNU_TAG, "bsd/"],
                                 capture_output=True, text=True, check=True).stdout.split())
    missing = sorted(cited - listing)
    for path in missing:
        print(f"not in xnu at {XNU_TAG}: {path}")
    print(f"{len(cited) - len(missing)} of {len(cited)} cited files exist at {XNU_TAG}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
