"""What a diff speaks of: steps, differences (each with its category), rows and the result.

See the package docstring for the theory of operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional, Union

from ...model import Endpoint, TcpFlags
from ..align import INDEL

from ..rules import op_family

__all__ = ["ALIGN_CHOICES", "DEFAULT_TOLERANCE_NS", "SegmentStep", "CallStep", "Difference", "OnlyIn",
           "FlagDifference", "PayloadDifference", "ReasonDifference", "OutcomeDifference", "StateDifference",
           "TimingDifference", "OptionDifference", "OptionOrderDifference", "ApplicationDifference",
           "AlignedRow", "SideSummary", "DiffResult"]

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


def _closing(flags: TcpFlags) -> Optional[str]:
    if flags & TcpFlags.RST:
        return "RST"
    if flags & TcpFlags.FIN:
        return "FIN"
    return None


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms" if abs(ns) < 10_000_000_000 else f"{ns / 1e9:.1f} s"



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

