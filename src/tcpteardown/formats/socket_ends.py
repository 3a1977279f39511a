"""A socket's two ends, from evidence other than the call itself.

`record` traces with ``strace -y``, which names a socket fd by its inode
(``3<socket:[1234]>``) only: ``-yy`` would name its 4-tuple, but strace gets
that by dumping every TCP socket on the host over sock_diag for each fd it
prints, which slows the program fiftyfold under load and stamps its calls
late. The remote end is in the call (connect's and accept's sockaddr);
what is missing is the local end a connect got (an ephemeral port) and the
local address of a socket accepted on a wildcard listener (``0.0.0.0:80``).
`SocketEnds` finds them in what the bundle holds anyway:

- the capture's SYN to the call's remote end sent while the call ran
  (connect() sends it before it returns, even a non-blocking one), SYNs
  and calls paired in time order, each SYN claimed once;
- narrowed by the kernel witness's ``sock:inet_sock_set_state`` CLOSE ->
  SYN_SENT, which the kernel emits inside connect() on the connecting
  thread (its pid field is that thread's id): the SYN is the first to that
  remote end after it, so threads connecting to one server at once are
  told apart; where a kernel names the source port in that event already,
  it is the answer;
- for an accepted socket, the 4-tuple (witness or capture) whose one end is
  the peer's address from accept's sockaddr and whose other end has the
  listener's port, nearest before accept returned.

Pure: KernelEvents and Segments in, endpoints out.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable, Optional

from tcpteardown.model import Endpoint, KernelEvent, Segment, TcpFlags

__all__ = ["SocketEnds"]

SET_STATE = "sock:inet_sock_set_state"
_SYN, _SYN_ACK = int(TcpFlags.SYN), int(TcpFlags.SYN | TcpFlags.ACK)
SLACK_NS = 50_000  # strace stamps to the microsecond; the witness clock maps within some 10 us
# Under load strace's stamps of a call can end before the kernel stamps the SYN that call
# sent (measured: 90 us after a connect's strace end, 2 cores busy): a connect's SYN is
# looked for until this long after the call's end. Calls are asked in time order and each
# SYN is claimed once, so the later SYN of the thread's next connect is not taken.
LATE_NS = 1_000_000
ACCEPT_LOOKBACK_NS = 600 * 1_000_000_000  # a connection accepted long after its handshake (a backlog)


class SocketEnds:
    """Answers "which local end did this connect get?" and "which local
    address did this accepted socket have?" for the strace parser."""

    def __init__(self, events: Iterable[KernelEvent] = (), segments: Iterable[Segment] = (),
                 *, slack_ns: int = SLACK_NS) -> None:
        self.slack_ns = slack_ns
        # tid -> time-sorted [(time, local, remote)] of connect()'s SYN_SENT transitions
        self._syn_sent: dict[int, list[tuple[int, Endpoint, Endpoint]]] = {}
        self._syn_sent_used: dict[int, int] = {}  # tid -> index of the next event to consider
        # remote -> time-sorted [(time, local)] of SYNs (no ACK) the capture saw go to it
        self._syns: dict[Endpoint, list[tuple[int, Endpoint]]] = {}
        self._syns_used: dict[Endpoint, int] = {}
        # peer endpoint -> [(time, the other end)]: every 4-tuple seen, for accepted sockets
        self._peers: dict[Endpoint, list[tuple[int, Endpoint]]] = {}
        for event in events:
            if event.src is None or event.dst is None:
                continue
            self._peer(event.time_ns, event.src, event.dst)
            if event.name == SET_STATE and event.get("newstate") == "TCP_SYN_SENT":
                tid = event.get("pid")
                if tid and tid.isdigit():
                    self._syn_sent.setdefault(int(tid), []).append((event.time_ns, event.src, event.dst))
        for seg in segments:
            if int(seg.flags) & _SYN_ACK == _SYN:  # the connect's SYN, not the answer
                self._syns.setdefault(seg.dst, []).append((seg.time_ns, seg.src))
                self._peer(seg.time_ns, seg.src, seg.dst)
        for found in (*self._syn_sent.values(), *self._syns.values(), *self._peers.values()):
            found.sort(key=lambda item: item[0])

    def _peer(self, time_ns: int, a: Endpoint, b: Endpoint) -> None:
        self._peers.setdefault(a, []).append((time_ns, b))
        self._peers.setdefault(b, []).append((time_ns, a))

    @property
    def witnessed(self) -> bool:
        return bool(self._syn_sent)

    def connected(self, tid: Optional[int], start_ns: int, end_ns: int,
                  remote: Optional[Endpoint]) -> Optional[Endpoint]:
        """The local end connect() got, or None when nothing tells it.

        The witness's SYN_SENT event of this thread to `remote` within the
        call says when the SYN left (the kernel names the source port only
        after that tracepoint: its sport is 0 on Linux 6.x); the capture's
        first unclaimed SYN to `remote` from then until LATE_NS after the call returned is
        this connect's. Without the witness the call's own span is the
        window, which holds one SYN per connect for a thread connecting in
        a loop; calls are asked in time order."""
        if remote is None:
            return None
        low, high = start_ns - self.slack_ns, end_ns + max(self.slack_ns, LATE_NS)
        narrowed = low
        events = self._syn_sent.get(tid) if tid is not None else None
        if events:
            at = max(self._syn_sent_used.get(tid, 0), bisect_left(events, low, key=lambda e: e[0]))
            for index in range(at, len(events)):
                time_ns, local, dst = events[index]
                if time_ns > high:
                    break
                if dst == remote:
                    self._syn_sent_used[tid] = index + 1
                    if local.port:
                        return local
                    narrowed = time_ns - self.slack_ns
                    break
        # The witness's clock is mapped onto the packets' within an uncertainty that grows
        # under load: when its narrowing misses the SYN, the call's own span still holds it.
        return self._first_syn(remote, narrowed, high) or (
            self._first_syn(remote, low, high) if narrowed > low else None)

    def _first_syn(self, remote: Endpoint, low: int, high: int) -> Optional[Endpoint]:
        """The first unclaimed SYN to `remote` sent within [low, high], claimed; or None."""
        syns = self._syns.get(remote)
        if not syns:
            return None
        at = max(self._syns_used.get(remote, 0), bisect_left(syns, low, key=lambda s: s[0]))
        if at >= len(syns) or syns[at][0] > high:
            return None
        self._syns_used[remote] = at + 1
        return syns[at][1]

    def accepted(self, listener: Optional[Endpoint], peer: Optional[Endpoint],
                 end_ns: int) -> Optional[Endpoint]:
        """The local end of a socket accepted from `peer` on `listener`
        (whose address may be a wildcard), or None."""
        if peer is None or listener is None:
            return None
        best = None
        for time_ns, other in self._peers.get(peer, ()):
            if time_ns > end_ns + self.slack_ns:
                break
            if other.port == listener.port and time_ns >= end_ns - ACCEPT_LOOKBACK_NS and \
                    (is_wildcard(listener) or other.host == listener.host):
                best = other
        return best


def is_wildcard(endpoint: Optional[Endpoint]) -> bool:
    return endpoint is not None and endpoint.host in ("0.0.0.0", "::")
