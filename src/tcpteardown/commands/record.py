"""`tcpteardown record [-o FILE.pcapng] [--ports P,...] -- CMD [ARGS]`: record any program.

Runs CMD with its socket calls traced by a bpftrace script (the default
where it can run, see ``--calls``) or under ``strace -f -ttt -T -y
--seccomp-bpf -e trace=...`` (only the syscalls the links, ladder and
event loops use, stopped on in the kernel; an strace too old for
--seccomp-bpf is said once and traces the same set without it), captures the
TCP it uses with tcpdump on every interface (``-i any``: loopback, veths,
real NICs; ``--iface`` picks one), keeps the program's own stderr lines as
log evidence (each stamped when it arrived), and, on Linux as root, lets
the kernel witness say why each RST was sent; then writes ONE bundle that
`explain` and `plot` read like a scenario's.

Ports: with ``--ports`` only those are captured and witnessed. Without it,
all loopback TCP is captured and all TCP tracepoints witnessed while CMD
runs, and afterwards only the connections of the ports CMD itself used (the
remote port of its connects, the local port of its accepts, both ends of
any other call on a TCP socket) are kept.

The exit status is CMD's (128+N when a signal N killed it). Ctrl-C
interrupts CMD (SIGINT), keeps what was recorded, writes the bundle and
exits 130. By default (``--calls auto``) and with ``--calls ebpf`` the
socket calls come from a bpftrace script (capture/ebpf_calls.py), which
never stops the program; where it cannot run (not root, no bpftrace, no
BTF), and with ``--calls strace``, from strace.
Problems of our own (no strace, no capture privilege, no such
program) are user errors: one line, exit 2.

Never: run CMD as anything other than what it is (no shell is added), leave
strace, tcpdump, CMD or a tracefs instance behind, or hide a disagreement
between witness and capture (each one is printed and kept in the bundle's
metadata as ``witness_disagreement``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .. import signals
from ..errors import MissingTool, UserError

HELP = "run any program with its socket calls traced (eBPF or strace), a capture and the kernel witness; write one bundle"

STOP_SECONDS = 5.0  # after Ctrl-C: how long CMD gets to exit on SIGINT before SIGKILL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE.pcapng",
                        help="bundle to write (default: record-<program>-<UTC time>.pcapng here)")
    parser.add_argument("--ports", metavar="PORT[,PORT...]", action="append", default=[],
                        help="capture and witness only these TCP ports (default: the ports the program uses)")
    parser.add_argument("--capture", choices=("scapy", "tcpdump", "auto"), default="auto",
                        help="capture backend (default auto: tcpdump when installed, it keeps up under load)")
    parser.add_argument("--iface", metavar="IFACE",
                        help="interface to capture on (default with tcpdump: any, so connections that leave "
                             "loopback are recorded too; with scapy: the loopback)")
    parser.add_argument("--calls", choices=("auto", "ebpf", "strace"), default="auto",
                        help="how socket calls are traced: ebpf (bpftrace on the syscall tracepoints: never stops "
                             "the program, so a loaded program keeps its pace; a few seconds to start; root, "
                             "bpftrace and a kernel with BTF), strace (ptrace: stops the program at each traced "
                             "call), or auto (default: ebpf where it can run, else strace, said in one line)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS]",
                        help="the program to run, after --")


def run(args: argparse.Namespace) -> int:
    from .. import reaper

    command = program_argv(args.command)
    ports = parse_ports(args.ports)
    calls = choose_calls(getattr(args, "calls", "auto"))
    strace = _require_tools(command, calls)
    output = Path(args.output) if args.output else default_output(command)
    with tempfile.TemporaryDirectory(prefix="tcpteardown-record-") as workdir:
        token = reaper.watch_folder(workdir)
        try:
            raw = record(command, ports, Path(workdir), strace=strace, calls=calls,
                         capture=getattr(args, "capture", "auto"), iface=getattr(args, "iface", None))
            path, result = _write(raw, output)
        finally:
            reaper.forget(token)
    for line in result.report(path):
        print(f"tcpteardown record: {line}", file=sys.stderr)
    return signals.exit_status(result.interrupted) if result.interrupted else result.exit_status


def _write(raw: "Raw", output: Path) -> tuple[Path, "Recorded"]:
    """Build the recording and write the bundle; should either fail, the raw
    capture and strace log are kept beside OUTPUT first: never lose a recording."""
    from ..views.packet_comments import write_annotated_bundle

    try:
        result = raw.build()
        return write_annotated_bundle(output, result.recording), result
    except BaseException as exc:
        kept = keep_raw(raw, output)
        hint = f" --strace {kept / raw.log.name}" if raw.calls == "strace" else ""
        print(f"tcpteardown record: could not write {output} ({type(exc).__name__}: {exc}); "
              f"what was recorded is kept in {kept}: tcpteardown explain {kept / 'capture.pcap'}{hint}",
              file=sys.stderr)
        raise


def keep_raw(raw: "Raw", output: Path) -> Path:
    """Copy the raw capture and strace log to OUTPUT.raw/ (a new name if taken),
    or to a private folder of our own when OUTPUT's folder is not writable."""
    target = _new_folder(output)
    for source in (raw.pcap, raw.log, raw.stderr_log):
        if source.exists():
            shutil.copyfile(source, target / source.name)
    return target


