"""Link every failing socket call to the segment (or local act) that caused it.

`correlate(recording) -> tuple[Link, ...]`: one Link per interesting call
(every failure, every end-of-file), in call order. Which rule applies is
decided by the table in `analysis/rules.py`; this module implements each row
by name, one small function per rule (`_RULES` at the bottom maps names to
functions).

How a call finds its connection: by its local and remote endpoints when it
has them (either may be missing: after an RST `getpeername` fails, a
non-blocking connect shows no 4-tuple), otherwise by time and by which
connection actually holds the evidence the rule looks for. Every candidate
connection is searched; when more than one holds evidence, the link takes
the most recent and says so in its caveats. It never guesses silently:
missing packets, two RSTs, no 4-tuple, clock skew all become caveats.

Clocks: calls recorded by our own recorder share the packets' clock; calls
from strace are stamped to the microsecond, and application log lines are
written some time after the call returned, so segments are matched to them
with a tolerance (`TOLERANCE_NS`), and the link says so.

Log lines (`_log_link`) also get what their phrasing tells
(tcpteardown.messages): an error the runtime made up is said to be the
runtime's; words that leave FIN or RST open try the other when the first
finds nothing; a line whose 4-tuple names a connection at another time is
linked there, with the clock offset said. `unlinked(links)` lists the log
and strace calls nothing explains, with file:line and why. One failure seen
by several sources (strace's call, the program's log line, the same line
kept twice) is one link citing them all (`analysis.sources`).

Pure: never imports socket or scapy, never reads a file.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from functools import cached_property
from operator import attrgetter
from typing import Callable, Iterable, Optional

from ..messages import RUNTIME, read_message
from ..model import RECEIVE_OPS, Endpoint, Link, Recording, Segment, SocketCall, TcpFlags
from ..units import clock_text, format_duration
from .connections import side_of
from .rules import UNMATCHED, UNREACHABLE_ERRNOS, Rule, is_interesting, op_family, rule_for
from .sources import merge_sources
from .tcpstate import Connection, connections

__all__ = ["correlate", "unlinked", "tolerance", "TOLERANCE_NS", "LOCAL_CLOSE_OPS"]

# Per call source: (late, early) in ns. `late`: how far after the call's end
# a segment may be stamped and still count as "before the call returned"
# (clock truncation and skew). `early`: how long before the call's start a
# connect's SYN may lie (a log line is written when the call has already
# given up, a connect timeout can be minutes).
TOLERANCE_NS: dict[str, tuple[int, int]] = {
    "scenario": (0, 0),
    "strace": (1_000_000, 1_000_000),
    "ebpf": (1_000_000, 1_000_000),  # record --calls ebpf: the monotonic clock mapped onto the packets'
    "log": (1_000_000, 300_000_000_000),
}
_DEFAULT_TOLERANCE = (1_000_000, 1_000_000)


def tolerance(call: SocketCall) -> tuple[int, int]:
    """(late, early) for `call`. A log line is written after the call
    returned, so its cause lies before it, give or take the precision of its
    timestamp: a line stamped to the whole second (syslog) may be up to a
    second behind the packets, one stamped to the millisecond a millisecond."""
    late, early = TOLERANCE_NS.get(call.source, _DEFAULT_TOLERANCE)
    if call.source == "log":
        if call.end_ns % 1_000_000_000 == 0:
            late = 1_000_000_000
        elif call.end_ns % 1_000_000 == 0:
            late = max(late, 1_000_000)
    return late, early

LOCAL_CLOSE_OPS = frozenset({"close", "shutdown"})


@dataclass(frozen=True)
class _Socket:
    """A candidate for the socket a call was made on."""

    conn: Connection
    local: Optional[Endpoint]  # None: we could not tell which end made the call
    caveats: tuple[str, ...] = ()

    def toward(self, seg: Segment) -> bool:
        """`seg` reached this socket (was sent to it)."""
        return self.local is None or seg.dst == self.local

    def mine(self, seg: Segment) -> bool:
        return self.local is None or seg.src == self.local


@dataclass(frozen=True)
class _Ctx:
    recording: Recording
    connections: tuple[Connection, ...]
    by_endpoint: dict  # Endpoint -> [Connection]: most calls name one end
    calls_by_key: dict  # _call_keys(call) entries -> [SocketCall], in time order
    call: SocketCall
    late: int
    early: int

    @cached_property
    def pending_connect(self) -> Optional[SocketCall]:
        # Asked once per candidate socket by the connect rules: computed once per call.
        return _find_pending_connect(self)

    @property
    def deadline(self) -> int:
        """Segments stamped up to here count as "before the call returned"."""
        return self.call.end_ns + self.late


def correlate(recording: Recording) -> tuple[Link, ...]:
    conns = connections(recording)
    by_endpoint: dict[Endpoint, list[Connection]] = {}
    for conn in conns:
        by_endpoint.setdefault(conn.client, []).append(conn)
        by_endpoint.setdefault(conn.server, []).append(conn)
    calls_by_key: dict[tuple, list[SocketCall]] = {}
    for call in recording.calls:
        for key in _call_keys(call):
            calls_by_key.setdefault(key, []).append(call)
    links = []
    for call in recording.calls:
        if is_interesting(call):
            late, early = tolerance(call)
            ctx = _Ctx(recording, conns, by_endpoint, calls_by_key, call, late, early)
            link = _link(ctx)
            if call.source == "log":
                link = _log_link(ctx, link)
            links.append(_with_wakeup(ctx, link))
    return _on_incomplete_evidence(merge_sources(links), recording)


def _on_incomplete_evidence(links: tuple[Link, ...], recording: Recording) -> tuple[Link, ...]:
    """Every link made on a capture that may miss packets says so (analysis.completeness)."""
    from .completeness import caveat_for

    caveat = caveat_for(recording)
    return tuple(replace(link, caveats=link.caveats + (caveat,)) for link in links) if caveat else links


def _link(ctx: _Ctx) -> Link:
    pending = ctx.pending_connect
    if pending is not None and op_family(ctx.call.op) in ("recv", "send") and ctx.call.errno in CONNECT_ERRNOS:
        return _connect_outcome_by_io(ctx, pending)
    for rule in rule_for(ctx.call):
        link = _RULES[rule.name](ctx, rule)
        if link is not None:
            return link
    return _make(ctx, UNMATCHED, None, (
        f"no correlation rule for {ctx.call.op}() -> {ctx.call.outcome}; nothing is linked",))


# -- event loops: a non-blocking connect's outcome, and the loop's wake-up -------

# What a non-blocking connect leaves on its socket for SO_ERROR or the next read/write.
CONNECT_ERRNOS = frozenset({"ECONNREFUSED", "ETIMEDOUT"}) | UNREACHABLE_ERRNOS
# What a readiness event says about a FIN (IN: a 0-byte read waits; RDHUP/HUP) and
# about an RST (ERR, HUP, and IN/OUT: the failing call waits) or a refused SYN (OUT|ERR).
_TOLD = {"fin": frozenset({"IN", "RDHUP", "HUP"}), "rst": frozenset({"IN", "OUT", "ERR", "HUP", "RDHUP"})}


def _find_pending_connect(ctx: _Ctx) -> Optional[SocketCall]:
    """The non-blocking connect (EINPROGRESS) whose outcome this call reports: the
    last one on this fd of this process (any thread) before the call, when no
    outcome came in between. Walks back from the call (the lists are sorted by
    start) and stops at the first decisive call, copying nothing."""
    call = ctx.call
    if call.fd is None:
        return None
    earlier = ctx.calls_by_key.get(("role-fd", call.role, call.fd), ())
    for index in range(bisect_right(earlier, call.start_ns, key=attrgetter("start_ns")) - 1, -1, -1):
        other = earlier[index]
        if other is call or other.end_ns > call.start_ns:
            continue
        if other.remote is not None and call.remote is not None and other.remote != call.remote:
            continue
        if other.op == "connect" and other.would_block:
            return other
        if other.failed or other.op == "getsockopt" or other.op == "connect":
            return None  # a later attempt, or that attempt's outcome was already reported
    return None


def _attempt_start(ctx: _Ctx) -> int:
    """When a connect attempt began: the non-blocking connect's start for its
    SO_ERROR (or a second connect), else the call's own start."""
    pending = ctx.pending_connect
    return pending.start_ns if pending is not None else ctx.call.start_ns


