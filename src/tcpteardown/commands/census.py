"""`tcpteardown census CAPTURE`: every TCP connection in a capture and how it ended.

Reads pcap/pcapng through the fast column reader (`formats.pcap_columns`)
and counts with `analysis.census`; prints a table, or with --json one
object streamed one connection at a time (`views.contracts.census`, the
contract in DESIGN.md); -o then draws `views.census_plot` (a plot that
cannot be written is one error line after the table, exit 2).

Bad input: the problems the reader stepped over are printed as warnings
(file, byte offset, what was wrong) and the results up to there follow;
--strict turns them into an error (exit 2). Never a traceback for a bad file.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Callable, Optional

from ..errors import UserError
from . import add_json_schema_argument

HELP = "list every TCP connection in a capture and how it ended (fin, rst, refused, open)"

# Files bigger than this get a progress bar (on a terminal).
PROGRESS_BYTES = 4 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", metavar="CAPTURE", nargs="+",
                        help="a pcap or pcapng file (tcpdump -w, Wireshark, a bundle), or several, a directory "
                             "or a glob: a capture set read as one stream (.gz, .xz, .zst too)")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    parser.add_argument("--json", action="store_true", help="print one JSON object: summary and connections")
    add_json_schema_argument(parser, "census")
    parser.add_argument("--top", type=int, metavar="N", default=None,
                        help="list only N connections, RST and refused ones first (default: 20 in the table, "
                             "all in JSON); the summary still counts all")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 2) on any damage in the file instead of keeping what was read")
    parser.add_argument("-o", "--output", metavar="PLOT", help="also draw the ends over time (.png, .svg, .pdf)")
    parser.add_argument("--os", choices=("linux", "darwin"), type=str.lower, default="linux",
                        help="whose kernel rules predict what each side's application saw (JSON \"predicted\"; "
                             "default linux; `explain` names the OS from the packets)")


def census_file(path: str, *, on_problem: Optional[Callable[[str], None]] = None,
                progress: Optional[Callable[[int], None]] = None):
    """The Census of a capture file (fast path). Problems go to `on_problem`.

    Raises CaptureFileError when the file cannot be read at all.
    """
    from ..analysis.census import census_batches, grouped
    from ..formats.pcap_columns import iter_tcp_batches
    from ..prefetch import prefetched

    def batches():
        # the next window is decoded and grouped by 4-tuple on the second core while
        # this one is counted
        for batch in prefetched(map(grouped, iter_tcp_batches(path, on_problem=on_problem))):
            if progress is not None:
                progress(batch.batch.end_offset)
            yield batch

    return census_batches(batches())


def census_set(capture_set, *, on_problem: Callable[[str], None],
               progress: Optional[Callable[[int, int, int], None]] = None):
    """The Census of a capture set (formats.capture_set) read as one stream; damaged members
    and overlaps stay on `capture_set` (.damaged, .notes), other problems go to `on_problem`."""
    from ..analysis.census import census_batches, grouped
    from ..formats.capture_set import iter_set_batches
    from ..prefetch import prefetched

    batches = iter_set_batches(capture_set, on_problem=on_problem, progress=progress)
    return census_batches(prefetched(map(grouped, batches)))


class _Progress:
    """A one-line bar on stderr, redrawn in place; only on a terminal."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total = max(total, 1)
        self.stream = stream
        self.shown = -1

    def __call__(self, done: int) -> None:
        percent = min(100, done * 100 // self.total)
        if percent == self.shown:
            return
        self.shown = percent
        bar = "#" * (percent // 4)
        self.stream.write(f"\rcensus: [{bar:<25}] {percent:3d}% of {self.total / 1e6:.0f} MB")
        self.stream.flush()

    def close(self) -> None:
        if self.shown >= 0:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def run(args: argparse.Namespace) -> int:
    if "numpy" not in sys.modules:
        # No linear algebra here: OpenBLAS's thread pool, started when numpy is first
        # imported, costs this process ~50 ms of CPU (a quarter of numpy's import) for nothing.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # The census makes no reference cycles worth collecting (its state is numpy arrays);
    # the collector's passes over the modules' objects cost ~30 ms of a 0.7 s run.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run(args)
    finally:
        if collecting:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    from ..analysis.completeness import metadata_banner
    from ..formats.bundle import bundle_metadata

    from ..formats.capture_set import is_set

    names = args.capture
    # a single plain file, pipe or FIFO keeps the one-file path (mmap, or read once)
    if is_set(names):
        return _run_set(args, names)
    path = names[0]
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a pcap or pcapng file")
    sys.stderr.write(metadata_banner(bundle_metadata(path)))  # anything missing: said first
    problems: list = []
    size = os.path.getsize(path)
    bar = _Progress(size) if size > PROGRESS_BYTES and sys.stderr.isatty() and not args.quiet else None
    try:  # CaptureFileError (unreadable file) reaches the CLI: one line, exit 2
        result = census_file(path, on_problem=problems.append, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if problems and args.strict:
        raise UserError(f"{problems[0]} (--strict: nothing printed)")
    if problems and result.packets == 0:
        raise UserError(f"{problems[0]}; nothing readable before it")
    for problem in problems:
        print(f"tcpteardown census: warning: {problem}; results up to there follow", file=sys.stderr)
    top = args.top if args.top is not None else (None if args.json else 20)
    chosen = None if top is None else result.failing_first(top)
    if args.json:
        from ..views.contracts.census import write_census_json

        write_census_json(result, path, problems, chosen, sys.stdout, os_name=args.os.capitalize())
    else:
        _print_table(result, path, chosen)
    if args.output:  # after the table: a plot that cannot be written loses nothing already computed
        sys.stdout.flush()
        _save_plot(result, path, args.output)
    return 0


PARTIAL = 3  # exit code: a capture set was counted without (all of) a damaged or unreadable member


def _run_set(args, names) -> int:
    """Several files, a directory, a glob or a compressed file: one stream (formats.capture_set)."""
    from ..formats.capture_set import open_set, set_label

    capture_set = open_set(names)
    label = set_label(names, capture_set)
    problems: list = []
    from ..progress import ProgressLine

    bar = ProgressLine(capture_set.total_bytes, len(capture_set.members), quiet=args.quiet)
    try:
        result = census_set(capture_set, on_problem=problems.append, progress=bar.update)
    finally:
        bar.close()
    said = capture_set.damaged + capture_set.notes
    if said and args.strict:
        raise UserError(f"{said[0]} (--strict: nothing printed)")
    if result.packets == 0 and said:
        raise UserError(f"{said[0]}; nothing readable in the set")
    for line in capture_set.damaged:
        print(f"tcpteardown census: partial: {line}", file=sys.stderr)
    for line in capture_set.notes:
        print(f"tcpteardown census: warning: {line}", file=sys.stderr)
    for problem in problems:
        print(f"tcpteardown census: warning: {problem}; results up to there follow", file=sys.stderr)
    top = args.top if args.top is not None else (None if args.json else 20)
    chosen = None if top is None else result.failing_first(top)
    if args.json:
        from ..views.contracts.census import write_census_json

        write_census_json(result, label, capture_set.damaged + problems, chosen, sys.stdout,
                          os_name=args.os.capitalize())
    else:
        _print_table(result, label, chosen)
    if args.output:
        sys.stdout.flush()
        _save_plot(result, label, args.output)
    return PARTIAL if capture_set.partial else 0


def _save_plot(result, capture: str, target: str) -> None:
    suffix = os.path.splitext(target)[1].lower()
    if target == "-" or suffix not in PLOT_SUFFIXES:
        why = "cannot draw to standard output" if target == "-" else (
            f"unknown plot type {suffix!r}" if suffix else "no file extension to choose the plot type")
        raise UserError(f"-o {target}: {why}; give a file name ending in {', '.join(PLOT_SUFFIXES)}")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise UserError(f"-o {target}: no such directory {folder}")
    from ..views.census_plot import save_census_plot

    try:
        save_census_plot(result, target, title=f"{os.path.basename(capture)}: how {len(result):,} TCP connections ended")
    except OSError as exc:
        raise UserError(f"-o {target}: cannot write the plot: {exc.strerror or exc}") from None


def _print_table(result, path: str, chosen) -> None:
    summary = result.summary()
    print(f"{path}: {result.packets} packets, {result.tcp_packets} TCP, {len(result)} connections")
    print()
    print(f"{'ended':<9}{'by client':>10}{'by server':>10}{'total':>8}")
    by_side = summary["by_side"]
    for kind, total in summary["by_end"].items():
        sides = by_side.get(kind, {})
        print(f"{kind:<9}{sides.get('client', ''):>10}{sides.get('server', ''):>10}{total:>8}")
    if not chosen:
        return
    origin = int(result.start_times_ns().min())  # no Python int per connection
    print()
    more = len(result) - len(chosen)
    print(f"connections{' (RST and refused first)' if more > 0 else ''}:")
    print(f"{'stream':>6}  {'client':<24} {'server':<24} {'ended':<8}{'by':<7}{'at (s)':>10}  {'frame':>7}  "
          f"{'RSTs':>4}  {'bytes c>s':>9}  {'bytes s>c':>9}  {'zeek':<6} history")
    for c in result.iter_connections(chosen):
        at = c.end_time_ns if c.end_time_ns is not None else c.end_ns
        print(f"{c.stream:>6}  {str(c.client):<24} {str(c.server):<24} {c.end:<8}{c.ended_by or '-':<7}"
              f"{(at - origin) / 1e9:>10.3f}  {c.end_frame if c.end_frame is not None else '-':>7}  "
              f"{len(c.rst_frames):>4}  {c.bytes_client:>9}  {c.bytes_server:>9}  {c.conn_state:<6} {c.history}")
    if more > 0:
        print(f"... and {more} more (--top N to list more, --json for all)")
