"""`tcpteardown explain CAPTURE`: which segment made each socket call fail, in words or JSON.

CAPTURE is a bundle (socket calls included) or any pcap/pcapng. Socket calls
can be added from an strace log (`--strace`) and from application log lines
(`--log`); lines those importers cannot read are reported on stderr with
their line numbers and skipped. The text output is one paragraph per link
(`views.narrative.paragraph`); `--json` prints DESIGN.md's contract
(`views.contracts.links`).

Sockets no call covers (all of them, in a plain capture) get the links
`analysis.predict` makes from the packets alone, with the rules of the OS
`formats.os_guess` names from the capture (`--os` overrides it).

Output formats are a table (`FORMATS`): another view (the ladder helper's
`--markdown`) is one row with its flag, help and a renderer taking
`(links, recording, args)`, without touching the rest.

Exit codes: 0 when it ran (whatever it found), 2 on bad input, 3 when a capture
set (several files, a directory, a glob) was read without a damaged member.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Callable, Optional

from .. import errnos
from ..analysis.connections import CONN_HELP
from ..errors import UserError
from ..formats.evidence import NEAR_WINDOW_NS
from . import add_json_schema_argument

HELP = "link each failing socket call to the FIN or RST that caused it (text or --json)"

LANGS = errnos.LANG_CHOICES


def add_evidence_arguments(parser: argparse.ArgumentParser, *, tz_help: str,
                           conn_help: str = "explain only the calls of one connection") -> None:
    """CAPTURE and the socket calls added to it: shared by explain and plot."""
    parser.add_argument("capture", metavar="CAPTURE", nargs="+",
                        help="a tcpteardown bundle, or any pcap/pcapng file; or several, a directory or a glob: "
                             "a capture set read as one stream (.gz, .xz, .zst too)")
    parser.add_argument("--strace", metavar="FILE", action="append", default=[],
                        help="socket calls from an strace log (strace -f -ttt -T -yy); may repeat")
    parser.add_argument("--log", metavar="FILE", action="append", default=[],
                        help="socket errors from application log lines (Go, Python, Java, Node, curl); may repeat")
    parser.add_argument("--tz", metavar="TZ", help=tz_help)
    parser.add_argument("--year", metavar="YEAR", type=int,
                        help="the year of --log lines that carry none (syslog); default: the log file's "
                             "modification time")
    parser.add_argument("--conn", metavar="CONN", help=f"{conn_help}: {CONN_HELP}")
    parser.add_argument("--since", metavar="TIME",
                        help="only packets and calls from TIME on: epoch seconds (1700000000.25) or ISO 8601 "
                             "(2024-05-01T12:00:00, in --tz)")
    parser.add_argument("--until", metavar="TIME", help="only packets and calls up to TIME (as --since)")
    parser.add_argument("--window", metavar="SECONDS", type=float, default=NEAR_WINDOW_NS / 1e9,
                        help="on a big capture, a failing call that names no 4-tuple is looked for among the "
                             "connections with packets this many seconds before it (default %(default)g)")


def _explanation(links, recording, args):
    from ..api import Explanation
    from ..formats.os_guess import guess_os

    guess = getattr(args, "os_guess", None) or guess_os(recording)
    return Explanation(recording, tuple(links), guess, args.conn, tz=args.tzinfo)


def _render_text(links, recording, args) -> str:
    # Many clean closes are one summary (views.clean_closes); --conn tells its connection in full.
    return _explanation(links, recording, args).text(lang=args.lang, tz=args.tzinfo)


def _render_json(links, recording, args) -> str:
    document = _explanation(links, recording, args).document(lang=args.lang, tz=args.tzinfo,
                                                              unread=getattr(args, "unread", ()))
    return json.dumps(document, indent=2)


def _render_markdown(links, recording, args) -> str:
    from ..views.markdown import render_markdown  # Mermaid embedded; with --image, <stem>.png beside CAPTURE

    return render_markdown(links, recording, args)


# Output formats other than text: flag (its dest in args) -> (help, renderer).
# A renderer takes (links, recording, args) and returns the text to print;
# `args.lang`, `args.tzinfo` and `args.capture` are there for it. The first
# flag set wins, text otherwise. A new view adds its format with one row.
FORMATS: dict[str, tuple[str, Callable]] = {
    "json": ("print DESIGN.md's JSON contract instead of text", _render_json),
    "markdown": ("print a Markdown snippet for a write-up: the ladder as a Mermaid diagram, then each "
                 "paragraph under a heading with its frames (--image: a PNG next to CAPTURE, linked)",
                 _render_markdown),
    "mermaid": ("the same as --markdown (the Mermaid diagram is embedded by default)", _render_markdown),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_evidence_arguments(parser, tz_help="time zone for log lines without one, and for printed times "
                                          "(default UTC), e.g. Europe/Paris or +02:00")
    for flag, (help_text, _render) in FORMATS.items():
        parser.add_argument(f"--{flag}", action="store_true", help=help_text)
    add_json_schema_argument(parser, "explain")
    parser.add_argument("--image", action="store_true",
                        help="with --markdown: draw the ladder as <stem>.png next to CAPTURE and link it "
                             "instead of embedding Mermaid")
    parser.add_argument("--lang", choices=LANGS, type=str.lower,
                        help="quote each errno as this language prints it")
    parser.add_argument("--os", choices=("linux", "darwin", "freebsd", "windows", "unknown"), type=str.lower,
                        help="whose kernel rules to predict with (default: the OS the packets show)")


def parse_tz(text: Optional[str]) -> Optional[dt.tzinfo]:
    """`Europe/Paris`, `UTC`, `+02:00` or `-0500` as a tzinfo (None: UTC); the
    log importer's own parser, so log lines and printed times agree."""
    from ..formats.applog import parse_tz as parse

    return parse(text)


