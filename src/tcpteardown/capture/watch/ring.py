"""The flight recorder's memory: recent packets and kernel events per connection, raw and bounded.

Kept raw, decoded only when a bundle needs them: at 2,000 RSTs a second
decoding every packet and parsing every trace line cost the worker most of a
core, and most connections on a busy host end without an RST and are never
bundled. So a packet is kept as its Frame, keyed by its two endpoints after
a peek at its IP and TCP headers (`formats.pcap_links.peek_tcp`); a trace
line is kept as its bytes, keyed by its two port numbers (one regular
expression; the addresses are checked when it is parsed at claim time). A
``connect()`` logs its SYN_SENT before the kernel picks the local port
(``sport=0``): those lines wait under the remote port.

`Ring.claim(teardown)` takes one RST's connection out, decoded: its packets
from its last SYN (a 4-tuple reused after TIME_WAIT keeps an older
connection's packets before it) to the RST, its kernel events up to the
teardown's window, and its connect()'s SYN_SENT. What is claimed still
counts against the bound until its bundle is written (`release`), so ring
and bundles in waiting hold at most `limit` bytes together (measured costs,
not only wire bytes); past it, the least recently active connection loses
its oldest packet or line first, counted in `dropped_packets` /
`dropped_events`. `discard(teardown)` forgets a connection no bundle will
hold (a burst beyond a bundle's sample): its packets and its ports' lines.

Pure: no I/O and no threads of its own; one lock, because the worker's
packet reader, its message reader and its bundle writer share it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Optional

from ...formats.ftrace import ClockMapping, parse_trace_line
from ...formats.pcap_links import decode_segment, peek_tcp
from ...model import Frame, KernelEvent, Segment

__all__ = ["Claim", "Ring", "key_of", "FRAME_COST", "LINE_COST", "PACKET_COST", "EVENT_COST"]

# What one kept item costs in memory beyond its bytes, measured with tracemalloc (CPython 3.11):
# raw, a Frame in the ring (FRAME_COST) and a trace line (LINE_COST); decoded in a claim, a Frame
# and its Segment (PACKET_COST) and a KernelEvent with its fields (EVENT_COST).
FRAME_COST = 160
LINE_COST = 90
PACKET_COST = 720
EVENT_COST = 900
RST_CLOCK_SLACK_NS = 100_000_000  # tcpdump's stamps and the trace clock's mapping agree far better
EVENT_WINDOW_NS = 3_000_000  # the pieces of one teardown (teardowns.WINDOW_NS)
CONNECTS_KEPT = 1024  # connect()s' SYN_SENT lines kept per remote port (a claim takes its own at once)
_RST, _SYN, _ACK = 0x04, 0x02, 0x10
_PORTS = re.compile(rb"sport=(\d+) dport=(\d+)|src=\S*:(\d+) dest=\S*:(\d+)")
_STAMP = re.compile(rb"\s(\d+)\.(\d+):\s")  # the trace clock's time of a line

Packet = tuple[Frame, Segment]


class _Kept:
    __slots__ = ("items",)

    def __init__(self):
        self.items: deque = deque()  # (Frame, flags) or (line bytes,)


@dataclass(slots=True)
class Claim:
    """One RST's connection, out of the ring, decoded and waiting for its bundle."""

    teardown: object  # anything with time_ns, kind, local, remote, receiver_pid, receiver_comm
    packets: list[Packet]
    events: list[KernelEvent]
    cost: int  # bytes it holds against the bound until released
    rst_captured: bool  # False: tcpdump had not delivered the RST (the bundle holds what came before)
    from_syn: bool  # its first packet is the connection's SYN (else the ring had dropped the start)


def key_of(teardown) -> frozenset:
    """The ring's key of a teardown's connection (its packets')."""
    return frozenset((teardown.local, teardown.remote))


def _cost(item) -> int:
    """A packet is (Frame, flags), a trace line (bytes, realtime ns, None)."""
    return len(item[0].data) + FRAME_COST if len(item) == 2 else len(item[0]) + LINE_COST