def _connect_outcome_by_io(ctx: _Ctx, pending: SocketCall) -> Link:
    """A read/write that reports a non-blocking connect's outcome (no SO_ERROR was
    read): linked by the connect rows, as the connect itself would be."""
    call = ctx.call
    as_connect = replace(call, op="connect")
    link = _link(replace(ctx, call=as_connect))
    sentence = link.explanation.split(": ", 1)[-1]
    return replace(link, call=call, explanation=(
        f"{call.op}() -> {call.outcome}: the outcome of the non-blocking connect() at "
        f"{clock_text(pending.start_ns)}, "
        f"reported by the first {call.op}() after it: {sentence}"))


def _with_wakeup(ctx: _Ctx, link: Link) -> Link:
    """The link with the readiness event that told the loop of its cause: the first
    epoll_wait/poll/select for this socket that returned at or after the cause
    reached it and before the call, reporting what that segment leaves."""
    call, cause = link.call, link.cause
    if cause is None or call.fd is None or call.source not in ("strace", "ebpf"):
        return link
    told = _TOLD["rst" if cause.is_rst else "fin" if cause.is_fin else ""] if (cause.is_rst or cause.is_fin) \
        else None
    if told is None:
        return link
    late = ctx.late
    for event in ctx.calls_by_key.get(("role-fd", call.role, call.fd), ()):
        if not event.is_readiness or event.end_ns + late < cause.time_ns or event.end_ns > call.start_ns + late:
            continue
        if event.local is not None and call.local is not None and event.local != call.local:
            continue
        if event.readiness & told:
            return replace(link, wakeup=event)
    return link


