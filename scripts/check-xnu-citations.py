#!/usr/bin/env python3
"""Check that every XNU source file the Darwin expectations and predictions cite exists at the cited tag.

    python scripts/check-xnu-citations.py PATH-TO-XNU-GIT-DIR

Needs a clone (or bare mirror) of apple-oss-distributions/xnu, which CI does
not have; run it when changing a citation in tcpteardown.scenarios.xnu or in
tcpteardown.analysis.predict (whose `file.c:LINE function()` citations are
also checked: the line exists and the function is defined above it).
Exit 0 when all hold, 1 naming the ones that do not.
"""

import re
import subprocess
import sys

_CITATION = re.compile(r"(bsd/[\w/]+\.[ch])(?::(\d+))? (\w+)\(\)")


def _predict_citations() -> list[tuple[str, int, str]]:
    """(file, line or 0, function) of every XNU citation in the prediction table."""
    from tcpteardown.analysis.predict import PREDICTIONS, RST_WHY

    texts = [row.source for row in PREDICTIONS] + list(RST_WHY.values())
    return [(path, int(line or 0), function) for text in texts for path, line, function in _CITATION.findall(text)]


def _bad_lines(xnu: str, tag: str, citations) -> list[str]:
    bad = []
    for path, line, function in sorted(set(citations)):
        shown = subprocess.run(["git", "-C", xnu, "show", f"{tag}:{path}"], capture_output=True, text=True)
        lines = shown.stdout.splitlines()
        if shown.returncode or (line and line > len(lines)):
            bad.append(f"{path}:{line} is not in xnu at {tag}")
            continue
        above = lines[:line] if line else lines
        if line and not any(re.match(rf"{function}\(", text) for text in above):
            bad.append(f"{path}:{line}: {function}() is not defined above that line")
    return bad


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
    predicted = _predict_citations()
    cited |= {path for path, _line, _function in predicted}
    missing = sorted(cited - listing)
    for path in missing:
        print(f"not in xnu at {XNU_TAG}: {path}")
    print(f"{len(cited) - len(missing)} of {len(cited)} cited files exist at {XNU_TAG}")
    bad = _bad_lines(argv[0], XNU_TAG, predicted)
    for text in bad:
        print(text)
    print(f"{len(set(predicted)) - len(bad)} of {len(set(predicted))} prediction citations hold at {XNU_TAG}")
    return 1 if missing or bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