class Ring:
    def __init__(self, limit: int, mapping: ClockMapping = ClockMapping(0, 0)):
        self.limit = limit
        self.mapping = mapping  # trace clock -> realtime, for the lines parsed at claim time
        self.lock = threading.Lock()
        self._kept: OrderedDict[object, _Kept] = OrderedDict()  # least recently active first
        self._rst_keys: set = set()
        self.bytes = 0  # ring and claims together
        self.peak = 0
        self.packets = 0
        self.dropped_packets = 0
        self.dropped_events = 0

    # -- keeping

    def keep_packet(self, frame: Frame) -> None:
        found = peek_tcp(frame.linktype, frame.data)
        if found is None:
            return
        src, dst, flags = found
        key = frozenset((src, dst))
        with self.lock:
            self._slot(key).items.append((frame, flags))
            self.packets += 1
            if flags & _RST:
                self._rst_keys.add(key)
            self._grow(len(frame.data) + FRAME_COST)

    def keep_lines(self, lines: list[bytes]) -> None:
        """Raw trace lines (our four tracepoints); lines without ports are not a socket's."""
        search = _PORTS.search
        with self.lock:
            for line in lines:
                found = search(line)
                if found is None:
                    continue
                sport, dport = (int(found[1]), int(found[2])) if found[1] else (int(found[3]), int(found[4]))
                key = ("connect", dport) if sport == 0 else ("lines", frozenset((sport, dport)))
                stamp = _STAMP.search(line)
                if stamp is None:
                    continue
                time_ns = self.mapping.to_realtime(int(stamp[1]) * 1_000_000_000 + int(stamp[2].ljust(9, b"0")[:9]))
                items = self._slot(key).items
                items.append((line, time_ns, None))
                self._grow(len(line) + LINE_COST)
                if sport == 0 and len(items) > CONNECTS_KEPT:
                    self.bytes -= _cost(items.popleft())

    def take_rst_keys(self) -> set:
        """The connections an RST packet reached since the last call (their claims can go now)."""
        with self.lock:
            keys, self._rst_keys = self._rst_keys, set()
        return keys

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
            item = oldest.items.popleft()
            self.bytes -= _cost(item)
            if len(item) == 2:
                self.dropped_packets += 1
            else:
                self.dropped_events += 1
            if not oldest.items:
                del self._kept[key]
        self.peak = max(self.peak, self.bytes)

    # -- claiming

    def claim(self, teardown, *, force: bool = False) -> Optional[Claim]:
        """The teardown's connection, once its RST is in the ring (or now, with `force`:
        tcpdump did not deliver it in time); None while its RST is still to come. Raw items
        come out under the lock; they are decoded after it, not holding up the readers."""
        local, remote = teardown.local, teardown.remote
        key = key_of(teardown)
        with self.lock:
            kept = self._kept.get(key)
            items = kept.items if kept is not None else deque()
            cut = next((i for i, (frame, flags) in enumerate(items)
                        if flags & _RST and frame.time_ns >= teardown.time_ns - RST_CLOCK_SLACK_NS), None)
            if cut is None and not force:
                return None
            rst_captured = cut is not None
            taken = [items.popleft() for _ in range((len(items) - 1 if cut is None else cut) + 1)]
            self.bytes -= sum(map(_cost, taken))
            self._forget_if_empty(key)
            start = next((i for i in range(len(taken) - 1, -1, -1) if taken[i][1] & (_SYN | _ACK) == _SYN), None)
            taken = taken[start or 0:]  # before its SYN: an earlier connection on this 4-tuple
            first_ns = taken[0][0].time_ns if taken else teardown.time_ns
            lines = self._take_lines(("lines", frozenset((local.port, remote.port))),
                                     teardown.time_ns + EVENT_WINDOW_NS)
            connects = self._take_lines(("connect", remote.port), first_ns)
            cost = sum(len(frame.data) + PACKET_COST for frame, _ in taken) + EVENT_COST * (len(lines) + 1)
            self.bytes += cost
        packets = [(frame, segment) for frame, _ in taken
                   if (segment := decode_segment(0, frame.time_ns, frame.linktype, frame.data)) is not None]
        ends = {local, remote}
        events = [event for event in map(self._parse, lines) if event is not None and {event.src, event.dst} <= ends]
        connecting = next((event for event in map(self._parse, reversed(connects)) if event is not None
                           and event.dst == remote and event.src is not None and event.src.host == local.host), None)
        return Claim(teardown, packets, ([connecting] if connecting else []) + events, cost, rst_captured,
                     start is not None)

    def _parse(self, line: bytes) -> Optional[KernelEvent]:
        return parse_trace_line(line.decode("utf-8", "replace"), self.mapping)

    def _take_lines(self, key, until_ns: int) -> list[bytes]:
        """A bucket's lines up to `until_ns` (in trace order), out of the ring."""
        kept = self._kept.get(key)
        if kept is None:
            return []
        out = []
        while kept.items and kept.items[0][1] <= until_ns:
            item = kept.items.popleft()
            self.bytes -= _cost(item)
            out.append(item[0])
        self._forget_if_empty(key)
        return out

    def _forget_if_empty(self, key) -> None:
        kept = self._kept.get(key)
        if kept is not None and not kept.items:
            del self._kept[key]

    def discard(self, teardown) -> None:
        """No bundle will hold this connection: its packets go now (its lines age out)."""
        with self.lock:
            for key in (key_of(teardown), ("lines", frozenset((teardown.local.port, teardown.remote.port)))):
                kept = self._kept.pop(key, None)
                if kept is not None:
                    self.bytes -= sum(map(_cost, kept.items))

    def release(self, claim: Claim) -> None:
        """Its bundle is written (or given up): its bytes are free."""
        with self.lock:
            self.bytes -= claim.cost
