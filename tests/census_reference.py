"""The census as it was before the vectorised engine (tcpteardown 4aa9e0d), kept only as
the reference the tests compare `tcpteardown.analysis.census` with.

Census: one entry per TCP connection in a capture, and how it ended.

The first question in an incident: "which connections ended with an RST,
from which side, and when?". A connection is what tshark calls a
`tcp.stream`: packets of one 4-tuple, in file order, where a SYN (without
ACK) starts a new connection on a 4-tuple that already had one when its
sequence number differs from the first one that side sent (port reuse).
A SYN repeating the old sequence number stays in the old connection, even
after an RST, as tshark 4.0 does (a retried connect with the same ISN).

How a connection ended (`end`), decided from its flags only:

| end       | when                                                                   |
| --------- | ---------------------------------------------------------------------- |
| `refused` | the first FIN/RST is an RST from the server, the client sent a SYN and  |
|           | the server never sent SYN+ACK: the SYN was answered by RST              |
| `rst`     | any other connection with an RST, whoever sent it (also FIN then RST)   |
| `fin`     | a FIN and no RST                                                        |
| `open`    | neither: still open when the capture ended                             |

`ended_by` is the side (`client`/`server`) of the first FIN or RST. The
client is the SYN's sender; without a SYN (the capture started mid-stream)
the receiver of the first SYN+ACK, or else the side with the higher port
(a guess), marked by `handshake == "midstream"`.

Input is column batches (`formats.pcap_columns.TcpBatch` or
`batch_from_segments`): packets with SYN, FIN or RST go through a small
state machine one by one; every other packet only adds bytes and time, in
bulk with numpy. Pure: no I/O, never imports socket or scapy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from tcpteardown.columns import batch_from_segments
from tcpteardown.model import Endpoint, Segment

__all__ = ["Connection", "Census", "census", "census_batches", "END_KINDS", "SIDES"]

END_KINDS = ("fin", "rst", "refused", "open")
SIDES = ("client", "server")

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
IPV4_MARK = 0xFFFF_FFFF_FFFF_FFFF  # same convention as formats.pcap_columns


@dataclass(frozen=True, slots=True)
class Connection:
    """One TCP connection (tshark's tcp.stream) and how it ended."""

    stream: int  # 0-based, in order of first packet, like tcp.stream
    client: Endpoint
    server: Endpoint
    handshake: str  # "complete" (SYN, SYN+ACK), "syn-only", "midstream" (no SYN seen)
    start_ns: int
    end_ns: int
    first_frame: int
    last_frame: int
    packets: int
    bytes_client: int  # TCP payload bytes client -> server
    bytes_server: int  # TCP payload bytes server -> client
    end: str  # fin, rst, refused, open
    ended_by: Optional[str]  # client or server: who sent the first FIN or RST; None when open
    end_frame: Optional[int]  # frame of that first FIN or RST
    end_time_ns: Optional[int]
    rst_frames: tuple[int, ...]
    fin_frames: tuple[int, ...]
    rst_by: tuple[str, ...]  # side of each RST, same order as rst_frames
    syn_retransmissions: tuple[int, ...]  # frames of client SYNs repeating the first one

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class Census:
    connections: tuple[Connection, ...]
    packets: int  # every frame, TCP or not
    tcp_packets: int

    def by_end(self) -> dict[str, int]:
        counts = dict.fromkeys(END_KINDS, 0)
        for connection in self.connections:
            counts[connection.end] += 1
        return counts

    def by_side(self) -> dict[str, dict[str, int]]:
        """{end kind: {"client": n, "server": n}} for fin, rst and refused."""
        table = {kind: dict.fromkeys(SIDES, 0) for kind in END_KINDS if kind != "open"}
        for connection in self.connections:
            if connection.ended_by is not None:
                table[connection.end][connection.ended_by] += 1
        return table

    def summary(self) -> dict:
        return {
            "connections": len(self.connections),
            "packets": self.packets,
            "tcp_packets": self.tcp_packets,
            "by_end": self.by_end(),
            "by_side": self.by_side(),
            "rst_segments": sum(len(c.rst_frames) for c in self.connections),
            "fin_segments": sum(len(c.fin_frames) for c in self.connections),
        }


class _Conn:
    """Mutable state of one connection while the census runs."""

    __slots__ = ("stream", "a_is_client", "handshake", "start", "end", "first_frame", "last_frame",
                 "packets", "bytes_a", "bytes_b", "syn_seq", "base_seq", "synack", "fin", "rst",
                 "first_end", "rst_frames", "fin_frames", "rst_by", "syn_retrans", "key")

    def __init__(self, stream, key, a_is_client, handshake, time_ns, frame):
        self.stream = stream
        self.key = key
        self.a_is_client = a_is_client
        self.handshake = handshake
        self.start = time_ns
        self.end = time_ns
        self.first_frame = frame
        self.last_frame = frame
        self.packets = 0
        self.bytes_a = 0  # payload sent by endpoint a (the canonical lower endpoint)
        self.bytes_b = 0
        self.syn_seq = None
        self.base_seq = [None, None]  # per sender (0: a, 1: b); -1: first packet was not a SYN
        self.synack = False
        self.fin = False
        self.rst = False
        self.first_end = None  # (frame, time, sender is a, is rst)
        self.rst_frames = []
        self.fin_frames = []
        self.rst_by = []
        self.syn_retrans = []


def _endpoint(hi: int, lo: int, port: int, _cache: dict = {}) -> Endpoint:
    endpoint = _cache.get((hi, lo, port))
    if endpoint is None:
        if hi == IPV4_MARK:
            host = str(ipaddress.IPv4Address(lo))
        else:
            host = ipaddress.IPv6Address((hi << 64) | lo).compressed
        endpoint = Endpoint(host, port)
        if len(_cache) < 200_000:  # bounded: a census of a huge scan must not grow it forever
            _cache[(hi, lo, port)] = endpoint
    return endpoint


class _Engine:
    def __init__(self):
        self.tuples: dict = {}  # canonical 4-tuple -> current _Conn
        self.connections: list = []
        self.packets = 0
        self.tcp_packets = 0

    # -- the state machine for packets with SYN, FIN or RST (and first packets) --------

    def _new(self, key, from_a: bool, flags: int, sport: int, dport: int, time_ns: int, frame: int) -> _Conn:
        if flags & (SYN | ACK) == SYN:
            a_is_client, handshake = from_a, "syn-only"
        elif flags & (SYN | ACK) == SYN | ACK:  # the capture began after the client's SYN
            a_is_client, handshake = not from_a, "midstream"
        else:
            # Mid-stream: guess that the higher port is the client's (ephemeral) one.
            if sport != dport:
                a_is_client = (sport > dport) == from_a
            else:
                a_is_client = from_a
            handshake = "midstream"
        conn = _Conn(len(self.connections), key, a_is_client, handshake, time_ns, frame)
        self.connections.append(conn)
        self.tuples[key] = conn
        return conn

    def _flagged(self, conn: Optional[_Conn], key, from_a: bool, flags: int, seq: int, sport: int, dport: int,
                 time_ns: int, frame: int, sent_before: bool) -> _Conn:
        side = 0 if from_a else 1
        if conn is None:
            conn = self._new(key, from_a, flags, sport, dport, time_ns, frame)
        elif flags & (SYN | ACK) == SYN:
            base = conn.base_seq[side]
            if base is None and sent_before:
                base = -1
            if base is not None and seq != base:
                conn = self._new(key, from_a, flags, sport, dport, time_ns, frame)
        if conn.base_seq[side] is None:
            conn.base_seq[side] = seq if flags & SYN else -1
        client_sent = from_a == conn.a_is_client
        if flags & SYN:
            if flags & ACK:
                if not client_sent:
                    conn.synack = True
                    if conn.handshake == "syn-only":
                        conn.handshake = "complete"
            elif client_sent:
                if conn.syn_seq is None:
                    conn.syn_seq = seq
                elif seq == conn.syn_seq:
                    conn.syn_retrans.append(frame)
        if flags & (FIN | RST):
            if conn.first_end is None:
                conn.first_end = (frame, time_ns, client_sent, bool(flags & RST))
            if flags & FIN:
                conn.fin = True
                conn.fin_frames.append(frame)
            if flags & RST:
                conn.rst = True
                conn.rst_frames.append(frame)
                conn.rst_by.append("client" if client_sent else "server")
        return conn

    # -- one batch ---------------------------------------------------------------

    def feed(self, batch) -> None:
        self.packets += batch.packets
        count = len(batch.frame)
        self.tcp_packets += count
        if not count:
            return
        src = (batch.src_hi.astype(np.uint64), batch.src_lo.astype(np.uint64), batch.sport.astype(np.uint64))
        dst = (batch.dst_hi.astype(np.uint64), batch.dst_lo.astype(np.uint64), batch.dport.astype(np.uint64))
        # a is the lower endpoint of the two; from_a: the packet was sent by a.
        from_a = (src[0] < dst[0]) | ((src[0] == dst[0]) & ((src[1] < dst[1]) | ((src[1] == dst[1]) & (src[2] <= dst[2]))))
        a = [np.where(from_a, s, d) for s, d in zip(src, dst)]
        b = [np.where(from_a, d, s) for s, d in zip(src, dst)]
        columns = (*a, *b)
        groups, first, inverse = _group(columns)
        group_keys = list(zip(*(column[first].tolist() for column in columns)))
        tuples = self.tuples
        current = [tuples.get(key) for key in group_keys]

        flags = batch.flags
        interesting = (flags & (SYN | FIN | RST)) != 0
        new_groups = np.array([conn is None for conn in current], dtype=bool)
        if new_groups.any():
            interesting[first[new_groups]] = True
        rows = np.flatnonzero(interesting)
        # Did this side send anything earlier *on the current connection*?
        # (tshark's "base seq set"): the previous row of the same side, if it
        # comes at or after the row where the current connection began.
        side_key = inverse * 2 + (~from_a).astype(np.int64)
        by_side_order = np.argsort(side_key, kind="stable")
        previous_same_side = np.full(count, -1, dtype=np.int64)
        same = side_key[by_side_order][1:] == side_key[by_side_order][:-1]
        previous_same_side[by_side_order[1:][same]] = by_side_order[:-1][same]
        began_at = [-1] * groups  # row where the group's current connection began in this batch

        start_conn = list(current)  # the connection of each group before this batch
        changes: dict = {}  # group -> {row: connection that began at that row}
        frame, time_ns, seq = batch.frame, batch.time_ns, batch.seq
        for row, group, sender_a, flag, sequence, sport, dport, when, number, previous in zip(
                rows.tolist(), inverse[rows].tolist(), from_a[rows].tolist(), flags[rows].tolist(),
                seq[rows].tolist(), batch.sport[rows].tolist(), batch.dport[rows].tolist(),
                time_ns[rows].tolist(), frame[rows].tolist(), previous_same_side[rows].tolist()):
            before = current[group]
            conn = self._flagged(before, group_keys[group], sender_a, flag, sequence, sport, dport, when, number,
                                 previous >= 0 and previous >= began_at[group])
            if conn is not before:
                current[group] = conn
                began_at[group] = row
                changes.setdefault(group, {})[row] = conn

        # Bulk: packets, bytes and times per group, when the group is one connection.
        payload = batch.payload_len.astype(np.int64)
        packets = np.bincount(inverse, minlength=groups).tolist()
        bytes_a = np.bincount(inverse, weights=payload * from_a, minlength=groups).astype(np.int64).tolist()
        bytes_b = np.bincount(inverse, weights=payload * ~from_a, minlength=groups).astype(np.int64).tolist()
        by_side = np.bincount(side_key, minlength=2 * groups).tolist()
        last = np.zeros(groups, dtype=np.int64)
        np.maximum.at(last, inverse, np.arange(count, dtype=np.int64))
        first_list, last_list = first.tolist(), last.tolist()
        row_by_row = []
        for group in range(groups):
            conn = start_conn[group]
            began = changes.get(group)
            if began:
                if conn is None and len(began) == 1 and first_list[group] in began:
                    conn = began[first_list[group]]
                else:
                    row_by_row.append(group)
                    continue
            hi = last_list[group]
            _account(conn, packets[group], bytes_a[group], bytes_b[group], time_ns[hi], frame[hi],
                     by_side[2 * group] > 0, by_side[2 * group + 1] > 0)
        if row_by_row:  # port reuse inside this batch: split the group's rows where connections began
            order = np.argsort(inverse, kind="stable")
            offsets = np.concatenate(([0], np.cumsum(packets)))
            for group in row_by_row:
                members = order[offsets[group]:offsets[group + 1]]
                began = changes[group]
                cuts = sorted(began)
                bounds = np.searchsorted(members, cuts).tolist()
                pieces = [(start_conn[group], 0, bounds[0])]
                pieces += [(began[row], bound, nxt) for row, bound, nxt in zip(cuts, bounds, bounds[1:] + [len(members)])]
                for conn, lo, hi in pieces:
                    if lo >= hi:
                        continue
                    rows_here = members[lo:hi]
                    sent_a = from_a[rows_here]
                    sizes = payload[rows_here]
                    _account(conn, hi - lo, int(sizes[sent_a].sum()), int(sizes[~sent_a].sum()),
                             time_ns[rows_here[-1]], frame[rows_here[-1]],
                             bool(sent_a.any()), bool((~sent_a).any()))

    # -- results -------------------------------------------------------------------

    def result(self) -> Census:
        return Census(tuple(_freeze(conn) for conn in self.connections), self.packets, self.tcp_packets)


def _account(conn, packets, bytes_a, bytes_b, end, last_frame, sent_a, sent_b) -> None:
    """Add packets that carry no state change to their connection."""
    if conn is None:
        return
    conn.packets += packets
    conn.bytes_a += bytes_a
    conn.bytes_b += bytes_b
    # Start is the first packet's time (set when the connection began), end the
    # last packet's, in frame order: captures with time going backwards stay consistent.
    conn.end = int(end)
    conn.last_frame = int(last_frame)
    if sent_a and conn.base_seq[0] is None:
        conn.base_seq[0] = -1
    if sent_b and conn.base_seq[1] is None:
        conn.base_seq[1] = -1


def _group(columns) -> tuple[int, np.ndarray, np.ndarray]:
    """Rows with equal values in all columns: (number of groups, first row of each, group of each row).

    Groups are numbered in order of their first row."""
    count = len(columns[0])
    mix = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            mix = (mix ^ column) * np.uint64(0x100000001B3) + np.uint64(0x9E3779B97F4A7C15)
            mix ^= mix >> np.uint64(29)
    _, first, inverse = np.unique(mix, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    same = np.ones(count, dtype=bool)
    for column in columns:
        same &= column == column[first[inverse]]
    if not same.all():  # a hash collision: exact grouping (slow, never seen in practice)
        stacked = np.stack(columns, axis=1)
        _, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    # Renumber groups in order of first appearance.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return len(first), first[order], rank[inverse]


def _freeze(conn: _Conn) -> Connection:
    a = _endpoint(conn.key[0], conn.key[1], conn.key[2])
    b = _endpoint(conn.key[3], conn.key[4], conn.key[5])
    client, server = (a, b) if conn.a_is_client else (b, a)
    bytes_client, bytes_server = (conn.bytes_a, conn.bytes_b) if conn.a_is_client else (conn.bytes_b, conn.bytes_a)
    ended_by = end_frame = end_time = None
    end = "open"
    if conn.first_end is not None:
        end_frame, end_time, client_first, rst_first = conn.first_end
        ended_by = "client" if client_first else "server"
        if conn.rst:
            refused = rst_first and not client_first and conn.syn_seq is not None and not conn.synack
            end = "refused" if refused else "rst"
        else:
            end = "fin"
    return Connection(
        stream=conn.stream, client=client, server=server, handshake=conn.handshake,
        start_ns=conn.start, end_ns=conn.end, first_frame=conn.first_frame, last_frame=conn.last_frame,
        packets=conn.packets, bytes_client=bytes_client, bytes_server=bytes_server,
        end=end, ended_by=ended_by, end_frame=end_frame, end_time_ns=end_time,
        rst_frames=tuple(conn.rst_frames), fin_frames=tuple(conn.fin_frames), rst_by=tuple(conn.rst_by),
        syn_retransmissions=tuple(conn.syn_retrans),
    )


# -- entry points --------------------------------------------------------------------

def census_batches(batches: Iterable) -> Census:
    """The census of column batches in frame order (see `formats.pcap_columns`)."""
    engine = _Engine()
    for batch in batches:
        engine.feed(batch)
    return engine.result()


def census(segments: Sequence[Segment], packets: Optional[int] = None) -> Census:
    """The census of TCP segments in frame order (a Recording's `segments`)."""
    ordered = sorted(segments, key=lambda s: s.frame)
    # the input plumbing is not under test: the same column batch the new engine takes
    return census_batches([batch_from_segments(ordered, packets)])
