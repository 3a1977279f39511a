"""The kernel witness: why Linux sent each RST, read from its own tracepoints.

Packets show *that* an RST was sent; the kernel can say *why*. During a
recording we enable, in a PRIVATE tracefs instance (never the global buffer,
which belongs to whoever else is tracing this machine):

    tcp:tcp_send_reset          (state, reason: NO_SOCKET, TCP_ABORT_ON_CLOSE, ...)
    tcp:tcp_receive_reset
    sock:inet_sock_set_state    (oldstate -> newstate)
    sock:inet_sk_error_report   (the errno the RST left on the socket)

and turn them into `model.KernelEvent`s on the packets' clock.

API (all of it)::

    witness = KernelWitness(ports)          # ports: the recording's TCP ports
    if witness.available:                   # else witness.reason says why not
        with witness:                       # or witness.start() ... witness.stop()
            ...                             # play the scenario / run the program
            witness.wait_for(lambda e: e.name == "tcp:tcp_send_reset", timeout=2)
        events = witness.stop()             # idempotent; same tuple again
    witness.reasons_known                   # False on kernels < 6.10 (no `reason`)
    witness.precision_ns                    # how far a mapped time can be off
    witness.lost_events                     # ring-buffer overruns (0 normally)

`start()`/`stop()` on an unavailable witness do nothing and record nothing:
callers then label RSTs with reasons inferred from the packets.

Instances. Each witness makes ``instances/tcpteardown-<pid>-<n>`` and removes
it when stopped: on leaving the ``with`` block (Ctrl-C included: SIGINT raises
KeyboardInterrupt through it), at interpreter exit (atexit), and on SIGTERM
(while a witness runs and nobody else handles SIGTERM, it becomes SystemExit
so the same clean-up runs). A process killed outright (SIGKILL) leaves its
instance behind: the next `start()` removes every ``tcpteardown-<pid>-*``
whose pid is no longer alive. (tracefs is shared by all pid namespaces; a
live process in another container may look dead from here.)

Filters. Each event gets a kernel-side filter on the recording's ports
(``sport``/``dport``, and ``protocol == 6`` where the event has that field).
Since 6.10 tcp:tcp_send_reset has no port fields (its addresses are sockaddr
byte arrays the filter language cannot match), so it is recorded unfiltered
and filtered here after parsing; it is a rare event.

Clock. Packets are stamped with CLOCK_REALTIME; ftrace's default clock
(``local``) is not mappable, so the instance uses ``trace_clock = mono``
(ktime_get_mono_fast_ns, i.e. CLOCK_MONOTONIC). The offset realtime - mono is
measured at start and at stop by reading the two clocks back to back
(mono, realtime, mono) 32 times and keeping the tightest bracket. A mapped
time is off by at most `precision_ns` =

    half the tightest bracket (typically 0.05-0.5 us)
  + half the change of the offset between start and stop (NTP slewing; ~0
    over a few seconds)
  + 0.5 us, because the `trace` file prints timestamps rounded to the
    microsecond.

So about 1 us in practice, finer than tcpdump's default microsecond stamps.
Measured on the development machine (Linux 6.18, 2 vCPUs): tightest bracket
half-width 86-126 ns over 200 measurements, offset spread 16 ns, so
`precision_ns` ~ 600 ns; 500 of 500 trace_marker writes were mapped inside
the window of the realtime reads taken just before and after them (median
window 12 us). tests/test_kernel_witness.py checks that last property.

Never: write to the global trace buffer or the global event switches, leave
an instance behind, or import anything Linux-only at module level (this file
imports on macOS; there `available` is False).
"""

from __future__ import annotations

import atexit
import errno as errno_module
import itertools
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from .. import reaper
from ..formats.ftrace import (  # noqa: F401  (re-exported: the witness's API names them)
    EVENTS,
    ClockMapping,
    format_fields,
    parse_trace,
    parse_trace_line,
    port_filter,
)
from ..model import KernelEvent
from . import platform as host