# -- log lines: what the words leave open, and who made the error ------------

def _log_link(ctx: _Ctx, link: Link) -> Link:
    """A log line's link, finished with what its phrasing tells
    (tcpteardown.messages): when the words leave FIN or RST open (``socket hang
    up``) and the first reading found no segment, the other is tried; when
    the runtime made the error up, the link says so."""
    found = read_message(ctx.call.text)
    if found is None or found.phrasing is None:
        return link
    phrasing = found.phrasing
    if link.cause is None and link.local_call is None:
        link = _on_the_connection_it_names(ctx, link)
    if link.cause is None and link.local_call is None:
        for other in phrasing.also:
            call = _as_outcome(ctx.call, other)
            retry = _link(replace(ctx, call=call))
            if retry.cause is not None:
                link = replace(retry, caveats=retry.caveats + (
                    f"{phrasing.program}'s words do not tell end-of-file from a reset; the capture shows "
                    f"{'an RST' if other == 'ECONNRESET' else 'a FIN'}, so this is read as {other}",))
                break
    if phrasing.by == RUNTIME:
        saw = f"; what it saw: {phrasing.decided_by}" if phrasing.decided_by else ""
        link = replace(link, caveats=link.caveats + (
            f"{phrasing.program} made this error itself, not the kernel (no system call returned it){saw}",))
    return link


def _on_the_connection_it_names(ctx: _Ctx, link: Link) -> Link:
    """A line whose 4-tuple names a connection of the capture that lies at
    another time: the log's clock is off. Linked on that connection (the line
    placed at its last segment), saying by how much the clocks differ."""
    conn = _named_connection(ctx, both=True)
    if conn is None:
        return link
    last = conn.segments[-1].time_ns
    moved = replace(ctx.call, start_ns=last, end_ns=last)
    retry = _link(replace(ctx, call=moved))
    if retry.cause is None and retry.local_call is None:
        return link
    offset = ctx.call.end_ns - last
    direction = "ahead of" if offset > 0 else "behind"
    return replace(retry, call=ctx.call, caveats=tuple(c for c in retry.caveats) + (
        f"the log's clock is about {format_duration(abs(offset))} {direction} the capture's: its line names "
        f"{_conn_text(conn)} (frames {conn.segments[0].frame}-{conn.segments[-1].frame}), so it was placed at "
        f"that connection's last segment to be linked (a time zone? pass --tz)",))


def _named_connection(ctx: _Ctx, *, both: bool = False) -> Optional[Connection]:
    """The connection holding the endpoints the call names (both of them
    when `both`), nearest in time to the call, whatever its time; None when
    the call names none."""
    call = ctx.call
    if both and (call.local is None or call.remote is None):
        return None
    named = call.local if call.local is not None else call.remote
    if named is None:
        return None
    same = [c for c in ctx.by_endpoint.get(named, ())
            if (call.local is None or call.local in c.key) and (call.remote is None or call.remote in c.key)]
    return min(same, key=lambda c: abs(c.start_ns - call.end_ns), default=None)


def _as_outcome(call: SocketCall, outcome: str) -> SocketCall:
    if outcome == "EOF":
        return replace(call, errno=None, result=0, op=call.op if call.op in RECEIVE_OPS else "recv")
    return replace(call, errno=outcome, result=-1)


def unlinked(links: Iterable[Link]) -> tuple[dict, ...]:
    """The log and strace calls that no segment or local act explains, each
    ``{"where", "source", "text", "why"}`` (`where`: ``file:line``): the
    JSON's ``"unlinked"``, and the list `explain` prints, so that no line is
    dropped silently."""
    out = []
    for link in links:
        call = link.call
        if call.source not in ("log", "strace", "ebpf") or link.cause is not None or link.local_call is not None:
            continue
        if link.rule in ("recv-timeout", "closed-descriptor"):
            continue  # explained without a segment, by design
        why = "; ".join(link.caveats) or link.explanation
        out.append({"where": call.where, "source": call.source, "text": call.text, "why": why})
    return tuple(out)