def _new_folder(output: Path) -> Path:
    for n in itertools.count(1):
        target = output.with_name(output.name + (".raw" if n == 1 else f".raw{n}"))
        try:
            target.mkdir(parents=True)
            return target
        except FileExistsError:
            continue
        except OSError:
            return Path(tempfile.mkdtemp(prefix="tcpteardown-record-kept-"))
    raise AssertionError("unreachable")


# -- arguments -----------------------------------------------------------------


def program_argv(words: Sequence[str]) -> list[str]:
    words = list(words)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise UserError("no program to record: give it after --, e.g. tcpteardown record -- curl http://127.0.0.1:8000/")
    return words


def parse_ports(values: Iterable[str]) -> tuple[int, ...]:
    ports = set()
    for value in values:
        for word in filter(None, (w.strip() for w in value.split(","))):
            if not word.isdigit() or not 0 < int(word) < 65536:
                raise UserError(f"--ports {value!r}: {word!r} is not a TCP port (1-65535)")
            ports.add(int(word))
    return tuple(sorted(ports))


def default_output(command: Sequence[str]) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(command[0]).name) or "program"
    return Path(f"record-{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.pcapng")


def choose_calls(asked: str) -> str:
    """The call tracer: ebpf unless strace is asked for or ebpf cannot run here
    (then one line says why). bench/record_pace.py decides the default: eBPF
    keeps far more of a loaded program's pace than strace, and is exact on
    every run (every failing call linked, no lost events, each connect's SYN
    inside its connect(); README, record's pace); what it costs is bpftrace's
    seconds of start-up before the program runs."""
    from ..capture import ebpf_calls

    if asked == "strace":
        return "strace"
    why_not = ebpf_calls.unavailable()
    if why_not:
        _say_once(f"--calls ebpf cannot run here ({why_not}); tracing with strace instead" if asked == "ebpf" else
                  f"socket calls traced with strace, which stops the program at each traced call: eBPF cannot "
                  f"run here ({why_not})")
        return "strace"
    return "ebpf"


def _require_tools(command: Sequence[str], calls: str = "strace") -> str:
    from ..capture import platform as host

    if calls == "ebpf":
        if shutil.which("tcpdump") is None:
            raise MissingTool("record captures with tcpdump, which is not installed (apt-get install tcpdump)")
        if shutil.which(command[0]) is None:
            raise UserError(f"no such program: {command[0]!r} (not found on PATH, or not executable)")
        return shutil.which("strace") or "strace"
    if not host.IS_LINUX:
        raise UserError("record runs the program under strace, which exists only on Linux; on macOS, "
                        "capture with tcpdump and use: tcpteardown explain CAPTURE --log APP.log")
    strace = shutil.which("strace")
    if strace is None:
        raise MissingTool("record runs the program under strace, which is not installed "
                          "(apt-get install strace); or capture with tcpdump and use "
                          "tcpteardown explain CAPTURE --strace LOG")
    if shutil.which("tcpdump") is None:
        raise MissingTool("record captures with tcpdump, which is not installed (apt-get install tcpdump)")
    if shutil.which(command[0]) is None:
        raise UserError(f"no such program: {command[0]!r} (not found on PATH, or not executable)")
    return strace


