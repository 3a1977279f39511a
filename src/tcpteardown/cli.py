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

# Order is the order `tcpteardown --help` lists them in.
COMMANDS = ("list", "run", "explain", "plot", "census", "diff", "record")

EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2


def _command_module(name: str):
    return importlib.import_module(f"tcpteardown.commands.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcpteardown",
        description="Which segment made this socket call fail? Record, explain and plot TCP teardowns.",
    )
    parser.add_argument("--version", action="version", version=f"tcpteardown {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"tcpteardown {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"tcpteardown {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Our own stdout went away (`tcpteardown ... | head`): not an error.
        sys.stderr.close()
        return EXIT_OK
