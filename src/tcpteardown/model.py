"""The one model every source builds and every view reads.

Plain, frozen, slotted dataclasses with no I/O: a scenario run, a live
capture, a pcap file, an strace log and an application log all become one
`Recording`; analysis is pure functions over it.

House rules:
- times are integer nanoseconds since the epoch (CLOCK_REALTIME, the clock
  packet timestamps use); a socket call keeps both its start and its end;
- errno values are *names* (``"ECONNRESET"``), never numbers: the numbers
  differ between Linux and macOS;
- nothing here imports socket, scapy or anything that touches the system.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional

__all__ = [
    "Endpoint",
    "TcpFlags",
    "Segment",
    "SocketCall",
    "KernelEvent",
    "CauseKind",
    "Link",
    "Metadata",
    "Recording",
    "Frame",
]


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """An IP address and TCP port: ``127.0.0.1:8080`` or ``[::1]:8080``."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @classmethod
    def parse(cls, text: str) -> "Endpoint":
        """Parse ``1.2.3.4:80``, ``[::1]:80`` (and the bare ``::1:80`` that
        some logs print). Raises ValueError with the offending text."""
        text = text.strip()
        try:
            if text.startswith("["):
                host, _, port = text[1:].partition("]:")
            else:
                host, _, port = text.rpartition(":")
            address = ipaddress.ip_address(host)
            number = int(port)
        except ValueError:
            raise ValueError(f"not an endpoint (expected 1.2.3.4:80 or [::1]:80): {text!r}") from None
        if not 0 <= number <= 65535:
            raise ValueError(f"port out of range in endpoint {text!r}")
        return cls(address.compressed, number)


def writable_twin(cls: type) -> type:
    """A class with the slots of the frozen, slotted dataclass `cls`, writable:
    an instance filled in field by field and then given ``__class__ = cls`` (the
    same slots in the same order, so Python allows it) is what ``cls(...)``
    builds. For hot paths that build millions: a frozen dataclass's own
    __init__ calls object.__setattr__ once a field (7x slower for SocketCall).
    Every field must be set; tests compare the result with ``cls(...)``."""
    return type(f"_Writable{cls.__name__}", (), {"__slots__": cls.__slots__, "__module__": cls.__module__})


class TcpFlags(enum.IntFlag):
    """TCP header flags, bit values as on the wire (RFC 9293, RFC 3168)."""

    FIN = 0x01  # no more data from sender
    SYN = 0x02  # synchronize sequence numbers
    RST = 0x04  # reset the connection
    PSH = 0x08  # push buffered data to the application
    ACK = 0x10  # acknowledgment field is significant
    URG = 0x20  # urgent pointer field is significant
    ECE = 0x40  # ECN echo
    CWR = 0x80  # congestion window reduced

    def __and__(self, other):
        """As IntFlag's, from a table of the 256 values: enum builds each result
        through EnumType.__call__ (~2 us), and the analysis tests flags a million
        times on a big capture (a line naming no 4-tuple predicts for thousands
        of connections)."""
        value = _int_and(self, other)  # NotImplemented for a non-int
        if value.__class__ is int and 0 <= value < 256:
            return _FLAGS_BY_VALUE[value]
        return enum.IntFlag.__and__(self, other)

    __rand__ = __and__

    def render(self) -> str:
        """``SYN,ACK``-style text in the order tcpdump users read them."""
        order = (TcpFlags.SYN, TcpFlags.FIN, TcpFlags.RST, TcpFlags.PSH,
                 TcpFlags.ACK, TcpFlags.URG, TcpFlags.ECE, TcpFlags.CWR)
        names = [flag.name for flag in order if self & flag]
        return ",".join(names) if names else "none"

    @classmethod
    def parse(cls, text: str) -> "TcpFlags":
        """Inverse of render(): ``"RST,ACK"`` -> RST|ACK."""
        flags = cls(0)
        for name in filter(None, (part.strip().upper() for part in text.split(","))):
            if name != "NONE":
                flags |= cls[name]
        return flags


