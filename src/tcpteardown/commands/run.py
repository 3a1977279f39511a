"""`tcpteardown run NAME`: play a scenario on loopback, capture it, judge it.

One name prints the whole story (calls, segments, expected vs observed);
several names, or `--all`, play them one after another in this one process
(scapy and the kernel witness load once) and print one summary line each.
Exit 1 when any scenario did something other than what it expects.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from . import add_json_schema_argument

HELP = "run a scenario on real loopback sockets, capture it, and compare with what it expects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="scenario name(s) (see `tcpteardown list`); several: one summary line each")
    parser.add_argument("--all", action="store_true",
                        help="every scenario of the library this host can run, one summary line each")
    parser.add_argument("-o", "--output", metavar="FILE.pcapng", help="write the recording as a bundle (one NAME)")
    parser.add_argument("--ipv6", action="store_true", help="run over ::1 instead of 127.0.0.1")
    parser.add_argument("--json", action="store_true", help="print the run as JSON")
    add_json_schema_argument(parser, "run")
    parser.add_argument("--no-witness", action="store_true",
                        help="do not read kernel tracepoints even when tracefs is available")
    parser.add_argument("--capture", choices=("scapy", "tcpdump", "auto"), default="auto",
                        help="capture backend (default auto: scapy for scenarios; tcpdump keeps up under load)")
    parser.add_argument("--delay", type=float, metavar="MS", default=None,
                        help="run in a fresh network namespace whose lo delays every segment by MS "
                             "milliseconds (netem), so the ladder shows round trips; 0: the namespace without delay")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    if args.all and args.names:
        raise UserError("give scenario names or --all, not both")
    if not args.all and not args.names:
        raise UserError("which scenario? give a NAME (see `tcpteardown list`) or --all")
    if args.all or len(args.names) > 1:
        if args.output:
            raise UserError("-o writes one bundle: give one NAME with it")
        return _run_many(args)
    return _run_one(args, args.names[0])


def _check_delay(args) -> None:
    from ..errors import UserError

    if args.delay is not None:
        from ..capture.netns import netem_problem

        if args.delay < 0:
            raise UserError(f"--delay must be 0 ms or more, not {args.delay:g}")
        problem = netem_problem() if args.delay > 0 else None  # --delay 0: a private namespace only
        if problem:
            raise UserError(f"--delay {args.delay:g} cannot work here: {problem}")


def _play(args, name: str):
    from ..errors import NoCapturePrivilege
    from ..scenarios import run_scenario

    try:
        return run_scenario(name, family="ipv6" if args.ipv6 else "ipv4", witness=not args.no_witness,
                            capture_backend=args.capture, delay_ms=args.delay)
    except NoCapturePrivilege as exc:
        raise NoCapturePrivilege(f"cannot capture: {exc}") from None


def _run_one(args, name: str) -> int:
    from ..errors import UserError
    from ..scenarios import get_scenario
    from ..scenarios.needs import can_run
    from ..views.packet_comments import write_annotated_bundle
    from ..views.contracts.run import run_json
    from ..views.timeline import describe_run

    scenario = get_scenario(name)
    problem = can_run(scenario, capture=False)
    if problem:
        raise UserError(f"scenario {scenario.name} cannot run here: {problem}")
    _check_delay(args)
    result = _play(args, name)
    bundle = None
    if args.output:
        bundle = str(write_annotated_bundle(Path(args.output), result.recording))
    if args.json:
        print(json.dumps(run_json(result, bundle), indent=2))
    else:
        print(describe_run(result, bundle))
    return 0 if result.matches else 1


def _run_many(args) -> int:
    """Each scenario in turn, in this process; one line each as it finishes."""
    from ..errors import NoCapturePrivilege
    from ..scenarios import all_scenarios, get_scenario
    from ..scenarios.needs import can_run
    from ..views.contracts.run import run_json
    from ..views.timeline import summary_line, unplayable_line

    scenarios = all_scenarios() if args.all else [get_scenario(name) for name in args.names]
    _check_delay(args)
    matched, differed, skipped, results = 0, 0, 0, []
    began = time.monotonic()
    for scenario in scenarios:
        problem = can_run(scenario, capture=False)
        if problem:
            skipped += 1
            line = unplayable_line(scenario.name, f"cannot run here: {problem}")
        else:
            started = time.monotonic()
            try:
                result = _play(args, scenario.name)
            except NoCapturePrivilege:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' answers
                differed += 1
                line = unplayable_line(scenario.name, f"failed: {type(exc).__name__}: {exc}")
            else:
                seconds = time.monotonic() - started
                matched += result.matches
                differed += not result.matches
                results.append(run_json(result, None, seconds))
                line = summary_line(result, seconds)
        if not args.json:
            print(line, flush=True)
    total = time.monotonic() - began
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{len(scenarios)} scenarios ({'ipv6' if args.ipv6 else 'ipv4'}): {matched} as expected, "
              f"{differed} differed" + (f", {skipped} not runnable here" if skipped else "") + f" · {total:.1f} s")
    # A scenario asked for by name that cannot run here is an unanswered question: "no".
    return 1 if differed or (skipped and not args.all) else 0

