"""Why a kernel sent an RST: its own word when the witness saw it, else inferred from packets.

`REASONS` is the table of Linux reset reasons (`enum sk_rst_reason`,
include/net/rstreason.h, Linux 6.10+; active-reset reasons 6.12+) with a
plain-English phrase each, written to follow "its kernel sent RST because".
`reset_reason(segment, recording)` returns `(reason, inferred)`: the
kernel's reason when `segment.reset_reason` is set (the tracefs witness saw
`tcp:tcp_send_reset`), otherwise the reason a Linux kernel would most
likely have given, inferred from the segments (and the socket calls when
the recording has them), with `inferred=True`.

Inference rules (first that fits wins), from kernel behaviour measured on
Linux 6.18 (see issue 7):

- the RST answers a SYN and no SYN/ACK came from its sender: NO_SOCKET
  (nothing listening);
- its sender had sent FIN and the RST answers a data segment that arrived
  after it: TCP_TIMEWAIT_SOCKET when an earlier segment had acked the FIN
  (the closed socket had become a time-wait mini-socket), TCP_ABORT_ON_DATA
  when the FIN was acked only by the data segment itself or not at all
  (the seed scenario broken-pipe on 6.18);
- an RST/ACK its sender sent on its own (not answering a segment) after
  receiving data: an abortive close, and the packets alone cannot tell
  "closed with unread data" (TCP_ABORT_ON_CLOSE) from "closed with SO_LINGER
  0 after reading everything" (TCP_STATE): `ABORTIVE_CLOSE` names both. The
  socket calls decide when the recording has the sender's reads (all bytes
  read: TCP_STATE; fewer: TCP_ABORT_ON_CLOSE), else an strace
  ``setsockopt(SO_LINGER, {l_onoff=1, l_linger=0})`` by the sender decides
  for TCP_STATE. `reason_evidence` says which evidence decided. (The
  advertised window cannot: on Linux a few unread bytes vanish in the window
  scale.)
- an RST/ACK sent on its own with no data received: TCP_STATE (SO_LINGER 0);
- an RST answering a segment of a connection its sender never took part in
  (no SYN, SYN/ACK or FIN from it): NO_SOCKET.

Pure: never imports socket or scapy.
"""

from __future__ import annotations

from typing import Optional

from ..model import RECEIVE_OPS, Recording, Segment, TcpFlags
from .tcpstate import Connection, connection_of

__all__ = ["REASONS", "reset_reason", "reason_evidence", "reason_phrase", "render_reason", "INFERRED_SUFFIX",
           "ABORTIVE_CLOSE"]

# How an inferred reason is written where only text fits (the JSON contract).
INFERRED_SUFFIX = " (inferred)"

REASONS: dict[str, str] = {
    "NOT_SPECIFIED": "of a reason the kernel did not specify",
    "NO_SOCKET": "no socket was there to take the segment (nothing listening, or the connection was already gone)",
    "TCP_INVALID_ACK_SEQUENCE": "the segment acknowledged data that was never sent",
    "TCP_RFC7323_PAWS": "the segment failed the timestamp check (PAWS, RFC 7323)",
    "TCP_TOO_OLD_ACK": "the segment acknowledged data far older than the window",
    "TCP_ACK_UNSENT_DATA": "the segment acknowledged data not yet sent",
    "TCP_FLAGS": "the segment carried a combination of flags that is not allowed in that state",
    "TCP_OLD_ACK": "the segment's acknowledgment was out of date",
    "TCP_ABORT_ON_DATA": "data arrived on a socket it had already closed",
    "TCP_TIMEWAIT_SOCKET": "data arrived after it had closed the connection (its time-wait socket answered)",
    "INVALID_SYN": "a SYN arrived on a connection that was already synchronized",
    "TCP_ABORT_ON_CLOSE": "the socket was closed with unread data in its receive buffer",
    "TCP_ABORT_ON_LINGER": "the socket was closed with SO_LINGER set to 0 while data was still in flight",
    "TCP_ABORT_ON_MEMORY": "it ran out of memory for orphaned sockets",
    "TCP_STATE": "the socket was aborted outright (closed with SO_LINGER 0, or disconnected)",
    "TCP_KEEPALIVE_TIMEOUT": "keepalive probes went unanswered",
    "TCP_DISCONNECT_WITH_DATA": "the socket was disconnected with unread data",
    "ERROR": "of an error on the socket",
}

