"""The flight recorder's memory: recent packets and kernel events per connection, bounded.

Each connection (its two endpoints, either order) keeps its captured
packets (Frame and its already decoded Segment: nothing is parsed twice) and
the kernel events about it. A ``connect()`` logs its SYN_SENT before the
kernel picks the local port (``sport=0``): those events wait under
(local host, remote endpoint) until a connection to that remote claims them.

`Ring.claim(teardown)` takes one RST's connection out: its packets from its
last SYN (a 4-tuple reused after TIME_WAIT keeps an older connection's
packets before it) to the RST, and its events up to the teardown's window.
What is claimed still counts against the bound until the bundle is written
(`release`), so the whole recorder, ring and bundles in waiting, holds at
most `limit` bytes (as measured costs, PACKET_COST and EVENT_COST: the
Python objects, not only the wire bytes); past it, the least recently
active connection loses its oldest packet or event first, counted in
`dropped_packets` / `dropped_events`.

Pure: no I/O and no threads of its own; one lock, because tcpdump's reader
thread, the trace reader and the bundle writer share it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Optional

from ...model import Frame, KernelEvent, Segment, TcpFlags

__all__ = ["Claim", "Ring", "key_of", "PACKET_COST", "EVENT_COST"]

# What one kept item costs in memory, measured with tracemalloc (CPython 3.11): a Frame and
# its Segment (endpoints, options) beyond the packet's own bytes; a KernelEvent with its fields.
PACKET_COST = 720
EVENT_COST = 1_500
RST_CLOCK_SLACK_NS = 100_000_000  # tcpdump's stamps and the trace clock's mapping agree far better
EVENT_WINDOW_NS = 3_000_000  # the pieces of one teardown (teardowns.WINDOW_NS)

Packet = tuple[Frame, Segment]
_SYN_ACK = TcpFlags.SYN | TcpFlags.ACK


class _Kept:
    __slots__ = ("packets", "events")

    def __init__(self):
        self.packets: deque[Packet] = deque()
        self.events: deque[KernelEvent] = deque()


@dataclass(slots=True)
class Claim:
    """One RST's connection, out of the ring and waiting for its bundle."""

    teardown: object  # teardowns.Teardown
    packets: list[Packet]
    events: list[KernelEvent]
    cost: int  # bytes it holds against the bound until released
    rst_captured: bool  # False: tcpdump had not delivered the RST (the bundle holds what came before)
    from_syn: bool  # its first packet is the connection's SYN (else the ring had dropped the start)


def key_of(teardown) -> frozenset:
    """The ring's key of a teardown's connection."""
    return frozenset((teardown.local, teardown.remote))


def _cost(packet: Packet) -> int:
    return len(packet[0].data) + PACKET_COST


def _is_first_syn(segment: Segment) -> bool:
    return int(segment.flags) & _SYN_ACK == TcpFlags.SYN


class Ring:
    def __init__(self, limit: int):
        self.limit = limit
        self.lock = threading.Lock()
        self._kept: OrderedDict[object, _Kept] = OrderedDict()  # least recently active first
        self._rst_keys: set = set()
        self.bytes = 0  # ring and claims together
        self.peak = 0
        self.packets = 0
        self.dropped_packets = 0
        self.dropped_events = 0

    # -- keeping

    def keep_packet(self, frame: Frame, segment: Segment) -> None:
        key = frozenset((segment.src, segment.dst))
        with self.lock:
            self._slot(key).packets.append((frame, segment))
            self.packets += 1
            if segment.is_rst:
                self._rst_keys.add(key)
            self._grow(len(frame.data) + PACKET_COST)

    def take_rst_keys(self) -> set:
        """The connections an RST packet reached since the last call (their claims can go now)."""
        with self.lock:
            keys, self._rst_keys = self._rst_keys, set()
        return keys

    def keep_event(self, event: KernelEvent) -> None:
        if event.src is None or event.dst is None:
            return
        key = ("connect", event.src.host, event.dst) if event.src.port == 0 else frozenset((event.src, event.dst))
        with self.lock:
            self._slot(key).events.append(event)
            self._grow(EVENT_COST)

    def _slot(self, key) -> _Kept:
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _Kept()
        else:
            self._kept.move_to_end(key)
        return kept

    def _grow(self, cost: int) -> None:
        self.bytes += cost
        while self.bytes > self.limit and self._kept:
            key, oldest = next(iter(self._kept.items()))
            if oldest.packets:
                self.bytes -= _cost(oldest.packets.popleft())
                self.dropped_packets += 1
            elif oldest.events:
                oldest.events.popleft()
                self.bytes -= EVENT_COST
                self.dropped_events += 1
            if not oldest.packets and not oldest.events:
                del self._kept[key]
        self.peak = max(self.peak, self.bytes)

    # -- claiming

    def claim(self, teardown, *, force: bool = False) -> Optional[Claim]:
        """The teardown's connection, once its RST is in the ring (or now, with `force`:
        tcpdump did not deliver it in time); None while its RST is still to come."""
        local, remote = teardown.local, teardown.remote
        with self.lock:
            kept = self._kept.get(key_of(teardown))
            packets = kept.packets if kept is not None else deque()
            cut = next((i for i, (_, s) in enumerate(packets)
                        if s.is_rst and s.time_ns >= teardown.time_ns - RST_CLOCK_SLACK_NS), None)
            if cut is None and not force:
                return None
            rst_captured = cut is not None
            if cut is None:
                cut = len(packets) - 1
            taken = [packets.popleft() for _ in range(cut + 1)]
            start = next((i for i in range(len(taken) - 1, -1, -1) if _is_first_syn(taken[i][1])), None)
            stale = taken[:start] if start else []  # an earlier connection on this 4-tuple
            taken = taken[start or 0:]
            cost = sum(map(_cost, taken))
            self.bytes -= sum(map(_cost, stale))
            events = self._take_events(kept, teardown.time_ns + EVENT_WINDOW_NS)
            first_ns = taken[0][0].time_ns if taken else teardown.time_ns
            connecting = self._kept.get(("connect", local.host, remote))
            if connecting is not None:  # connect()'s SYN_SENT: the last one before its SYN
                early = self._take_events(connecting, first_ns)
                self.bytes -= EVENT_COST * len(early[:-1])
                events = early[-1:] + events
            cost += EVENT_COST * len(events)
            self._forget_if_empty(frozenset((local, remote)), kept)
            self._forget_if_empty(("connect", local.host, remote), connecting)
        return Claim(teardown, taken, events, cost, rst_captured, start is not None)

    @staticmethod
    def _take_events(kept: Optional[_Kept], until_ns: int) -> list[KernelEvent]:
        if kept is None:
            return []
        out = []
        while kept.events and kept.events[0].time_ns <= until_ns:
            out.append(kept.events.popleft())
        return out

    def _forget_if_empty(self, key, kept: Optional[_Kept]) -> None:
        if kept is not None and not kept.packets and not kept.events and self._kept.get(key) is kept:
            del self._kept[key]

    def release(self, claim: Claim) -> None:
        """Its bundle is written (or given up): its bytes are free."""
        with self.lock:
            self.bytes -= claim.cost
