"""TCP connections and their states, inferred from the segments (or told by the kernel).

Everything that affects the TCP state machine lives in this file: the
transition table below is RFC 9293's state diagram (section 3.3.2), with
states named as Linux names them (`ss`, `/proc/net/tcp`, the
`sock:inet_sock_set_state` tracepoint), so the ladder's lifelines read the
same whether the kernel told us or the packets did.

Theory of operation. A capture sees each segment once; for the side that sent
it the segment is a *send* event, for the other side a *receive* event, both
at the segment's timestamp (on loopback the two are the same instant). A
segment is split into the events it carries, in the order a receiving stack
processes them: its SYN, its ACK (of our SYN or of our FIN), its FIN, its
RST. Each event looks up `(state, event)` in `TRANSITIONS`; a pair absent
from the table leaves the state alone (data, window updates, duplicate ACKs,
retransmissions). What packets cannot show (a socket closed without a FIN
leaving yet, a LISTEN that was never used) the table does not pretend to
know.

When the recording holds the kernel's own `sock:inet_sock_set_state`
events, those are the truth and `infer_states` returns them instead;
`states_source` says which was used. With one exception, where the kernel
is silent: the side that closed first hands its connection to a time-wait
mini-socket when the last FIN arrives, and the tracepoint only sees the full
socket released (FIN_WAIT2 -> CLOSE). The connection is in TIME_WAIT then,
for `TIME_WAIT_NS` on Linux; that state is taken from the packets and
`time_wait_from_packets` says where, so views mark it.

This module is pure: it never imports socket or scapy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Optional

from ..model import Endpoint, Recording, Segment, TcpFlags

__all__ = ["STATES", "TRANSITIONS", "Connection", "connections", "connection_of", "segment_events",
           "infer_states", "states_source", "state_at", "KERNEL_STATE_EVENT", "TIME_WAIT_NS",
           "time_wait_from_packets", "describe_state"]

STATES = ("CLOSE", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
          "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT")

KERNEL_STATE_EVENT = "sock:inet_sock_set_state"
# Kernel events are stamped a little before the packet the capture saw
# (the state changes, then the segment leaves): accept them this early.
_KERNEL_SLACK_NS = 1_000_000

# How long each OS keeps a connection in TIME_WAIT. Linux: TCP_TIMEWAIT_LEN
# (include/net/tcp.h), 60 s, fixed at build time (no sysctl changes it).
TIME_WAIT_NS: dict[str, int] = {"Linux": 60 * 1_000_000_000}

# Where the kernel reports a closing socket released instead of TIME_WAIT:
# the states it leaves from when a time-wait mini-socket takes over.
_BEFORE_TIME_WAIT = ("FIN_WAIT1", "FIN_WAIT2", "CLOSING")

# (state, event) -> new state. Events are named from the side whose state
# changes: send_* for segments it sent, recv_* for segments it received.
TRANSITIONS: dict[tuple[str, str], str] = {
    # Opening (RFC 9293 3.5, the three-way handshake).
    ("CLOSE", "send_syn"): "SYN_SENT",
    ("LISTEN", "recv_syn"): "SYN_RECV",
    ("SYN_SENT", "recv_syn"): "SYN_RECV",  # simultaneous open
    ("SYN_SENT", "recv_synack"): "ESTABLISHED",
    ("SYN_RECV", "recv_ack_of_syn"): "ESTABLISHED",
    # Closing, our side first (active close).
    ("ESTABLISHED", "send_fin"): "FIN_WAIT1",
    ("SYN_RECV", "send_fin"): "FIN_WAIT1",
    ("FIN_WAIT1", "recv_ack_of_fin"): "FIN_WAIT2",
    ("FIN_WAIT1", "recv_fin"): "CLOSING",  # simultaneous close: their FIN before the ACK of ours
    ("FIN_WAIT2", "recv_fin"): "TIME_WAIT",
    ("CLOSING", "recv_ack_of_fin"): "TIME_WAIT",
    # Closing, the peer first (passive close).
    ("ESTABLISHED", "recv_fin"): "CLOSE_WAIT",
    ("CLOSE_WAIT", "send_fin"): "LAST_ACK",
    # Simultaneous close seen from the capture: the peer's FIN passed the
    # capture point first, but this side's FIN does not acknowledge it, so
    # this side sent its FIN before it processed the peer's: it was in
    # FIN_WAIT1 when that FIN arrived, hence CLOSING.
    ("CLOSE_WAIT", "send_fin_crossing"): "CLOSING",
    ("LAST_ACK", "recv_ack_of_fin"): "CLOSE",
    # Reset: "all segment queues should be flushed ... enter the CLOSED state"
    # (RFC 9293 3.10.7.4). Linux also lets an RST end TIME_WAIT (tcp_rfc1337=0).
    **{(state, "recv_rst"): "CLOSE" for state in STATES if state not in ("CLOSE", "LISTEN")},
    **{(state, "send_rst"): "CLOSE" for state in STATES if state not in ("CLOSE", "LISTEN")},
}


@dataclass(frozen=True, slots=True)
class Connection:
    """One TCP connection: its segments and who opened it.

    `client` sent the first SYN; when the capture has no SYN (it started in
    the middle), `roles_known` is False and the client is a guess (the
    higher port, usually the ephemeral one).
    """

    index: int  # 0-based, in order of first segment
    client: Endpoint
    server: Endpoint
    segments: tuple[Segment, ...]
    roles_known: bool = True
    # When the same 4-tuple is used again later in the recording: that start.
    next_start_ns: Optional[int] = None

    @property
    def key(self) -> frozenset[Endpoint]:
        return frozenset((self.client, self.server))

    @property
    def start_ns(self) -> int:
        return self.segments[0].time_ns

    @property
    def end_ns(self) -> int:
        return self.segments[-1].time_ns

    def peer_of(self, endpoint: Endpoint) -> Endpoint:
        return self.server if endpoint == self.client else self.client

    def role_of(self, endpoint: Endpoint) -> str:
        return "client" if endpoint == self.client else "server"


def _is_pure_syn(segment: Segment) -> bool:
    return bool(segment.flags & TcpFlags.SYN) and not segment.flags & TcpFlags.ACK


def _finished(segments: list[Segment]) -> bool:
    """An RST went by, or both sides sent FIN: a new SYN is a new connection."""
    if any(s.is_rst for s in segments):
        return True
    fin_senders = {s.src for s in segments if s.is_fin}
    return len(fin_senders) == 2


# The last few groupings, keyed by the identity of the segments tuple (kept
# alive in the value, so the id cannot be reused): views ask per link.
_CACHE: dict[int, tuple[tuple[Segment, ...], tuple["Connection", ...], dict]] = {}


def connections(recording: Recording) -> tuple[Connection, ...]:
    """Group the recording's segments into connections by 4-tuple.

    A new SYN (with a new initial sequence number) after a connection on the
    same 4-tuple finished (RST, or FIN both ways) starts a new connection;
    a retransmitted SYN does not.
    """
    return _grouped(recording)[0]


def _grouped(recording: Recording) -> tuple[tuple["Connection", ...], dict]:
    cached = _CACHE.get(id(recording.segments))
    if cached is not None and cached[0] is recording.segments:
        return cached[1], cached[2]
    conns = _group(recording.segments)
    by_segment = {(s.frame, s.time_ns): conn for conn in conns for s in conn.segments}
    if len(_CACHE) >= 8:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[id(recording.segments)] = (recording.segments, conns, by_segment)
    return conns, by_segment


def _group(segments: tuple[Segment, ...]) -> tuple[Connection, ...]:
    groups: list[list[Segment]] = []
    current: dict[frozenset, int] = {}
    for segment in sorted(segments, key=lambda s: (s.time_ns, s.frame)):
        key = segment.connection_key
        index = current.get(key)
        if index is not None and _is_pure_syn(segment):
            previous = groups[index]
            syn_seqs = {s.seq for s in previous if _is_pure_syn(s)}
            if segment.seq not in syn_seqs and (_finished(previous) or syn_seqs):
                index = None
        if index is None:
            index = len(groups)
            groups.append([])
            current[key] = index
        groups[index].append(segment)
    built = [_connection(i, group) for i, group in enumerate(groups)]
    following: dict[frozenset, int] = {}  # key -> start of the later use seen so far
    for i in range(len(built) - 1, -1, -1):
        conn = built[i]
        key = conn.key
        if key in following:
            built[i] = replace(conn, next_start_ns=following[key])
        following[key] = conn.start_ns
    return tuple(built)


def _connection(index: int, segments: list[Segment]) -> Connection:
    syn = next((s for s in segments if _is_pure_syn(s)), None)
    if syn is not None:
        return Connection(index, syn.src, syn.dst, tuple(segments))
    synack = next((s for s in segments if s.is_syn), None)
    if synack is not None:  # SYN missed, SYN/ACK seen: its sender is the server
        return Connection(index, synack.dst, synack.src, tuple(segments))
    first = segments[0]
    client, server = sorted((first.src, first.dst), key=lambda e: e.port, reverse=True)
    return Connection(index, client, server, tuple(segments), roles_known=False)


def connection_of(recording: Recording, segment: Segment) -> Optional[Connection]:
    return _grouped(recording)[1].get((segment.frame, segment.time_ns))


def segment_events(segment: Segment, side: Endpoint, sent_syn: Optional[int],
                   sent_fin: Optional[int], peer_fin: Optional[int] = None) -> tuple[str, ...]:
    """The state-machine events `segment` carries for `side`.

    `sent_syn`/`sent_fin` are the sequence numbers of the SYN and FIN `side`
    sent so far (None if not yet): an ACK covering them is an ACK of them;
    `peer_fin` the sequence number of the FIN it received.
    """
    flags = segment.flags
    if segment.src == side:
        events = []
        if flags & TcpFlags.SYN:
            events.append("send_synack" if flags & TcpFlags.ACK else "send_syn")
        if flags & TcpFlags.FIN:
            crossing = peer_fin is not None and not (flags & TcpFlags.ACK and _acks(segment.ack, peer_fin))
            events.append("send_fin_crossing" if crossing else "send_fin")
        if flags & TcpFlags.RST:
            events.append("send_rst")
        return tuple(events)
    events = []
    if flags & TcpFlags.RST:
        return ("recv_rst",)
    if flags & TcpFlags.SYN:
        events.append("recv_synack" if flags & TcpFlags.ACK else "recv_syn")
    elif flags & TcpFlags.ACK:
        if sent_syn is not None and _acks(segment.ack, sent_syn):
            events.append("recv_ack_of_syn")
        if sent_fin is not None and _acks(segment.ack, sent_fin):
            events.append("recv_ack_of_fin")
    if flags & TcpFlags.FIN:
        events.append("recv_fin")
    return tuple(events)


def _acks(ack: int, seq: int) -> bool:
    """True when acknowledgment number `ack` covers the byte at `seq` (mod 2**32)."""
    return 0 < (ack - seq) % (1 << 32) < (1 << 31)


def _packet_states(connection: Connection) -> dict[Endpoint, list[tuple[int, str]]]:
    timelines: dict[Endpoint, list[tuple[int, str]]] = {}
    # A server that never answered with SYN/ACK was not listening (the SYN
    # drew an RST): it stays CLOSE.
    listening = any(s.is_syn and s.flags & TcpFlags.ACK and s.src == connection.server
                    for s in connection.segments)
    for side, initial in ((connection.client, "CLOSE"), (connection.server, "LISTEN" if listening else "CLOSE")):
        if not connection.roles_known:
            initial = "ESTABLISHED"  # capture began mid-connection
        state = initial
        timeline = [(connection.start_ns, state)]
        sent_syn = sent_fin = peer_fin = None
        for segment in connection.segments:
            for event in segment_events(segment, side, sent_syn, sent_fin, peer_fin):
                new = TRANSITIONS.get((state, event))
                if new is not None and new != state:
                    state = new
                    timeline.append((segment.time_ns, state))
            if segment.src == side:
                if segment.is_syn and sent_syn is None:
                    sent_syn = segment.seq
                if segment.is_fin and sent_fin is None:
                    sent_fin = segment.seq + segment.payload_len + (1 if segment.is_syn else 0)
            elif segment.is_fin and peer_fin is None:
                peer_fin = segment.seq + segment.payload_len + (1 if segment.is_syn else 0)
        timelines[side] = timeline
    return timelines


def _kernel_name(state: str) -> str:
    return state[4:] if state.startswith("TCP_") else state


def _kernel_states(recording: Recording, connection: Connection) -> dict[Endpoint, list[tuple[int, str]]]:
    timelines: dict[Endpoint, list[tuple[int, str]]] = {}
    for event in _state_events(recording, connection):
        timeline = timelines.setdefault(_event_side(event, connection), [])
        if not timeline:
            old = event.get("oldstate")
            if old:
                timeline.append((event.time_ns, _kernel_name(old)))
        timeline.append((event.time_ns, _kernel_name(event.get("newstate", "?"))))
    return timelines


def _state_events(recording: Recording, connection: Connection):
    # A 4-tuple used twice in one recording: the kernel events of each use
    # are told apart by time (SYN_SENT/SYN_RECV opens the next use).
    for event in recording.kernel_events:
        if event.name != KERNEL_STATE_EVENT or event.src is None or event.dst is None:
            continue
        if _event_side(event, connection) is None:
            continue
        if event.time_ns < connection.start_ns - _KERNEL_SLACK_NS:
            continue
        if connection.next_start_ns is not None and event.time_ns >= connection.next_start_ns - _KERNEL_SLACK_NS:
            continue
        yield event


def _event_side(event, connection: Connection) -> Optional[Endpoint]:
    """The side of `connection` a kernel event speaks for, or None.

    A connecting socket moves to SYN_SENT before its port is bound, so that
    event carries source port 0: it belongs to the client of a connection
    to its destination."""
    if frozenset((event.src, event.dst)) == connection.key:
        return event.src
    if event.src.port == 0 and event.dst == connection.server and event.src.host == connection.client.host:
        return connection.client
    return None


def states_source(recording: Recording, connection: Connection) -> str:
    """Where `infer_states` takes its answer from, in words."""
    if any(True for _ in _state_events(recording, connection)):
        if time_wait_from_packets(recording, connection):
            return "kernel (sock:inet_sock_set_state; TIME_WAIT from the packets, which the tracepoint does not see)"
        return "kernel (sock:inet_sock_set_state)"
    return "packets (RFC 9293 state machine)"


def infer_states(recording: Recording, connection: Connection) -> dict[Endpoint, list[tuple[int, str]]]:
    """Each side's states over time: `{endpoint: [(time_ns, state), ...]}`.

    From the kernel's `sock:inet_sock_set_state` events when the recording
    has them for this connection, otherwise from the segments; TIME_WAIT,
    which the tracepoint never reports, from the segments in either case.
    """
    kernel = _kernel_states(recording, connection)
    if not kernel:
        return _packet_states(connection)
    for side, (when, _state) in _silent_time_wait(kernel, connection).items():
        kernel[side] = _with_time_wait(kernel[side], when)
    return kernel


def time_wait_from_packets(recording: Recording, connection: Connection) -> dict[Endpoint, int]:
    """{side: time} of each TIME_WAIT that `infer_states` took from the
    packets because the kernel's tracepoint was silent about it (empty when
    the kernel was not heard at all: then every state is from the packets)."""
    kernel = _kernel_states(recording, connection)
    if not kernel:
        return {}
    return {side: when for side, (when, _) in _silent_time_wait(kernel, connection).items()}


def _silent_time_wait(kernel: dict, connection: Connection) -> dict[Endpoint, tuple[int, str]]:
    """{side: (when, kernel's last state)} for each side the packets put in
    TIME_WAIT (as its last state) while the kernel's last word was a release
    from a closing state, or that closing state itself.

    A release *before* the last FIN arrived is a socket closed in FIN_WAIT2:
    Linux hands it to a mini-socket that stays in FIN_WAIT2 (tcp_fin_timeout)
    and goes to TIME_WAIT on the FIN; the packets then give the time."""
    found = {}
    for side, packet_line in _packet_states(connection).items():
        line = kernel.get(side)
        if not line or packet_line[-1][1] != "TIME_WAIT":
            continue
        entered = packet_line[-1][0]
        last_time, last = line[-1]
        before = line[-2][1] if len(line) > 1 else None
        if last == "CLOSE" and before in _BEFORE_TIME_WAIT:
            found[side] = (last_time if last_time >= entered - _KERNEL_SLACK_NS else entered, last)
        elif last in _BEFORE_TIME_WAIT:
            found[side] = (entered, last)
    return found


def _with_time_wait(line: list[tuple[int, str]], when: int) -> list[tuple[int, str]]:
    if line[-1][1] == "CLOSE":
        line = line[:-1]
    return [*line, (when, "TIME_WAIT")]


def describe_state(state: str, os_name: Optional[str] = None, *, from_packets: bool = False) -> str:
    """A state as a reader should see it: TIME_WAIT says how long it lasts
    on `os_name`, and a state the kernel did not report says so."""
    text = state
    if state == "TIME_WAIT":
        lasts = TIME_WAIT_NS.get(os_name or "")
        text += f" ({lasts // 1_000_000_000} s)" if lasts else " (2×MSL)"
    if from_packets:
        text += " [from the packets]"
    return text


def state_at(timeline: Iterable[tuple[int, str]], time_ns: int) -> Optional[str]:
    """The state a side was in at `time_ns` (the last change at or before it)."""
    state = None
    for when, name in timeline:
        if when > time_ns:
            break
        state = name
    return state