# Not a kernel reason: the two an abortive close can have, when nothing decides.
ABORTIVE_CLOSE = "TCP_ABORT_ON_CLOSE or TCP_STATE"
REASONS[ABORTIVE_CLOSE] = ("the socket was closed abortively: with unread data in its receive buffer, or with "
                           "SO_LINGER 0 (the packets alone cannot tell which)")


def reason_phrase(reason: Optional[str]) -> Optional[str]:
    """The plain-English phrase for a reason name (None for unknown names)."""
    if reason is None:
        return None
    return REASONS.get(reason) or REASONS.get(reason.upper())


def render_reason(reason: Optional[str], inferred: bool) -> Optional[str]:
    """`NO_SOCKET` for the kernel's word, `NO_SOCKET (inferred)` for ours."""
    if reason is None:
        return None
    return reason + INFERRED_SUFFIX if inferred else reason


def reset_reason(segment: Segment, recording: Recording) -> tuple[Optional[str], bool]:
    """Why `segment` (an RST) was sent: `(reason, inferred)`.

    `reason` is a name from `REASONS`, or None when the packets do not say.
    """
    if not segment.is_rst:
        return None, True  # only an RST has a reset reason
    if segment.reset_reason:
        return segment.reset_reason, False
    return _inferred(segment, recording)[0], True


def reason_evidence(segment: Segment, recording: Recording) -> Optional[str]:
    """Which evidence decided an inferred reason, in words (``"the packets"``,
    ``"the socket calls: it read 6 of 6 bytes"``, ``"strace: setsockopt(SO_LINGER,
    l_linger=0)"``); None when the kernel said it or nothing was inferred."""
    if not segment.is_rst or segment.reset_reason:
        return None
    reason, evidence = _inferred(segment, recording)
    return evidence if reason else None


# (id(recording), segment) -> (recording, (reason, evidence)): every link to one
# RST asks again (a log of 1e5 lines, one RST); the recording is kept in the
# value so that its id cannot be reused while the entry lives.
_MEMO: dict[tuple[int, Segment], tuple[Recording, tuple[Optional[str], str]]] = {}
_MEMO_SIZE = 4096


def _inferred(segment: Segment, recording: Recording) -> tuple[Optional[str], str]:
    key = (id(recording), segment)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is recording:
        return hit[1]
    conn = connection_of(recording, segment)
    found = (None, "the packets") if conn is None else _infer(segment, conn, recording)
    if len(_MEMO) >= _MEMO_SIZE:
        _MEMO.clear()
    _MEMO[key] = (recording, found)
    return found


def _infer(rst: Segment, conn: Connection, recording: Recording) -> tuple[Optional[str], str]:
    """(reason, the evidence that decided it)."""
    reason = _infer_from_packets(rst, conn, recording)
    if reason != ABORTIVE_CLOSE:
        return reason, "the packets"
    return _decide_abortive(rst, conn, recording)


def _decide_abortive(rst: Segment, conn: Connection, recording: Recording) -> tuple[str, str]:
    sender, peer = rst.src, rst.dst
    received = sum(s.payload_len for s in conn.segments if s.src == peer and s.time_ns <= rst.time_ns)
    read = _bytes_read(recording, sender, rst.time_ns)
    if read is not None:
        if read >= received:
            return "TCP_STATE", f"the socket calls: it read all {received} bytes it received, then aborted"
        return "TCP_ABORT_ON_CLOSE", f"the socket calls: it read {read} of the {received} bytes it received"
    linger = next((c for c in recording.calls if c.local == sender and c.op == "setsockopt"
                   and "SO_LINGER" in c.text and "l_onoff=1" in c.text and "l_linger=0" in c.text
                   and c.end_ns <= rst.time_ns), None)
    if linger is not None:
        where = f" ({linger.where})" if linger.where else ""
        return "TCP_STATE", f"strace: setsockopt(SO_LINGER, l_onoff=1, l_linger=0) by its sender{where}"
    return ABORTIVE_CLOSE, "the packets (nothing else in the evidence decides)"