# -- finding the socket -----------------------------------------------------

def _candidates(ctx: _Ctx) -> list[_Socket]:
    """Connections the call may have been made on, most plausible first."""
    call = ctx.call
    found = []
    named = call.local if call.local is not None else call.remote
    pool = ctx.by_endpoint.get(named, ()) if named is not None else ctx.connections
    for conn in pool:
        if call.local is not None and call.local not in conn.key:
            continue
        if call.remote is not None and call.remote not in conn.key:
            continue
        if conn.start_ns > ctx.deadline:
            continue  # began after the call returned
        if conn.next_start_ns is not None and conn.next_start_ns <= call.start_ns - ctx.early:
            continue  # the 4-tuple was reused before the call: the later use is the one
        found.append(_Socket(conn, _local_side(call, conn)))
    found.sort(key=lambda s: s.conn.start_ns, reverse=True)
    if call.local is None and call.remote is None and found:
        found = [_Socket(s.conn, s.local, (
            "the call carries no 4-tuple: matched to its connection by time and by the evidence alone",))
                 for s in found]
    return found


def _local_side(call: SocketCall, conn: Connection) -> Optional[Endpoint]:
    side = side_of(call, conn.client, conn.server, roles_known=conn.roles_known)
    return None if side is None else conn.client if side == "client" else conn.server


def _search(ctx: _Ctx, find: Callable[[_Socket], Optional[tuple]]) -> tuple[Optional[_Socket], Optional[tuple], list[str]]:
    """Run `find` over every candidate socket; the first with evidence wins.

    Returns (socket, evidence, caveats). More than one candidate with
    evidence is an ambiguity and becomes a caveat.
    """
    hits = []
    for sock in _candidates(ctx):
        evidence = find(sock)
        if evidence is not None:
            hits.append((sock, evidence))
    if not hits:
        return None, None, _no_evidence_caveats(ctx)
    # The evidence closest to the call's end is the most plausible: what lies
    # within the tolerance (a log line stamped .502 was written in
    # [.502, .503): a FIN at .5027 is "before" it), closest first, then what
    # lies beyond it.
    end = ctx.call.end_ns
    hits.sort(key=lambda hit: (_evidence_time(hit[1]) > ctx.deadline, abs(end - _evidence_time(hit[1]))))
    sock, evidence = hits[0]
    caveats = list(sock.caveats)
    if sock.local is None:
        caveats.append("could not tell which end of the connection made the call; "
                       "segments in both directions were considered")
    if len(hits) > 1:
        others = ", ".join(_conn_text(s.conn) for s, _ in hits[1:])
        caveats.append(f"{len(hits)} connections hold matching evidence; linked to the one whose evidence "
                       f"is closest before the call returned ({_conn_text(sock.conn)}), not {others}")
    caveats.extend(_unread_candidates(ctx))
    caveats.extend(_skew_caveats(ctx))
    return sock, evidence, caveats


def _unread_candidates(ctx: _Ctx) -> list[str]:
    """A big capture read for a call naming no 4-tuple holds, of the connections that show
    an RST or FIN in the window before it, only the nearest (formats.evidence.NEAR_CANDIDATES):
    how many there were, so the choice above is weighed against all of them."""
    from ..formats.evidence import NEAR_CANDIDATES

    call = ctx.call
    if call.local is not None or call.remote is not None:
        return []
    for key, value in ctx.recording.metadata.extra:
        if key != NEAR_CANDIDATES:
            continue
        t0, t1, shown, read = (int(word) for word in value.split())
        if t0 <= call.end_ns <= t1 and shown > read:
            return [f"{shown} connections show an RST or FIN in the window before the call (--window); only "
                    f"the {read} whose is nearest the call were read and weighed here"]
    return []


def _evidence_time(evidence) -> int:
    """The latest segment time in some evidence (segments, nested in lists/tuples)."""
    if isinstance(evidence, Segment):
        return evidence.time_ns
    times = [_evidence_time(item) for item in evidence if isinstance(item, (Segment, list, tuple))]
    return max((t for t in times if t is not None), default=0)


