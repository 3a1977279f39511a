"""`tcpteardown` and `python -m tcpteardown`: argument parsing and dispatch.

Each subcommand lives in its own module under `tcpteardown.commands` with
`HELP`, `add_arguments(parser)` and `run(args) -> int`. Exit codes are a
contract (DESIGN.md): 0 success, 1 "ran, but the answer is no", 2 usage or
input error. User errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from . import __version__
from .errors import UserError
from .signals import exit_status, name_of, unwinding

# Order is the order `tcpteardown --help` lists them in.
COMMANDS = ("list", "run", "explain", "plot", "census", "diff", "record", "watch")

EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2


def _command_module(name: str):
    return importlib.import_module(f"tcpteardown.commands.{name.replace('-', '_')}")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole parser, or with `only` just that command's (importing one
    command module, not seven: `census` starts 0.15 s sooner)."""
    parser = argparse.ArgumentParser(
        prog="tcpteardown",
        description="Which segment made this socket call fail? Record, explain and plot TCP teardowns.",
    )
    parser.add_argument("--version", action="version", version=f"tcpteardown {__version__}")
    # Not dest="command": `record -- CMD` has a positional of that name.
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        try:
            module = _command_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == f"tcpteardown.commands.{name}":
                continue  # not built yet
            raise
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .mplconfig import settle_matplotlib_dirs

    settle_matplotlib_dirs()  # before scapy or a view imports matplotlib
    _print_file_names_as_given()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `tcpteardown COMMAND ...` needs only its own module; anything else (--help,
    # a typo, no command) gets the full parser and its full message.
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    from . import reaper

    reaper.enable()  # undoes what the command set up, should it be SIGKILLed
    try:
        with unwinding():  # SIGTERM/SIGHUP clean up like Ctrl-C
            return int(args._run(args) or 0)
    except UserError as exc:
        print(f"tcpteardown {args.subcommand}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print(f"tcpteardown {args.subcommand}: interrupted ({name_of(exc)})", file=sys.stderr)
        return exit_status(exc)
    except BrokenPipeError:
        # Our own stdout went away (`tcpteardown ... | head`): not an error.
        sys.stderr.close()
        return EXIT_OK
    finally:
        reaper.disable()


def _print_file_names_as_given() -> None:
    """A file name that is not valid UTF-8 prints as the bytes the user typed,
    not as Python's escape (`bad\\udcffname.pcap`); other characters the
    terminal cannot show still print escaped."""
    import codecs

    def as_given(error: UnicodeError):
        if isinstance(error, UnicodeEncodeError) and all(
                0xDC80 <= ord(c) <= 0xDCFF for c in error.object[error.start:error.end]):
            return codecs.lookup_error("surrogateescape")(error)
        return codecs.lookup_error("backslashreplace")(error)

    codecs.register_error("tcpteardown-as-given", as_given)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="tcpteardown-as-given")
