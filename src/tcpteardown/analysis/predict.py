"""Packets alone: what each side's application will have seen, predicted from the segments.

Often all an engineer has is the capture. The kernel's rules are
deterministic: an RST that reaches an established socket fails its next
read, a FIN makes the next read return end-of-file, an RST/ACK to a SYN is
ECONNREFUSED. `predict(recording, os)` runs them backwards: for every
connection that ended with an RST, with a FIN (the clean endings too: each
side a FIN reached reads end-of-file, after the bytes still in flight), or
whose SYN was refused or never answered, it makes one `Link` per side and op
(read, write, connect) whose call is marked `source="predicted"`, linked to
the segment that decided it. `is_clean_ending` tells the links of a clean
close (a FIN and no RST) from the rest, so a view can summarise them.

`PREDICTIONS` is the rule table, in the spirit of `analysis/rules.py`: one
row per (OS, situation, op) with the outcome, the kernel source that decides
it (file and function; XNU at tag `XNU_TAG`) and how far it is proven:
`exercised` rows are checked against the scenario library (every scenario,
IPv4 and IPv6: tests/test_predict.py strips the calls, predicts, and compares
with the call that really failed first); the Darwin rows are from source,
not yet observed on a Mac (no capture shows an errno). A row no scenario
exercises says so.

Real evidence wins: a socket that real calls (scenario, strace, log) cover
gets no prediction. Situations come from the packet state machine
(`analysis.tcpstate`), never from kernel events, so the answer is the same
for a bundle and for the plain capture inside it.

Pure: never imports socket or scapy, never reads a file.
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import dataclass, replace
from typing import Iterable, Optional

from ..model import CauseKind, Endpoint, Link, Recording, Segment, SocketCall, TcpFlags
from ..xnu import XNU_TAG  # macOS 15.5: the source the Darwin rows cite
from .reasons import ABORTIVE_CLOSE
from .tcpstate import Connection, connections, infer_states, state_at

__all__ = ["Prediction", "PREDICTIONS", "SITUATIONS", "XNU_TAG", "predicted_from_history", "DARWIN_STATUS", "RST_WHY", "PREDICTED",
           "TABLE_OSES", "predict", "rules_for", "rule_named", "rules_os", "citation", "accepted_rst",
           "situation_of", "is_clean_ending", "CLEAN_SITUATIONS",
           "in_flight", "bytes_text", "frames_text"]

PREDICTED = "predicted"  # the call.source of every predicted link
DARWIN_STATUS = "from source, not yet observed on a Mac"

# What a side's socket went through, as the packets show it.
SITUATIONS = {
    "refused": "its SYN was answered by RST/ACK",
    "syn-unanswered": "its SYN was never answered",
    "rst-established": "an RST reached it while established (no FIN either way)",
    "rst-close-wait": "an RST reached it after the peer's FIN (CLOSE_WAIT)",
    "rst-fin-wait": "an RST reached it after its own FIN (FIN_WAIT1/2)",
    "fin": "the peer's FIN reached it first, and no RST",
    "half-closed": "the peer's FIN reached it after its own, and it had taken the peer's data in between "
                   "(it shut down writing only), and no RST",
}
# The clean endings (a FIN, no RST): what most connections of a big capture went through.
CLEAN_SITUATIONS = frozenset({"fin", "half-closed"})


@dataclass(frozen=True, slots=True)
class Prediction:
    """One row of the prediction table."""

    name: str  # stable identifier: Link.rule and the JSON "rule"
    os: str  # "Linux", "Darwin", or "any"
    situation: str  # a key of SITUATIONS
    op: str  # read, write, connect
    outcome: str  # errno name or "EOF"
    kind: CauseKind
    rule: str  # the kernel's rule, one sentence
    source: str  # file and function that decide it
    exercised: bool  # some scenario of the library makes this call and checks it
    status: str = ""  # for rows not proven here: "from source, not yet observed on a Mac"
    # What the call returns instead when something the packets cannot show decides
    # (an ICMP error answering the SYN is not in a TCP capture); said in a caveat.
    alternatives: tuple[str, ...] = ()
    alternatives_why: str = ""


_LINUX_RESET = ("net/ipv4/tcp_input.c tcp_reset(): sk_err by state (SYN_SENT ECONNREFUSED, CLOSE_WAIT EPIPE, "
                "else ECONNRESET)")
_LINUX_SEND = "net/core/stream.c sk_stream_error(): a failing send returns sock_error() (once) before EPIPE"
_LINUX_RECV = "net/ipv4/tcp.c tcp_recvmsg_locked(): SOCK_DONE (set by tcp_fin) is tested before sk_err"
_XNU_RST = (f"{XNU_TAG} bsd/netinet/tcp_input.c:4248 tcp_input() RST processing: so_error = ECONNRESET in "
            "ESTABLISHED, FIN_WAIT_1/2 and CLOSE_WAIT, then tcp_close() -> bsd/kern/uipc_socket2.c:276 "
            "soisdisconnected() sets SS_CANTRCVMORE|SS_CANTSENDMORE")
_XNU_SEND = (f"{XNU_TAG} bsd/kern/uipc_socket.c:2032 sosendcheck(): SS_CANTSENDMORE -> EPIPE is tested before "
             "so_error (line 2047)")
_XNU_RECV = (f"{XNU_TAG} bsd/kern/uipc_socket.c:3535 soreceive(): so_error is returned (and cleared) before "
             "SS_CANTRCVMORE gives 0 (line 3545)")


def _p(name, os, situation, op, outcome, kind, rule, source, exercised, status="", alternatives=(),
       alternatives_why=""):
    return Prediction(name, os, situation, op, outcome, kind, rule, source, exercised, status, alternatives,
                      alternatives_why)


PREDICTIONS: tuple[Prediction, ...] = (
    # -- any OS: the connect outcomes ---------------------------------------------
    _p("refused-connect", "any", "refused", "connect", "ECONNREFUSED", CauseKind.RST,
       "an RST/ACK answering the SYN fails connect() with ECONNREFUSED",
       f"Linux {_LINUX_RESET}; XNU {XNU_TAG} bsd/netinet/tcp_input.c:3749 tcp_input() SYN_SENT: "
       "tcp_drop(tp, ECONNREFUSED)", True),
    _p("unanswered-connect", "any", "syn-unanswered", "connect", "ETIMEDOUT", CauseKind.SYN_UNANSWERED,
       "SYNs that are never answered end connect() with ETIMEDOUT once the kernel gives up retransmitting "
       "(an application timeout may end it sooner)",
       "Linux net/ipv4/tcp_timer.c tcp_write_timeout() -> tcp_write_err(); XNU "
       f"{XNU_TAG} bsd/netinet/tcp_timer.c:1502 tcp_timers() TCPT_KEEP before ESTABLISHED: dropit, "
       "tcp_drop(tp, ETIMEDOUT) (line 1891)", True,
       alternatives=("EHOSTUNREACH", "ENETUNREACH"),
       alternatives_why="an ICMP host or network unreachable answering the SYN ends the connect with "
                        "EHOSTUNREACH or ENETUNREACH instead, and a TCP capture does not hold ICMP "
                        "(the icmp-unreachable scenario shows both)"),
    # -- Linux -----------------------------------------------------------------------
    _p("linux-rst-read", "Linux", "rst-established", "read", "ECONNRESET", CauseKind.RST,
       "an RST in ESTABLISHED leaves ECONNRESET for the next call; a read that comes first returns it",
       f"{_LINUX_RESET}; {_LINUX_RECV}", True),
    _p("linux-rst-write", "Linux", "rst-established", "write", "ECONNRESET", CauseKind.RST,
       "an RST in ESTABLISHED leaves ECONNRESET, reported once: a write that comes first returns it, "
       "the writes after it EPIPE (and reads after it EOF)",
       f"{_LINUX_RESET}; {_LINUX_SEND}", True),
    _p("linux-rst-close-wait-read", "Linux", "rst-close-wait", "read", "EOF", CauseKind.FIN,
       "after the peer's FIN a read returns end-of-file, even when an RST followed",
       _LINUX_RECV, True),
    _p("linux-rst-close-wait-write", "Linux", "rst-close-wait", "write", "EPIPE", CauseKind.RST,
       "an RST in CLOSE_WAIT leaves EPIPE (not ECONNRESET) for the next write",
       f"{_LINUX_RESET}; {_LINUX_SEND}", True),
    _p("linux-rst-fin-wait-read", "Linux", "rst-fin-wait", "read", "ECONNRESET", CauseKind.RST,
       "an RST after our own FIN (shutdown(SHUT_WR)) leaves ECONNRESET for the next read; "
       "if the application had closed the socket instead, nobody sees it",
       f"{_LINUX_RESET}; {_LINUX_RECV}", False,
       "no scenario exercises it (checked on a live socket by tests/test_explain_predict.py)"),
    _p("linux-fin-read", "Linux", "fin", "read", "EOF", CauseKind.FIN,
       "the peer's FIN makes the next read (once the data before it is read) return end-of-file",
       f"net/ipv4/tcp_input.c tcp_fin(): RCV_SHUTDOWN and SOCK_DONE; {_LINUX_RECV}", True),
    _p("linux-half-closed-read", "Linux", "half-closed", "read", "EOF", CauseKind.FIN,
       "a socket that shut down writing still reads: the peer's FIN makes its next read return end-of-file "
       "(had it closed, the peer's data after its FIN would have drawn an RST, and nothing reads)",
       "net/ipv4/tcp_input.c tcp_rcv_state_process(): FIN_WAIT1/2 with RCV_SHUTDOWN (closed) and new data -> "
       f"tcp_reset(), TCP_ABORT_ON_DATA; tcp_fin(): SOCK_DONE; {_LINUX_RECV}", True),
    # -- Darwin (XNU) ---------------------------------------------------------------------
    _p("darwin-rst-read", "Darwin", "rst-established", "read", "ECONNRESET", CauseKind.RST,
       "an RST in ESTABLISHED sets so_error = ECONNRESET, which the next read returns (once)",
       f"{_XNU_RST}; {_XNU_RECV}", False, DARWIN_STATUS),
    _p("darwin-rst-write", "Darwin", "rst-established", "write", "EPIPE", CauseKind.RST,
       "after an RST the first write returns EPIPE, not ECONNRESET: the pending ECONNRESET is left "
       "for the next read",
       f"{_XNU_RST}; {_XNU_SEND}", False, DARWIN_STATUS),
    _p("darwin-rst-close-wait-read", "Darwin", "rst-close-wait", "read", "ECONNRESET", CauseKind.RST,
       "an RST in CLOSE_WAIT sets so_error = ECONNRESET too, and soreceive returns it before end-of-file "
       "(Linux returns EOF)",
       f"{_XNU_RST}; {_XNU_RECV}", False, DARWIN_STATUS),
    _p("darwin-rst-close-wait-write", "Darwin", "rst-close-wait", "write", "EPIPE", CauseKind.RST,
       "after an RST in CLOSE_WAIT the next write returns EPIPE",
       f"{_XNU_RST}; {_XNU_SEND}", False, DARWIN_STATUS),
    _p("darwin-rst-fin-wait-read", "Darwin", "rst-fin-wait", "read", "ECONNRESET", CauseKind.RST,
       "an RST after our own FIN (shutdown(SHUT_WR)) sets so_error = ECONNRESET for the next read; "
       "if the application had closed the socket instead, nobody sees it",
       f"{_XNU_RST}; {_XNU_RECV}", False, DARWIN_STATUS),
    _p("darwin-fin-read", "Darwin", "fin", "read", "EOF", CauseKind.FIN,
       "the peer's FIN makes the next read (once the data before it is read) return end-of-file",
       f"{XNU_TAG} bsd/netinet/tcp_input.c:5971 tcp_input() FIN processing: socantrcvmore(); "
       "bsd/kern/uipc_socket.c:3545 soreceive(): SS_CANTRCVMORE with nothing queued returns 0", False, DARWIN_STATUS),
    _p("darwin-half-closed-read", "Darwin", "half-closed", "read", "EOF", CauseKind.FIN,
       "a socket that shut down writing still reads: the peer's FIN makes its next read return end-of-file "
       "(had it closed, the peer's data after its FIN would have drawn an RST, and nothing reads)",
       f"{XNU_TAG} bsd/netinet/tcp_input.c:4485 tcp_input(): data after close (SS_NOFDREF) -> "
       "tcps_rcvafterclose, dropwithreset; bsd/netinet/tcp_input.c:5971 tcp_input() FIN processing: "
       "socantrcvmore(); bsd/kern/uipc_socket.c:3545 soreceive(): SS_CANTRCVMORE with nothing queued "
       "returns 0", False, DARWIN_STATUS),
)

# Why an RST was sent, on XNU: the reason names are Linux's (analysis/reasons.py
# infers them from the packets); these say where XNU decides the same (at XNU_TAG).
RST_WHY: dict[tuple[str, str], str] = {
    ("Darwin", "TCP_ABORT_ON_CLOSE"): (
        "bsd/netinet/tcp_usrreq.c:3155 tcp_disconnect(): so_rcv.sb_cc != 0 -> tcp_drop(), since xnu-4570, "
        "macOS 10.13; seen in a real capture: corpus macos/tls-duplicate-hello.pcap"),
    ("Darwin", "TCP_STATE"): "bsd/netinet/tcp_usrreq.c:3162 tcp_disconnect(): SO_LINGER 0 -> tcp_drop()",
    # Packets alone cannot tell those two apart (analysis.reasons.ABORTIVE_CLOSE): both paths.
    ("Darwin", ABORTIVE_CLOSE): (
        "bsd/netinet/tcp_usrreq.c:3155 tcp_disconnect(): so_rcv.sb_cc != 0 -> tcp_drop(), or "
        "bsd/netinet/tcp_usrreq.c:3162 tcp_disconnect(): SO_LINGER 0 -> tcp_drop()"),
    ("Darwin", "TCP_ABORT_ON_DATA"): (
        "bsd/netinet/tcp_input.c:4485 tcp_input(): data after close -> tcps_rcvafterclose, dropwithreset"),
    ("Darwin", "TCP_TIMEWAIT_SOCKET"): (  # XNU keeps the full PCB in TIME_WAIT: the same path
        "bsd/netinet/tcp_input.c:4485 tcp_input(): data after close -> tcps_rcvafterclose, dropwithreset; "
        "seen in a real capture: corpus macos/http2-deflate-case.pcap"),
    ("Darwin", "NO_SOCKET"): (
        "bsd/netinet/tcp_input.c:6093 tcp_input(): no PCB -> dropwithreset; seen in real captures: "
        "corpus macos/zip64.pcap, smb-length-5770.pcap"),
}


def citation(row: Prediction, os_name: Optional[str] = None) -> str:
    """The files and functions of a row's source, short: ``bsd/kern/uipc_socket.c sosendcheck()``;
    given an OS, only its kernel's (a row for any OS cites Linux's and XNU's)."""
    tree = {"Linux": "net", "Darwin": "bsd"}.get(os_name or "", "net|bsd")
    found = re.findall(rf"(?<![\w/])((?:{tree})/[\w/]+\.c)(?::\d+)? (\w+\(\))", row.source)
    return ", ".join(dict.fromkeys(f"{path} {function}" for path, function in found))