_int_and = int.__and__
_FLAGS_BY_VALUE = tuple(enum.IntFlag.__and__(TcpFlags(value), value) for value in range(256))


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment as the kernel sent it, seen once."""

    frame: int  # 1-based position in its capture file, as Wireshark counts
    time_ns: int
    src: Endpoint
    dst: Endpoint
    flags: TcpFlags
    seq: int  # absolute sequence number
    ack: int  # absolute acknowledgment number (meaningful with ACK)
    window: int  # raw window field, before scaling
    payload_len: int
    # TCP options by name: ("MSS", 65495), ("WS", 7), ("SACK_PERM", None), ("TS", (tsval, tsecr))...
    options: tuple[tuple[str, object], ...] = ()
    # Why the kernel sent this RST, as the tcp:tcp_send_reset tracepoint said
    # it (e.g. "NO_SOCKET"); None when no witness saw it.
    reset_reason: Optional[str] = None
    # The process that sent or received it, where the capture says so (Apple's
    # `tcpdump -k` pcapng and PKTAP headers); None otherwise.
    pid: Optional[int] = None
    process: Optional[str] = None

    # int & int: an IntFlag's own & builds a new member each time (a tenth of explain's time
    # on 50,000 segments)
    @property
    def is_rst(self) -> bool:
        return int(self.flags) & _RST != 0

    @property
    def is_fin(self) -> bool:
        return int(self.flags) & _FIN != 0

    @property
    def is_syn(self) -> bool:
        return int(self.flags) & _SYN != 0

    @property
    def connection_key(self) -> frozenset[Endpoint]:
        """The unordered 4-tuple this segment belongs to."""
        return frozenset((self.src, self.dst))


_RST, _FIN, _SYN = int(TcpFlags.RST), int(TcpFlags.FIN), int(TcpFlags.SYN)


@dataclass(frozen=True, slots=True)
class SocketCall:
    """One socket system call (or the application's report of one).

    `errno` is None on success; end-of-file is a recv/read with result 0 and
    no errno. `source` says where we learnt of it: ``scenario`` (timed by our
    own recorder), ``strace`` or ``log``.
    """

    role: str  # "client", "server", or a process name from strace/logs
    op: str  # connect, send, recv, close, shutdown, accept, ...
    start_ns: int  # when the call was entered (ns since the epoch)
    end_ns: int  # when it returned: the time its outcome is known
    result: Optional[int] = None  # return value: bytes moved, 0 for EOF, -1 on error
    errno: Optional[str] = None  # errno name ("EPIPE"), "ETIMEDOUT" for timeouts
    pid: Optional[int] = None  # the thread's process id, when the source knows it
    fd: Optional[int] = None  # the socket's file descriptor, when the source knows it
    local: Optional[Endpoint] = None  # this socket's own address and port
    remote: Optional[Endpoint] = None  # the peer's, when known
    source: str = "scenario"  # where we learnt of it: scenario, strace, log, predicted (from the packets)
    text: str = ""  # the strace line, the log line, or how the scenario phrased the call
    where: Optional[str] = None  # "app.log:17": the file and line an importer read it from
    # A readiness event (op epoll_wait, poll or select): what the loop was told about
    # this fd, as the syscall names it ("EPOLLIN|EPOLLRDHUP", "POLLIN|POLLHUP", "in").
    events: str = ""

    @property
    def failed(self) -> bool:
        """The call failed: an errno that is not a "would block" (see `would_block`)."""
        return self.errno is not None and not self.would_block

    @property
    def would_block(self) -> bool:
        """The loop asking "anything yet?", not a failure: EAGAIN/EWOULDBLOCK from
        accept, read/recv* or write/send* that returned at once (a socket timeout,
        SO_RCVTIMEO/SO_SNDTIMEO, sleeps at least a clock tick and is a real
        timeout), and EINPROGRESS/EALREADY from a non-blocking connect (its
        outcome comes later, through SO_ERROR or the next read/write). A log
        line is what the program reported as an error: never a would-block."""
        if self.errno in IN_PROGRESS_ERRNOS:
            return self.op == "connect"
        return (self.errno in WOULD_BLOCK_ERRNOS and self.source != "log"
                and self.op in WOULD_BLOCK_OPS and self.end_ns - self.start_ns < WAITED_NS)

    @property
    def is_readiness(self) -> bool:
        """An event loop's wake-up for this fd (epoll_wait, poll, select), not a call on it."""
        return self.op in READINESS_OPS

    @property
    def readiness(self) -> frozenset[str]:
        """`events` without the syscall's prefix: {"IN", "RDHUP"} for EPOLLIN|EPOLLRDHUP,
        POLLIN|POLLRDHUP or select's "in" (select's "out" is OUT, "except" PRI)."""
        names = set()
        for name in filter(None, self.events.split("|")):
            name = name.strip().upper()
            name = name[5:] if name.startswith("EPOLL") else name[4:] if name.startswith("POLL") else name
            names.add({"EXCEPT": "PRI"}.get(name, name))
        return frozenset(names)

    @property
    def is_eof(self) -> bool:
        return self.errno is None and self.result == 0 and self.op in RECEIVE_OPS

    @property
    def process(self) -> str:
        """How every view names the process: ``python3 (pid 4242)``, or the role
        alone when the pid is unknown (a log line) or the role is a scenario's
        side (``client``: its pid is the recorder's own)."""
        return f"{self.role} (pid {self.pid})" if self.pid is not None and self.source != "scenario" else self.role

    @property
    def outcome(self) -> str:
        """The errno name, ``EOF``, or ``ok``."""
        if self.errno:
            return self.errno
        return "EOF" if self.is_eof else "ok"


# Operations that read from a socket: a 0 return from these is end-of-file.
RECEIVE_OPS = frozenset({"recv", "read", "recvfrom", "recvmsg", "readv"})
# Operations that write to a socket.
SEND_OPS = frozenset({"send", "write", "sendto", "sendmsg", "writev", "sendfile", "sendall"})
# An event loop's wake-ups (epoll_pwait/epoll_pwait2 are epoll_wait, ppoll poll, pselect6 select).
READINESS_OPS = frozenset({"epoll_wait", "poll", "select"})
# "Would block": on a non-blocking socket these ops answer EAGAIN (== EWOULDBLOCK on
# Linux and macOS) instead of waiting, and connect answers EINPROGRESS, then EALREADY.
WOULD_BLOCK_ERRNOS = frozenset({"EAGAIN", "EWOULDBLOCK"})
IN_PROGRESS_ERRNOS = frozenset({"EINPROGRESS", "EALREADY"})
WOULD_BLOCK_OPS = RECEIVE_OPS | SEND_OPS | {"accept"}
# A socket timeout is rounded up to whole clock ticks (1 ms at HZ=1000, 10 ms at
# HZ=100) and sleeps that long; a non-blocking call returns at once. Calls shorter
# than this did not wait (strace's own overhead under load stays well below it).
WAITED_NS = 10_000_000


def _first_value(pairs: tuple[tuple[str, str], ...], key: str, default: Optional[str]) -> Optional[str]:
    """The value of the first (name, value) pair named `key` (text pairs keep their order)."""
    for name, value in pairs:
        if name == key:
            return value
    return default


@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One Linux tracepoint hit: ``tcp:tcp_send_reset``, ``tcp:tcp_receive_reset``,
    ``sock:inet_sock_set_state`` or ``sock:inet_sk_error_report``.

    `fields` keeps the tracepoint's own fields as text pairs (``("reason",
    "NO_SOCKET")``, ``("newstate", "TCP_CLOSE")``, ``("error", "104")``...).
    """

    time_ns: int
    name: str
    src: Optional[Endpoint] = None  # the socket's local side (saddr:sport)
    dst: Optional[Endpoint] = None  # the socket's remote side (daddr:dport)
    fields: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return _first_value(self.fields, key, default)


class CauseKind(str, enum.Enum):
    """What made a socket call end the way it did (the JSON `cause.kind`)."""

    RST = "rst"
    FIN = "fin"
    SYN_UNANSWERED = "syn-unanswered"
    LOCAL_CLOSE = "local-close"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Link:
    """A socket call, the segment that caused its outcome, and why."""

    call: SocketCall  # the failing (or ending) call; also the most precise of `sources`
    kind: CauseKind  # what caused it: an RST, a FIN, an unanswered SYN, our own close, nothing
    rule: str  # name of the correlation rule that decided it
    explanation: str  # one sentence a person can paste into a write-up
    cause: Optional[Segment] = None  # the segment, when a segment caused it
    # Other segments that belong to the story (SYN retransmissions, ...).
    related: tuple[Segment, ...] = ()
    # The cause of a local-close link: our own close/shutdown call.
    local_call: Optional[SocketCall] = None
    # Doubts the rule had: "two RSTs reached this socket", "no packets"...
    caveats: tuple[str, ...] = ()
    # When the event loop was told: the readiness event (epoll_wait, poll, select)
    # for this socket between the cause and the call.
    wakeup: Optional[SocketCall] = None
    # The other sources that saw this same failure (the program's log line beside
    # strace's call, the same line kept from stderr and given with --log), in time
    # order: one failure is one link however many sources saw it (analysis.sources).
    seen_by: tuple[SocketCall, ...] = ()

    @property
    def sources(self) -> tuple[SocketCall, ...]:
        """Every call that told this failure: `call` first, then `seen_by`."""
        return (self.call,) + self.seen_by


@dataclass(frozen=True, slots=True)
class Metadata:
    """Where and how a recording was made."""

    scenario: Optional[str] = None
    os: Optional[str] = None  # "Linux", "Darwin"
    kernel: Optional[str] = None  # platform.release()
    python: Optional[str] = None
    scapy: Optional[str] = None
    tcpteardown: Optional[str] = None
    hostname: Optional[str] = None
    capture: Optional[str] = None  # how packets were captured, in words
    started_ns: Optional[int] = None
    source_file: Optional[str] = None  # the capture file a recording was loaded from
    # Anything else, as text pairs: drop counters, address family, expected outcome...
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return _first_value(self.extra, key, default)


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured packet exactly as the capture saw it (link header included).

    Kept so that a recording can be written back as a capture file that
    Wireshark opens: the kernel's own bytes, never re-encoded ones.
    """

    time_ns: int
    linktype: int  # LINKTYPE_* number: 1 Ethernet, 0 NULL, 113 SLL, 276 SLL2, 101 RAW...
    data: bytes
    orig_len: int  # length on the wire; > len(data) when cut by snaplen


@dataclass(frozen=True, slots=True)
class Recording:
    """Everything known about one teardown story, on one time axis.

    `frames`, when present, are the captured packets in capture order:
    `Segment.frame` n is `frames[n - 1]`.
    """

    segments: tuple[Segment, ...] = ()  # TCP segments in capture order
    calls: tuple[SocketCall, ...] = ()  # socket calls, time-sorted
    kernel_events: tuple[KernelEvent, ...] = ()  # the witness: tracepoints (RST reasons, state changes)
    metadata: Metadata = field(default_factory=Metadata)
    frames: tuple[Frame, ...] = ()  # the captured packets' own bytes, when kept

    def with_calls(self, calls: Iterable[SocketCall]) -> "Recording":
        """A copy with more socket calls (from strace or a log), time-sorted."""
        merged = tuple(sorted((*self.calls, *calls), key=lambda c: (c.start_ns, c.end_ns)))
        return replace(self, calls=merged)

    @property
    def start_ns(self) -> Optional[int]:
        times = [s.time_ns for s in self.segments] + [c.start_ns for c in self.calls]
        return min(times) if times else None
