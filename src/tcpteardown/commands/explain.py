"""`tcpteardown explain CAPTURE`: which segment made each socket call fail, in words or JSON.

CAPTURE is a bundle (socket calls included) or any pcap/pcapng. Socket calls
can be added from an strace log (`--strace`) and from application log lines
(`--log`); lines those importers cannot read are reported on stderr with
their line numbers and skipped. The text output is one paragraph per link
(`views.narrative.paragraph`); `--json` prints DESIGN.md's contract.

Sockets no call covers (all of them, in a plain capture) get the links
`analysis.predict` makes from the packets alone, with the rules of the OS
`formats.os_guess` names from the capture (`--os` overrides it).

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

    guess = getattr(args, "os_guess", None)
    return json.dumps(links_to_json(links, recording, lang=args.lang, tz=args.tzinfo,
                                    os=guess.to_json() if guess is not None else None), indent=2)


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
    return result.calls


def _packets_alone(recording, args: argparse.Namespace):
    """Name the OS from the packets (or --os), correlate the real calls, and add
    the predictions for what no real call covers (formats.os_guess,
    analysis.predict): (recording, links). Sets args.os_guess for the JSON."""
    from dataclasses import replace

    from ..analysis.correlate import correlate
    from ..analysis.predict import TABLE_OSES, predict
    from ..formats.os_guess import DISPLAY, guess_os

    guess = args.os_guess = guess_os(recording, override=getattr(args, "os", None))
    if guess.display and (guess.overridden or not recording.metadata.os):
        recording = replace(recording, metadata=replace(recording.metadata, os=guess.display))
    os_of = {host: DISPLAY.get(name, name) for host, name in guess.hosts.items()}
    real = correlate(recording)
    predicted = predict(recording, guess.display or "unknown", os_of=os_of, real_links=real)
    if predicted and guess.display not in TABLE_OSES:
        print(f"tcpteardown explain: note: no rule table for {guess.name}: only connect() outcomes "
              "are predicted", file=sys.stderr)
    return recording, real + predicted


def run(args: argparse.Namespace) -> int:
    from ..analysis.completeness import banner

    args.tzinfo = parse_tz(args.tz)
    recording = load(args)
    sys.stderr.write(banner(recording))  # anything missing from the evidence: said first
    recording, links = _packets_alone(recording, args)
    render = next((fn for flag, (_help, fn) in FORMATS.items() if getattr(args, flag, False)), _render_text)
    if not recording.calls:
        whose = args.os_guess.display or args.os_guess.name
        print("tcpteardown explain: note: this capture holds packets only, no socket calls; what each side "
              f"saw is predicted from the packets ({whose} rules); pass --strace FILE or --log FILE "
              "(or explain a bundle from `tcpteardown run`/`record`) to link real calls", file=sys.stderr)
    print(render(links, recording, args))
    return 0