_BY_KEY: dict[tuple[str, str, str], Prediction] = {(r.os, r.situation, r.op): r for r in PREDICTIONS}
_BY_NAME: dict[str, Prediction] = {r.name: r for r in PREDICTIONS}
# The OSes with a table of their own; any other gets only the connect rows.
TABLE_OSES = ("Linux", "Darwin")


def rule_named(name: str) -> Optional[Prediction]:
    return _BY_NAME.get(name)


def rules_for(os_name: str, situation: str) -> tuple[Prediction, ...]:
    """The rows for one situation on one OS ("Linux"/"Darwin"); other OSes get
    only the rows that hold for any OS."""
    found = []
    for op in ("connect", "read", "write"):
        row = _BY_KEY.get((os_name, situation, op)) or _BY_KEY.get(("any", situation, op))
        if row is not None:
            found.append(row)
    return tuple(found)


# -- situations from the packets ---------------------------------------------------

def _is_synack(seg: Segment) -> bool:
    return bool(seg.flags & TcpFlags.SYN and seg.flags & TcpFlags.ACK)


def _worth_a_look(conn: Connection) -> bool:
    """Anything to predict: an RST, a FIN, or a handshake that was not answered
    (an open connection the capture ends in the middle of tells nothing)."""
    return any(s.is_rst or s.is_fin for s in conn.segments) or (
        conn.roles_known and not any(_is_synack(s) for s in conn.segments))