# -- recording -----------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    recording: object  # model.Recording
    exit_status: int
    interrupted: Optional[BaseException]  # the KeyboardInterrupt/Terminated that stopped the program
    notes: tuple[str, ...]

    def report(self, path: Path) -> list[str]:
        rec = self.recording
        ports = rec.metadata.get("ports") or "none found"
        lines = [f"wrote {path}: {len(rec.frames)} packets (ports {ports}), {len(rec.calls)} socket calls, "
                 f"{len(rec.kernel_events)} kernel events; program exit status {self.exit_status}"
                 + (f" (interrupted: {signals.name_of(self.interrupted)})" if self.interrupted else "")]
        lines.extend(self.notes)
        return lines


@dataclass
class Raw:
    """What a recording left on disk and in memory, before it is a Recording."""
    pcap: Path
    log: Path
    events: tuple
    witness: object
    capture: object
    command: Sequence[str]
    ports: Sequence[int]
    exit_status: int
    interrupted: Optional[BaseException]
    started: int
    window: tuple[int, int]
    stderr_log: Path  # the program's stderr lines, each stamped with when it arrived
    calls: str = "strace"  # the call tracer: strace or ebpf

    def build(self) -> Recorded:
        recording, notes = build_recording(self.pcap, self.log, self.events, self.witness, self.capture,
                                           self.command, self.ports, self.exit_status, self.started,
                                           self.window, stderr_log=self.stderr_log, tracer=self.calls)
        return Recorded(recording, self.exit_status, self.interrupted, notes)


def record(command: Sequence[str], ports: Sequence[int], workdir: Path, *, strace: str = "strace",
           capture: str = "auto", iface: Optional[str] = None, calls: str = "strace") -> Raw:
    """Run `command` traced (`calls`: strace or ebpf), captured and witnessed;
    what it left, ready to build."""
    from ..capture import ebpf_calls
    from ..capture.backends import choose_backend, open_backend
    from ..capture.kernel import KernelWitness

    pcap, stderr_log = workdir / "capture.pcap", workdir / "program-stderr.log"
    log = workdir / ("bpftrace.log" if calls == "ebpf" else "strace.log")
    started = time.time_ns()
    backend = choose_backend(capture, purpose="record")
    if iface is None and backend == "tcpdump":
        iface = "any"  # the program's connections may leave loopback (a veth, a real NIC)
    with contextlib.ExitStack() as stack:
        capture = stack.enter_context(open_backend(backend, ports, path=pcap if backend == "tcpdump" else None,
                                                   iface=iface))
        witness = stack.enter_context(KernelWitness(ports))
        window_start = time.time_ns()
        if calls == "ebpf":
            exit_status, interrupted = ebpf_calls.run_traced(log, command, stderr_log=stderr_log,
                                                             stop_seconds=STOP_SECONDS)
        else:
            exit_status, interrupted = run_traced(strace, log, command, stderr_log=stderr_log)
        window_end = time.time_ns()
        events = witness.stop()
        capture.stop()
    return Raw(pcap, log, events, witness, capture, command, ports, exit_status, interrupted, started,
               (window_start, window_end), stderr_log, calls)


