"""Scale of a capture set: ten rotations of the big many-short-connection capture,
half gzipped, through `census`, against ten times one file's census.

    bench/capture_set.py [FILE] [--members 1,2,5,10] [--explain]
        (default FILE: bench/census.py builds its 1M-packet capture)

Members are copies of FILE shifted in time by its span with `editcap -t` (so the set
is one stream ten times as long, as tcpdump -C would have rotated it), members 1, 3,
5, 7, 9 gzipped. Prints the peak RSS of each census (goal < 300 MB on the set) and
the time ratio set / (10 x one file) (goal <= 1.2). Checks free disk space first,
removes the set at the end. Each copy's connections count again (a
SYN after a finished connection starts a new one), so memory grows with the set's
connections: that is the census engine's per-connection state. `--members 1,2,5,10`
also counts the first 1, 2, 5 members alone (peak RSS and time per member: bounded
growth is a flat per-member figure); `--explain` times `explain --conn N` on one
connection of the whole set against its census (goal <= 1.5x).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import census as census_bench  # noqa: E402  (bench/census.py: the capture and measure())

MEMBERS = 10


def span_seconds(path: Path) -> float:
    out = subprocess.run(["capinfos", "-a", "-e", "-S", "-T", "-r", str(path)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[-1]) - float(out[-2]) + 1.0


def make_set(source: Path, folder: Path, count: int = MEMBERS) -> list[Path]:
    span = span_seconds(source)
    members = []
    for i in range(count):
        member = folder / f"cap.pcap{i}"
        subprocess.run(["editcap", "-F", "pcap", "-t", f"{i * span:.6f}", str(source), str(member)], check=True)
        if i % 2:
            with open(member, "rb") as plain, gzip.open(str(member) + ".gz", "wb", compresslevel=1) as packed:
                shutil.copyfileobj(plain, packed, 1 << 20)
            member.unlink()
            member = Path(str(member) + ".gz")
        members.append(member)
    return members


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", help="the 1M-packet capture (default: built by bench/census.py)")
    parser.add_argument("--members", default=str(MEMBERS),
                        help="comma-separated set sizes to count (each the first N members; default 10)")
    parser.add_argument("--explain", action="store_true",
                        help="also time explain --conn on one connection of the largest set")
    args = parser.parse_args(argv)
    sizes = sorted({int(n) for n in args.members.split(",")})
    source = Path(args.capture) if args.capture else census_bench.build_capture(
        Path(tempfile.gettempdir()) / "tcpteardown-bench-census.pcap", lambda: census_bench.short_load(130_000))
    need = source.stat().st_size * max(sizes) * 1.2
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < need:
        sys.exit(f"bench/capture_set.py: needs {need / 1e9:.1f} GB free in {tempfile.gettempdir()}, "
                 f"has {free / 1e9:.1f} GB")
    tcpteardown = [sys.executable, "-m", "tcpteardown", "census", "--quiet"]
    with tempfile.TemporaryDirectory(prefix="tcpteardown-set-") as folder:
        members = make_set(source, Path(folder), max(sizes))
        one_wall, one_rss, _, _ = census_bench.measure([*tcpteardown, str(source)])
        print(f"one file : {source.stat().st_size / 1e6:,.0f} MB, census {one_wall:.2f} s, peak RSS {one_rss:.0f} MB")
        for size in sizes:
            chosen = members[:size]
            set_wall, set_rss, head, _ = census_bench.measure([*tcpteardown, *map(str, chosen)])
            print(f"set of {size:>2}: {len([m for m in chosen if m.suffix == '.gz'])} gzipped, census {set_wall:.2f} s "
                  f"(set / ({size} x one) = {set_wall / (size * one_wall):.2f}, goal <= 1.2), peak RSS "
                  f"{set_rss:.0f} MB (goal < 300), {set_rss / size:.0f} MB per member; "
                  f"{head.decode(errors='replace').splitlines()[0]}")
        if args.explain:
            conn = "65000"
            explain_wall, explain_rss, _, _ = census_bench.measure(
                [sys.executable, "-m", "tcpteardown", "explain", "--conn", conn, *map(str, members)])
            print(f"explain --conn {conn} on the set of {len(members)}: {explain_wall:.2f} s, peak RSS "
                  f"{explain_rss:.0f} MB; / census = {explain_wall / set_wall:.2f} (goal <= 1.5)")
    print(f"load average: {open('/proc/loadavg').read().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