# Exit code: a capture set was read without (all of) a damaged or unreadable member (as census's).
PARTIAL = 3


def capture_names(args: argparse.Namespace) -> None:
    """CAPTURE as given (one name, or a set's names) in `args.captures`; `args.capture`
    becomes the one name the views use (a file beside which to write, a title): a
    glob's first match."""
    if getattr(args, "captures", None) is not None:
        return
    names = args.capture if isinstance(args.capture, list) else [args.capture]
    args.captures = names
    first = names[0]
    if not os.path.exists(first) and set("*?[") & set(first):
        from ..formats.capture_set import expand_members

        first = expand_members([first])[0]
    args.capture = first


def load(args: argparse.Namespace, *, whole: bool = False):
    """The recording from CAPTURE plus the calls of every --strace/--log file.

    A big plain capture is read selectively (`formats.evidence`): only the
    connections --conn names, or those of the failing calls; `whole` reads
    everything (the overview needs every connection). A capture set's damaged
    members and overlaps are said here, one line each, as census says them
    (`args.partial`: the exit code is PARTIAL)."""
    from ..analysis.connections import parse_conn
    from ..formats.evidence import interest_for, load_evidence

    capture_names(args)

    selector = parse_conn(getattr(args, "conn", None))
    since, until = parse_time(args.since, args.tzinfo), parse_time(args.until, args.tzinfo)
    if since is not None and until is not None and since > until:
        raise UserError(f"--since {args.since} is after --until {args.until}")
    if args.window is None or not args.window >= 0:
        raise UserError(f"--window must be a number of seconds >= 0, not {args.window}")

    def select(calls):
        from ..analysis.correlate import tolerance

        return interest_for(calls, number=selector.number, endpoints=selector.endpoints, port=selector.port,
                            since=since, until=until, window_ns=int(args.window * 1e9),
                            late_ns=lambda call: tolerance(call)[0])

    def unread(entries) -> None:  # lines the importers could not read: listed with the unlinked ones
        args.unread = getattr(args, "unread", ()) + tuple(entries)

    recording = load_evidence(args.captures, strace=args.strace, logs=args.log, tz=args.tzinfo, year=args.year,
                              warn=warn, unread=unread, select=None if whole else select)
    command = f"tcpteardown {getattr(args, 'subcommand', None) or 'explain'}"
    args.partial = False
    for key, line in recording.metadata.extra:
        if key == "partial":
            args.partial = True
            print(f"{command}: partial: {line}", file=sys.stderr)
        elif key == "set_note":
            print(f"{command}: warning: {line}", file=sys.stderr)
    read = recording.metadata.get("selected")
    if read is not None:
        print(f"{command}: note: a big capture: read {read}", file=sys.stderr)
        if selector.number is not None:
            args.conn = "1"  # the one connection read is the one --conn N named
    return recording


def parse_time(text: Optional[str], tz: Optional[dt.tzinfo]) -> Optional[int]:
    """--since/--until: epoch seconds or ISO 8601 (naive: in `tz`, default UTC) -> ns."""
    import decimal

    if text is None:
        return None
    try:
        return int(decimal.Decimal(text.strip()) * 1_000_000_000)
    except (decimal.InvalidOperation, ValueError):
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip())
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz or dt.timezone.utc)
        return (when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1) * 1000
    except (ValueError, OverflowError):
        raise UserError(f"time {text!r}: expected epoch seconds (1700000000.25) or ISO 8601 "
                        "(2024-05-01T12:00:00 or 2024-05-01T12:00:00+02:00)") from None


def warn(text: str) -> None:
    print(f"tcpteardown explain: warning: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..units import times_in

    args.tzinfo = parse_tz(args.tz)
    with times_in(args.tzinfo):  # every clock time printed, the analysis's too, in --tz
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..analysis.completeness import banner
    from ..api import explain

    recording = load(args)
    sys.stderr.write(banner(recording))  # anything missing from the evidence: said first
    if not recording.segments and not recording.calls:  # as census, plot and diff: nothing to work on
        span = " between --since and --until" if args.since or args.until else ""
        raise UserError(f"{args.capture}: no TCP segments and no socket calls could be read{span}: "
                        "nothing to explain")
    # the OS named from the packets (or --os), the real calls linked, the rest predicted (api.explain)
    explanation = explain(recording, os=getattr(args, "os", None), conn=args.conn, tz=args.tzinfo)
    for note in explanation.notes:
        print(f"tcpteardown explain: note: {note}", file=sys.stderr)
    recording, links, args.os_guess = explanation.recording, explanation.links, explanation.os_guess
    render = next((fn for flag, (_help, fn) in FORMATS.items() if getattr(args, flag, False)), _render_text)
    if not recording.calls:
        whose = args.os_guess.display or args.os_guess.name
        given = ("the --strace/--log files gave no socket call (see the warnings above)"
                 if args.strace or args.log else "this capture holds packets only, no socket calls")
        advice = ("" if args.strace or args.log else "; pass --strace FILE or --log FILE (or explain a bundle "
                  "from `tcpteardown run`/`record`) to link real calls")
        print(f"tcpteardown explain: note: {given}; what each side saw is predicted from the packets "
              f"({whose} rules){advice}", file=sys.stderr)
    print(render(links, recording, args))
    _say_unlinked(links, args)
    return PARTIAL if args.partial else 0


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
