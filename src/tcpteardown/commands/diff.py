"""`tcpteardown diff A B`: where two teardowns part (Linux vs macOS, IPv4 vs IPv6, before vs after).

A and B are bundles or any pcap/pcapng (DLT_NULL from macOS lo0, Ethernet
from Linux lo, SLL from `-i any`, Apple pcapng with process-information
blocks...). Exit codes follow diff(1) and DESIGN.md: 0 the teardowns
match, 1 they differ, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import shutil
import sys
from pathlib import Path
from . import add_json_schema_argument

HELP = "compare two teardowns (bundles or pcap/pcapng) step by step; exit 1 when they differ"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="first recording: a bundle or any pcap/pcapng")
    parser.add_argument("b", metavar="B", help="second recording: a bundle or any pcap/pcapng")
    parser.add_argument("--json", action="store_true", help="print the diff as one JSON object")
    add_json_schema_argument(parser, "diff")
    parser.add_argument("-o", "--output", metavar="FIG",
                        help="draw both ladders side by side, differing rows highlighted (.png, .svg, .pdf)")
    parser.add_argument("--conn-a", metavar="CONN",
                        help="which connection of A: its number (1 = first), HOST:PORT or :PORT "
                             "(default: the one with the first failing call, else the first)")
    parser.add_argument("--conn-b", metavar="CONN", help="which connection of B (as --conn-a)")
    parser.add_argument("--tolerance", metavar="MS", type=float, default=None,
                        help="timing differences up to MS milliseconds are jitter, not differences "
                             "(default 250)")
    parser.add_argument("--align", choices=("steps", "structure"), default="steps",
                        help="steps: pair segment by segment (the same program twice); structure: pair by "
                             "who closed, how and what answered, payload sizes and timing shown but not "
                             "counted (two programs' teardowns of the same kind, e.g. Linux against a real "
                             "Mac capture)")
    parser.add_argument("--count-acks", action="store_true",
                        help="count a bare ACK only one side sent as a difference (by default it is "
                             "shown but not counted: it is acknowledgment timing, not teardown)")


def run(args: argparse.Namespace) -> int:
    from ..analysis.diff import diff
    from ..errors import UserError

    if args.tolerance is not None and not args.tolerance >= 0:
        raise UserError(f"--tolerance must be a number of milliseconds >= 0, not {args.tolerance}")
    a, b = _load(args.a), _load(args.b)
    tolerance = None if args.tolerance is None else int(args.tolerance * 1_000_000)
    try:
        result = diff(a, b, tolerance=tolerance, connection_a=args.conn_a, connection_b=args.conn_b,
                      label_a=Path(args.a).name, label_b=Path(args.b).name, count_bare_acks=args.count_acks,
                      align_by=args.align)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    problems = tuple(f"{name}: {text}" for name, recording in (("A", a), ("B", b))
                     for key, text in recording.metadata.extra if key == "problem")
    if problems:  # what the reader stepped over (a truncated last packet...)
        result = replace(result, notes=result.notes + problems)
    figure_path = None
    if args.output:
        from ..views.diff_figure import draw_diff
        from ..views.style import save_figure

        figure_path = str(save_figure(draw_diff(result), args.output))
    if args.json:
        from ..views.contracts.diff import diff_json

        print(json.dumps(diff_json(result, args.a, args.b, figure_path), indent=2))
    else:
        from ..views.diff_table import render_table

        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        sys.stdout.write(render_table(result, width=width))
        if figure_path:
            print(f"figure: {figure_path}")
    return 0 if result.matches else 1


def _load(path: str):
    from ..errors import UserError
    from ..formats.bundle import load_recording

    recording = load_recording(path)
    if not recording.segments and not recording.calls:
        raise UserError(f"{path}: no TCP segments and no socket calls: nothing to compare")
    return recording