def situation_of(conn: Connection, side: Endpoint, states,
                 os_name: str = "Linux") -> Optional[tuple[str, dict, tuple]]:
    """(situation, {cause kind: segment}, related segments) for one side, or None.

    `states`: the sides' state timelines (`tcpstate.infer_states`), or a
    function making them, called only when an RST needs them (a clean close
    never does: a big capture of clean closes costs no state machine).
    Related, for an RST: the earlier RSTs this side ignored (`accepted_rst`);
    for a FIN: the peer's data still in flight when it came (`in_flight`)."""
    segs = conn.segments
    peer = conn.peer_of(side)
    # A capture that began mid-connection shows no handshake: established.
    answered = not conn.roles_known or any(_is_synack(s) for s in segs)
    if side == conn.client and not answered:
        syns = tuple(s for s in segs if s.src == side and s.is_syn)
        refusal = next((s for s in segs if s.src == peer and s.is_rst and s.flags & TcpFlags.ACK
                        and any(s.ack == (syn.seq + 1) % (1 << 32) for syn in syns)), None)
        if refusal is not None:
            return "refused", {CauseKind.RST: refusal}, syns
        if syns and not any(s.src == peer or not s.is_syn for s in segs):  # only SYNs, all unanswered
            return "syn-unanswered", {CauseKind.SYN_UNANSWERED: syns[0]}, syns[1:]
        return None
    if not answered:
        return None
    fin = next((s for s in segs if s.is_fin and not s.is_rst and s.dst == side), None)
    rst, ignored = accepted_rst(conn, side, os_name)
    if rst is not None:
        if any(s.is_rst and s.src == side and (s.time_ns, s.frame) < (rst.time_ns, rst.frame) for s in segs):
            return None  # this side reset the connection itself first
        if callable(states):
            states = states()
        state = _state_before(states.get(side, ()), (ignored or (rst,))[0])
        situation = {"ESTABLISHED": "rst-established", "CLOSE_WAIT": "rst-close-wait",
                     "FIN_WAIT1": "rst-fin-wait", "FIN_WAIT2": "rst-fin-wait"}.get(state or "")
        return (situation, {CauseKind.RST: rst, CauseKind.FIN: fin}, ignored) if situation else None
    if fin is not None and not any(s.is_rst and s.src == side for s in segs):
        own_fin = _own_fin_first(segs, side, fin)
        if own_fin is None:
            return "fin", {CauseKind.FIN: fin}, in_flight(conn, side, fin)
        if _took_data_after(conn, side, own_fin):
            return "half-closed", {CauseKind.FIN: fin}, in_flight(conn, side, fin)
        return None  # closed first: after close() nothing reads (a read on the gone descriptor is EBADF)
    return None


