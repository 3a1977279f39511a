"""`tcpteardown run NAME`: play a scenario on loopback, capture it, judge it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "run a scenario on real loopback sockets, capture it, and compare with what it expects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="scenario name (see `tcpteardown list`)")
    parser.add_argument("-o", "--output", metavar="FILE.pcapng", help="write the recording as a bundle")
    parser.add_argument("--ipv6", action="store_true", help="run over ::1 instead of 127.0.0.1")
    parser.add_argument("--json", action="store_true", help="print the run as JSON")
    parser.add_argument("--no-witness", action="store_true",
                        help="do not read kernel tracepoints even when tracefs is available")
    parser.add_argument("--capture", choices=("scapy", "tcpdump", "auto"), default="auto",
                        help="capture backend (default auto: scapy for scenarios; tcpdump keeps up under load)")
    parser.add_argument("--delay", type=float, metavar="MS", default=None,
                        help="run in a fresh network namespace whose lo delays every segment by MS "
                             "milliseconds (netem), so the ladder shows round trips; 0: the namespace without delay")


def run(args: argparse.Namespace) -> int:
    from ..views.packet_comments import write_annotated_bundle
    from ..scenarios import get_scenario, run_scenario
    from ..scenarios.needs import can_run
    from ..errors import NoCapturePrivilege, UserError
    from ..views.timeline import describe_run

    scenario = get_scenario(args.name)
    problem = can_run(scenario, capture=False)
    if problem:
        raise UserError(f"scenario {scenario.name} cannot run here: {problem}")
    if args.delay is not None:
        from ..capture.netns import netem_problem

        if args.delay < 0:
            raise UserError(f"--delay must be 0 ms or more, not {args.delay:g}")
        problem = netem_problem() if args.delay > 0 else None  # --delay 0: a private namespace only
        if problem:
            raise UserError(f"--delay {args.delay:g} cannot work here: {problem}")
    try:
        result = run_scenario(args.name, family="ipv6" if args.ipv6 else "ipv4", witness=not args.no_witness,
                              capture_backend=args.capture, delay_ms=args.delay)
    except NoCapturePrivilege as exc:
        raise NoCapturePrivilege(f"cannot capture: {exc}") from None
    bundle = None
    if args.output:
        bundle = str(write_annotated_bundle(Path(args.output), result.recording))
    if args.json:
        print(json.dumps(run_to_json(result, bundle), indent=2))
    else:
        print(describe_run(result, bundle))
    return 0 if result.matches else 1


def run_to_json(result, bundle) -> dict:
    from ..analysis.relative import relative_numbers

    rec = result.recording
    relative = relative_numbers(rec.segments)
    return {
        "scenario": result.scenario.name,
        "family": result.family,
        "matches": result.matches,
        "mismatches": list(result.mismatches),
        "expected": [_outcome(o) for o in (result.expected.outcomes if result.expected else ())],
        "observed": [_outcome(o) for o in result.observed],
        "calls": [{"role": c.role, "op": c.op, "start": c.start_ns / 1e9, "end": c.end_ns / 1e9,
                   "result": c.result, "errno": c.errno if c.errno else ("EOF" if c.is_eof else None),
                   "fd": c.fd, "local": _ep(c.local), "remote": _ep(c.remote)} for c in rec.calls],
        "segments": [{"frame": s.frame, "time": s.time_ns / 1e9, "src": str(s.src), "dst": str(s.dst),
                      "flags": s.flags.render(), "seq": relative[s.frame][0], "ack": relative[s.frame][1],
                      "len": s.payload_len, "reason": s.reset_reason} for s in rec.segments],
        "metadata": {"os": rec.metadata.os, "kernel": rec.metadata.kernel, "capture": rec.metadata.capture},
        "bundle": bundle,
    }


def _outcome(o) -> dict:
    return {"role": o.role, "op": o.op, "outcome": o.outcome, "cause": o.cause}


def _ep(endpoint):
    return None if endpoint is None else str(endpoint)