def _infer_from_packets(rst: Segment, conn: Connection, recording: Recording) -> Optional[str]:
    before = [s for s in conn.segments if (s.time_ns, s.frame) < (rst.time_ns, rst.frame)]
    sender, peer = rst.src, rst.dst
    from_sender = [s for s in before if s.src == sender]
    from_peer = [s for s in before if s.src == peer]
    answered = _answered(rst, from_peer)

    syn = next((s for s in reversed(from_peer) if s.is_syn and not s.flags & TcpFlags.ACK), None)
    if syn is not None and not any(s.is_syn for s in from_sender) and answered is syn:
        return "NO_SOCKET"
    fin = next((s for s in from_sender if s.is_fin), None)
    if fin is not None and answered is not None and answered.payload_len > 0:
        fin_end = fin.seq + fin.payload_len
        # The FIN acked *before* the data came: the closed socket had become a
        # time-wait mini-socket. Acked by the data segment itself: the full
        # socket was still there and aborted (measured on 6.18: ABORT_ON_DATA).
        if any(s.flags & TcpFlags.ACK and _covers(s.ack, fin_end)
               for s in from_peer if s.time_ns >= fin.time_ns and s is not answered):
            return "TCP_TIMEWAIT_SOCKET"
        return "TCP_ABORT_ON_DATA"
    if not from_sender and answered is not None:
        return "NO_SOCKET"
    if rst.flags & TcpFlags.ACK and fin is None:
        received = sum(s.payload_len for s in from_peer)
        if received == 0:
            return "TCP_STATE"
        return ABORTIVE_CLOSE
    return None


def _answered(rst: Segment, from_peer: list[Segment]) -> Optional[Segment]:
    """The segment this RST answers, by RFC 9293's reset generation rules.

    "If the incoming segment has an ACK field, the reset takes its sequence
    number from the ACK field of the segment, otherwise the reset has
    sequence number zero and the ACK field is set to the sum of the sequence
    number and segment length of the incoming segment" (3.5.2).
    """
    for seg in reversed(from_peer):
        if rst.flags & TcpFlags.ACK and not rst.seq:
            length = seg.payload_len + (1 if seg.is_syn else 0) + (1 if seg.is_fin else 0)
            if (seg.seq + length) % (1 << 32) == rst.ack and not seg.flags & TcpFlags.ACK:
                return seg
        elif not rst.flags & TcpFlags.ACK and seg.flags & TcpFlags.ACK and seg.ack == rst.seq:
            if seg.payload_len > 0 or seg.is_fin or seg is from_peer[-1]:
                return seg
    return None


def _covers(ack: int, seq: int) -> bool:
    """ack acknowledges the byte at seq (the FIN's own sequence number)."""
    return 0 < (ack - seq) % (1 << 32) < (1 << 31)


def _bytes_read(recording: Recording, sender, before_ns: int) -> Optional[int]:
    """Bytes the RST's sender read from its socket, when the calls say (else None)."""
    reads = [c for c in recording.calls if c.local == sender and c.op in RECEIVE_OPS and c.end_ns <= before_ns]
    if not reads:
        # No reads: 0 when the sender's other calls were recorded (a lone
        # setsockopt from strace -e setsockopt says nothing about its reads).
        traced = any(c.local == sender and c.op != "setsockopt" for c in recording.calls)
        return 0 if traced else None
    return sum(c.result for c in reads if c.result and c.result > 0)