def _own_fin_first(segs, side: Endpoint, fin: Segment) -> Optional[Segment]:
    """`side`'s FIN when it sent it before it took the peer's `fin`: earlier in
    the capture, or later but not acknowledging `fin` (the two FINs crossed:
    a simultaneous close, tcpstate's send_fin_crossing)."""
    fin_end = (fin.seq + fin.payload_len + 1) % (1 << 32)
    for s in segs:
        if s.is_fin and s.src == side:
            before = (s.time_ns, s.frame) < (fin.time_ns, fin.frame)
            acks_it = bool(s.flags & TcpFlags.ACK) and not _after(fin_end, s.ack)
            return s if before or not acks_it else None
    return None


def _took_data_after(conn: Connection, side: Endpoint, own_fin: Segment) -> bool:
    """Whether the peer's data after `side`'s FIN was taken (no RST answered
    it): only a socket shut down for writing still receives; a closed one
    answers data with RST (TCP_ABORT_ON_DATA)."""
    return any(s.src != side and s.payload_len and (s.time_ns, s.frame) > (own_fin.time_ns, own_fin.frame)
               for s in conn.segments)


def in_flight(conn: Connection, side: Endpoint, fin: Segment) -> tuple[Segment, ...]:
    """The peer's data segments `side` had not acknowledged when `fin` reached
    it (the FIN's own payload included): still queued, so a read returns their
    bytes before end-of-file (tcp_recvmsg drains the receive queue before it
    tests SOCK_DONE; XNU's soreceive returns sb_cc before SS_CANTRCVMORE)."""
    acked = None
    for s in conn.segments:
        if (s.time_ns, s.frame) >= (fin.time_ns, fin.frame):
            break
        if s.src == side and s.flags & TcpFlags.ACK:
            acked = s.ack
    return tuple(s for s in conn.segments if s.src == fin.src and s.payload_len
                 and (s.time_ns, s.frame) <= (fin.time_ns, fin.frame)
                 and (acked is None or _after(s.seq + s.payload_len, acked)))


