"""Capture backends behind one interface: `scapy` and `tcpdump`.

    backend = open_backend(choose_backend("auto", purpose="record"), ports)
    backend.start()
    ...                       # the traffic
    captured = backend.stop()  # a Captured: frames, segments, loss counters
    metadata_extra += captured.loss_extra()

- `scapy` (capture.live.LiveCapture): reads the packet socket in Python. Fine
  for a scenario's hundred packets; loses packets past a few thousand a
  second (and says so in `kernel_drops`). The default for scenario runs.
- `tcpdump` (capture.tcpdump.TcpdumpCapture): the kernel's packet ring read
  in C, written to a file, parsed by the fast reader. Keeps up under load; the
  default for `record` when tcpdump is installed.

Both give the same `Captured`: only the TCP frames of the watched ports in
capture order (our own UDP marker datagrams are left out, so frame n is the
TCP story's own frame n), their segments, and every loss counter there is:
the capture's own drop count, and what the kernel says it sent meanwhile
(`/proc/net/snmp` deltas, read inside the capture's start and stop
barriers, so everything they count was sent while the capture was running).

Never: hide a drop, or guess one: a counter we could not read is "unknown",
not zero.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Protocol

from .. import reaper
from ..errors import MissingTool, UserError
from ..model import Frame, Segment, TcpFlags
from .snmp import TcpCounters, read_tcp_counters

__all__ = ["BACKENDS", "CaptureBackend", "Captured", "ScapyBackend", "TcpdumpBackend",
           "choose_backend", "open_backend", "tcp_frames"]

BACKENDS = ("scapy", "tcpdump")
CHOICES = (*BACKENDS, "auto")

# What the snmp deltas cover, in words kept with every recording.
COUNTERS_SCOPE = ("host-wide TCP counters from /proc/net/snmp (every interface, every port, IPv4 and "
                  "IPv6; on loopback each segment sent is also received once): an upper bound for "
                  "a port-filtered capture")


@dataclass(frozen=True)
class Captured:
    """What one capture got, and what it may have missed."""

    backend: str  # "scapy" or "tcpdump"
    description: str  # how it captured, in words (Metadata.capture)
    frames: tuple[Frame, ...]  # TCP frames of the watched ports, capture order
    segments: tuple[Segment, ...]  # segment.frame n is frames[n - 1]
    ports: tuple[int, ...]  # () = every TCP port
    kernel_drops: Optional[int]  # dropped by the capture's kernel buffer; None = unknown
    counters: Optional[TcpCounters] = None  # the kernel's TCP counters' growth meanwhile
    path: Optional[Path] = None  # the capture file, when the caller asked to keep one
    problems: tuple[str, ...] = ()  # what the reader stepped over in that file

    def loss_extra(self) -> tuple[tuple[str, str], ...]:
        """The metadata pairs every recording keeps (analysis.completeness reads them)."""
        count = _flag_counts(self.segments)
        extra = [
            ("capture_backend", self.backend),
            ("kernel_drops", "unknown" if self.kernel_drops is None else str(self.kernel_drops)),
            ("capture_ports", ",".join(map(str, self.ports)) if self.ports else "all"),
            ("captured_segs", str(len(self.segments))),
            ("captured_syns", str(count["syn"])),  # connection attempts: SYN without ACK
            ("captured_synacks", str(count["synack"])),
            ("captured_fins", str(count["fin"])),
            ("captured_rsts", str(count["rst"])),
        ]
        if self.counters is not None:
            extra.extend(self.counters.as_extra())
            extra.append(("kernel_counters_scope", COUNTERS_SCOPE))
        extra.extend(("problem", problem) for problem in self.problems)
        return tuple(extra)


class CaptureBackend(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> Captured: ...

    def describe(self) -> str: ...

    def loss_extra(self) -> tuple[tuple[str, str], ...]: ...


def choose_backend(choice: str = "auto", *, purpose: str = "run") -> str:
    """The backend to use: `choice` itself, or for "auto" tcpdump when recording
    a program (its traffic may be heavy) and it is installed, scapy for a
    scenario run (its traffic is small). Raises MissingTool when `choice`
    names a backend this host cannot run."""
    if choice not in CHOICES:
        raise UserError(f"--capture {choice!r}: expected one of {', '.join(CHOICES)}")
    if purpose not in ("run", "record"):
        raise ValueError(f"purpose must be 'run' or 'record', not {purpose!r}")
    has_tcpdump, has_scapy = shutil.which("tcpdump") is not None, _has_scapy()
    if choice == "auto":
        if purpose == "record" and has_tcpdump or not has_scapy and has_tcpdump:
            return "tcpdump"
        choice = "scapy"
    if choice == "tcpdump" and not has_tcpdump:
        raise MissingTool("--capture tcpdump: tcpdump is not installed (apt-get install tcpdump, "
                          "or brew install tcpdump); --capture scapy works without it")
    if choice == "scapy" and not has_scapy:
        raise MissingTool("--capture scapy: scapy is not installed (pip install scapy); "
                          "--capture tcpdump works without it")
    return choice


def open_backend(name: str, ports: Iterable[int] = (), *, path: "str | os.PathLike | None" = None,
                 iface: Optional[str] = None) -> "CaptureBackend":
    """A backend by name, not started. `ports` empty: every TCP port.
    `path` (tcpdump only): keep the capture file there instead of a temporary one."""
    if name == "scapy":
        return ScapyBackend(ports, iface=iface)
    if name == "tcpdump":
        return TcpdumpBackend(ports, path=path, iface=iface)
    raise UserError(f"unknown capture backend {name!r}: expected one of {', '.join(BACKENDS)}")


class _Counted:
    """Shared by both backends: kernel counters read inside the barriers, the
    last Captured kept, context-manager use."""

    name = "?"
    captured: Optional[Captured] = None
    _before: Optional[TcpCounters] = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _counters_begin(self) -> None:
        self._before = read_tcp_counters()  # after the start barrier: all it counts is captured

    def _counters_end(self) -> Optional[TcpCounters]:
        after = read_tcp_counters()  # before the stop barrier: all it counts precedes the marker
        before, self._before = self._before, None
        return before.delta(after) if before is not None and after is not None else None

    def loss_extra(self) -> tuple[tuple[str, str], ...]:
        return self.captured.loss_extra() if self.captured is not None else (("capture_backend", self.name),)


class ScapyBackend(_Counted):
    """`LiveCapture` (scapy on the packet socket) as a backend."""

    name = "scapy"

    def __init__(self, ports: Iterable[int] = (), *, iface: Optional[str] = None):
        from .live import LiveCapture

        self.live = LiveCapture(ports, iface=iface)

    @property
    def kernel_drops(self) -> int:
        return self.live.kernel_drops

    def describe(self) -> str:
        return self.live.describe()

    def start(self) -> None:
        self.live.start()
        self._counters_begin()

    def stop(self) -> Captured:
        if self.captured is not None:
            return self.captured
        counters = self._counters_end()
        frames = self.live.stop()
        frames, segments = tcp_frames(frames)
        self.captured = Captured("scapy", self.live.describe(), frames, segments, tuple(self.live.ports),
                                 self.live.kernel_drops, counters)
        return self.captured


class TcpdumpBackend(_Counted):
    """`TcpdumpCapture` writing a file, parsed by the fast reader, as a backend."""

    name = "tcpdump"

    def __init__(self, ports: Iterable[int] = (), *, path: "str | os.PathLike | None" = None,
                 iface: Optional[str] = None, buffer_kib: int = 32768):
        from .tcpdump import TcpdumpCapture

        self._workdir: Optional[tempfile.TemporaryDirectory] = None
        self.keep_file = path is not None
        if path is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="tcpteardown-capture-")
            self._reaper_token = reaper.watch_folder(self._workdir.name)  # should we be SIGKILLed
            path = Path(self._workdir.name) / "capture.pcap"
        self.tcpdump = TcpdumpCapture(path, list(ports) or None, iface=iface, buffer_kib=buffer_kib,
                                      immediate=False)

    @property
    def kernel_drops(self) -> Optional[int]:
        return self.tcpdump.kernel_drops

    def describe(self) -> str:
        return self.tcpdump.describe()

    def start(self) -> None:
        try:
            self.tcpdump.start()
        except BaseException:
            self._cleanup()
            raise
        self._counters_begin()

    def stop(self) -> Captured:
        if self.captured is not None:
            return self.captured
        try:
            counters = self._counters_end()
            path = self.tcpdump.stop()
            frames, segments, problems = _read_file(path)
        finally:
            self._cleanup()
        self.captured = Captured("tcpdump", self.tcpdump.describe(), frames, segments, tuple(self.tcpdump.ports),
                                 self.tcpdump.kernel_drops, counters,
                                 path=path if self.keep_file else None, problems=problems)
        return self.captured

    def _cleanup(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
            reaper.forget(self._reaper_token)


def _read_file(path: Path) -> tuple[tuple[Frame, ...], tuple[Segment, ...], tuple[str, ...]]:
    from ..errors import CaptureFileError
    from ..formats.pcapread import read_capture

    try:
        contents = read_capture(str(path))
    except CaptureFileError as exc:  # keep what was read; say what was not
        contents = getattr(exc, "partial", None)
        if contents is None:
            raise
        contents.problems.append(str(exc))
    frames, segments = tcp_frames(contents.frames, contents.segments)
    return frames, segments, tuple(contents.problems)


def tcp_frames(frames: Iterable[Frame], segments: Optional[Iterable[Segment]] = None
               ) -> tuple[tuple[Frame, ...], tuple[Segment, ...]]:
    """Only the frames that carry TCP (our UDP markers go), renumbered 1..n.

    `segments` are the TCP segments of `frames` by their frame numbers; when
    None they are decoded here with the fast reader's header walk."""
    from dataclasses import replace

    from ..formats.pcap_links import decode_segment

    frames = tuple(frames)
    if segments is None:
        segments = (decode_segment(number, frame.time_ns, frame.linktype, frame.data)
                    for number, frame in enumerate(frames, start=1))
    kept_frames, kept_segments = [], []
    for segment in segments:
        if segment is None:
            continue
        kept_frames.append(frames[segment.frame - 1])
        number = len(kept_frames)
        kept_segments.append(segment if segment.frame == number else replace(segment, frame=number))
    return tuple(kept_frames), tuple(kept_segments)


def _flag_counts(segments: Iterable[Segment]) -> dict[str, int]:
    count = {"syn": 0, "synack": 0, "fin": 0, "rst": 0}
    for segment in segments:
        if segment.is_syn:
            count["synack" if segment.flags & TcpFlags.ACK else "syn"] += 1
        count["fin"] += segment.is_fin
        count["rst"] += segment.is_rst
    return count


def _has_scapy() -> bool:
    try:
        import scapy  # noqa: F401
    except ImportError:
        return False
    return True