def run_traced(strace: str, log: Path, command: Sequence[str], *, stderr_log: Optional[Path] = None
               ) -> tuple[int, Optional[BaseException]]:
    """(exit status, the interrupt that stopped it or None). CMD keeps our
    stdin and stdout; its stderr passes through us line by line to ours, and
    each line is kept in `stderr_log` stamped with when it arrived (a program's
    own error messages are evidence too). strace and CMD run in a process
    group of their own, which the reaper kills should we be SIGKILLed."""
    from .. import reaper

    argv = [strace, *strace_options(strace), "-o", str(log), "--", *command]
    process = subprocess.Popen(argv, start_new_session=True,
                               stderr=subprocess.PIPE if stderr_log is not None else None)
    token = reaper.watch_group(process.pid)
    tee = StderrTee(process.stderr, stderr_log) if stderr_log is not None else None
    interrupted = None
    try:
        try:
            status = process.wait()
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (signals.Terminated)
            interrupted = exc
            status = _interrupt(process, signals.signal_of(exc))
    finally:
        if process.poll() is None:  # a second Ctrl-C, or anything else: nothing stays behind
            _kill_tree(process)
        reaper.forget(token)
        if tee is not None:
            tee.finish()
    return _exit_status(status), interrupted


# -y, not -yy: -yy makes strace dump every TCP socket on the host over
# sock_diag for each fd it prints (the program ran at 1 % of its pace, its
# calls stamped milliseconds late); the 4-tuples come from the witness and
# the capture instead (formats/socket_ends.py)
STRACE_BASE = ("-f", "-ttt", "-T", "-y")


def traced_set() -> str:
    """strace's ``-e trace=`` value: only the syscalls the strace parser reads
    (one list, formats/strace.py's TRACED_SYSCALLS). ``?`` lets a name this
    architecture lacks (send, _newselect, sendfile64 on x86_64) be skipped."""
    from ..formats.strace import TRACED_SYSCALLS

    return "trace=" + ",".join(f"?{name}" for name in TRACED_SYSCALLS)


@functools.lru_cache(maxsize=None)
def seccomp_supported(strace: str) -> Optional[str]:
    """None when this strace filters in the kernel (--seccomp-bpf, strace >= 5.3
    and a kernel with seccomp); otherwise why not, in strace's own words.
    Probed once per process, on a program that exits at once."""
    probe = subprocess.run([strace, "-f", "--seccomp-bpf", "-e", traced_set(), "-o", os.devnull, "--",
                            sys.executable, "-c", ""], capture_output=True, text=True, timeout=30)
    said = probe.stderr.strip().splitlines()
    if probe.returncode != 0:
        return said[-1] if said else f"strace exited {probe.returncode}"
    # strace prints a warning and traces everything when seccomp is unavailable
    return next((line for line in said if "seccomp" in line.lower()), None)


def strace_options(strace: str) -> list[str]:
    """strace's options for record: the traced set, filtered in the kernel
    where this strace can (only those syscalls stop the program)."""
    why_not = seccomp_supported(strace)
    if why_not is None:
        return [*STRACE_BASE, "--seccomp-bpf", "-e", traced_set()]
    _say_once(f"this strace cannot filter in the kernel (--seccomp-bpf: {why_not}); every traced "
              f"syscall stops the program, expect it to run slower")
    return [*STRACE_BASE, "-e", traced_set()]


_SAID: set[str] = set()