def _after(end: int, acked: int) -> bool:
    """True when sequence number `end` lies beyond `acked` (mod 2**32)."""
    return 0 < (end - acked) % (1 << 32) < (1 << 31)


def _read_earlier(conn: Connection, side: Endpoint, fin: Segment, pending: tuple[Segment, ...]) -> tuple[int, list]:
    """(bytes, frames) of the peer's data after this side last sent data and
    before the FIN that it had acknowledged already: the application may or
    may not have read them before the FIN came (the packets cannot tell)."""
    last_own = max((s.time_ns for s in conn.segments if s.src == side and s.payload_len
                    and s.time_ns <= fin.time_ns), default=None)
    queued = {s.frame for s in pending}
    earlier = [s for s in conn.segments if s.src == fin.src and s.payload_len and s.frame not in queued
               and (s.time_ns, s.frame) < (fin.time_ns, fin.frame)
               and (last_own is None or s.time_ns >= last_own)]
    return sum(s.payload_len for s in earlier), [s.frame for s in earlier]


def is_clean_ending(link: Link) -> bool:
    """A predicted link of a clean close: the peer's FIN, no RST either way (its
    row's situation is CLEAN_SITUATION)."""
    row = _BY_NAME.get(link.rule) if link.call.source == PREDICTED else None
    return row is not None and row.situation in CLEAN_SITUATIONS


