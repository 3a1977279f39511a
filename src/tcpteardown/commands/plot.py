"""`tcpteardown plot CAPTURE`: draw the ladder of one connection (PNG, SVG or PDF).

Loads the capture (a bundle or any pcap/pcapng) plus socket calls from
`--strace`/`--log` exactly as `tcpteardown explain` does, links each call to
its cause, and draws the connection with the first failing call (or the one
`--conn` names). A capture with more than one connection also gets an
overview, written beside the ladder as `<out stem>-overview<suffix>`;
`--overview` writes only the overview.

Prints the paths it wrote. Exit codes: 0 written, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from .explain import LANGS, add_evidence_arguments

HELP = "draw the ladder diagram of a connection: each failing call next to the segment that caused it"

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_evidence_arguments(parser, tz_help="time zone for log lines without one (default UTC)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="where to write: .png, .svg or .pdf (default: <capture stem>.png next to CAPTURE)")
    parser.add_argument("--conn", metavar="CONN",
                        help="which connection: an index (0 is the first) or a 4-tuple such as "
                             "127.0.0.1:5000-127.0.0.1:8080 (default: the one with the first failing call)")
    parser.add_argument("--lang", choices=LANGS, type=str.lower,
                        help="also show how this language reports each failure")
    parser.add_argument("--time", choices=("compressed", "real"), default="compressed",
                        help="compressed (default): one row per event, idle gaps cut and labelled; real: linear")
    parser.add_argument("--full", action="store_true",
                        help="draw every segment; by default the bulk of a long transfer is one labelled band")
    parser.add_argument("--overview", action="store_true",
                        help="draw one row per connection, coloured by how it ended, instead of a ladder")


def output_path(args: argparse.Namespace) -> Path:
    if args.output:
        path = Path(args.output)
        if path.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UserError(f"-o {args.output}: expected a file name ending in .png, .svg or .pdf")
        return path
    return Path(args.capture).with_suffix(".png")


def run(args: argparse.Namespace) -> int:
    from ..analysis.completeness import banner
    from ..analysis.correlate import correlate
    from ..views.connections import connections, select_connection
    from ..views.ladder import draw_ladder
    from ..views.overview import draw_overview
    from ..views.style import save_figure
    from .explain import load, parse_tz

    out = output_path(args)
    args.tzinfo = parse_tz(args.tz)
    recording = load(args)
    sys.stderr.write(banner(recording))  # anything missing from the evidence: said first
    found = connections(recording)
    chosen = select_connection(found, args.conn)
    if args.overview:
        print(save_figure(draw_overview(recording, highlight=chosen.index), out))
        return 0
    links = correlate(recording)
    print(save_figure(draw_ladder(recording, links, conn=chosen.index, lang=args.lang, time_axis=args.time,
                                     full=args.full), out))
    if len(found) > 1:
        beside = out.with_name(f"{out.stem}-overview{out.suffix}")
        print(save_figure(draw_overview(recording, highlight=chosen.index), beside))
    return 0