__all__ = [
    "KernelWitness",
    "ClockMapping",
    "measure_clock_mapping",
    "parse_trace",
    "parse_trace_line",
    "EVENTS",
    "INSTANCE_PREFIX",
    "mount_tracefs_if_missing",
]

INSTANCE_PREFIX = "tcpteardown-"
TRACE_CLOCKS = ("mono", "boot")  # in order of preference; both map onto Python clocks
BUFFER_SIZE_KB = 2048  # per CPU; a teardown story is a few dozen events

_INSTANCE_NAME = re.compile(r"^tcpteardown-(\d+)(?:-\d+)?$")


# --------------------------------------------------------------------------
# Clock mapping: measured here (two clock reads); the arithmetic is formats.ftrace.ClockMapping


def _clock_id(trace_clock: str) -> int:
    return time.CLOCK_MONOTONIC if trace_clock == "mono" else getattr(time, "CLOCK_BOOTTIME")


def measure_clock_mapping(trace_clock: str = "mono", samples: int = 32) -> ClockMapping:
    """Offset from `trace_clock` to CLOCK_REALTIME, from the tightest of
    `samples` (clock, realtime, clock) brackets."""
    clock = _clock_id(trace_clock)
    read, realtime = time.clock_gettime_ns, time.CLOCK_REALTIME
    best: Optional[tuple[int, int]] = None
    for _ in range(samples):
        before = read(clock)
        real = read(realtime)
        after = read(clock)
        width = after - before
        if best is None or width < best[0]:
            best = (width, real - (before + after) // 2)
    width, offset = best
    return ClockMapping(offset, (width + 1) // 2)


# --------------------------------------------------------------------------
# Instances: the only part that touches tracefs


_counter = itertools.count(1)
_live: dict[Path, "KernelWitness"] = {}  # instance dir -> its witness
_live_lock = threading.Lock()
_mount_tried = False
_previous_sigterm = None
_atexit_registered = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_instances(root: Path) -> tuple[str, ...]:
    """Remove ``tcpteardown-<pid>-*`` instances whose pid is dead; their names."""
    instances = root / "instances"
    removed = []
    try:
        entries = list(instances.iterdir())
    except OSError:
        return ()
    for entry in entries:
        match = _INSTANCE_NAME.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if _remove_instance(entry):
            removed.append(entry.name)
    return tuple(removed)


def _remove_instance(path: Path) -> bool:
    """rmdir an instance (EBUSY while a reader holds a file: retry briefly)."""
    for attempt in range(50):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno_module.EBUSY or attempt == 49:
                return False
            time.sleep(0.01)  # wait-ok: retrying rmdir until the kernel releases the instance (EBUSY)
    return False


def _cleanup_at_exit() -> None:
    """Remove this process's instances (a forked child inherits the table:
    it must not remove its parent's)."""
    mine = f"{INSTANCE_PREFIX}{os.getpid()}-"
    with _live_lock:
        paths = [path for path in _live if path.name.startswith(mine)]
        _live.clear()
    for path in paths:
        _remove_instance(path)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _guard_signals() -> None:
    """While a witness runs, SIGTERM unwinds (SystemExit) instead of killing
    the process on the spot, so `with`/atexit remove the instance."""
    global _previous_sigterm, _atexit_registered
    if not _atexit_registered:
        atexit.register(_cleanup_at_exit)
        _atexit_registered = True
    if threading.current_thread() is not threading.main_thread():
        return
    if _previous_sigterm is None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
        _previous_sigterm = signal.SIG_DFL


def _unguard_signals() -> None:
    global _previous_sigterm
    if _live or _previous_sigterm is None:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, _previous_sigterm)
    _previous_sigterm = None


def mount_tracefs_if_missing() -> None:
    """Mount tracefs once, when it is missing and we are root on Linux (a fresh
    container or CI runner often has it unmounted). Call it before asking
    `platform.tracefs_problem()` (whose answer it refreshes); every
    KernelWitness calls it."""
    global _mount_tried
    if _mount_tried or not host.IS_LINUX or os.geteuid() != 0 or host.tracefs_root() is not None:
        return
    _mount_tried = True
    target = host.TRACEFS_MOUNTS[0]
    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(target)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return
    host.tracefs_problem.cache_clear()


class KernelWitness:
    """Record the four TCP teardown tracepoints for `ports` in a private
    tracefs instance. See the module docstring for the whole API."""

    def __init__(self, ports: Iterable[int] = (), *, root: Optional[os.PathLike] = None,
                 buffer_size_kb: int = BUFFER_SIZE_KB):
        self.ports = tuple(sorted({int(p) for p in ports}))
        self.buffer_size_kb = buffer_size_kb
        self.reason: Optional[str] = None  # why not available
        self.reasons_known = False  # does tcp_send_reset carry `reason` here?
        self.lost_events = 0
        self.trace_clock: Optional[str] = None
        self.instance: Optional[Path] = None
        self.removed_stale: tuple[str, ...] = ()
        self.missing_events: tuple[str, ...] = ()
        self._root = Path(root) if root is not None else None
        self._start_mapping: Optional[ClockMapping] = None
        self._mapping: Optional[ClockMapping] = None
        self._events: Optional[tuple[KernelEvent, ...]] = None
        self._owner: Optional[int] = None  # pid that made the instance
        self._probe()

    # -- availability

    def _probe(self) -> None:
        if self._root is None:
            mount_tracefs_if_missing()
            self.reason = host.tracefs_problem()
            if self.reason is None:  # (tracefs_root() itself may not stat as non-root)
                self._root = host.tracefs_root()
        elif not (self._root / "instances").is_dir():
            self.reason = f"{self._root} is not a mounted tracefs (no instances/ directory)"
        elif not (self._root / "events" / "tcp" / "tcp_send_reset").is_dir():
            self.reason = f"this kernel has no tcp:tcp_send_reset tracepoint under {self._root}/events"

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def running(self) -> bool:
        return self.instance is not None and self._events is None

    @property
    def precision_ns(self) -> Optional[int]:
        """Worst-case error of a mapped event time (see the module docstring)."""
        mapping = self._mapping or self._start_mapping
        return None if mapping is None else mapping.uncertainty_ns + 500

    @property
    def clock_mapping(self) -> Optional[ClockMapping]:
        """The trace clock -> CLOCK_REALTIME mapping measured at start (for streaming readers)."""
        return self._mapping or self._start_mapping

    def overruns(self) -> int:
        """Events the instance's ring buffer has dropped so far (0 when not running)."""
        return self._overruns(self.instance) if self.running else self.lost_events

    # -- lifecycle

    def __enter__(self) -> "KernelWitness":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "KernelWitness":
        if not self.available or self.instance is not None:
            return self
        self.removed_stale = remove_stale_instances(self._root)
        path = self._root / "instances" / f"{INSTANCE_PREFIX}{os.getpid()}-{next(_counter)}"
        with _live_lock:
            _live[path] = self
            _guard_signals()
        self.instance = path
        self._owner = os.getpid()
        try:
            path.mkdir()
            self._reaper_token = reaper.watch_instance(path)  # should we be SIGKILLed
            self._configure(path)
        except OSError as exc:
            self._discard()
            self.instance = None
            self.reason = f"could not set up the tracefs instance {path}: {exc.strerror or exc}"
            return self
        except BaseException:
            self._discard()
            raise
        return self

    def _configure(self, path: Path) -> None:
        self._write(path / "tracing_on", "0")
        self.trace_clock = self._choose_clock(path)
        self._write(path / "buffer_size_kb", str(self.buffer_size_kb))
        missing = []
        for name in EVENTS:
            directory = path / "events" / name.replace(":", "/")
            if not directory.is_dir():
                missing.append(name)
                continue
            fields = format_fields((directory / "format").read_text())
            if name == "tcp:tcp_send_reset":
                self.reasons_known = "reason" in fields
            expression = port_filter(fields, self.ports)
            if expression:
                self._write(directory / "filter", expression)
            self._write(directory / "enable", "1")
        self.missing_events = tuple(missing)
        self._start_mapping = measure_clock_mapping(self.trace_clock)
        self._write(path / "tracing_on", "1")

    def _choose_clock(self, path: Path) -> str:
        offered = (path / "trace_clock").read_text().replace("[", " ").replace("]", " ").split()
        for clock in TRACE_CLOCKS:
            if clock in offered and (clock == "mono" or hasattr(time, "CLOCK_BOOTTIME")):
                self._write(path / "trace_clock", clock)
                return clock
        raise OSError(errno_module.ENOTSUP, f"no mappable trace clock among {offered}")

    @staticmethod
    def _write(path: Path, text: str) -> None:
        with open(path, "w") as handle:
            handle.write(text)

    def stop(self) -> tuple[KernelEvent, ...]:
        """Stop recording, remove the instance, return the events (idempotent)."""
        if self._events is not None:
            return self._events
        if self.instance is None or self._owner != os.getpid():
            return ()  # never started, or a forked child: the instance is its parent's
        try:
            self._write(self.instance / "tracing_on", "0")
            self._mapping = ClockMapping.combine(self._start_mapping, measure_clock_mapping(self.trace_clock))
            text = (self.instance / "trace").read_text(errors="replace")
            self.lost_events = self._overruns(self.instance)
            self._events = parse_trace(text, self._mapping, self.ports)
        finally:
            self._discard()
            if self._events is None:
                self._events = ()
        return self._events

    def _discard(self) -> None:
        path = self.instance
        if path is not None and path.exists():
            _remove_instance(path)
        reaper.forget(getattr(self, "_reaper_token", None))
        with _live_lock:
            _live.pop(path, None)
            _unguard_signals()

    # -- reading while running

    def read_trace(self) -> str:
        """The instance's `trace` file as it is now (does not consume it)."""
        if not self.running:
            return ""
        return (self.instance / "trace").read_text(errors="replace")

    def events(self, *, markers: bool = False) -> tuple[KernelEvent, ...]:
        """Events recorded so far (all of them once stopped)."""
        if self._events is not None:
            return self._events
        if not self.running:
            return ()
        mapping = self._start_mapping
        return parse_trace(self.read_trace(), mapping, self.ports, markers=markers)

    def wait_for(self, predicate: Callable[[KernelEvent], bool], timeout: float = 2.0) -> Optional[KernelEvent]:
        """Poll until an event satisfies `predicate` (bounded by `timeout`
        seconds); the event, or None when none came in time."""
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            for event in self.events():
                if predicate(event):
                    return event
            if not self.running or time.monotonic() >= deadline:
                return None
            time.sleep(delay)  # wait-ok: polling the trace for an event, bounded by the deadline
            delay = min(delay * 2, 0.05)

    def mark(self, text: str) -> None:
        """Write `text` into this instance's trace (a `trace_marker` line)."""
        if self.running:
            with open(self.instance / "trace_marker", "w") as handle:
                handle.write(text)

    def unread(self) -> int:
        """Events in the instance's ring buffer that no reader has consumed yet (0 when not running)."""
        return self._stat_total(self.instance, "entries") if self.running else 0

    @staticmethod
    def _overruns(path: Path) -> int:
        return KernelWitness._stat_total(path, "overrun")

    @staticmethod
    def _stat_total(path: Path, name: str) -> int:
        total = 0
        for stats in (path / "per_cpu").glob("cpu*/stats"):
            try:
                for line in stats.read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key.strip() == name:
                        total += int(value.strip() or 0)
            except (OSError, ValueError):
                continue
        return total

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._events is not None else "idle"
        if not self.available:
            state = f"unavailable: {self.reason}"
        return f"KernelWitness(ports={self.ports}, {state})"