def _state_before(timeline, seg: Segment) -> Optional[str]:
    """The side's state just before `seg` (the packet state machine takes every
    RST, so callers ask before the first one); a capture that begins with
    `seg` itself has only its initial state to tell."""
    if timeline and seg.time_ns <= timeline[0][0]:
        return timeline[0][1]
    return state_at(timeline, seg.time_ns - 1)


# -- the predictions ----------------------------------------------------------------

@dataclass(frozen=True)
class _Coverage:
    """The sockets real evidence speaks for: real evidence wins. A call names
    one by its endpoints; a log line without them, by the link correlate made
    of it (its cause reached that side of that connection)."""

    locals: frozenset  # call.local of every real call
    remotes: frozenset  # call.remote of real calls that do not know their local end
    reached: frozenset  # (frame, time, dst) of every real link's cause

    @classmethod
    def of(cls, calls: Iterable[SocketCall], real_links: Iterable[Link]) -> "_Coverage":
        real = [c for c in calls if c.source != PREDICTED]
        return cls(frozenset(c.local for c in real if c.local is not None),
                   frozenset(c.remote for c in real if c.local is None and c.remote is not None),
                   frozenset((l.cause.frame, l.cause.time_ns, l.cause.dst) for l in real_links
                             if l.call.source != PREDICTED and l.cause is not None))

    def covers(self, conn: Connection, side: Endpoint) -> bool:
        if side in self.locals or conn.peer_of(side) in self.remotes:
            return True
        return any((s.frame, s.time_ns, side) in self.reached for s in conn.segments if s.dst == side)


def predict(recording: Recording, os_name: str = "Linux", *, os_of: Optional[dict] = None,
            real_links: Iterable[Link] = ()) -> tuple[Link, ...]:
    """Predicted links for every side no real call covers, time-ordered.

    `os_name` ("Linux", "Darwin", ...) picks the rules; `os_of` maps a host
    address to its own OS where the packets named it (a Linux client talking
    to a Mac server gets each side's rules); `real_links`, correlate's links,
    cover the sockets that calls without endpoints (log lines) were linked to.
    """
    coverage = _Coverage.of(recording.calls, real_links)
    packets_only = replace(recording, kernel_events=())
    links = []
    for conn in connections(recording):
        if not _worth_a_look(conn):
            continue
        states = _lazy_states(packets_only, conn)
        for side in (conn.client, conn.server):
            peer = conn.peer_of(side)
            if coverage.covers(conn, side):
                continue
            side_os = (os_of or {}).get(side.host, os_name)
            found = situation_of(conn, side, states, side_os)
            if found is None:
                continue
            situation, causes, related = found
            for row in rules_for(side_os, situation):
                cause = causes.get(row.kind)
                if cause is not None:
                    links.append(_link(row, conn, side, peer, cause, related, side_os))
    return tuple(sorted(links, key=lambda link: (link.call.end_ns, link.call.local or Endpoint("", 0))))


def _lazy_states(recording: Recording, conn: Connection):
    """`infer_states` for one connection, made on first use and kept."""
    made: dict = {}

    def states() -> dict:
        if "states" not in made:
            made["states"] = infer_states(recording, conn)
        return made["states"]
    return states


def accepted_rst(conn: Connection, side: Endpoint, os_name: str) -> tuple[Optional[Segment], tuple[Segment, ...]]:
    """The first RST toward `side` its stack accepts, and the ones before it it ignored.

    RFC 5961 3.2: an RST whose sequence number is in the window but not the
    exact one expected draws a challenge ACK and is otherwise ignored. XNU
    expects `last_ack_sent` (xnu-11417.121.6 bsd/netinet/tcp_input.c:4228 tcp_input(),
    "bad RST" -> challenge ACK), so an RST sent right after data the side has
    not yet acknowledged is ignored (corpus zeek/almost-resp.pcap: RST,ACK
    frame 10, challenge ACK frame 11, bare RST frame 12); Linux expects
    rcv_nxt (net/ipv4/tcp_input.c tcp_validate_incoming()), which counts
    data received but not yet acknowledged. When no RST is exact, the first
    one is returned, and the link says so.
    """
    rsts = [s for s in conn.segments if s.is_rst and s.dst == side]
    for index, rst in enumerate(rsts):
        if rst.seq in _expected_seqs(conn, side, rst, os_name):
            return rst, tuple(rsts[:index])
    return (rsts[0], ()) if rsts else (None, ())


