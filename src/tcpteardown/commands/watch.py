"""`tcpteardown watch`: one line per TCP teardown on this host, as it happens.

Host-wide (every interface, IPv4 and IPv6): the kernel witness's four
tracepoints in a private tracefs instance, read as a stream from its
``trace_pipe``; each RST or FIN becomes one line (capture.watch.lines)
naming both ends and their processes (capture.watch.owners: from the
socket, never the CPU's current task), who sent it, the kernel's reason,
the TCP state it hit and the errno the owner's next call will see (the
rule table `explain` uses). ``--json`` writes the same as JSON lines.

Ends on --count/--duration, Ctrl-C, SIGTERM or a closed stdout, with a
summary on stderr (events, lines, what the kernel's ring buffer dropped:
never silent). Needs root: tracefs is root's.

Never: write to the global trace buffer, leave the instance or the
background thread behind, or name a process it did not find holding the
socket.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from .. import signals
from ..errors import UserError

HELP = "watch the whole host: one line per RST or FIN, with the process, the kernel's reason and the errno to come"

KINDS = ("rst", "fin", "refused")
LOSS_CHECK_S = 5.0  # how often a long watch looks at the kernel's overrun count (said at once when it grew)
DRAIN_SECONDS = 5.0  # at the end, how long we keep reading what the kernel had already buffered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", metavar="PORT[,PORT...]", action="append", default=[],
                        help="only teardowns with one end on these TCP ports")
    parser.add_argument("--pid", metavar="PID", type=int, action="append", default=[],
                        help="only teardowns of sockets this process holds (either end)")
    parser.add_argument("--comm", metavar="NAME", action="append", default=[],
                        help="only teardowns of sockets a process of this command name holds (either end)")
    parser.add_argument("--host", metavar="ADDRESS", action="append", default=[],
                        help="only teardowns with one end at this IP address")
    parser.add_argument("--only", metavar="KIND", action="append", choices=KINDS, default=[],
                        help="only this kind: rst, fin or refused (repeatable; default all three)")
    parser.add_argument("--json", action="store_true", help="JSON lines, one object per teardown")
    parser.add_argument("--tz", metavar="TZ", help="time zone of the printed clock times (default UTC), "
                                                   "e.g. Europe/Paris or +02:00")
    parser.add_argument("--count", metavar="N", type=int, help="stop after N lines")
    parser.add_argument("--duration", metavar="S", type=float, help="stop after S seconds")
    parser.add_argument("--keep", metavar="DIR",
                        help="flight recorder: keep recent packets per connection and write a bundle "
                             "into DIR at each RST")
    parser.add_argument("--keep-mb", metavar="MB", type=float, default=None,
                        help="memory bound of the flight recorder's packets and kernel events (default 8 MB)")
    parser.add_argument("--keep-max", metavar="N", type=int, default=None,
                        help="bundles of this run kept in DIR (default 1000); beyond, its oldest are removed")


@dataclass
class Filters:
    ports: frozenset = frozenset()
    pids: frozenset = frozenset()
    comms: frozenset = frozenset()
    hosts: frozenset = frozenset()
    kinds: frozenset = frozenset(KINDS)

    def wants(self, teardown) -> bool:
        ends = (teardown.local, teardown.remote)
        if teardown.kind not in self.kinds:
            return False
        if self.ports and not any(end.port in self.ports for end in ends):
            return False
        if self.hosts and not any(end.host in self.hosts for end in ends):
            return False
        if self.pids and not {teardown.receiver_pid, teardown.sender_pid} & self.pids:
            return False
        if self.comms and not {teardown.receiver_comm, teardown.sender_comm} & self.comms:
            return False
        return True


def parse_filters(args: argparse.Namespace) -> Filters:
    from .record import parse_ports

    hosts = set()
    for text in args.host:
        try:
            hosts.add(ipaddress.ip_address(text).compressed)
        except ValueError:
            raise UserError(f"--host {text!r}: expected an IP address such as 10.0.0.5 or ::1") from None
    if args.count is not None and args.count < 1:
        raise UserError(f"--count {args.count}: expected a number of lines of 1 or more")
    if args.duration is not None and args.duration <= 0:
        raise UserError(f"--duration {args.duration}: expected a number of seconds above 0")
    return Filters(ports=frozenset(parse_ports(args.port)), pids=frozenset(args.pid),
                   comms=frozenset(args.comm), hosts=frozenset(hosts), kinds=frozenset(args.only or KINDS))


@dataclass
class Tally:
    events: int = 0
    teardowns: int = 0
    shown: int = 0
    by_kind: dict = field(default_factory=dict)


def _require_root_and_tracefs():
    from ..capture import platform as host
    from ..capture.kernel import KernelWitness

    if not host.IS_LINUX:
        raise UserError("watch reads Linux's TCP tracepoints (tracefs): it runs on Linux only")
    if os.geteuid() != 0:
        raise UserError("watch needs root: it reads the kernel's TCP tracepoints from tracefs "
                        "(run it as root, e.g. sudo tcpteardown watch)")
    return KernelWitness


def run(args: argparse.Namespace) -> int:
    KernelWitness = _require_root_and_tracefs()
    from ..capture.watch.lines import render_line, to_json
    from ..capture.watch.owners import Owners
    from ..capture.watch.stream import TracePipe
    from ..capture.watch.teardowns import Tracker
    from .explain import parse_tz

    filters = parse_filters(args)
    tz = parse_tz(args.tz)
    witness = KernelWitness(sorted(filters.ports))
    if not witness.available:
        raise UserError(f"no kernel witness: {witness.reason}")
    recorder = _flight_recorder(args, filters)
    tally, tracker, owners = Tally(), Tracker(), Owners()
    started = time.monotonic()
    deadline = started + args.duration if args.duration else None
    interrupted: Optional[BaseException] = None
    stdout_closed = False
    overruns = unread = unparsed = 0

    def emit(teardowns) -> bool:
        """Print what passes the filters; False once --count is reached."""
        for teardown in teardowns:
            teardown = owners.resolve(teardown)
            tally.teardowns += 1
            if not filters.wants(teardown):
                continue
            if recorder is not None and teardown.kind != "fin":
                recorder.bundle_for(teardown)
            tally.shown += 1
            tally.by_kind[teardown.kind] = tally.by_kind.get(teardown.kind, 0) + 1
            sys.stdout.write((json.dumps(to_json(teardown, tz)) if args.json else render_line(teardown, tz)) + "\n")
            sys.stdout.flush()
            if args.count is not None and tally.shown >= args.count:
                return False
        return True

    try:
        with witness:
            if not witness.running:
                raise UserError(f"no kernel witness: {witness.reason}")
            owners.start()
            if recorder is not None:
                recorder.start(witness)
            _say_start(witness, filters, recorder)
            with TracePipe(witness, tee=recorder.note_chunk if recorder is not None else None) as pipe:
                def take(batch) -> bool:
                    """Feed one batch, print what is complete; False once --count is reached."""
                    for event, process_context in batch:
                        tally.events += 1
                        tracker.feed(event, process_context)
                        if process_context:
                            _learn_owner(owners, event)
                    owners.forget(tracker.take_renewed())
                    if tracker.take_established():
                        owners.ask()
                    # The trace's own clock decides while events flow (a reader behind by more
                    # than the window must not split one RST); the wall clock when it is quiet.
                    now = batch[-1][0].time_ns if batch else time.time_ns()
                    if recorder is not None:
                        recorder.pump()
                    return emit(tracker.flush(now))

                counted_out = False
                losses = _LossReport(witness)
                try:
                    for batch in pipe.batches():
                        if not take(batch):
                            counted_out = True
                            break
                        losses.check()
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                except KeyboardInterrupt as exc:
                    interrupted = exc
                if not counted_out:  # what the kernel buffered before the end is still ours: read it
                    drain_until = time.monotonic() + DRAIN_SECONDS
                    for batch in pipe.batches():
                        if not batch or not take(batch) or time.monotonic() >= drain_until:
                            break
                    emit(tracker.flush(None))
                unparsed = pipe.unparsed
                # After the Nth line, what is still buffered came later: not missed, just not asked for.
                unread = 0 if counted_out else witness.unread()
            overruns = witness.overruns()
            if recorder is not None:
                recorder.note_lost(force=True)
    except KeyboardInterrupt as exc:
        interrupted = exc
    except BrokenPipeError:
        stdout_closed = True
        _silence_stdout()
    finally:
        owners.stop()
        if recorder is not None:
            recorder.stop()
    _say_summary(tally, overruns + unread, unparsed, time.monotonic() - started, interrupted, stdout_closed,
                 recorder)
    return signals.exit_status(interrupted) if interrupted is not None else 0


class _LossReport:
    """While it runs, not only at the end: a line on stderr as soon as the kernel's ring buffer
    has overrun (checked every LOSS_CHECK_S), so a watch left running says when it went blind."""

    def __init__(self, witness):
        self.witness = witness
        self.said = 0
        self.checked = time.monotonic()

    def check(self) -> None:
        now = time.monotonic()
        if now - self.checked < LOSS_CHECK_S:
            return
        missed = self.witness.overruns()
        if missed > self.said:
            print(f"tcpteardown watch: missed {missed - self.said} events in the last {now - self.checked:.0f} s "
                  f"(the kernel's ring buffer overran: their lines are lost; {missed} so far)", file=sys.stderr)
            sys.stderr.flush()
            self.said = missed
        self.checked = now


def _learn_owner(owners, event) -> None:
    """A process-context event on a socket with both ports: its task holds the socket."""
    if event.name != "sock:inet_sock_set_state" or event.src is None or event.dst is None:
        return
    if event.src.port and event.dst.port and event.get("pid"):
        from ..capture.watch.teardowns import Task

        owners.learn((event.src, event.dst), Task(int(event.get("pid")), event.get("comm") or "?"))


def _flight_recorder(args, filters):
    if not args.keep:
        if args.keep_mb is not None or args.keep_max is not None:
            raise UserError("--keep-mb and --keep-max set the flight recorder: they need --keep DIR")
        return None
    from ..capture.watch.recorder import DEFAULT_KEEP_MAX, FlightRecorder

    return FlightRecorder(args.keep, megabytes=args.keep_mb, ports=filters.ports,
                          keep_max=DEFAULT_KEEP_MAX if args.keep_max is None else args.keep_max)


def _say_start(witness, filters, recorder) -> None:
    scope = "every interface, IPv4 and IPv6"
    if filters.ports:
        scope += f", ports {','.join(map(str, sorted(filters.ports)))}"
    print(f"tcpteardown watch: watching TCP teardowns on {scope} (tracefs instance {witness.instance.name}, "
          f"{witness.buffer_size_kb} KB per CPU); Ctrl-C stops", file=sys.stderr)
    if witness.removed_stale:
        print(f"tcpteardown watch: removed {len(witness.removed_stale)} instance(s) left by a killed run: "
              f"{', '.join(witness.removed_stale)}", file=sys.stderr)
    if not witness.reasons_known:
        print("tcpteardown watch: this kernel's tcp_send_reset has no reason field (Linux < 6.10): "
              "reasons will be missing", file=sys.stderr)
    if recorder is not None:
        print(f"tcpteardown watch: {recorder.describe()}", file=sys.stderr)
    sys.stderr.flush()


def _say_summary(tally, overruns, unparsed, seconds, interrupted, stdout_closed, recorder) -> None:
    why = ("stdout closed" if stdout_closed else f"{signals.name_of(interrupted)}" if interrupted else "done")
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(tally.by_kind.items())) or "none"
    parts = [f"{why} after {seconds:.1f} s: {tally.shown} lines ({kinds}) of {tally.teardowns} teardowns "
             f"from {tally.events} kernel events",
             f"missed {overruns} events (the kernel's ring buffer overran, or they were still unread "
             "at the end)" if overruns else "missed 0 events"]
    if unparsed:
        parts.append(f"{unparsed} trace lines not understood")
    if recorder is not None:
        parts.append(recorder.summary())
    try:
        print("tcpteardown watch: " + "; ".join(parts), file=sys.stderr)
    except (BrokenPipeError, ValueError):
        pass


def _silence_stdout() -> None:
    """Our reader went away (`watch | head`): later writes and the exit flush must not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
