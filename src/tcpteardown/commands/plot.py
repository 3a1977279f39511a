"""`tcpteardown plot CAPTURE`: draw the ladder of one connection.

The suffix of `-o` picks the format (`WRITERS`): a figure (.png, .svg,
.pdf), a Mermaid sequenceDiagram (.mmd), a PlantUML diagram (.puml), or one
self-contained interactive page (.html).

Loads the capture (a bundle or any pcap/pcapng) plus socket calls from
`--strace`/`--log` exactly as `tcpteardown explain` does, links each call to
its cause, and draws the connection with the first failing call (or the one
`--conn` names). A capture with more than one connection also gets an
overview, written beside the ladder as `<out stem>-overview<suffix>`;
`--overview` writes only the overview.

CAPTURE may be a capture set, as for explain. Prints the paths it wrote.
Exit codes: 0 written, 2 bad input, 3 a capture set's damaged member was
left out (in part or whole).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from .explain import LANGS, PARTIAL, add_evidence_arguments, capture_names

HELP = "draw the ladder diagram of a connection: each failing call next to the segment that caused it"

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_evidence_arguments(parser, tz_help="time zone for log lines without one (default UTC)",
                           conn_help="which connection to draw (default: the one with the first failing "
                                     "call, else the first)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="where to write: .png, .svg, .pdf, .mmd (Mermaid), .puml (PlantUML) or .html "
                             "(interactive page) (default: <capture stem>.png next to CAPTURE)")
    parser.add_argument("--lang", choices=LANGS, type=str.lower,
                        help="also show how this language reports each failure")
    parser.add_argument("--time", choices=("compressed", "real"), default="compressed",
                        help="compressed (default): one row per event, idle gaps cut and labelled; real: linear")
    parser.add_argument("--full", action="store_true",
                        help="draw every segment; by default the bulk of a long transfer is one labelled band")
    parser.add_argument("--overview", action="store_true",
                        help="draw one row per connection, coloured by how it ended, instead of a ladder")


FIGURES = (".png", ".svg", ".pdf")


def _write_text(path: Path, text: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _mermaid(recording, links, conn, args, out: Path) -> Path:
    from ..views.mermaid import mermaid_text

    return _write_text(out, mermaid_text(recording, links, conn=conn, title=_title(recording, args)))


def _plantuml(recording, links, conn, args, out: Path) -> Path:
    from ..views.mermaid import plantuml_text

    return _write_text(out, plantuml_text(recording, links, conn=conn, title=_title(recording, args)))


def _html(recording, links, conn, args, out: Path) -> Path:
    from ..views.html_ladder import html_ladder

    return _write_text(out, html_ladder(recording, links, conn=conn, lang=args.lang))


def _title(recording, args) -> str:
    return recording.metadata.scenario or Path(args.capture).name


# Text formats: suffix -> writer(recording, links, connection (a ConnectionView), args, out).
# Figures (FIGURES) go through matplotlib below.
WRITERS = {".mmd": _mermaid, ".puml": _plantuml, ".html": _html}


def output_path(args: argparse.Namespace) -> Path:
    if args.output:
        path = Path(args.output)
        if path.suffix.lower() not in (*FIGURES, *WRITERS):
            raise UserError(f"-o {args.output}: expected a file name ending in "
                            f"{', '.join((*FIGURES, *WRITERS)[:-1])} or {(*FIGURES, *WRITERS)[-1]}")
        return path
    return Path(args.capture).with_suffix(".png")


def run(args: argparse.Namespace) -> int:
    from ..units import times_in
    from .explain import parse_tz

    args.tzinfo = parse_tz(args.tz)
    with times_in(args.tzinfo):  # every clock time drawn, the analysis's too, in --tz
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..analysis.completeness import banner
    from ..analysis.correlate import correlate
    from ..analysis.connections import connections, select_connection
    from ..views.ladder import draw_ladder
    from ..views.overview import draw_overview
    from ..views.style import save_figure
    from .explain import load

    capture_names(args)
    out = output_path(args)
    if args.overview and out.suffix.lower() in WRITERS:
        raise UserError(f"-o {out}: --overview draws a figure; expected a file name ending in {', '.join(FIGURES)}")
    recording = load(args, whole=args.overview)
    sys.stderr.write(banner(recording))  # anything missing from the evidence: said first
    found = connections(recording)
    chosen = select_connection(found, args.conn)
    if args.overview:
        print(save_figure(draw_overview(recording, highlight=chosen.index), out))
        return PARTIAL if args.partial else 0
    links = correlate(recording)
    writer = WRITERS.get(out.suffix.lower())
    if writer is not None:  # text formats: the ladder only, no overview beside it
        print(writer(recording, links, chosen, args, out))
        return PARTIAL if args.partial else 0
    print(save_figure(draw_ladder(recording, links, conn=chosen, lang=args.lang, time_axis=args.time,
                                     full=args.full), out))
    if recording.metadata.get("selected") is not None:
        print("tcpteardown plot: note: no overview beside the ladder: only the selected connections were read "
              "(`plot --overview` reads them all; `census` lists them)", file=sys.stderr)
    elif len(found) > 1:
        beside = out.with_name(f"{out.stem}-overview{out.suffix}")
        print(save_figure(draw_overview(recording, highlight=chosen.index), beside))
    return PARTIAL if args.partial else 0