def _expected_seqs(conn: Connection, side: Endpoint, rst: Segment, os_name: str) -> set[int]:
    before = [s for s in conn.segments if (s.time_ns, s.frame) < (rst.time_ns, rst.frame)]
    acks = [s.ack for s in before if s.src == side and s.flags & TcpFlags.ACK]
    if not acks:
        return {rst.seq}  # nothing to compare with: accept it
    expected = {acks[-1], (acks[-1] - 1) % (1 << 32)}
    if os_name != "Darwin":  # rcv_nxt: what the peer sent, acknowledged or not
        ends = [(s.seq + s.payload_len + (1 if s.is_fin else 0)) % (1 << 32)
                for s in before if s.src != side and not s.is_syn and not s.is_rst]
        expected.update(ends[-1:])
    return expected


def _rst_caveats(conn: Connection, side: Endpoint, rst: Segment, ignored: tuple[Segment, ...],
                 os_name: str) -> list[str]:
    caveats = [f"frame {seg.frame}'s RST was not at the sequence number {side} expected, so its stack "
               "answered it with a challenge ACK and ignored it (RFC 5961); the RST that counted is "
               f"frame {rst.frame}" for seg in ignored]
    if rst.seq not in _expected_seqs(conn, side, rst, os_name):
        caveats.append(f"no RST reached {side} at the sequence number it expected (frame {rst.frame} is "
                       "the first): an RFC 5961 stack answers such an RST with a challenge ACK and keeps "
                       "the connection, so this prediction holds only if a later RST was exact")
    return caveats


def _fin_caveats(conn: Connection, side: Endpoint, fin: Segment, pending: tuple[Segment, ...]) -> list[str]:
    caveats = []
    count, frames = _read_earlier(conn, side, fin, pending)
    if count:
        caveats.append(f"{bytes_text(count)} the peer sent before its FIN ({frames_text(frames)}) had been acknowledged "
                       "already: a read made before the FIN came returned them, else the next read does, "
                       "then end-of-file")
    return caveats


def _write_after_fin(conn: Connection, side: Endpoint, rst: Segment) -> list[str]:
    """The write that drew the RST, named: it succeeded, the next one fails."""
    fin = next((s for s in conn.segments if s.is_fin and s.dst == side and not s.is_rst), None)
    if fin is None:
        return []
    sent = [s for s in conn.segments if s.src == side and s.payload_len
            and (fin.time_ns, fin.frame) < (s.time_ns, s.frame) < (rst.time_ns, rst.frame)]
    if not sent:
        return []
    return [f"its write after the peer's FIN succeeded ({bytes_text(sum(s.payload_len for s in sent))}, "
            f"{frames_text([s.frame for s in sent])}) and drew this RST: the write that fails is the one after it"]


def bytes_text(count: int) -> str:
    """``1 byte``, ``1,024 bytes``."""
    return f"{count:,} byte{'s' if count != 1 else ''}"


def frames_text(frames: list) -> str:
    """``frame 7``, ``frames 6-9``, ``frames 6, 9``."""
    if len(frames) == 1:
        return f"frame {frames[0]}"
    return f"frames {frames[0]}-{frames[-1]}" if frames == list(range(frames[0], frames[-1] + 1)) else \
        "frames " + ", ".join(map(str, frames))


_TEXT = "predicted from the packets ({} rules)"


def rules_os(link: Link) -> Optional[str]:
    """Whose rules made a predicted link ("Linux", "Darwin"...): its call's text says."""
    text = link.call.text
    head, _, tail = _TEXT.partition("{}")
    if link.call.source != PREDICTED or not text.startswith(head) or not text.endswith(tail):
        return None
    return text[len(head):len(text) - len(tail)]