def _no_evidence_caveats(ctx: _Ctx) -> list[str]:
    if not ctx.recording.segments:
        return ["the recording holds no packets"]
    if not _candidates(ctx):
        where = " ".join(str(e) for e in (ctx.call.local, ctx.call.remote) if e is not None)
        return [f"no connection in the capture matches this call{(' (' + where + ')') if where else ''}"
                + _clock_offset(ctx)]
    return []


def _clock_offset(ctx: _Ctx) -> str:
    """When the call's endpoints name a connection of the capture, but at
    another time: the clocks disagree, and by about how much."""
    call = ctx.call
    conn = _named_connection(ctx)
    if conn is None:
        return ""
    last = conn.segments[-1].time_ns
    offset = call.end_ns - last if call.end_ns > last else call.end_ns - conn.start_ns
    direction = "ahead of" if offset > 0 else "behind"
    return (f", at this time: {_conn_text(conn)} (frames {conn.segments[0].frame}-{conn.segments[-1].frame}) "
            f"is that connection, so the {call.source}'s clock is about {format_duration(abs(offset))} "
            f"{direction} the capture's (a time zone? pass --tz)")


def _skew_caveats(ctx: _Ctx) -> list[str]:
    if ctx.call.source == "scenario" or not ctx.late:
        return []
    return [f"{ctx.call.source} times come from a different clock than the packets; "
            f"segments were matched within {format_duration(ctx.late)} of the call"]


def _conn_text(conn: Connection) -> str:
    return f"{conn.client} -> {conn.server} from {clock_text(conn.start_ns)}"


# -- evidence helpers ---------------------------------------------------------

def _rsts_toward(ctx: _Ctx, sock: _Socket, before: Optional[int] = None) -> list[Segment]:
    limit = ctx.deadline if before is None else before
    return [s for s in sock.conn.segments if s.is_rst and sock.toward(s) and s.time_ns <= limit]


def _fins_toward(ctx: _Ctx, sock: _Socket) -> list[Segment]:
    return [s for s in sock.conn.segments if s.is_fin and not s.is_rst and sock.toward(s)
            and s.time_ns <= ctx.deadline]


def _anonymous(call: SocketCall) -> bool:
    """A log line naming neither fd nor local endpoint: nothing ties it to
    the other calls of its socket (and filing the 1e5 lines of one program
    under one key made matching them quadratic)."""
    return call.source == "log" and call.fd is None and call.local is None


def _same_socket(a: SocketCall, b: SocketCall) -> bool:
    if a.pid is not None and a.fd is not None and b.pid is not None and b.fd is not None:
        return a.pid == b.pid and a.fd == b.fd
    if a.local is not None and b.local is not None:
        return a.local == b.local
    if _anonymous(a) or _anonymous(b):
        return False
    return a.role == b.role and a.fd == b.fd


def _call_keys(call: SocketCall) -> tuple:
    """Index keys under which `_same_socket` partners of `call` are filed."""
    keys = [] if _anonymous(call) else [("role-fd", call.role, call.fd)]
    if call.pid is not None and call.fd is not None:
        keys.append(("pid-fd", call.pid, call.fd))
    if call.local is not None:
        keys.append(("local", call.local))
    return tuple(keys)


def _earlier_calls(ctx: _Ctx) -> list[SocketCall]:
    """Calls on the same socket that ended before this one started, in time order."""
    call = ctx.call
    pool = {id(c): c for key in _call_keys(call) for c in ctx.calls_by_key.get(key, ())}
    found = [c for c in pool.values() if c is not call and _same_socket(c, call) and c.end_ns <= call.start_ns]
    return sorted(found, key=lambda c: (c.start_ns, c.end_ns))


def _plural_caveat(segments: list[Segment], what: str, chosen: Segment) -> list[str]:
    if len(segments) < 2:
        return []
    frames = ", ".join(str(s.frame) for s in segments)
    return [f"{len(segments)} {what} reached this socket before the call returned (frames {frames}); "
            f"linked to frame {chosen.frame}"]


def _late_caveat(ctx: _Ctx, seg: Segment) -> list[str]:
    if seg.time_ns > ctx.call.end_ns:
        return [f"frame {seg.frame} is stamped {format_duration(seg.time_ns - ctx.call.end_ns)} after the call "
                f"returned; linked within the clock tolerance"]
    return []


def _make(ctx: _Ctx, rule: Rule, cause: Optional[Segment], caveats: Iterable[str], *,
          sentence: str = "", related: tuple[Segment, ...] = (), local_call: Optional[SocketCall] = None) -> Link:
    call = ctx.call
    head = f"{call.op}() -> {call.outcome}"
    explanation = f"{head}: {sentence}" if sentence else f"{head}: {rule.description.split(': ', 1)[-1]}"
    return Link(call=call, kind=rule.kind, rule=rule.name, explanation=explanation, cause=cause,
                related=related, local_call=local_call, caveats=tuple(dict.fromkeys(caveats)))