def _say_once(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        print(f"tcpteardown record: {line}", file=sys.stderr)


class StderrTee:
    """Copies a program's stderr to ours as it comes, and each line, stamped
    with its arrival time (ISO 8601, UTC, microseconds), to a file that the
    application-log importer reads like any log."""

    FINISH_SECONDS = 5.0  # a grandchild may keep the pipe open after the program exited

    def __init__(self, pipe, path: Path):
        import threading

        self._pipe, self._out = pipe, open(path, "w", encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._copy, name="tcpteardown-stderr-tee", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        import datetime as dt

        sink = getattr(sys.stderr, "buffer", None)
        pending = b""
        # Chunks, not lines, go through at once: a prompt without a newline must show.
        for chunk in iter(lambda: os.read(self._pipe.fileno(), 65536), b""):
            if sink is not None:
                with contextlib.suppress(OSError, ValueError):
                    sink.write(chunk)
                    sink.flush()
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            *lines, pending = (pending + chunk).split(b"\n")
            self._keep(now, lines)
        if pending:
            self._keep(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), [pending])

    def _keep(self, stamp: str, lines) -> None:
        with contextlib.suppress(ValueError):  # finish() gave up on a pipe a grandchild still holds
            for line in lines:
                self._out.write(f"{stamp} {line.decode('utf-8', 'replace').rstrip(chr(13))}\n")

    def finish(self) -> None:
        self._thread.join(self.FINISH_SECONDS)
        if not self._thread.is_alive():
            self._pipe.close()
        self._out.close()


def _tracees(process: subprocess.Popen) -> list[int]:
    """The program strace started (strace's children)."""
    children = []
    for task in Path(f"/proc/{process.pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            children.extend(int(pid) for pid in task.read_text().split())
    return children


def _interrupt(process: subprocess.Popen, signum: int) -> int:
    """Ctrl-C or SIGTERM: the same signal to the program (strace -o blocks it
    for itself), then SIGKILL if it has not exited within STOP_SECONDS."""
    for pid in _tracees(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    try:
        return process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        _kill_tree(process)
        return process.returncode


def _kill_tree(process: subprocess.Popen) -> None:
    for pid in _tracees(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()


def _exit_status(returncode: int) -> int:
    """strace exits with the program's status, or dies of the program's signal."""
    return 128 - returncode if returncode < 0 else returncode


# -- building the recording ----------------------------------------------------


def build_recording(pcap: Path, log: Path, events, witness, capture, command, ports, exit_status,
                    started: int, window: tuple[int, int], *, stderr_log: Optional[Path] = None,
                    tracer: str = "strace"):
    from ..capture.session import assemble
    from ..formats.ftrace import touches_ports
    from ..formats.bpftrace_calls import check_clock, read_bpftrace_file
    from ..formats.socket_ends import SocketEnds
    from ..formats.strace import read_strace_file

    notes = []
    contents = capture.stop()  # capture.backends.Captured (stop is idempotent): frames, segments, loss counters
    clock_check = None
    if tracer == "ebpf":  # the kernel's sock names both ends itself
        imported = read_bpftrace_file(log, name="bpftrace")
        shift, clock_check = check_clock(imported.calls, contents.segments if contents is not None else ())
        if shift:
            imported = dataclasses.replace(imported, calls=tuple(
                dataclasses.replace(c, start_ns=c.start_ns + shift, end_ns=c.end_ns + shift) for c in imported.calls))
    else:
        ends = SocketEnds(events, contents.segments if contents is not None else ())
        imported = read_strace_file(log, name="strace", ends=ends)  # not the temporary path: gone after the run
    if imported.problems:
        notes.append(f"{tracer} log: {len(imported.problems)} problems, e.g. {imported.problems[0]}")
        if tracer == "ebpf":  # lost events, a killed or vanished bpftrace: each said, never one of many
            notes.extend(f"{tracer} log: {problem}" for problem in imported.problems[1:]
                         if not re.match(r"bpftrace:\d", problem))
    calls = imported.calls + _program_messages(stderr_log, notes, _program_name(imported.calls, command))
    service = service_ports(calls)
    keep = set(ports) or service | ports_touched(calls)
    events = tuple(e for e in events if touches_ports(e, keep))
    cost = tracing_cost(log, witness, tracer)
    notes.append("cost: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in cost))
    if clock_check:
        notes.append(f"calls' clock: {clock_check}")
        cost.append(("calls_clock_check", clock_check))
    extra = [("command", shlex.join(command)), ("exit_status", str(exit_status)),
             ("ports", ",".join(map(str, sorted(set(ports) or service)))), *cost]
    recording, assembled = assemble(
        captured=contents, calls=calls, events=events, witness=witness, window=window, started_ns=started,
        capture_text=f"{capture.describe()}; socket calls from " + (
            "bpftrace (eBPF on the syscall tracepoints, TCP sockets only)" if tracer == "ebpf" else
            f"strace {' '.join(STRACE_BASE)} (only the syscalls read)"), extra=extra,
        keep=lambda segment: segment.src.port in keep or segment.dst.port in keep)
    notes = [note for note in assembled if note.startswith("capture: ")] + notes + \
        [note for note in assembled if not note.startswith("capture: ")]
    if not keep:
        notes.append(f"the program made no TCP socket calls that {tracer} could see")
    return recording, tuple(notes)


def tracing_cost(log: Path, witness, calls: str = "strace") -> list[tuple[str, str]]:
    """What watching cost, as far as it can be known (metadata key/values):
    the syscalls strace stopped the program on (each stop is two context
    switches to strace and back), and the kernel witness's lost events. The
    time spent stopped is not measured: strace does not report it. With
    eBPF: the calls the script printed (TCP sockets only), never a stop, the
    events bpftrace lost (calls_lost_events: its ring buffer was full, those
    calls are missing), and the seconds bpftrace took to compile and attach
    before the program was released and to drain and exit after it ended."""
    traced, lost_calls, timing = 0, 0, []
    with contextlib.suppress(OSError), open(log, "rb") as lines:
        for line in lines:
            if calls == "ebpf":
                if line.startswith(b"C "):
                    traced += 1
                elif line.startswith(b"Lost ") and line.split()[1].isdigit():
                    lost_calls += int(line.split()[1])
                elif line.startswith(b"timing "):
                    timing = line.split()[1:]
            elif b" resumed>" not in line and b"(" in line and b" +++ " not in line and b" --- " not in line:
                traced += 1
    lost = getattr(witness, "lost_events", None)
    witness_lost = ("witness_lost_events", "unknown" if lost is None else str(lost))
    if calls == "ebpf":
        attach, stop = (_seconds(timing[0]), _seconds(timing[1])) if len(timing) >= 2 else ("unknown", "unknown")
        return [("traced_syscalls", str(traced)), ("time_stopped", "none (eBPF never stops the program)"),
                witness_lost, ("calls_lost_events", str(lost_calls)), ("calls_attach_seconds", attach),
                ("calls_stop_seconds", stop)]
    return [("traced_syscalls", str(traced)), ("time_stopped", "not measured"), witness_lost]


def _seconds(ns: bytes) -> str:
    """A duration in ns from the bpftrace log, as seconds with two decimals ("unknown" if not measured)."""
    return f"{int(ns) / 1e9:.2f}" if ns.isdigit() else "unknown"


def _program_name(calls, command) -> str:
    """The program as strace names it (its process name: the same name in every
    view, issue 29), else the command's file name as the kernel would (15 bytes)."""
    names = {call.role for call in calls if call.source in ("strace", "ebpf")}
    return names.pop() if len(names) == 1 else (Path(command[0]).name[:15] or "program")


def _program_messages(stderr_log: Optional[Path], notes: list, name: str = "program") -> tuple:
    """The program's own error messages on stderr, as log evidence (source "log"),
    under the program's process name."""
    if stderr_log is None or not stderr_log.exists() or stderr_log.stat().st_size == 0:
        return ()
    import datetime as dt

    from ..formats.applog import parse_log

    with open(stderr_log, encoding="utf-8") as lines:  # stamped by StderrTee, in UTC
        found = parse_log(lines, path="the program's stderr", tz=dt.timezone.utc, role=name)
    if found.calls:
        count = len(found.calls)
        notes.append(f"the program's stderr: {count} error message{'s' if count != 1 else ''} kept as log evidence")
    return tuple(found.calls)


def service_ports(calls) -> set[int]:
    """Ports the program served or connected to: connect remotes, accept locals."""
    ports = set()
    for call in calls:
        if call.op == "connect" and call.remote is not None:
            ports.add(call.remote.port)
        elif call.op == "accept" and call.local is not None:
            ports.add(call.local.port)
    ports.discard(0)
    return ports


def ports_touched(calls) -> set[int]:
    """Both ends of every socket call (covers sockets opened before strace saw them)."""
    ports = {endpoint.port for call in calls for endpoint in (call.local, call.remote) if endpoint is not None}
    ports.discard(0)
    return ports