def _link(row: Prediction, conn: Connection, side: Endpoint, peer: Endpoint, cause: Segment,
          related: tuple[Segment, ...], os_name: str) -> Link:
    eof = row.outcome == "EOF"
    role = conn.role_of(side) if conn.roles_known else "peer"
    call = SocketCall(role=role, op=row.op, start_ns=cause.time_ns, end_ns=cause.time_ns, result=0 if eof else -1,
                      errno=None if eof else row.outcome, local=side, remote=peer, source=PREDICTED,
                      text=_TEXT.format(os_name))
    caveats = []
    if row.status:
        caveats.append(f"{os_name} rule {row.status}")
    elif os_name == "Darwin":  # a rule for any OS, proven here on Linux only
        caveats.append(f"Darwin rule {DARWIN_STATUS}")
    if cause.is_rst and row.situation != "refused":
        caveats += _rst_caveats(conn, side, cause, related, os_name)
    if not conn.roles_known:
        caveats.append("the capture began mid-connection (no handshake): the connection is taken as "
                       "established when it starts")
    if row.alternatives:
        caveats.append(f"or {' / '.join(row.alternatives)}: {row.alternatives_why}")
    if row.situation in CLEAN_SITUATIONS:
        caveats += _fin_caveats(conn, side, cause, related)
    if row.situation == "rst-close-wait" and row.op == "write":
        caveats += _write_after_fin(conn, side, cause)
    if row.situation == "syn-unanswered":
        caveats.append("the capture ends before the kernel gave up; an application timeout may have ended "
                       "the connect sooner")
    explanation = f"{row.op}() -> {row.outcome} (predicted from the packets, {os_name} rules): {row.rule}"
    if row.situation in CLEAN_SITUATIONS and related:
        explanation += (f"; it reads {bytes_text(sum(s.payload_len for s in related))} still in flight with the FIN "
                        f"({frames_text([s.frame for s in related])}) first")
    return Link(call=call, kind=row.kind, rule=row.name, explanation=explanation, cause=cause,
                related=related, caveats=tuple(caveats))


# -- from a census row: Zeek's history letters instead of the segments ----------------

@lru_cache(maxsize=4096)  # histories repeat: a capture of 100,000 connections has a few dozen
def predicted_from_history(history: str, os_name: str = "Linux") -> tuple[tuple[str, tuple], ...]:
    """What each side will have seen, from a census connection's Zeek history
    (``ShADadfR``: upper case the client, each letter at its first occurrence):
    ``(("client", (("read", "ECONNRESET"), ...)), ("server", ...))``.

    The same situations and rows as `predict`, read from the order of the
    letters: who sent the first RST (R/r), and whether either side's FIN (F/f)
    came before it; the handshake from S, h and r. Coarser than `predict`: the
    letters do not say whether the RST's sequence number was the one the
    receiver accepts (RFC 5961), nor whether two FINs crossed, and they show a
    half-close (the side that sent its FIN first took data after it) only when
    the peer's first data came after that FIN: a FIN predicts end-of-file for a
    receiver that had not sent its own. Sides with nothing to predict are left out.
    """
    first = {letter: index for index, letter in reversed(list(enumerate(history)))}
    out = []
    for side, own, peer in (("client", str.upper, str.lower), ("server", str.lower, str.upper)):
        situation = _situation_from_letters(first, side, own, peer)
        if situation is None:
            continue
        rows = tuple((row.op, row.outcome) for row in rules_for(os_name, situation))
        if rows:
            out.append((side, rows))
    return tuple(out)


def _situation_from_letters(first: dict, side: str, own, peer) -> Optional[str]:
    answered = "h" in first or "S" not in first  # a SYN/ACK, or the capture began mid-connection
    if not answered:
        if side != "client":
            return None
        if "r" in first:
            return "refused"
        return "syn-unanswered" if set(first) <= {"S", "^"} else None
    never = len(first) + 1
    at = {name: first.get(letter, never) for name, letter in
          (("own_rst", own("R")), ("peer_rst", peer("R")), ("own_fin", own("F")), ("peer_fin", peer("F")))}
    if at["peer_rst"] < never:
        if at["own_rst"] < at["peer_rst"]:
            return None  # this side reset the connection itself first
        own_fin, peer_fin = at["own_fin"] < at["peer_rst"], at["peer_fin"] < at["peer_rst"]
        if own_fin and peer_fin:
            return None  # both FINs first: TIME_WAIT, CLOSING or LAST_ACK, no application to tell
        return "rst-fin-wait" if own_fin else "rst-close-wait" if peer_fin else "rst-established"
    if at["peer_fin"] < never and at["own_rst"] == never:
        if at["own_fin"] > at["peer_fin"]:
            return "fin"
        # It sent its FIN first: closed (nothing reads), unless the peer's first data came after that FIN
        # and it took it: a half-close. Earlier data hides later data (letters mark first occurrences).
        peer_data = first.get(peer("D"), never)
        return "half-closed" if at["own_fin"] < peer_data < at["peer_fin"] else None
    return None