def _sent_by(seg: Segment, sock: _Socket) -> str:
    role = sock.conn.role_of(seg.src) if sock.conn.roles_known else "peer"
    return f"the {role} ({seg.src})"


# -- the rules, one function per row of rules.RULES ----------------------------

def _closed_descriptor(ctx: _Ctx, rule: Rule) -> Link:
    closes = [c for c in _earlier_calls(ctx) if c.op == "close"]
    if not closes:
        return _make(ctx, rule, None, ["no close() of this descriptor was recorded before the call"],
                     sentence="the descriptor had already been closed by this process; no packet caused it")
    close = closes[-1]
    return _make(ctx, rule, None, [], local_call=close,
                 sentence=f"this process had closed the socket itself at {clock_text(close.end_ns)}; "
                          f"no packet caused it")


def _last_rst(ctx: _Ctx) -> tuple[Optional[_Socket], Optional[Segment], list[str]]:
    """The call's socket and the last RST that reached it, with the caveats
    (several RSTs; one stamped after the call); sock is None when none did."""
    sock, rsts, caveats = _search(ctx, lambda s: _rsts_toward(ctx, s) or None)
    if sock is None:
        return None, None, caveats
    rst = rsts[-1]
    return sock, rst, caveats + _plural_caveat(rsts, "RSTs", rst) + _late_caveat(ctx, rst)


def _no_rst_in_capture(ctx: _Ctx, rule: Rule, caveats: list[str]) -> Link:
    return _make(ctx, rule, None, caveats + ["no RST toward this socket in the capture "
                                             "(capture started late, or packets were dropped)"],
                 sentence="an RST must have reached the socket, but the capture does not show it")


def _reset_reported_after(ctx: _Ctx, rst: Segment) -> list[SocketCall]:
    """Earlier calls that already reported this RST's ECONNRESET."""
    return [c for c in _earlier_calls(ctx) if c.errno == "ECONNRESET" and c.end_ns >= rst.time_ns]


def _recv_reset(ctx: _Ctx, rule: Rule) -> Link:
    sock, rst, caveats = _last_rst(ctx)
    if sock is None:
        return _no_rst_in_capture(ctx, rule, caveats)
    return _make(ctx, rule, rst, caveats,
                 sentence=f"{_sent_by(rst, sock)} sent RST (frame {rst.frame}) before the call returned")


def _send_reset(ctx: _Ctx, rule: Rule) -> Link:
    sock, rst, caveats = _last_rst(ctx)
    if sock is None:
        return _no_rst_in_capture(ctx, rule, caveats)
    reported = _reset_reported_after(ctx, rst)
    if reported:
        caveats.append(f"an earlier {reported[0].op}() already reported ECONNRESET for this RST")
    fins = [f for f in _fins_toward(ctx, sock) if f.time_ns <= rst.time_ns]
    if fins:
        caveats.append(f"the peer's FIN (frame {fins[0].frame}) came before the RST: in CLOSE_WAIT an "
                       "RST usually leaves EPIPE, not ECONNRESET")
    return _make(ctx, rule, rst, caveats,
                 sentence=f"{_sent_by(rst, sock)} sent RST (frame {rst.frame}) while the connection was "
                          f"established; this was the first call after it, so it reported the error the RST left")


def _send_epipe_after_rst(ctx: _Ctx, rule: Rule) -> Optional[Link]:
    sock, rst, caveats = _last_rst(ctx)
    if sock is None:
        reset = [c for c in _earlier_calls(ctx) if c.errno == "ECONNRESET"]
        if reset:  # the RST happened (the kernel said so); the capture lost it
            return _make(ctx, rule, None, caveats + [
                "no RST toward this socket in the capture (capture started late, or packets were dropped)"],
                sentence=f"an earlier {reset[-1].op}() reported ECONNRESET, so an RST reached the socket and "
                         "later writes find the connection gone: EPIPE; the capture does not show that RST")
        return None  # no RST: the next row (our own close) decides
    reported = _reset_reported_after(ctx, rst)
    fins = [f for f in _fins_toward(ctx, sock) if f.time_ns <= rst.time_ns]
    if reported:
        how = (f"an earlier {reported[0].op}() reported ECONNRESET and cleared it, so later writes find "
               "the connection gone: EPIPE")
    elif fins:
        how = (f"it arrived after the peer's FIN (frame {fins[0].frame}), in CLOSE_WAIT, which leaves EPIPE "
               "for the next write")
    else:
        how = "the connection was reset before this write, so the write finds it gone: EPIPE"
    return _make(ctx, rule, rst, caveats,
                 sentence=f"{_sent_by(rst, sock)} sent RST (frame {rst.frame}) earlier; {how}")


