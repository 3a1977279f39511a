"""`tcpteardown explain CAPTURE`: which segment made each socket call fail, in words or JSON.

CAPTURE is a bundle (socket calls included) or any pcap/pcapng. Socket calls
can be added from an strace log (`--strace`) and from application log lines
(`--log`); lines those importers cannot read are reported on stderr with
their line numbers and skipped. The text output is one paragraph per link
(`views.narrative.paragraph`); `--json` prints DESIGN.md's contract.

Output formats are a table (`FORMATS`): another view (the ladder helper's
`--markdown`) is one row with its flag, help and a renderer taking
`(links, recording, args)`, without touching the rest.

Exit codes: 0 when it ran (whatever it found), 2 on bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Callable, Optional

from .. import errnos
from ..errors import UserError

HELP = "link each failing socket call to the FIN or RST that caused it (text or --json)"

LANGS = errnos.LANG_CHOICES


def add_evidence_arguments(parser: argparse.ArgumentParser, *, tz_help: str) -> None:
    """CAPTURE and the socket calls added to it: shared by explain and plot."""
    parser.add_argument("capture", metavar="CAPTURE", help="a tcpteardown bundle, or any pcap/pcapng file")
    parser.add_argument("--strace", metavar="FILE", action="append", default=[],
                        help="socket calls from an strace log (strace -f -ttt -T -yy); may repeat")
    parser.add_argument("--log", metavar="FILE", action="append", default=[],
                        help="socket errors from application log lines (Go, Python, Java, Node, curl); may repeat")
    parser.add_argument("--tz", metavar="TZ", help=tz_help)


def _render_text(links, recording, args) -> str:
    from ..views.narrative import narrate

    return narrate(links, recording, lang=args.lang, tz=args.tzinfo)


def _render_json(links, recording, args) -> str:
    from ..views.narrative import links_to_json

    data = links_to_json(links, recording, lang=args.lang, tz=args.tzinfo)
    data["unlinked"] += getattr(args, "unread", ())  # lines the importers could not read
    return json.dumps(data, indent=2)


def _render_markdown(links, recording, args) -> str:
    from ..views.markdown import render_markdown  # the ladder helper's: writes <stem>.png beside CAPTURE

    return render_markdown(links, recording, args)


# Output formats other than text: flag (its dest in args) -> (help, renderer).
# A renderer takes (links, recording, args) and returns the text to print;
# `args.lang`, `args.tzinfo` and `args.capture` are there for it. The first
# flag set wins, text otherwise. A new view adds its format with one row.
FORMATS: dict[str, tuple[str, Callable]] = {
    "json": ("print DESIGN.md's JSON contract instead of text", _render_json),
    "markdown": ("write the ladder next to CAPTURE (<stem>.png) and print a Markdown snippet: "
                 "the image link and the paragraphs", _render_markdown),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_evidence_arguments(parser, tz_help="time zone for log lines without one, and for printed times "
                                          "(default UTC), e.g. Europe/Paris or +02:00")
    for flag, (help_text, _render) in FORMATS.items():
        parser.add_argument(f"--{flag}", action="store_true", help=help_text)
    parser.add_argument("--lang", choices=LANGS, type=str.lower,
                        help="quote each errno as this language prints it")


def parse_tz(text: Optional[str]) -> Optional[dt.tzinfo]:
    """`Europe/Paris`, `UTC`, `+02:00` or `-0500` as a tzinfo (None: UTC); the
    log importer's own parser, so log lines and printed times agree."""
    from ..formats.applog import parse_tz as parse

    return parse(text)


def load(args: argparse.Namespace):
    """The recording from CAPTURE plus the calls of every --strace/--log file."""
    from ..formats.bundle import load_recording

    recording = load_recording(args.capture)
    extra = []
    for path in args.strace:
        extra.extend(_import("strace", path, args))
    for path in args.log:
        extra.extend(_import("log", path, args))
    return recording.with_calls(extra) if extra else recording


def _import(kind: str, path: str, args: argparse.Namespace):
    from ..formats.applog import read_log_file
    from ..formats.strace import read_strace_file

    reader = read_strace_file if kind == "strace" else read_log_file
    try:
        result = reader(path, tz=args.tzinfo)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a {kind} file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    for problem in result.problems:
        print(f"tcpteardown explain: warning: {problem}", file=sys.stderr)
    args.unread = getattr(args, "unread", ()) + result.unread
    return result.calls


def run(args: argparse.Namespace) -> int:
    from ..analysis.completeness import banner
    from ..analysis.correlate import correlate

    args.tzinfo = parse_tz(args.tz)
    recording = load(args)
    sys.stderr.write(banner(recording))  # anything missing from the evidence: said first
    links = correlate(recording)
    render = next((fn for flag, (_help, fn) in FORMATS.items() if getattr(args, flag, False)), _render_text)
    if not recording.calls and (args.strace or args.log):
        print("tcpteardown explain: note: the --strace/--log files gave no socket call (see the warnings "
              "above)", file=sys.stderr)
    elif not recording.calls:
        print("tcpteardown explain: note: this capture holds packets only, no socket calls; pass "
              "--strace FILE or --log FILE (or explain a bundle from `tcpteardown run`/`record`) "
              "to link failing calls to segments", file=sys.stderr)
    print(render(links, recording, args))
    _say_unlinked(links, args)
    return 0


def _say_unlinked(links, args) -> None:
    """Every log/strace line that could not be linked, with where and why, on
    stderr (many with one why: their count and first lines; --json lists all)."""
    from ..analysis.correlate import unlinked
    from ..formats.imported import Problems

    told = Problems()
    for entry in list(unlinked(links)) + list(getattr(args, "unread", ())):
        path, _, line = (entry["where"] or f"{entry['source']}:0").rpartition(":")
        told.add(path, int(line) if line.isdigit() else 0, entry["why"])
    for text in told.lines():
        print(f"tcpteardown explain: unlinked: {text}", file=sys.stderr)
