"""Where two teardown stories part: recording A against recording B.

Theory of operation. Two recordings of "the same" teardown never agree on
the things that do not matter: addresses, ports, initial sequence numbers,
the wall clock, a few microseconds of loopback jitter. So each side is first
*normalised*: one connection is picked (the caller's, else the one holding
the first failing socket call, else the first); the endpoint that sent the
first SYN is the client and the other the server; sequence and
acknowledgment numbers count from each direction's initial number; times
count from the first SYN. What remains is two lists of steps:

- segments, keyed by (sender role, flags, payload length);
- socket calls, keyed by (side, op family, outcome).

Each pair of lists is aligned by edit distance (`analysis.align`: a match costs 0, or 1 when
only the relative seq/ack differ, a deletion or insertion 4 (6 for a segment
carrying data), a substitution 6, and a substitution is only allowed between
segments of the same sender and class -- opening (SYN), closing (FIN or
RST), data, bare ACKs -- or calls of the same side and op): so an RST where the
other recording has a FIN pairs up as *one* step with a different flag, and
a segment missing from one recording is *one* step only in the other,
instead of everything after it shifting. Segments are aligned in two
passes: the SYNs, FINs and RSTs first (the story's skeleton), then the data
and ACKs between two paired ones. The two aligned lists are merged by
time into `aligned_rows`, and every row is inspected for differences:

| difference          | when                                                        |
| ---                 | ---                                                         |
| `OnlyIn`            | a segment or call has no partner in the other recording     |
|                     | (a bare ACK is shown but does not count: ACK timing)        |
| `FlagDifference`    | partners whose flags differ (RST where the other has FIN)   |
| `PayloadDifference` | partners whose payload lengths differ                       |
| `ReasonDifference`  | partner RSTs the kernel witness saw sent for other reasons  |
| `OutcomeDifference` | partner calls that ended differently (errno names, EOF, ok) |
| `StateDifference`   | a side went through other TCP states, as the kernel told it |
|                     | on both sides (packet-inferred states would only restate    |
|                     | the segment differences): where the two sequences part      |
| `TimingDifference`  | a step came later/earlier, or took longer, beyond tolerance |
| `OptionDifference`  | TCP options differ (MSS, window scale, SACK, timestamps)    |

Timing compares the gap since the previous paired step, not the time since
the SYN: one slow step is one difference, not a cascade. The default
tolerance is generous (loopback jitter on a loaded machine is not a
difference; a 200 ms retransmission timeout is).

Options: MSS is compared as the largest IP packet it implies (MSS + IP and
TCP headers, at most 65535, the largest IPv4 total length), so one stack's
IPv4 and IPv6 recordings match (Linux lo: 65495 and 65476; macOS lo0: 16344
and 16324) while Linux against macOS does not. Window scale is compared by
value; SACK-permitted, SACK blocks and timestamps by presence (timestamp
values are clocks, not behaviour).

Aligning by teardown structure (`align_by="structure"`, `diff --align
structure`). Two *different* applications' teardowns of the same kind (an
HTTP server's close against a scenario's) share no payload sizes and often
not even who opened the connection. So each side is reduced to its
skeleton: the handshake, every FIN and RST, and what was sent after the
first of them (what answered the close); data and bare ACKs before the
close are summed per direction. When the side that closed first is the
client in one and the server in the other, the second side's roles are
swapped, so that closer faces closer. Alignment then keys on sender and
flags, never on payload length.

Every difference has a `category`, so stack differences are named apart
from the applications':

| category      | differences                                                        |
| ---           | ---                                                                |
| `stack`       | the kernels chose differently: MSS, window scale, SACK/timestamps,  |
|               | the order of SYN options, bare RST vs RST,ACK answering the same    |
|               | step, a FIN sent again to acknowledge the peer's FIN (XNU, CLOSING) |
| `teardown`    | the story differs: FIN where the other has RST, a FIN or RST only   |
|               | one side has, another errno, another TCP state, another RST reason  |
| `application` | payload sizes, data segments, timing, which side closed first       |

In structure mode application differences are shown, not counted: they
are what two applications may differ in while their kernels tear down the
same way.

This module is pure: it never imports socket or scapy, and never reads files.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import ClassVar, Iterable, Optional, Sequence, Union

from ..model import Endpoint, Recording, SocketCall, TcpFlags
from .align import INDEL, align
from .relative import relative_numbers
from .rules import op_family
from .tcpstate import Connection, connections, infer_states, state_at

__all__ = ["DEFAULT_TOLERANCE_NS", "SegmentStep", "CallStep", "Difference", "OnlyIn", "FlagDifference",
           "PayloadDifference", "ReasonDifference", "OutcomeDifference", "StateDifference", "TimingDifference",
           "OptionDifference", "OptionOrderDifference", "ApplicationDifference", "AlignedRow", "SideSummary", "DiffResult", "Normalised", "diff",
           "normalise", "pick_connection"]

# Loopback jitter on a busy two-core CI machine reaches tens of milliseconds;
# the timers that make teardowns differ (delayed ACK 40 ms+, RTO 200 ms+,
# SYN retransmission 1 s) mostly sit above this.
DEFAULT_TOLERANCE_NS = 250_000_000

_MAX_IP_PACKET = 65535
# After the last segment, states are read this much later (see _segment_steps).
_LAST_STATE_NS = 1_000_000


# -- steps: what is left of a recording after normalising ------------------------

@dataclass(frozen=True, slots=True)
class SegmentStep:
    """One segment, with addresses, ports, numbers and times made relative."""

    frame: int  # 1-based frame number in its own capture
    time_ns: int  # since the first SYN
    sender: str  # "client" or "server"
    flags: TcpFlags
    payload_len: int
    rel_seq: int
    rel_ack: int  # 0 without ACK
    options: tuple[tuple[str, object], ...] = ()
    ipv6: bool = False
    reset_reason: Optional[str] = None
    # TCP states of (client, server) this segment left (halfway to the next one), when known.
    states: tuple[Optional[str], Optional[str]] = (None, None)

    @property
    def key(self) -> tuple:
        return (self.sender, int(self.flags), self.payload_len)

    @property
    def arrow(self) -> str:
        return f"{self.sender} -> {_OTHER.get(self.sender, '?')}"

    @property
    def label(self) -> str:
        text = f"{self.flags.render()} seq={self.rel_seq}"
        if self.flags & TcpFlags.ACK:
            text += f" ack={self.rel_ack}"
        return text + f" len={self.payload_len}"

    def describe(self) -> str:
        return f"{self.arrow} {self.label} (frame {self.frame})"


@dataclass(frozen=True, slots=True)
class CallStep:
    """One socket call, its side told by its endpoints, its time made relative."""

    index: int  # position in the recording's calls
    time_ns: int  # start, since the first SYN (negative before it: connect starts first)
    end_ns: int
    side: str  # "client", "server", or the role the source gave
    op: str
    outcome: str  # errno name, "EOF" or "ok"
    text: str = ""

    @property
    def key(self) -> tuple:
        return (self.side, op_family(self.op) or self.op, self.outcome)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.time_ns

    @property
    def label(self) -> str:
        return f"{self.op}() -> {self.outcome}"

    def describe(self) -> str:
        return f"{self.side} {self.label}"


Step = Union[SegmentStep, CallStep]


# Roles: who opened (client, server); when aligning by structure, who closed first (closer, peer).
_OTHER = {"client": "server", "server": "client", "closer": "peer", "peer": "closer"}
ALIGN_CHOICES = ("steps", "structure")


# -- differences ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Difference:
    """Base of every difference: which aligned row it is on, and a sentence."""

    kind: ClassVar[str] = "difference"
    row: int
    # Shown, not counted: an application difference when aligning by structure.
    shown_only: bool = field(default=False, kw_only=True)

    @property
    def category(self) -> str:
        """"stack" (the kernels chose differently), "teardown" or "application"."""
        return "teardown"

    @property
    def counts(self) -> bool:
        """False for differences shown for information only (see OnlyIn)."""
        return not self.shown_only

    def describe(self) -> str:  # pragma: no cover - every subclass says it better
        return self.kind

    def to_json(self) -> dict:
        return {"kind": self.kind, "category": self.category, "row": self.row, "counts": self.counts,
                "text": self.describe()}


@dataclass(frozen=True, slots=True)
class OnlyIn(Difference):
    """A segment or socket call with no partner in the other recording."""

    kind: ClassVar[str] = "only-in"
    side: str  # "A" or "B": the recording that has it
    step: Step
    # A bare ACK (no data, no SYN/FIN/RST) only one side sent is timing, not
    # teardown: whether the kernel acknowledged a FIN on its own or on the
    # back of the application's next segment depends on how soon the
    # application acted (the delayed-ACK timer). Shown; counts only when asked.
    informational: bool = False
    # A FIN sent again, with the seq of the sender's first FIN, to acknowledge
    # the peer's FIN: XNU does this from CLOSING (tcp_outflags), Linux sends a bare ACK.
    fin_again: bool = False

    @property
    def counts(self) -> bool:
        return not (self.informational or self.shown_only)

    @property
    def category(self) -> str:
        if self.fin_again:
            return "stack"
        if isinstance(self.step, SegmentStep) and _segment_class(self.step) in ("data", "ack") \
                and self.step.sender in ("client", "server"):
            return "application"
        return "teardown"  # a FIN, an RST, a call, or (aligned by structure) what answered the close

    def describe(self) -> str:
        what = "segment" if isinstance(self.step, SegmentStep) else "call"
        text = f"{what} {self.step.describe()} only in {self.side}"
        if self.fin_again:
            text += (" (its FIN sent again to acknowledge the peer's FIN in CLOSING, as XNU does; "
                     "Linux acknowledges with a bare ACK)")
        if self.informational:
            text += " (a bare ACK: acknowledgment timing, not counted)"
        return text


@dataclass(frozen=True, slots=True)
class FlagDifference(Difference):
    """Partner segments whose flags differ: the classic RST where the other has FIN."""

    kind: ClassVar[str] = "flags"
    a: SegmentStep
    b: SegmentStep
    # Both RSTs answer the same step (the rows before them agree): bare RST
    # against RST,ACK is then the kernels' choice, not the story's.
    same_trigger: bool = False

    @property
    def fin_vs_rst(self) -> bool:
        return {_closing(self.a.flags), _closing(self.b.flags)} == {"FIN", "RST"}

    @property
    def rst_flavour(self) -> bool:
        return bool(self.a.flags & self.b.flags & TcpFlags.RST) and \
            (self.a.flags ^ self.b.flags) & ~TcpFlags.PSH == TcpFlags.ACK

    @property
    def category(self) -> str:
        if self.rst_flavour and self.same_trigger:
            return "stack"
        if not (self.a.flags ^ self.b.flags) & ~TcpFlags.PSH:
            return "application"  # PSH only: how the application's data was pushed
        return "teardown"

    def describe(self) -> str:
        text = (f"{self.a.arrow}: {self.a.flags.render()} in A (frame {self.a.frame}) where B has "
                f"{self.b.flags.render()} (frame {self.b.frame})")
        if self.fin_vs_rst:
            text += f": A closes with {_closing(self.a.flags)}, B with {_closing(self.b.flags)}"
        elif self.rst_flavour:
            text += (": bare RST against RST,ACK answering the same step" if self.same_trigger else
                     ": the RSTs answer different steps (a bare RST answers a segment that carried an "
                     "ACK; RST,ACK is an abort or answers a SYN)")
        return text


@dataclass(frozen=True, slots=True)
class PayloadDifference(Difference):
    kind: ClassVar[str] = "payload"
    a: SegmentStep
    b: SegmentStep

    @property
    def category(self) -> str:
        return "application"

    def describe(self) -> str:
        return (f"{self.a.arrow} {self.a.flags.render()}: {self.a.payload_len} payload bytes in A "
                f"(frame {self.a.frame}), {self.b.payload_len} in B (frame {self.b.frame})")


@dataclass(frozen=True, slots=True)
class ReasonDifference(Difference):
    """Partner RSTs that the kernel witness saw sent for different reasons."""

    kind: ClassVar[str] = "reason"
    a: SegmentStep
    b: SegmentStep

    def describe(self) -> str:
        return (f"{self.a.arrow} {self.a.flags.render()}: sent for {self.a.reset_reason} in A, "
                f"for {self.b.reset_reason} in B")


@dataclass(frozen=True, slots=True)
class OutcomeDifference(Difference):
    """Partner socket calls that ended differently: errno names, EOF or ok."""

    kind: ClassVar[str] = "errno"
    a: CallStep
    b: CallStep

    def describe(self) -> str:
        return f"{self.a.side} {self.a.op}(): {self.a.outcome} in A, {self.b.outcome} in B"


@dataclass(frozen=True, slots=True)
class StateDifference(Difference):
    """The kernel took one side through other TCP states: the first place
    where the two sequences of states part (not a sample at each row, which
    would depend on microseconds between a kernel event and its packet)."""

    kind: ClassVar[str] = "state"
    role: str  # "client" or "server"
    before: Optional[str]  # the last state both went through
    a_state: Optional[str]  # None: A's sequence ended there
    b_state: Optional[str]
    near: SegmentStep  # the segment nearest in time to where they part

    def describe(self) -> str:
        start = f"{self.before} -> " if self.before else ""
        return (f"the {self.role} went {start}{self.a_state or '(no further state)'} in A, "
                f"{start}{self.b_state or '(no further state)'} in B (near {self.near.arrow} "
                f"{self.near.flags.render()})")


@dataclass(frozen=True, slots=True)
class TimingDifference(Difference):
    """A step came later or earlier (gap since the previous paired step), or took longer."""

    kind: ClassVar[str] = "timing"
    what: str  # "gap" or "duration"
    a_ns: int
    b_ns: int
    step: Step  # A's step

    @property
    def category(self) -> str:
        return "application"

    def describe(self) -> str:
        if self.what == "duration":
            return (f"{self.step.describe()} took {_ms(self.a_ns)} in A, {_ms(self.b_ns)} in B")
        return (f"{self.step.describe()} came {_ms(self.a_ns)} after the previous step in A, "
                f"{_ms(self.b_ns)} in B")

    def to_json(self) -> dict:
        return {**Difference.to_json(self), "what": self.what, "a_seconds": self.a_ns / 1e9,
                "b_seconds": self.b_ns / 1e9}


@dataclass(frozen=True, slots=True)
class OptionDifference(Difference):
    kind: ClassVar[str] = "options"
    option: str  # "MSS", "WS", "SACK_PERM", "TS", "SACK", ...
    a_value: object  # as captured; None when absent (see a_present)
    b_value: object
    a_present: bool
    b_present: bool
    step: SegmentStep  # A's segment

    @property
    def category(self) -> str:
        return "stack"

    def describe(self) -> str:
        def show(present, value):
            if not present:
                return "absent"
            if self.option in ("TS", "SACK", "SACK_PERM"):
                return "present"
            return str(value)
        return (f"{self.step.arrow} {self.step.flags.render()}: option {self.option} "
                f"{show(self.a_present, self.a_value)} in A, {show(self.b_present, self.b_value)} in B")

    def to_json(self) -> dict:
        return {**Difference.to_json(self), "option": self.option,
                "a": _jsonable(self.a_value) if self.a_present else None,
                "b": _jsonable(self.b_value) if self.b_present else None}


@dataclass(frozen=True, slots=True)
class OptionOrderDifference(Difference):
    """The same SYN options in another order: each stack writes its own (XNU mss,ws,ts,sackOK; Linux mss,sackOK,ts,ws)."""

    kind: ClassVar[str] = "option-order"
    a_order: tuple[str, ...]
    b_order: tuple[str, ...]
    step: SegmentStep  # A's segment

    @property
    def category(self) -> str:
        return "stack"

    def describe(self) -> str:
        return (f"{self.step.arrow} {self.step.flags.render()}: options in the order "
                f"{','.join(self.a_order)} in A, {','.join(self.b_order)} in B")

    def to_json(self) -> dict:
        return {**Difference.to_json(self), "a": list(self.a_order), "b": list(self.b_order)}


@dataclass(frozen=True, slots=True)
class ApplicationDifference(Difference):
    """What the applications did differently, for the connection as a whole:
    which side closed first, how much data each side sent before the close."""

    kind: ClassVar[str] = "application"
    what: str  # "closer" or "data"
    text: str

    @property
    def category(self) -> str:
        return "application"

    def describe(self) -> str:
        return self.text

    def to_json(self) -> dict:
        return {**Difference.to_json(self), "what": self.what}


def _closing(flags: TcpFlags) -> Optional[str]:
    if flags & TcpFlags.RST:
        return "RST"
    if flags & TcpFlags.FIN:
        return "FIN"
    return None


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms" if abs(ns) < 10_000_000_000 else f"{ns / 1e9:.1f} s"


def _jsonable(value: object) -> object:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


# -- rows and the result ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AlignedRow:
    """One line of the diff table: a step of A, its partner in B (either may be None)."""

    kind: str  # "segment" or "call"
    a: Optional[Step]
    b: Optional[Step]
    differences: tuple[Difference, ...] = ()

    @property
    def differs(self) -> bool:
        return bool(self.differences)


@dataclass(frozen=True, slots=True)
class SideSummary:
    """Which connection of which recording one side of the diff is about."""

    label: str  # file name, scenario name, or "A"/"B"
    os: Optional[str]
    client: Optional[Endpoint]
    server: Optional[Endpoint]
    connection: Optional[int]  # 1-based among the recording's connections; None: no segments
    connections: int  # how many the recording has
    roles_known: bool  # False: no SYN seen, the client is a guess
    states_source: Optional[str]
    segments: int
    calls: int
    closer: Optional[str] = None  # aligned by structure: who closed first ("client" or "server")

    def to_json(self) -> dict:
        return {"label": self.label, "os": self.os,
                "client": str(self.client) if self.client else None,
                "server": str(self.server) if self.server else None,
                "connection": self.connection, "connections": self.connections,
                "roles_known": self.roles_known, "states_source": self.states_source,
                "segments": self.segments, "calls": self.calls, "closer": self.closer}


@dataclass(frozen=True, slots=True)
class DiffResult:
    a: SideSummary
    b: SideSummary
    aligned_rows: tuple[AlignedRow, ...]
    differences: tuple[Difference, ...]
    tolerance_ns: int
    notes: tuple[str, ...] = ()  # what was not compared, and why
    align_by: str = "steps"  # or "structure" (see the module's docstring)

    def by_category(self, category: str) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.category == category)

    @property
    def matches(self) -> bool:
        """True when no difference counts (bare ACKs only one side sent do not, by default)."""
        return not any(d.counts for d in self.differences)

    def to_json(self) -> dict:
        return {
            "matches": self.matches,
            "align_by": self.align_by,
            "tolerance_ms": self.tolerance_ns / 1e6,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "rows": [{"kind": row.kind, "a": _step_json(row.a), "b": _step_json(row.b),
                      "differences": [d.kind for d in row.differences]} for row in self.aligned_rows],
            "differences": [d.to_json() for d in self.differences],
            "notes": list(self.notes),
        }


def _step_json(step: Optional[Step]) -> Optional[dict]:
    if step is None:
        return None
    if isinstance(step, SegmentStep):
        return {"frame": step.frame, "time": step.time_ns / 1e9, "sender": step.sender,
                "flags": step.flags.render(), "seq": step.rel_seq, "ack": step.rel_ack,
                "len": step.payload_len, "options": [[n, _jsonable(v)] for n, v in step.options],
                "reset_reason": step.reset_reason,
                "states": {"client": step.states[0], "server": step.states[1]}}
    return {"time": step.time_ns / 1e9, "end": step.end_ns / 1e9, "side": step.side, "op": step.op,
            "outcome": step.outcome, "text": step.text}


# -- normalising one recording ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Normalised:
    segments: tuple[SegmentStep, ...]
    calls: tuple[CallStep, ...]
    summary: SideSummary
    # role -> the states it went through, consecutive repeats removed, with relative times.
    state_paths: tuple[tuple[str, tuple[tuple[int, str], ...]], ...] = ()

    def path(self, role: str) -> tuple[tuple[int, str], ...]:
        return dict(self.state_paths).get(role, ())


def pick_connection(recording: Recording, choice: Union[None, int, str] = None) -> Optional[Connection]:
    """The connection to diff.

    `choice`: a 1-based index (``2``, ``"2"``), an endpoint one side of it
    uses (``"127.0.0.1:5555"``, ``"[::1]:80"``) or a port (``":5555"``).
    Without one: the connection of the first failing socket call, else the
    first connection. None when the recording has no segments. ValueError,
    listing the connections, when `choice` names none.
    """
    conns = connections(recording)
    if not conns:
        if choice is not None:
            raise ValueError(f"cannot pick connection {choice}: the recording has no TCP segments")
        return None
    if choice is None:
        for call in sorted(recording.calls, key=lambda c: (c.start_ns, c.end_ns)):
            if call.failed:
                conn = _connection_of_call(conns, call)
                if conn is not None:
                    return conn
        return conns[0]
    text = str(choice).strip()
    if text.isdigit():
        number = int(text)
        if 1 <= number <= len(conns):
            return conns[number - 1]
    else:
        try:
            port = int(text[1:]) if text.startswith(":") else None
            endpoint = None if port is not None else Endpoint.parse(text)
        except ValueError:
            port = endpoint = None
        for conn in conns:
            if endpoint is not None and endpoint in conn.key:
                return conn
            if port is not None and port in (conn.client.port, conn.server.port):
                return conn
    listing = "; ".join(f"{c.index + 1}: {c.client} -> {c.server}" for c in conns)
    raise ValueError(f"no connection {text!r} (expected a number, HOST:PORT or :PORT); "
                     f"the recording has {listing}")


def _connection_of_call(conns: Sequence[Connection], call: SocketCall) -> Optional[Connection]:
    ends = {e for e in (call.local, call.remote) if e is not None}
    if not ends:
        return None
    candidates = [c for c in conns if ends <= c.key] or [c for c in conns if ends & c.key]
    for conn in candidates:
        if _in_time(conn, call):
            return conn
    return candidates[0] if candidates else None


def _in_time(conn: Connection, call: SocketCall) -> bool:
    return conn.next_start_ns is None or call.start_ns < conn.next_start_ns


def _calls_of(recording: Recording, conn: Optional[Connection], all_conns: int) -> list[tuple[int, SocketCall]]:
    chosen = []
    for index, call in enumerate(recording.calls):
        ends = {e for e in (call.local, call.remote) if e is not None}
        if conn is None or (not ends and all_conns <= 1):
            chosen.append((index, call))
        elif ends and ends <= conn.key and _in_time(conn, call):
            chosen.append((index, call))
    return chosen


def normalise(recording: Recording, connection: Union[None, int, str] = None, *, label: str = "") -> Normalised:
    """Steps of one recording with roles, numbers and times made relative."""
    conn = pick_connection(recording, connection)
    all_conns = len(connections(recording)) if recording.segments else 0
    calls = _calls_of(recording, conn, all_conns)
    origin = _origin(conn, calls)
    segments: tuple[SegmentStep, ...] = ()
    states_source = None
    paths: tuple = ()
    if conn is not None:
        segments, states_source, paths = _segment_steps(recording, conn, origin)
    call_steps = tuple(
        CallStep(index=index, time_ns=call.start_ns - origin, end_ns=call.end_ns - origin,
                 side=_side_of(call, conn), op=call.op, outcome=call.outcome, text=call.text)
        for index, call in sorted(calls, key=lambda pair: (pair[1].start_ns, pair[1].end_ns)))
    summary = SideSummary(
        label=label or recording.metadata.scenario or recording.metadata.source_file or "",
        os=recording.metadata.os,
        client=conn.client if conn else None, server=conn.server if conn else None,
        connection=conn.index + 1 if conn else None, connections=all_conns,
        roles_known=conn.roles_known if conn else True, states_source=states_source,
        segments=len(segments), calls=len(call_steps))
    return Normalised(segments, call_steps, summary, paths)


def _origin(conn: Optional[Connection], calls) -> int:
    if conn is not None:
        syn = next((s for s in conn.segments if s.is_syn and not s.flags & TcpFlags.ACK), None)
        return (syn or conn.segments[0]).time_ns
    return min((call.start_ns for _, call in calls), default=0)


def _segment_steps(recording: Recording, conn: Connection, origin: int) -> tuple:
    from .tcpstate import states_source

    numbers = relative_numbers(conn.segments)
    timelines = infer_states(recording, conn)
    client_line = timelines.get(conn.client, ())
    server_line = timelines.get(conn.server, ())
    steps = []
    for index, seg in enumerate(conn.segments):
        rel_seq, rel_ack = numbers[seg.frame]
        # "The state this segment left": sampled halfway to the next segment,
        # so a kernel event stamped a little before or after its packet reads
        # the same in every run.
        later = conn.segments[index + 1].time_ns if index + 1 < len(conn.segments) else seg.time_ns + _LAST_STATE_NS
        after = seg.time_ns + max(later - seg.time_ns, 0) // 2
        steps.append(SegmentStep(
            frame=seg.frame, time_ns=seg.time_ns - origin,
            sender="client" if seg.src == conn.client else "server",
            flags=TcpFlags(int(seg.flags)), payload_len=seg.payload_len, rel_seq=rel_seq, rel_ack=rel_ack,
            options=tuple(seg.options), ipv6=seg.src.is_ipv6, reset_reason=seg.reset_reason,
            states=(state_at(client_line, after), state_at(server_line, after))))
    paths = tuple((role, _path(line, origin)) for role, line in (("client", client_line), ("server", server_line)))
    return tuple(steps), states_source(recording, conn), paths


def _path(timeline, origin: int) -> tuple[tuple[int, str], ...]:
    path: list[tuple[int, str]] = []
    for when, state in timeline:
        if not path or path[-1][1] != state:
            path.append((when - origin, state))
    return tuple(path)


def _side_of(call: SocketCall, conn: Optional[Connection]) -> str:
    if conn is not None:
        if call.local == conn.client or (call.local is None and call.remote == conn.server):
            return "client"
        if call.local == conn.server or (call.local is None and call.remote == conn.client):
            return "server"
    return call.role


def _segment_indel(step: SegmentStep) -> int:
    """A segment that carries data weighs more than a bare ACK: when two
    alignments tie, the one that pairs the data wins."""
    return INDEL + (2 if step.payload_len else 0)


def _segment_class(step: SegmentStep) -> str:
    if step.flags & (TcpFlags.FIN | TcpFlags.RST):
        return "closing"
    if step.flags & TcpFlags.SYN:
        return "opening"
    return "data" if step.payload_len else "ack"


def _same_slot(x: SegmentStep, y: SegmentStep) -> bool:
    """Segments that may stand for each other: same sender, and both opening
    (SYN), both closing (FIN or RST), both carrying data, or both bare ACKs.
    So a FIN pairs with the other side's RST, never with a data segment that
    happens to be near, and 34 bytes of data never with an empty ACK."""
    return x.sender == y.sender and _segment_class(x) == _segment_class(y)


def _same_call(x: CallStep, y: CallStep) -> bool:
    return x.side == y.side and (op_family(x.op) or x.op) == (op_family(y.op) or y.op)


# -- the diff ---------------------------------------------------------------------

def diff(a: Recording, b: Recording, *, tolerance: Union[int, float, None] = None,
         connection_a: Union[None, int, str] = None, connection_b: Union[None, int, str] = None,
         label_a: str = "", label_b: str = "", count_bare_acks: bool = False,
         align_by: str = "steps") -> DiffResult:
    """Every difference between the teardown in `a` and the one in `b`.

    `tolerance` is in nanoseconds (default `DEFAULT_TOLERANCE_NS`): timing
    differences at or under it are jitter, not differences. A bare ACK only
    one side sent is reported but does not count unless `count_bare_acks`.
    `align_by` "structure" compares two applications' teardowns by who
    closed, how, and what answered (see the module's docstring).
    """
    if align_by not in ALIGN_CHOICES:
        raise ValueError(f"align_by must be one of {', '.join(ALIGN_CHOICES)}, not {align_by!r}")
    tolerance_ns = DEFAULT_TOLERANCE_NS if tolerance is None else int(tolerance)
    na = normalise(a, connection_a, label=label_a or "A")
    nb = normalise(b, connection_b, label=label_b or "B")
    fins_again = _fins_again(na.segments) | {-frame for frame in _fins_again(nb.segments)}
    whole: list[ApplicationDifference] = []
    if align_by == "structure":
        (na, before_a, closer_a), (nb, before_b, closer_b) = _skeleton(na), _skeleton(nb)
        whole = _application_differences(before_a, closer_a, before_b, closer_b)
    key = (lambda s: s.key) if align_by == "steps" else _structure_key
    seg_pairs = align(na.segments, nb.segments, key=key, same_slot=_same_slot,
                      anchor=lambda s: _segment_class(s) in ("opening", "closing"), indel=_segment_indel,
                      fine=lambda s: (s.rel_seq, s.rel_ack))
    call_pairs = align(na.calls, nb.calls, key=lambda c: c.key, same_slot=_same_call)
    seg_rows = [("segment", _get(na.segments, i), _get(nb.segments, j)) for i, j in seg_pairs]
    call_rows = [("call", _get(na.calls, i), _get(nb.calls, j)) for i, j in call_pairs]
    notes = []
    # A plain capture knows no socket calls: its silence about them is not a difference.
    compare_calls = bool(na.calls) and bool(nb.calls)
    for name, side, other in (("A", na, nb), ("B", nb, na)):
        if not side.calls and other.calls:
            notes.append(f"{name} has no socket calls (a plain capture): calls are shown, not compared")
    rows: list[AlignedRow] = []
    differences: list[Difference] = []
    previous: dict[str, tuple[int, int]] = {}  # kind -> times of the last paired step
    for number, (kind, x, y) in enumerate(_merge_by_time(seg_rows, call_rows)):
        found: list[Difference] = []
        if x is None or y is None:
            if kind == "segment" or compare_calls:
                step = x if x is not None else y
                bare = kind == "segment" and not count_bare_acks and _segment_class(step) == "ack"
                again = kind == "segment" and (step.frame if x is not None else -step.frame) in fins_again
                found.append(OnlyIn(number, "A" if x is not None else "B", step, informational=bare,
                                    fin_again=again))
        elif kind == "segment":
            found += _segment_differences(number, x, y, _same_trigger(rows))
        else:
            if x.outcome != y.outcome:
                found.append(OutcomeDifference(number, x, y))
            if abs(x.duration_ns - y.duration_ns) > tolerance_ns:
                found.append(TimingDifference(number, "duration", x.duration_ns, y.duration_ns, x))
        if x is not None and y is not None:
            before_a, before_b = previous.get(kind, (0, 0))
            gap_a, gap_b = x.time_ns - before_a, y.time_ns - before_b
            if abs(gap_a - gap_b) > tolerance_ns:
                found.append(TimingDifference(number, "gap", gap_a, gap_b, x))
            previous[kind] = (x.time_ns, y.time_ns)
        rows.append(AlignedRow(kind, x, y, tuple(found)))
    # States inferred from packets only restate the segment differences; the
    # kernel's own states (sock:inet_sock_set_state) on both sides are news.
    if _kernel_states(na) and _kernel_states(nb):
        for difference in _state_differences(rows, na, nb):
            row = rows[difference.row]
            rows[difference.row] = replace(row, differences=(*row.differences, difference))
    if whole:  # on the row where the teardown starts
        at = next((n for n, row in enumerate(rows) if row.kind == "segment"
                   and any(s is not None and _segment_class(s) == "closing" for s in (row.a, row.b))), 0)
        if rows:
            rows[at] = replace(rows[at], differences=(*rows[at].differences, *(replace(d, row=at) for d in whole)))
    if align_by == "structure":  # what two applications may differ in: shown, not counted
        rows = [replace(row, differences=tuple(replace(d, shown_only=True) if d.category == "application" else d
                                               for d in row.differences)) for row in rows]
        notes.append("aligned by teardown structure: handshake by who opened (client, server), the rest "
                     "by who closed first (closer, peer); data before the close summed, payload sizes "
                     "and timing shown, not counted")
    differences = [d for row in rows for d in row.differences]
    return DiffResult(na.summary, nb.summary, tuple(rows), tuple(differences), tolerance_ns, tuple(notes),
                      align_by)


# -- aligning by structure ----------------------------------------------------------

def _structure_key(step: SegmentStep) -> tuple:
    """Sender and flags, never payload length (PSH is how data was pushed, not teardown)."""
    return (step.sender, int(step.flags) & ~int(TcpFlags.PSH))


def _skeleton(side: Normalised) -> tuple[Normalised, dict, Optional[str]]:
    """The handshake, every FIN and RST and what was sent after the first of
    them, with senders after the handshake named closer/peer; the data sent
    before the close, per opening role; and who closed first."""
    closer = next((s.sender for s in side.segments if _segment_class(s) == "closing"), None)
    role = {closer: "closer", _OTHER[closer]: "peer"} if closer else {}
    before = {"client": [0, 0], "server": [0, 0]}  # segments, bytes
    kept, closed = [], False
    for step in side.segments:
        kind = _segment_class(step)
        closed = closed or kind == "closing"
        if kind == "opening":
            kept.append(step)
        elif kind == "closing" or (closed and kind == "data"):
            kept.append(replace(step, sender=role.get(step.sender, step.sender)))
        elif kind == "data":
            before[step.sender][0] += 1
            before[step.sender][1] += step.payload_len
    calls = tuple(replace(c, side=role.get(c.side, c.side)) for c in side.calls)
    summary = replace(side.summary, closer=closer)
    return replace(side, segments=tuple(kept), calls=calls, summary=summary), before, closer


def _application_differences(before_a: dict, closer_a: Optional[str], before_b: dict,
                             closer_b: Optional[str]) -> list[ApplicationDifference]:
    found = []
    if closer_a and closer_b and closer_a != closer_b:
        found.append(ApplicationDifference(0, "closer", f"the {closer_a} closed first in A, the {closer_b} in B "
                                                         "(aligned closer to closer)"))
    if before_a != before_b:
        def amounts(before):
            return ", ".join(f"{role} {n_bytes} B in {n} segment{'s' if n != 1 else ''}"
                             for role, (n, n_bytes) in before.items())
        found.append(ApplicationDifference(0, "data", f"data before the close: {amounts(before_a)} in A; "
                                                       f"{amounts(before_b)} in B"))
    return found


def _fins_again(steps: Sequence[SegmentStep]) -> set[int]:
    """Frames of FINs a sender sent again (same seq) after the peer's FIN had
    arrived: the acknowledgment of a FIN from CLOSING, XNU-style."""
    first: dict[str, int] = {}  # sender -> seq of its first FIN
    peer_fin: set[str] = set()  # senders whose peer has sent a FIN since theirs
    again = set()
    for step in steps:
        if not step.flags & TcpFlags.FIN:
            continue
        if step.sender in first and step.sender in peer_fin and step.rel_seq == first[step.sender]:
            again.add(step.frame)
        first.setdefault(step.sender, step.rel_seq)
        other = _OTHER.get(step.sender)
        if other in first:
            peer_fin.add(other)
    return again


def _same_trigger(rows: list[AlignedRow]) -> bool:
    """The last segment rows agree (both sides have them, same sender and class): what comes next answers the same step."""
    for row in reversed(rows):
        if row.kind != "segment":
            continue
        return row.a is not None and row.b is not None and _same_slot(row.a, row.b)
    return False


def _get(steps: Sequence, index: Optional[int]):
    return None if index is None else steps[index]


def _merge_by_time(first: list, second: list) -> Iterable[tuple]:
    """Merge two aligned lists into one, by time, keeping each list's order.

    Rows are placed by A's clock; a step only B has is placed by B's clock
    mapped onto A's between the pairs of partners around it, so it lands
    between the same steps in both ladders.
    """
    anchors = sorted((y.time_ns, x.time_ns) for _, x, y in (*first, *second)
                     if x is not None and y is not None)

    def when(row):
        _, x, y = row
        if x is not None:
            return x.time_ns
        at = bisect.bisect_right(anchors, (y.time_ns, float("inf")))
        if at == 0:
            return y.time_ns - (anchors[0][0] - anchors[0][1]) if anchors else y.time_ns
        b_time, a_time = anchors[at - 1]
        if at == len(anchors):
            return a_time + (y.time_ns - b_time)
        b_next, a_next = anchors[at]  # between two pairs: interpolate, keeping B's order
        return a_time + (y.time_ns - b_time) * max(a_next - a_time, 0) / max(b_next - b_time, 1)

    i = j = 0
    while i < len(first) or j < len(second):
        if j >= len(second) or (i < len(first) and when(first[i]) <= when(second[j])):
            yield first[i]
            i += 1
        else:
            yield second[j]
            j += 1


def _segment_differences(row: int, x: SegmentStep, y: SegmentStep, same_trigger: bool = False) -> list[Difference]:
    found: list[Difference] = []
    if x.flags != y.flags:
        found.append(FlagDifference(row, x, y, same_trigger))
    if x.payload_len != y.payload_len:
        found.append(PayloadDifference(row, x, y))
    if x.reset_reason and y.reset_reason and x.reset_reason != y.reset_reason:
        found.append(ReasonDifference(row, x, y))
    found += _option_differences(row, x, y)
    return found


def _option_differences(row: int, x: SegmentStep, y: SegmentStep) -> list[Difference]:
    ox, oy = _comparable_options(x), _comparable_options(y)
    raw_x, raw_y = dict(x.options), dict(y.options)
    found: list[Difference] = []
    for name in sorted(set(ox) | set(oy), key=_option_order):
        if name in ox and name in oy and ox[name] == oy[name]:
            continue
        found.append(OptionDifference(row, name, raw_x.get(name), raw_y.get(name), name in ox, name in oy, x))
    order_x = tuple(name for name, _ in x.options if name in oy)
    order_y = tuple(name for name, _ in y.options if name in ox)
    if x.flags & TcpFlags.SYN and order_x != order_y and sorted(order_x) == sorted(order_y):
        found.append(OptionOrderDifference(row, order_x, order_y, x))
    return found


_OPTION_ORDER = ("MSS", "WS", "SACK_PERM", "TS", "SACK")


def _option_order(name: str) -> tuple:
    return (_OPTION_ORDER.index(name) if name in _OPTION_ORDER else len(_OPTION_ORDER), name)


def _comparable_options(step: SegmentStep) -> dict[str, object]:
    """Option name -> what is compared: MSS as the IP packet size it implies,
    WS by value, everything else by presence."""
    out: dict[str, object] = {}
    for name, value in step.options:
        if name == "MSS" and isinstance(value, int):
            out[name] = min(value + (60 if step.ipv6 else 40), _MAX_IP_PACKET)
        elif name == "WS":
            out[name] = value
        else:
            out[name] = True
    return out


def _kernel_states(side: Normalised) -> bool:
    return (side.summary.states_source or "").startswith("kernel")


def _state_differences(rows: list[AlignedRow], na: Normalised, nb: Normalised) -> list[Difference]:
    found: list[Difference] = []
    for role in ("client", "server"):
        path_a, path_b = na.path(role), nb.path(role)
        names_a, names_b = [name for _, name in path_a], [name for _, name in path_b]
        if names_a == names_b:
            continue
        k = 0
        while k < min(len(names_a), len(names_b)) and names_a[k] == names_b[k]:
            k += 1
        side, when = ("a", path_a[k][0]) if k < len(path_a) else ("b", path_b[k][0])
        candidates = [(abs(getattr(row, side).time_ns - when), number) for number, row in enumerate(rows)
                      if row.kind == "segment" and getattr(row, side) is not None]
        if not candidates:
            continue
        number = min(candidates)[1]
        found.append(StateDifference(number, role, names_a[k - 1] if k else None,
                                     names_a[k] if k < len(names_a) else None,
                                     names_b[k] if k < len(names_b) else None,
                                     getattr(rows[number], side)))
    return found