def _send_epipe_local(ctx: _Ctx, rule: Rule) -> Link:
    closes = [c for c in _earlier_calls(ctx) if c.op in LOCAL_CLOSE_OPS]
    sock = next(iter(_candidates(ctx)), None)
    if not closes:
        return _make(ctx, rule, None, ["no RST reached this socket and no shutdown()/close() of it was "
                                       "recorded; the cause is not in the evidence"],
                     sentence="no RST reached the socket; EPIPE without one means this side had shut down writing")
    local = closes[-1]
    related = ()
    if sock is not None and sock.local is not None:
        fin = next((s for s in sock.conn.segments if s.is_fin and s.src == sock.local
                    and s.time_ns >= local.start_ns), None)
        related = (fin,) if fin is not None else ()
    return _make(ctx, rule, None, [], related=related, local_call=local,
                 sentence=f"no RST reached the socket; this process had called {local.op}() on it "
                          f"at {clock_text(local.end_ns)}, so writing was already shut down")


def _our_syns(ctx: _Ctx, sock: _Socket) -> list[Segment]:
    """The SYNs this socket sent while the call ran (within the clock tolerance)."""
    lo = _attempt_start(ctx) - ctx.early
    return [s for s in sock.conn.segments if s.is_syn and not s.flags & TcpFlags.ACK
            and sock.mine(s) and lo <= s.time_ns <= ctx.deadline]


def _refusals(ctx: _Ctx, sock: _Socket) -> Optional[tuple]:
    syns = _our_syns(ctx, sock)
    answers = [r for r in sock.conn.segments if r.is_rst and r.flags & TcpFlags.ACK
               and r.time_ns <= ctx.deadline
               and any(r.dst == s.src and r.ack == (s.seq + 1) % (1 << 32) for s in syns)]
    return (answers, syns) if answers else None


def _connect_refused(ctx: _Ctx, rule: Rule) -> Link:
    sock, evidence, caveats = _search(ctx, lambda s: _refusals(ctx, s))
    if sock is None:
        return _make(ctx, rule, None, caveats + ["no RST/ACK answering a SYN of ours in the capture"],
                     sentence="an RST/ACK must have answered the SYN, but the capture does not show it")
    answers, syns = evidence
    rst = answers[-1]
    if len(answers) > 1:
        caveats.append(f"{len(answers)} SYNs were refused during the call (frames "
                       f"{', '.join(str(a.frame) for a in answers)}); linked to the last")
    caveats += _late_caveat(ctx, rst)
    return _make(ctx, rule, rst, caveats, related=tuple(syns),
                 sentence=f"{rst.src} answered the SYN with RST/ACK (frame {rst.frame}): nothing was listening")


def _unanswered(ctx: _Ctx, sock: _Socket) -> Optional[tuple]:
    syns = _our_syns(ctx, sock)
    if not syns:
        return None
    answers = [s for s in sock.conn.segments if s.is_syn and s.flags & TcpFlags.ACK and s.dst == syns[0].src]
    return syns, answers


def _connect_timeout(ctx: _Ctx, rule: Rule) -> Link:
    sock, evidence, caveats = _search(ctx, lambda s: _unanswered(ctx, s))
    if sock is None:
        return _make(ctx, rule, None, caveats + ["no SYN of ours in the capture during the call"],
                     sentence="the connection attempt timed out, but the capture shows no SYN for it")
    syns, answers = evidence
    if answers:
        caveats.append(f"a SYN/ACK did arrive (frame {answers[0].frame}): the timeout was the "
                       "application's, not the network's")
    sent = f"{len(syns)} SYNs" if len(syns) > 1 else "one SYN"
    return _make(ctx, rule, syns[0], caveats, related=tuple(syns[1:]),
                 sentence=f"{sent} to {syns[0].dst} (first: frame {syns[0].frame}) went unanswered")


