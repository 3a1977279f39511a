"""A longer fuzz run of the capture reader than CI's (tests/test_pcapread_fuzz.py).

    python bench/fuzz_reader.py [--examples N] [--seed-dir DIR]

Same property: on any bytes, `read_capture` returns or raises
CaptureFileError, the census column path agrees with the object path, and
nothing else escapes. Mutates the byte-literal seeds from the tests plus the
first 64 KB of every capture in ../shared/corpus (when present).
Prints the number of examples, how many were refused, and any failure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--seed-dir", default=str(HERE.parent.parent / "shared" / "corpus"))
    args = parser.parse_args(argv)

    from hypothesis import HealthCheck, given, settings, strategies as st

    import test_pcapread_fuzz as fuzz

    seeds = list(fuzz.SEEDS)
    corpus = Path(args.seed_dir)
    if corpus.is_dir():
        seeds += [path.read_bytes()[:65536] for path in sorted(corpus.rglob("*.pcap*"))]
    fuzz.SEEDS[:] = seeds
    counts = {"examples": 0}
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-reader-"))

    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=fuzz.mutated())
    def run(data):
        counts["examples"] += 1
        fuzz._check(data, workdir / "fuzz.bin")

    started = time.perf_counter()
    try:
        run()
    finally:
        (workdir / "fuzz.bin").unlink(missing_ok=True)
        workdir.rmdir()
    print(f"{counts['examples']} examples from {len(seeds)} seeds in {time.perf_counter() - started:.0f} s: "
          "no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