def _connect_unreachable_icmp(ctx: _Ctx, rule: Rule) -> Optional[Link]:
    """Our SYN left and the call failed unreachable: an ICMP error answered
    it. None when no SYN of ours is in the capture (then no-route decides)."""
    sock, evidence, caveats = _search(ctx, lambda s: _unanswered(ctx, s))
    if sock is None:
        return None
    syns, _answers = evidence
    kind = "network" if ctx.call.errno == "ENETUNREACH" else "host"
    return _make(ctx, rule, syns[0], caveats + ["ICMP is not in a TCP capture: the unreachable reply itself "
                                                "is not shown; capture with `icmp or tcp` to see who sent it"],
                 related=tuple(syns[1:]),
                 sentence=f"its SYN to {syns[0].dst} (frame {syns[0].frame}"
                          f"{f', sent {len(syns)} times' if len(syns) > 1 else ''}) was answered by an ICMP "
                          f"{kind} unreachable, not by TCP")


def _connect_no_route(ctx: _Ctx, rule: Rule) -> Link:
    """No SYN left: the route lookup failed on this host. Names the route
    when the recording noted it (`route: ...`, the no-route scenario does)."""
    call = ctx.call
    host = call.remote.host if call.remote is not None else "the destination"
    route = next((value.split(": ", 1)[1] for key, value in ctx.recording.metadata.extra
                  if key == "note" and value.startswith("route: ")), None)
    if route:
        matched = f"the route `{route}` covers it"
    elif call.errno == "ENETUNREACH":
        matched = "no route covers it"
    else:
        matched = "an `unreachable` route covers it"
    sentence = (f"no SYN left: the route lookup for {host} failed on this host before any segment was built "
                f"({matched}); the cause is local routing, not the network (`ip route get {host}` shows it)")
    if dict(ctx.recording.metadata.extra).get("kernel_active_opens") == "0":
        sentence += "; the kernel's own counters agree: it sent no SYN while this was recorded"
    return _make(ctx, rule, None, [], sentence=sentence)


def _recv_eof(ctx: _Ctx, rule: Rule) -> Link:
    # Candidates are ranked by the FIN that would be linked (the first), not by
    # the socket's own later FIN, which a call with no 4-tuple also "sees".
    sock, first, caveats = _search(ctx, lambda s: _fins_toward(ctx, s)[:1] or None)
    if sock is None:
        return _make(ctx, rule, None, caveats + ["no FIN toward this socket in the capture"],
                     sentence="the peer must have sent FIN, but the capture does not show it")
    fins = _fins_toward(ctx, sock)
    fin = first[0]
    if len({f.seq for f in fins}) > 1:
        caveats.append(f"{len(fins)} FINs with different sequence numbers reached this socket; linked to the first")
    caveats += _late_caveat(ctx, fin)
    return _make(ctx, rule, fin, caveats,
                 sentence=f"{_sent_by(fin, sock)} sent FIN (frame {fin.frame}): no more data will come")


def _recv_timeout(ctx: _Ctx, rule: Rule) -> Link:
    call = ctx.call
    caveats = list(_skew_caveats(ctx))
    arrived = []
    for sock in _candidates(ctx):
        arrived += [s for s in sock.conn.segments if sock.toward(s) and call.start_ns <= s.time_ns <= call.end_ns
                    and (s.payload_len or s.is_fin or s.is_rst)]
    if arrived:
        caveats.append(f"{len(arrived)} segment(s) with data, FIN or RST did arrive during the call "
                       f"(first: frame {arrived[0].frame})")
        sentence = "the call gave up waiting although segments arrived"
    elif call.end_ns == call.start_ns:
        sentence = ("the call gave up waiting; its record does not say for how long, so no interval "
                    "could be checked for arrivals")
    else:
        sentence = f"nothing arrived during the {format_duration(call.end_ns - call.start_ns)} the call waited"
    return _make(ctx, rule, None, caveats, sentence=sentence)


def _not_connected_after_rst(ctx: _Ctx, rule: Rule) -> Optional[Link]:
    sock, rst, caveats = _last_rst(ctx)
    if sock is None:
        return None  # never connected, or shut down: no row for that
    return _make(ctx, rule, rst, caveats,
                 sentence=f"{_sent_by(rst, sock)} had reset the connection (frame {rst.frame}); "
                          "there was no connection left to act on")


_RULES: dict[str, Callable[[_Ctx, Rule], Optional[Link]]] = {
    "closed-descriptor": _closed_descriptor,
    "recv-reset": _recv_reset,
    "send-reset": _send_reset,
    "send-epipe-after-rst": _send_epipe_after_rst,
    "send-epipe-local": _send_epipe_local,
    "connect-refused": _connect_refused,
    "connect-timeout": _connect_timeout,
    "connect-unreachable-icmp": _connect_unreachable_icmp,
    "connect-no-route": _connect_no_route,
    "recv-eof": _recv_eof,
    "recv-timeout": _recv_timeout,
    "not-connected-after-rst": _not_connected_after_rst,
}
