"""Census: one entry per TCP connection in a capture, and how it ended.

The first question in an incident: "which connections ended with an RST,
from which side, and when?". A connection is what tshark calls a
`tcp.stream`: packets of one 4-tuple, in file order, where a SYN (without
ACK) starts a new connection on a 4-tuple that already had one (port reuse)
when its sequence number differs from that side's base sequence number on
it, as tshark 4.0 keeps it: the number of the last SYN (or SYN+ACK) that
side sent there, else the one just before its first packet's. A SYN
repeating the old number stays in the old connection, even after an RST
(a retried connect with the same ISN).

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

Each connection also carries Zeek's `conn_state` and `history` (conn.log):
the history letters S H A D F R I Q (upper case from the client, Zeek's
originator) follow Zeek's per-packet rule exactly; C, G, T and W (bad
checksums, gaps, retransmitted payload, zero windows) need payload analysis
and are never written; `^` marks a client that did not send the first packet.
`conn_state` applies Zeek's decision table to each side's state as Zeek's
TCP analyzer would leave it on the flags seen (see `_zeek_states`).

How it runs, flat on connection-heavy captures: each column batch is
grouped by 4-tuple with numpy (sort by tuple), the points where a SYN
starts a new connection on a reused 4-tuple are found in a few vectorised
rounds (a Python loop only for pathological SYN floods on one 4-tuple), and
every per-connection number is a reduction over contiguous runs
(`reduceat`). State carried between batches is a set of arrays: the results
with one row per connection (reserved ahead, compact dtypes), the working
state (sequence numbers, history bits) with one row per 4-tuple, since a
tuple's packets always go to its latest connection; FIN/RST frames and
history letters per batch, laid out per connection at the end. Where the
compiled loops are built (`speedups`), grouping a batch by 4-tuple is one
pass with an exact hash table. A `ConnectionSummary` object is built only
when asked for. Pure: no I/O, never imports socket or scapy.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from .. import speedups
from ..columns import IPV4_MARK, batch_from_segments
from ..model import Endpoint, Segment, TcpFlags

__all__ = ["ConnectionSummary", "Census", "census", "census_batches", "grouped", "batch_from_segments", "END_KINDS",
           "SIDES", "CONN_STATES"]

END_KINDS = ("fin", "rst", "refused", "open")
SIDES = ("client", "server")
HANDSHAKES = ("complete", "syn-only", "midstream")
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")

FIN, SYN, RST, ACK = int(TcpFlags.FIN), int(TcpFlags.SYN), int(TcpFlags.RST), int(TcpFlags.ACK)
_COMPLETE, _SYN_ONLY, _MIDSTREAM = 0, 1, 2
_UNSET = -1  # a side's base sequence number before it sent anything
_SPLIT_ROUNDS = 4  # vectorised rounds for port reuse before the per-SYN loop takes over
# History bits per side (Zeek's HIST_* masks): one letter each, or repeated when the sequence number changes.
_H_SYN, _H_FIN, _H_RST, _H_DATA, _H_ACK, _H_FINRST, _H_MULTI = 1, 2, 4, 8, 16, 32, 64
# Kinds of packet a run of one connection holds (`_account`): per side (side b shifted
# by _K_SIDE_SHIFT) SYN, SYN+ACK, without SYN, FIN, RST; and for either side
# FIN, RST, and SYN+ACK from the server.
_K_SYN, _K_SYNACK, _K_OTHER, _K_SIDE_FIN, _K_SIDE_RST = 1, 2, 4, 8, 16
_K_SIDE_SHIFT = 5
_K_FIN, _K_RST, _K_SYNACK_SERVER = 1 << 10, 1 << 11, 1 << 12
_SIDE_KINDS = {"syn": _K_SYN, "synack": _K_SYNACK, "other": _K_OTHER, "fin": _K_SIDE_FIN, "rst": _K_SIDE_RST}


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
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
    conn_state: str = "OTH"  # Zeek's conn.log conn_state
    history: str = ""  # Zeek's conn.log history

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


# -- growable columns ---------------------------------------------------------------------

_RESERVE_ROWS = 1 << 20  # rows reserved per column at first (pages are only used once written)


def _reserved(capacity: int, dtype) -> np.ndarray:
    """A zeroed column of `capacity` rows whose untouched pages cost no memory (calloc'd,
    without numpy's huge-page advice: a 2 MB page per column would be touched for a
    ten-packet capture, and up to 2 MB per column left unused on a big one)."""
    core = getattr(np, "_core", None) or np.core  # numpy 2, else 1.x (np.core imports numpy.ma in 2.x)
    toggle = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    before = toggle(False) if toggle is not None else None
    try:
        return np.zeros(capacity, dtype=dtype)
    finally:
        if toggle is not None:
            toggle(before)


class _Columns:
    """Named numpy arrays of equal length (one row per connection or tuple), reserved
    ahead and zero until written: only the rows in use hold memory, nothing is copied
    while a census stays within the reservation, and past it the columns double
    (growing by copying held the old and the new column at once, and filling the spare
    rows touched them all)."""

    def __init__(self, spec: dict, reserve: int = _RESERVE_ROWS):
        self.spec = spec  # name -> (dtype, fill)
        self.size = 0
        self.capacity = reserve
        self.arrays = {name: _reserved(reserve, dtype) for name, (dtype, fill) in spec.items()}

    def add(self, count: int) -> np.ndarray:
        """Rows for `count` new entries (filled with defaults); returns their indices."""
        need = self.size + count
        if need > self.capacity:
            self.capacity = max(need, 2 * self.capacity)
            for name, array in self.arrays.items():
                grown = _reserved(self.capacity, array.dtype)
                grown[:self.size] = array[:self.size]
                self.arrays[name] = grown
        for name, (_dtype, fill) in self.spec.items():
            if fill:
                self.arrays[name][self.size:need] = fill
        rows = np.arange(self.size, need)
        self.size = need
        return rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def to_object(self, names) -> None:
        """Times beyond int64 (garbage timestamps): keep exact Python ints from now on."""
        for name in names:
            if self.arrays[name].dtype != object:
                exact = np.zeros(self.capacity, dtype=object)
                exact[:self.size] = self.arrays[name][:self.size].astype(object)
                self.arrays[name] = exact

    def widen(self, names) -> None:
        """Frame numbers past int32 (a capture of over two billion packets): int64 from now on."""
        for name in names:
            if self.arrays[name].dtype == np.int32:
                wide = _reserved(self.capacity, np.int64)
                wide[:self.size] = self.arrays[name][:self.size]
                self.arrays[name] = wide

    def trimmed(self) -> dict:
        return {name: array[:self.size] for name, array in self.arrays.items()}

    def handed_over(self, names) -> dict:
        """The columns `names`, trimmed to their rows (views: the reservation's untouched
        rows hold no memory, and a copy would hold every column twice for a moment); all
        columns are gone from here after (a finished engine's working state)."""
        kept = {name: self.arrays.pop(name)[:self.size] for name in names}
        self.arrays.clear()
        return kept


_CONNECTION_COLUMNS = {
    "tuple": (np.int32, -1),  # the int32 columns widen past 2**31 (`_Columns.widen`)
    "a_client": (bool, False),  # the canonical lower endpoint "a" is the client
    "first_a": (bool, False),  # the first packet was sent by a
    "handshake": (np.int8, _MIDSTREAM),
    "start": (np.int64, 0), "end": (np.int64, 0), "first_frame": (np.int32, 0), "last_frame": (np.int32, 0),
    "packets": (np.int32, 0), "bytes_a": (np.int64, 0), "bytes_b": (np.int64, 0),
    "client_syn": (bool, False),  # the client sent a SYN
    "end_frame": (np.int32, -1), "end_time": (np.int64, 0), "end_client": (bool, False), "end_rst": (bool, False),
    # The kinds of packet seen (_K_* bits): a FIN, an RST, a SYN+ACK from the server, and
    # what each side (a, b) sent for Zeek (SYN, SYN+ACK, a packet without SYN, FIN, RST).
    "kinds": (np.int16, 0),
}
# What only a tuple's current connection needs while packets come: packets of a 4-tuple
# always go to its latest connection, so this is kept per tuple (a set of millions of
# connections on fewer tuples holds it once per tuple, not once per connection).
_WORKING_COLUMNS = {
    "syn_seq": (np.int64, -1),  # the client's first SYN
    "base_a": (np.int64, _UNSET), "base_b": (np.int64, _UNSET),  # tshark's base seq per side (see _split)
    "seen_a": (np.int16, 0), "seen_b": (np.int16, 0),  # Zeek's history bits (_H_*) per side
    "last_syn_a": (np.int64, 0), "last_syn_b": (np.int64, 0), "last_fin_a": (np.int64, 0),  # and last numbers
    "last_fin_b": (np.int64, 0), "last_rst_a": (np.int64, 0), "last_rst_b": (np.int64, 0),
}
_TIME_COLUMNS = ("start", "end", "end_time")
_COUNT_COLUMNS = ("tuple", "first_frame", "last_frame", "end_frame", "packets")  # int32 while frames fit
# What a Census reads of the engine's columns.
_RESULT_COLUMNS = ("tuple", "a_client", "first_a", "handshake", "start", "end", "first_frame", "last_frame",
                   "packets", "bytes_a", "bytes_b", "client_syn", "end_frame", "end_time", "end_client",
                   "end_rst", "kinds")
_KEY_NAMES = ("a_hi", "a_lo", "a_port", "b_hi", "b_lo", "b_port")


def _mix(columns) -> np.ndarray:
    """A 64-bit hash of each row of the uint64 columns (exactness is checked by the callers)."""
    mix = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            mix = (mix ^ column) * np.uint64(0x100000001B3) + np.uint64(0x9E3779B97F4A7C15)
            mix ^= mix >> np.uint64(29)
    return mix


class _Grouped:
    """One batch with its rows grouped by canonical 4-tuple (frame order kept within a tuple)
    and its columns in that order: everything `_Engine.feed` needs that does not depend on
    earlier batches, so a reader thread can make it (`grouped`) while the engine counts the
    batch before. `keys`: the canonical tuple of each group; `hashes`: their 64-bit hashes;
    `group_of_row`: each (grouped) row's group; `collided`: two tuples of this batch share a
    hash (grouped exactly instead)."""

    __slots__ = ("batch", "keys", "hashes", "collided", "order", "group_of_row", "tuple_start", "by_b", "flags",
                 "seq", "ack", "payload", "frame", "time_ns")

    def __init__(self, batch):
        self.batch = batch
        if not self._group_compiled(batch):
            self._group_numpy(batch)
        order = self.order
        count = len(order)
        self.tuple_start = np.ones(count, dtype=bool)
        self.tuple_start[1:] = self.group_of_row[1:] != self.group_of_row[:-1]
        self.flags = batch.flags[order].astype(np.int64)
        self.seq = batch.seq[order].astype(np.int64)
        self.ack = batch.ack[order].astype(np.int64)
        self.payload = batch.payload_len[order].astype(np.int64)
        self.frame = batch.frame[order]
        self.time_ns = batch.time_ns[order]

    def _group_compiled(self, batch) -> bool:
        """The grouping in one compiled pass with an exact hash table (`speedups`), groups
        in order of first appearance; False where it is not built."""
        fast = speedups.compiled()
        if fast is None:
            return False
        u64 = np.uint64
        count = len(batch.frame)
        order, group_of_row = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
        by_b = np.empty(count, dtype=bool)
        keys = [np.empty(count, dtype=u64) for _ in _KEY_NAMES]
        hashes = np.empty(count, dtype=u64)
        groups = fast.group_tuples(*(np.ascontiguousarray(column, dtype=u64) for column in (
            batch.src_hi, batch.src_lo, batch.sport, batch.dst_hi, batch.dst_lo, batch.dport)),
            order, group_of_row, by_b.view(np.uint8), *keys, hashes)
        self.keys = [key[:groups] for key in keys]
        self.hashes = hashes[:groups]
        # two tuples of this batch with one hash: the engine's table of tuples looks them up exactly
        ordered = np.sort(self.hashes)  # (np.unique would import numpy.ma: ~20 ms)
        self.collided = bool((ordered[1:] == ordered[:-1]).any())
        self.order, self.group_of_row = order, group_of_row
        self.by_b = by_b[order]
        return True

    def _group_numpy(self, batch) -> None:
        u64 = np.uint64
        src = (batch.src_hi.astype(u64, copy=False), batch.src_lo.astype(u64, copy=False), batch.sport.astype(u64))
        dst = (batch.dst_hi.astype(u64, copy=False), batch.dst_lo.astype(u64, copy=False), batch.dport.astype(u64))
        # a is the lower endpoint of the two; from_a: the packet was sent by a.
        from_a = (src[0] < dst[0]) | ((src[0] == dst[0]) & ((src[1] < dst[1]) | ((src[1] == dst[1]) & (src[2] <= dst[2]))))
        columns = [np.where(from_a, s, d) for s, d in zip(src, dst)] + [np.where(from_a, d, s) for s, d in zip(src, dst)]
        mix = _mix(columns)
        order = np.argsort(mix, kind="stable")  # grouped by hash, frame order kept within
        sorted_mix = mix[order]
        starts = np.ones(len(mix), dtype=bool)
        starts[1:] = sorted_mix[1:] != sorted_mix[:-1]
        first = order[starts]  # a row of each distinct hash
        inverse = np.empty(len(mix), dtype=np.int64)
        inverse[order] = np.cumsum(starts) - 1
        self.collided = not all(np.array_equal(column, column[first][inverse]) for column in columns)
        if self.collided:
            # Two tuples with one hash in this batch: group exactly (slow, never seen in practice).
            _, first, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True)
            inverse = inverse.reshape(-1)
            order = np.argsort(inverse, kind="stable")
        self.keys = [column[first] for column in columns]
        self.hashes = mix[first]
        self.order = order
        self.group_of_row = inverse[order]
        self.by_b = ~from_a[order]  # the packet was sent by b


def grouped(batch) -> _Grouped:
    """The part of counting a batch (`columns.TcpBatch`) that needs no earlier batch; pure,
    so it can run in a reader thread. `census_batches` takes batches or these."""
    return _Grouped(batch)


class _Tuples:
    """Global ids of canonical 4-tuples across batches, with each tuple's current connection.

    Known tuples are found by a 64-bit hash kept sorted (`searchsorted`, and a
    merge of the new hashes per batch: a dict lookup per tuple was a third of
    the time on 100,000 short connections); the whole tuple is compared to
    catch a collision, and after one every lookup is exact (a dict of tuples).
    """

    def __init__(self):
        self.columns = _Columns({**{name: (np.uint64, 0) for name in _KEY_NAMES}, "conn": (np.int64, -1),
                                 **_WORKING_COLUMNS})
        self.hashes = np.zeros(0, dtype=np.uint64)  # sorted
        self.rows_of_hashes = np.zeros(0, dtype=np.int64)  # tuple id of each hash
        self.exact: Optional[dict] = None  # after a hash collision: keyed by the whole tuple

    def ids(self, grouped: "_Grouped") -> np.ndarray:
        """The global tuple id of each of a batch's tuples (`grouped.keys`); new tuples get new ids."""
        keys = grouped.keys
        if grouped.collided:
            self._go_exact()
        if self.exact is None:
            ids = self._lookup(grouped.hashes)
        else:
            ids = np.array([self.exact.get(key, -1) for key in zip(*(k.tolist() for k in keys))], dtype=np.int64)
        known = ids >= 0
        stored = self.columns
        if known.any() and not all(np.array_equal(stored[name][ids[known]], key[known])
                                   for name, key in zip(_KEY_NAMES, keys)):
            self._go_exact()  # a hash collision across batches: look the whole tuples up again
            ids = np.array([self.exact.get(key, -1) for key in zip(*(k.tolist() for k in keys))], dtype=np.int64)
            known = ids >= 0
        fresh = np.flatnonzero(~known)
        if len(fresh):
            rows = stored.add(len(fresh))
            ids[fresh] = rows
            for name, key in zip(_KEY_NAMES, keys):
                stored[name][rows] = key[fresh]
            if self.exact is None:
                self._insert(grouped.hashes[fresh], rows)
            else:
                self.exact.update(zip(zip(*(key[fresh].tolist() for key in keys)), rows.tolist()))
        return ids

    def _lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The tuple id of each hash, -1 for one not seen before."""
        if not len(self.hashes):
            return np.full(len(hashes), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        return np.where(self.hashes[at] == hashes, self.rows_of_hashes[at], -1)

    def _insert(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        merged = np.concatenate((self.hashes, hashes))
        order = np.argsort(merged, kind="stable")  # two sorted runs (timsort merges them)
        self.hashes, self.rows_of_hashes = merged[order], np.concatenate((self.rows_of_hashes, rows))[order]

    def _go_exact(self) -> None:
        if self.exact is None:
            stored = self.columns.trimmed()
            self.exact = {key: row for row, key in enumerate(zip(*(stored[n].tolist() for n in _KEY_NAMES)))}
            self.hashes = self.rows_of_hashes = None


# -- the engine ----------------------------------------------------------------------------

class _Working:
    """A batch's view of the per-tuple working state (`_WORKING_COLUMNS`), one value per run
    (a connection's rows in this batch): a new connection starts from the defaults, one
    carried from an earlier batch from its tuple's; the last run of each tuple leaves its
    state there (an earlier run of the tuple in this batch is a connection that ended)."""

    __slots__ = ("columns", "tuples", "new", "last")

    def __init__(self, columns: _Columns, tuples: np.ndarray, new: np.ndarray, last: np.ndarray):
        self.columns, self.tuples, self.new, self.last = columns, tuples, new, last

    def read(self, name: str) -> np.ndarray:
        return np.where(self.new, self.columns.spec[name][1], self.columns[name][self.tuples]).astype(
            self.columns[name].dtype, copy=False)

    def keep(self, name: str, values: np.ndarray) -> None:
        self.columns[name][self.tuples[self.last]] = values[self.last]


class _Engine:
    def __init__(self):
        self.tuples = _Tuples()
        self.conns = _Columns(_CONNECTION_COLUMNS)
        # Per batch, in row order (a connection's rows are one run of it, in frame order):
        self.events: list = []  # (conn, frame, code) arrays: 0 FIN, 1 RST by client, 2 RST by server, 3 SYN retr.
        self.history: list = []  # (conn, letter) arrays
        self.packets = 0
        self.tcp_packets = 0

    def feed(self, batch) -> None:
        """Count one batch: a `columns.TcpBatch`, or the `grouped` of one."""
        g = batch if isinstance(batch, _Grouped) else _Grouped(batch)
        batch = g.batch
        self.packets += batch.packets
        count = len(batch.frame)
        self.tcp_packets += count
        if not count:
            return
        conns = self.conns
        if batch.time_ns.dtype == object:
            conns.to_object(_TIME_COLUMNS)
        if batch.last_frame >= 2**31 - 1:
            conns.widen(_COUNT_COLUMNS)
        # Everything below works on rows grouped by tuple (frame order kept within a tuple).
        tid = self.tuples.ids(g)[g.group_of_row]
        order, by_b, flags, seq, ack, payload, frame, time_ns = g.order, g.by_b, g.flags, g.seq, g.ack, g.payload, \
            g.frame, g.time_ns
        pos = np.arange(count)
        tuple_start = g.tuple_start
        carried = self.tuples.columns["conn"][tid]  # the tuple's connection before this batch (-1: none)
        begins = tuple_start & (carried < 0)  # rows where a connection begins
        pure_syn = (flags & (SYN | ACK)) == SYN
        candidates = np.flatnonzero(pure_syn & ~begins)
        if len(candidates):
            self._split(begins, candidates, tid, tuple_start, by_b, flags, seq, ack, carried)

        runs_start = begins | tuple_start
        runs = np.flatnonzero(runs_start)  # each run: the rows of one connection in this batch
        run_of = np.cumsum(runs_start) - 1
        run_end = np.append(runs[1:], count)
        new = begins[runs]
        conn_of_run = np.where(new, -1, carried[runs])
        first_rows = runs[new]
        if len(first_rows):
            # New connections are numbered in frame order of their first packet, as tcp.stream.
            ids = conns.add(len(first_rows))
            rank = np.argsort(np.argsort(frame[first_rows], kind="stable"), kind="stable")
            conn_of_run[new] = ids[rank]
            self._begin(ids[rank], first_rows, tid, by_b, flags, batch.sport[order[first_rows]],
                        batch.dport[order[first_rows]], time_ns, frame)
        last_of_tuple = np.append(tid[runs[1:]] != tid[runs[:-1]], True)
        self.tuples.columns["conn"][tid[runs[last_of_tuple]]] = conn_of_run[last_of_tuple]
        working = _Working(self.tuples.columns, tid[runs], new, last_of_tuple)
        self._account(conn_of_run, runs, run_end, run_of, by_b, flags, seq, ack, payload, frame, time_ns, pos,
                      working)

    # -- port reuse: where a SYN starts a new connection on a known 4-tuple -----------------

    def _split(self, begins, candidates, tid, tuple_start, by_b, flags, seq, ack, carried) -> None:
        """Mark in `begins` each client SYN that starts a new connection (tshark's rule).

        A SYN from side s starts a new connection when s already sent on the
        current one and this SYN's number is not s's base there: the number
        of s's last SYN on it, else the one before s's first packet's (tshark
        4.0 checked: an ACK with 101 then a SYN with 100 stays one stream).
        Each round decides, per current connection, its first such SYN; the
        SYNs after it are decided again in the next round.
        """
        # Each lookup below answers for the rows asked (candidate SYNs and where their
        # connection starts) by binary search, not for every row of the batch.
        count = len(tid)
        tuple_starts = np.flatnonzero(tuple_start)

        def first_of_tuple(rows):
            return tuple_starts[np.searchsorted(tuple_starts, rows, side="right") - 1]

        def next_in(mask):  # for rows: the next row at or after each in `mask`, same tuple (else count)
            where = np.append(np.flatnonzero(mask), count)

            def at(rows):
                nxt = where[np.searchsorted(where, rows)]
                valid = nxt < count
                valid[valid] = tid[nxt[valid]] == tid[rows[valid]]
                return np.where(valid, nxt, count)
            return at

        def last_before(mask):  # for rows: the last earlier row in `mask` (any tuple; else -1)
            where = np.flatnonzero(mask)

            def at(rows):
                index = np.searchsorted(where, rows) - 1
                return np.where(index >= 0, where[np.maximum(index, 0)] if len(where) else -1, -1)
            return at

        next_by_side = [next_in(by_b == side) for side in (False, True)]
        # the other side's first ACK: its acknowledgment number less one is this side's base until set
        next_ack_by_side = [next_in((by_b == side) & (flags & ACK != 0)) for side in (False, True)]
        previous_syn = [last_before((by_b == side) & (flags & SYN != 0)) for side in (False, True)]
        before_first = np.append((seq - 1) & 0xFFFF_FFFF, _UNSET)  # index `count`: nothing sent
        acked = np.append((ack - 1) & 0xFFFF_FFFF, _UNSET)

        def carried_base(side, rows):  # the side's base on the connection carried into this batch
            conn = carried[rows]
            known = conn >= 0
            base = np.full(len(rows), _UNSET, dtype=np.int64)
            base[known] = self.tuples.columns["base_b" if side else "base_a"][tid[rows[known]]]
            return base

        pending = candidates
        for _ in range(_SPLIT_ROUNDS):
            last_begin = last_before(begins)(pending + 1)  # at or before each pending row
            first = first_of_tuple(pending)
            from_before = last_begin < first  # the connection began in an earlier batch
            start = np.where(from_before, first, last_begin)
            side_b = by_b[pending]
            first_sent = np.where(side_b, next_by_side[1](start), next_by_side[0](start))
            first_acked = np.where(side_b, next_ack_by_side[0](start), next_ack_by_side[1](start))
            base = np.where(first_acked < np.minimum(first_sent, pending), acked[first_acked],
                            before_first[np.where(first_sent < pending, first_sent, count)])
            earlier = np.where(side_b, carried_base(1, pending), carried_base(0, pending))
            base = np.where(from_before & (earlier != _UNSET), earlier, base)
            syn_row = np.where(side_b, previous_syn[1](pending), previous_syn[0](pending))
            base = np.where(syn_row >= start, seq[np.maximum(syn_row, 0)], base)
            starts_new = (base != _UNSET) & (base != seq[pending])
            if not starts_new.any():
                return
            keys, firsts = np.unique(start[starts_new], return_index=True)
            new_begins = pending[starts_new][firsts]
            begins[new_begins] = True
            at = np.minimum(np.searchsorted(keys, start), len(keys) - 1)
            pending = pending[(keys[at] == start) & (pending > new_begins[at])]
            if not len(pending):
                return
        # A SYN flood with changing sequence numbers on one 4-tuple: one SYN at a time.
        last_begin = last_before(begins)
        current: dict = {}
        for row in pending.tolist():
            one = np.array([row])
            start = current.get(int(tid[row]), int(last_begin(one + 1)[0]))
            first = int(first_of_tuple(one)[0])
            from_before = start < first
            if from_before:
                start = first
            side = int(by_b[row])
            first_sent = int(next_by_side[side](np.array([start]))[0])
            first_acked = int(next_ack_by_side[1 - side](np.array([start]))[0])
            if first_acked < min(first_sent, row):
                base = int(acked[first_acked])
            else:
                base = int(before_first[first_sent if first_sent < row else count])
            earlier = int(carried_base(side, one)[0])
            if from_before and earlier != _UNSET:
                base = earlier
            syn_row = int(previous_syn[side](one)[0])
            if syn_row >= start:
                base = int(seq[syn_row])
            if base != _UNSET and base != seq[row]:
                begins[row] = True
                current[int(tid[row])] = row

    # -- per-connection numbers ----------------------------------------------------------

    def _begin(self, ids, rows, tid, by_b, flags, sport, dport, time_ns, frame) -> None:
        conns = self.conns
        first = flags[rows]
        from_a = ~by_b[rows]
        pure_syn = (first & (SYN | ACK)) == SYN
        synack = (first & (SYN | ACK)) == SYN | ACK
        # Mid-stream without SYN+ACK: guess that the higher port is the client's (ephemeral) one.
        guess = np.where(sport != dport, (sport > dport) == from_a, from_a)
        conns["a_client"][ids] = np.where(pure_syn, from_a, np.where(synack, ~from_a, guess))
        conns["handshake"][ids] = np.where(pure_syn, _SYN_ONLY, _MIDSTREAM)
        conns["first_a"][ids] = from_a
        conns["tuple"][ids] = tid[rows]
        conns["start"][ids] = time_ns[rows]
        conns["first_frame"][ids] = frame[rows]

    def _account(self, conn_of_run, runs, run_end, run_of, by_b, flags, seq, ack, payload, frame, time_ns,
                 pos, working: "_Working") -> None:
        conns = self.conns
        count = len(pos)
        conn = conn_of_run[run_of]  # per row
        a_client = conns["a_client"][conn]
        by_client = by_b != a_client
        is_syn, is_fin, is_rst, is_ack = (flags & SYN) != 0, (flags & FIN) != 0, (flags & RST) != 0, (flags & ACK) != 0
        pure_syn = is_syn & ~is_ack
        synack = is_syn & is_ack

        def first_in_run(mask):
            return np.minimum.reduceat(np.where(mask, pos, count), runs)

        # Which kinds of packet each run holds: one OR-reduction over a bit per kind
        # (twelve separate reductions were a tenth of the time).
        mine_b = by_b.astype(np.int16)
        kinds = ((synack & ~by_client) * _K_SYNACK_SERVER | is_fin * _K_FIN | is_rst * _K_RST
                 | (pure_syn * _K_SYN | synack * _K_SYNACK | ~is_syn * _K_OTHER
                    | is_fin * _K_SIDE_FIN | is_rst * _K_SIDE_RST) << (mine_b * _K_SIDE_SHIFT))
        in_run = np.bitwise_or.reduceat(kinds.astype(np.int16), runs)
        conns["kinds"][conn_of_run] |= in_run

        def any_in_run(kind):
            return (in_run & kind) != 0

        conns["packets"][conn_of_run] += run_end - runs
        conns["bytes_a"][conn_of_run] += np.add.reduceat(np.where(by_b, 0, payload), runs)
        conns["bytes_b"][conn_of_run] += np.add.reduceat(np.where(by_b, payload, 0), runs)
        last = run_end - 1
        conns["end"][conn_of_run] = time_ns[last]  # frame order: a capture whose time goes backwards stays consistent
        conns["last_frame"][conn_of_run] = frame[last]

        got_synack = any_in_run(_K_SYNACK_SERVER)
        handshake = conns["handshake"][conn_of_run]
        conns["handshake"][conn_of_run] = np.where(got_synack & (handshake == _SYN_ONLY), _COMPLETE, handshake)

        # The client's first SYN, and the SYNs repeating it.
        client_syn = pure_syn & by_client
        first_syn = first_in_run(client_syn)
        syn_seq = working.read("syn_seq")
        sets_it = (syn_seq < 0) & (first_syn < count)
        syn_seq = np.where(sets_it, seq[np.minimum(first_syn, count - 1)], syn_seq)
        working.keep("syn_seq", syn_seq)
        conns["client_syn"][conn_of_run] = syn_seq >= 0
        retransmission = client_syn & (seq == syn_seq[run_of]) & ~(sets_it[run_of] & (pos == first_syn[run_of]))

        # The first FIN or RST.
        ends = is_fin | is_rst
        first_end = first_in_run(ends)
        sets_end = (conns["end_frame"][conn_of_run] < 0) & (first_end < count)
        which = first_end[sets_end]
        ended = conn_of_run[sets_end]
        conns["end_frame"][ended] = frame[which]
        conns["end_time"][ended] = time_ns[which]
        conns["end_client"][ended] = by_client[which]
        conns["end_rst"][ended] = is_rst[which]
        kinds = [(np.flatnonzero(mask), value)
                 for mask, value in ((is_fin, 0), (is_rst & by_client, 1), (is_rst & ~by_client, 2), (retransmission, 3))]
        rows = np.concatenate([rows for rows, _ in kinds])
        if len(rows):
            # in row order, so each connection's events are in frame order (a FIN+RST: both)
            codes = np.concatenate([np.full(len(rows), value, dtype=np.int8) for rows, value in kinds])
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
            self.events.append((self._narrow(conn[rows]), _narrow_frames(frame[rows]), codes[order]))

        # What each side sent (tshark's base sequence number; Zeek's endpoint states and history).
        letters = self._history_letters(flags, payload, is_syn, is_fin, is_rst, is_ack)
        emitted = np.zeros(count, dtype=bool)
        for side, suffix in ((False, "_a"), (True, "_b")):
            mine = by_b == side
            first_sent = first_in_run(mine)
            # tshark's base: the seq of the side's last SYN, else (first come) the one before its
            # first packet's or the other side's first acknowledgment number less one
            base = working.read("base" + suffix)
            first_acked = first_in_run(~mine & is_ack)
            from_ack = (base == _UNSET) & (first_acked < first_sent)
            base = np.where(from_ack, (ack[np.minimum(first_acked, count - 1)] - 1) & 0xFFFF_FFFF, base)
            unset = (base == _UNSET) & (first_sent < count)
            base = np.where(unset, (seq[np.minimum(first_sent, count - 1)] - 1) & 0xFFFF_FFFF, base)
            last_syn = np.maximum.reduceat(np.where(mine & is_syn, pos, -1), runs)
            working.keep("base" + suffix, np.where(last_syn >= 0, seq[np.maximum(last_syn, 0)], base))
            emitted |= self._history_side(letters, seq, payload, mine, run_of, count, suffix, working)
        rows = np.flatnonzero(emitted)
        if len(rows):
            text = letters[rows] + np.where(by_client[rows], 0, 32)  # lower case from the server (responder)
            self.history.append((self._narrow(conn[rows]), text.astype(np.uint8)))

    def _narrow(self, conn: np.ndarray) -> np.ndarray:
        """Connection numbers kept per event and history letter as int32 while they fit (a
        set of ten million packets holds some ten million of those rows until the end)."""
        return conn.astype(np.int32) if self.conns.size < 2**31 else conn

    @staticmethod
    def _history_letters(flags, payload, is_syn, is_fin, is_rst, is_ack) -> np.ndarray:
        """Zeek's one history letter per packet (upper case ASCII; 0: none), as its update_history."""
        bits = is_syn.astype(np.int8) + is_fin + is_rst
        single = np.where(is_syn, np.where(is_ack, ord("H"), ord("S")),
                          np.where(is_fin, ord("F"), ord("R")))
        none = np.where(payload > 0, ord("D"), np.where(is_ack, ord("A"), 0))
        multi = np.where(is_fin & is_rst, ord("I"), ord("Q"))
        return np.where(bits > 1, multi, np.where(bits == 1, single, none)).astype(np.int64)

    @staticmethod
    def _history_side(letters, seq, payload, mine, run_of, count, suffix, working: "_Working") -> np.ndarray:
        """Rows of one side whose letter Zeek writes; updates that side's history state."""
        seen_name = "seen" + suffix
        emitted = np.zeros(count, dtype=bool)
        seen = working.read(seen_name)
        # Once per side: D, A, I, Q.
        for letter, bit in ((ord("D"), _H_DATA), (ord("A"), _H_ACK), (ord("I"), _H_FINRST), (ord("Q"), _H_MULTI)):
            rows = np.flatnonzero(mine & (letters == letter))
            if not len(rows):
                continue
            run = run_of[rows]
            first = np.ones(len(rows), dtype=bool)
            first[1:] = run[1:] != run[:-1]
            rows, run = rows[first], run[first]
            fresh = (seen[run] & bit) == 0
            emitted[rows[fresh]] = True
            seen[run] |= bit
        # Again whenever the sequence number differs from the last one of the kind: S/H, F, R.
        for letters_of_kind, bit, name, value in (
                ((ord("S"), ord("H")), _H_SYN, "last_syn", seq), ((ord("F"),), _H_FIN, "last_fin", seq + payload),
                ((ord("R"),), _H_RST, "last_rst", seq)):
            kind = letters == letters_of_kind[0]
            if len(letters_of_kind) > 1:
                kind |= letters == letters_of_kind[1]
            rows = np.flatnonzero(mine & kind)
            if not len(rows):
                continue
            run = run_of[rows]
            values = value[rows]
            first = np.ones(len(rows), dtype=bool)
            first[1:] = run[1:] != run[:-1]
            previous = np.empty_like(values)
            previous[1:] = values[:-1]
            last_value = working.read(name + suffix)  # per run
            before = last_value[run]
            was_seen = (seen[run] & bit) != 0
            emitted[rows] = np.where(first, ~was_seen | (values != before), values != previous)
            last = np.ones(len(rows), dtype=bool)
            last[:-1] = run[1:] != run[:-1]
            last_value[run[last]] = values[last]
            working.keep(name + suffix, last_value)
            seen[run] |= bit
        working.keep(seen_name, seen)
        return emitted

    def result(self) -> "Census":
        return Census._from_engine(self)


# -- Zeek's conn_state ---------------------------------------------------------------------

_INACTIVE, _SYN_SENT, _SYN_ACK_SENT, _PARTIAL, _ESTABLISHED, _CLOSED, _RESET = range(7)
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")


def _zeek_states(sent_syn, sent_synack, sent_other, sent_fin, sent_rst, peer_other, peer_synack):
    """Each side's TCP endpoint state as Zeek's analyzer leaves it, from what it sent:
    RESET after an RST, else CLOSED after a FIN, else ESTABLISHED once its SYN
    was answered and acknowledged, else SYN_SENT / SYN_ACK_SENT, else PARTIAL
    (it sent only packets without SYN), else INACTIVE."""
    established = (sent_syn & peer_synack & sent_other) | (sent_synack & peer_other)
    state = np.full(len(sent_syn), _INACTIVE, dtype=np.int8)
    state[sent_other & ~sent_syn & ~sent_synack] = _PARTIAL
    state[sent_synack] = _SYN_ACK_SENT
    state[sent_syn] = _SYN_SENT
    state[established] = _ESTABLISHED
    state[sent_fin] = _CLOSED
    state[sent_rst] = _RESET
    return state


def _conn_state(orig: int, resp: int, orig_bytes: int, resp_bytes: int, history: str) -> str:
    """Zeek's conn_state() (base/protocols/conn/main.zeek) for TCP."""
    o_inactive = orig in (_INACTIVE, _PARTIAL)
    r_inactive = resp in (_INACTIVE, _PARTIAL)
    if resp == _RESET:
        if orig in (_SYN_SENT, _SYN_ACK_SENT) or (orig == _RESET and orig_bytes == 0 and resp_bytes == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if orig == _RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
        return "RSTO"
    if resp == _CLOSED and orig == _CLOSED:
        return "SF"
    if orig == _CLOSED:
        return "SH" if r_inactive else "S2"
    if resp == _CLOSED:
        return "SHR" if o_inactive else "S3"
    if orig == _SYN_SENT and resp == _INACTIVE:
        return "S0"
    if orig == _ESTABLISHED and resp == _ESTABLISHED:
        return "S1"
    return "OTH"


def _conn_state_words(orig, resp, orig_bytes, resp_bytes, history_index, histories) -> tuple[np.ndarray, tuple]:
    """`_conn_state` for arrays: (index into CONN_STATES per connection, CONN_STATES)."""
    o_inactive = (orig == _INACTIVE) | (orig == _PARTIAL)
    r_inactive = (resp == _INACTIVE) | (resp == _PARTIAL)
    orig_reset, resp_reset = orig == _RESET, resp == _RESET
    rej = resp_reset & ((orig == _SYN_SENT) | (orig == _SYN_ACK_SENT)
                        | (orig_reset & (orig_bytes == 0) & (resp_bytes == 0)))
    closed_o, closed_r = orig == _CLOSED, resp == _CLOSED
    choices = [
        (resp_reset & rej, "REJ"), (resp_reset & o_inactive, "RSTRH"), (resp_reset, "RSTR"),
        (orig_reset & r_inactive, "OTH"), (orig_reset, "RSTO"),  # RSTOS0 below
        (closed_o & closed_r, "SF"), (closed_o & r_inactive, "SH"), (closed_o, "S2"),
        (closed_r & o_inactive, "SHR"), (closed_r, "S3"),
        ((orig == _SYN_SENT) & (resp == _INACTIVE), "S0"), ((orig == _ESTABLISHED) & (resp == _ESTABLISHED), "S1"),
    ]
    index = np.select([mask for mask, _ in choices], [CONN_STATES.index(name) for _, name in choices],
                      CONN_STATES.index("OTH"))
    rstos0 = np.array([bool(_RSTOS0.fullmatch(h)) for h in histories], dtype=bool)
    maybe = ~resp_reset & orig_reset & r_inactive
    if len(histories):
        index = np.where(maybe & rstos0[history_index], CONN_STATES.index("RSTOS0"), index)
    return index, CONN_STATES


def _host_words(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, list]:
    """The host part of `str(Endpoint)` ("10.0.0.1", "[::1]") for arrays of TcpBatch address
    halves: (index of each row's host, the distinct hosts); each is formatted once."""
    if not len(hi):
        return np.zeros(0, dtype=np.int64), []
    order = np.lexsort((lo, hi))  # (np.unique with axis=0 sorts bytes: ten times slower)
    new = np.ones(len(hi), dtype=bool)
    new[1:] = (hi[order][1:] != hi[order][:-1]) | (lo[order][1:] != lo[order][:-1])
    inverse = np.empty(len(hi), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    hosts = []
    for high, low in zip(hi[order][new].tolist(), lo[order][new].tolist()):
        host = _endpoint(high, low, 0).host
        hosts.append(f"[{host}]" if ":" in host else host)
    return inverse, hosts


# Zeek history letters as 5-bit codes, so a history of up to 12 letters (and its "^") is
# one exact integer: np.unique on those is a sort of integers, not of strings.
_LETTER_CODES = np.zeros(256, dtype=np.int64)
_LETTER_CODES[np.frombuffer(b"SHADFRIQshadfriq", dtype=np.uint8)] = np.arange(1, 17)
_PACKED_LETTERS = 12


def _history_words(letters: np.ndarray, at: np.ndarray, stop: np.ndarray, flipped: np.ndarray
                   ) -> tuple[np.ndarray, list]:
    """Each connection's Zeek history (its `letters[at[i]:stop[i]]`, "^" first where
    `flipped`) as (index of each row's history, the distinct histories)."""
    count = len(at)
    lengths = stop - at
    code = flipped.astype(np.int64) << (5 * _PACKED_LETTERS)
    for k in range(min(_PACKED_LETTERS, int(lengths.max()) if count else 0)):
        rows = np.flatnonzero(lengths > k)
        code[rows] |= _LETTER_CODES[letters[at[rows] + k]] << (5 * k)
    long = lengths > _PACKED_LETTERS
    if count:  # a letter outside the alphabet: that history is not packed
        owners = np.repeat(np.arange(count), lengths)
        positions = np.arange(len(owners)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(at, lengths)
        long[owners[_LETTER_CODES[letters[positions]] == 0]] = True
    long = np.flatnonzero(long)
    if len(long):  # rare: exact text, each distinct one below every packed code
        seen: dict = {}
        for row in long.tolist():
            code[row] = -1 - seen.setdefault(letters[at[row]:stop[row]].tobytes() + bytes([int(flipped[row])]), len(seen))
    _, first, index = np.unique(code, return_index=True, return_inverse=True)
    texts = [("^" if flipped[row] else "") + letters[at[row]:stop[row]].tobytes().decode("ascii")
             for row in first.tolist()]
    return index.reshape(-1), texts


# -- the result ------------------------------------------------------------------------------

def _endpoint(hi: int, lo: int, port: int, _cache: dict = {}) -> Endpoint:
    endpoint = _cache.get((hi, lo, port))
    if endpoint is None:
        if hi == int(IPV4_MARK):
            host = str(ipaddress.IPv4Address(lo))
        else:
            host = ipaddress.IPv6Address((hi << 64) | lo).compressed
        endpoint = Endpoint(host, port)
        if len(_cache) < 200_000:  # bounded: a census of a huge scan must not grow it forever
            _cache[(hi, lo, port)] = endpoint
    return endpoint


def _narrow_frames(frame: np.ndarray) -> np.ndarray:
    """Frame numbers as int32 while they fit (the rows of one batch: all or none do)."""
    return frame.astype(np.int32) if len(frame) and frame[-1] < 2**31 and frame.max() < 2**31 else frame


def _blocks(conn: np.ndarray) -> tuple:
    """(start, connection, length) of each block of one connection's items in a chunk."""
    if not len(conn):
        return conn[:0], conn[:0], conn[:0]
    starts = np.flatnonzero(conn[1:] != conn[:-1]) + 1
    starts = np.concatenate(([0], starts))
    return starts, conn[starts], np.diff(np.append(starts, len(conn)))


def _placed(parts: list, count: int, dtypes: tuple) -> tuple:
    """Per-batch chunks (conn, value, ...) in batch order, each holding a connection's items
    as one block in order, laid out by connection: (value arrays..., offsets per connection).
    Each chunk is placed where its connections' items go (no sort of all the items, which
    held several int64 copies of every history letter at once); the chunks are freed as
    placed. `dtypes`: of the values, widened to what the chunks hold."""
    width = len(dtypes)
    lengths = np.zeros(count, dtype=np.int64)
    for part in parts:
        _starts, owners, sizes = _blocks(part[0])
        lengths[owners] += sizes  # a connection is one block per chunk: no repeats here
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    del lengths
    total = int(offsets[-1])
    dtypes = [np.result_type(dtype, *[part[k + 1].dtype for part in parts]) for k, dtype in enumerate(dtypes)]
    values = [np.empty(total, dtype=dtype) for dtype in dtypes]
    fill = offsets[:-1].copy()
    for index, part in enumerate(parts):
        starts, owners, sizes = _blocks(part[0])
        at = np.repeat(fill[owners] - starts, sizes) + np.arange(len(part[0]))
        for k in range(width):
            values[k][at] = part[k + 1]
        fill[owners] += sizes
        parts[index] = None  # freed as placed
    parts.clear()
    return (*values, offsets)


def _events_of(events, streams: np.ndarray) -> tuple:
    """(frames, codes, offsets) of the connections `streams`, from all connections' events."""
    frames, codes, offsets = events
    starts = offsets[streams]
    lengths = offsets[streams + 1] - starts
    local = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if len(streams) and streams[-1] - streams[0] == len(streams) - 1 and (np.diff(streams) == 1).all():
        return frames[starts[0]:starts[0] + local[-1]], codes[starts[0]:starts[0] + local[-1]], local
    at = np.repeat(starts - local[:-1], lengths) + np.arange(local[-1])
    return frames[at], codes[at], local


class Census:
    """The connections of a capture, as columns; `ConnectionSummary` objects are made on demand.

    `connections` (a tuple, built once when first used), `connection(i)`,
    `iter_connections()` (one at a time, for streaming) and the counts
    (`by_end`, `by_side`, `summary`) computed from the columns.
    """

    def __init__(self, columns: dict, keys: dict, events, history, packets: int, tcp_packets: int):
        self._c = columns
        self._keys = keys
        self._events = events
        self._history = history
        self.packets = packets  # every frame, TCP or not
        self.tcp_packets = tcp_packets
        self._connections: Optional[tuple] = None
        c = columns
        client_first = c["end_client"]
        has_end = c["end_frame"] >= 0
        # Refused: the first end is the server's RST, the client sent a SYN and got no SYN+ACK.
        kinds = c["kinds"]
        refused = c["end_rst"] & ~client_first & c["client_syn"] & ((kinds & _K_SYNACK_SERVER) == 0)
        kind = np.where(~has_end, 3, np.where((kinds & _K_RST) != 0, np.where(refused, 2, 1), 0)).astype(np.int8)
        self.end_kind = kind  # index into END_KINDS, per connection
        self.ended_by_client = np.where(has_end, client_first, False)
        self._states = self._zeek(columns)

    @classmethod
    def _from_engine(cls, engine: _Engine) -> "Census":
        """The census of a finished engine (spent: its state is handed over or freed)."""
        count = engine.conns.size
        columns = engine.conns.handed_over(_RESULT_COLUMNS)
        keys = engine.tuples.columns.trimmed()
        events = _placed(engine.events, count, (np.int32, np.int8))
        letters, at = _placed(engine.history, count, (np.uint8,))
        history = (None, letters, at)
        return cls(columns, keys, events, history, engine.packets, engine.tcp_packets)

    def _zeek(self, c: dict):
        a_client = c["a_client"]

        def side(name, client: bool):
            # the column of the client's side (Zeek's originator) or the server's
            bit = _SIDE_KINDS[name]
            return (np.where(a_client == client, c["kinds"], c["kinds"] >> _K_SIDE_SHIFT) & bit) != 0

        facts = {}
        for who, client in (("orig", True), ("resp", False)):
            facts[who] = {name: side(name, client) for name in ("syn", "synack", "other", "fin", "rst")}
        orig = _zeek_states(facts["orig"]["syn"], facts["orig"]["synack"], facts["orig"]["other"],
                            facts["orig"]["fin"], facts["orig"]["rst"], facts["resp"]["other"],
                            facts["resp"]["synack"])
        resp = _zeek_states(facts["resp"]["syn"], facts["resp"]["synack"], facts["resp"]["other"],
                            facts["resp"]["fin"], facts["resp"]["rst"], facts["orig"]["other"],
                            facts["orig"]["synack"])
        return orig, resp

    def __len__(self) -> int:
        return len(self.end_kind)

    # -- counts ----------------------------------------------------------------------------

    def by_end(self) -> dict[str, int]:
        counts = np.bincount(self.end_kind, minlength=len(END_KINDS))
        return {kind: int(counts[i]) for i, kind in enumerate(END_KINDS)}

    def by_side(self) -> dict[str, dict[str, int]]:
        """{end kind: {"client": n, "server": n}} for fin, rst and refused."""
        table = {}
        for index, kind in enumerate(END_KINDS[:3]):
            mine = self.end_kind == index
            by_client = int(np.count_nonzero(mine & self.ended_by_client))
            table[kind] = {"client": by_client, "server": int(np.count_nonzero(mine)) - by_client}
        return table

    def summary(self) -> dict:
        codes = self._events[1]
        return {
            "connections": len(self),
            "packets": self.packets,
            "tcp_packets": self.tcp_packets,
            "by_end": self.by_end(),
            "by_side": self.by_side(),
            "rst_segments": int(np.count_nonzero((codes == 1) | (codes == 2))),
            "fin_segments": int(np.count_nonzero(codes == 0)),
        }

    def end_times_ns(self) -> np.ndarray:
        """Per connection: the time of its first FIN or RST, or of its last packet when open."""
        c = self._c
        return np.where(c["end_frame"] >= 0, c["end_time"], c["end"])

    def start_times_ns(self) -> np.ndarray:
        return self._c["start"]

    # -- connections ----------------------------------------------------------------------

    @property
    def connections(self) -> tuple:
        if self._connections is None:
            self._connections = tuple(self.iter_connections())
        return self._connections

    def iter_connections(self, indices: Optional[Iterable[int]] = None) -> Iterator[ConnectionSummary]:
        """Connections one at a time (all, or those `indices`), without keeping them."""
        for row in self.rows(indices):
            yield ConnectionSummary(*row)

    def rows(self, indices: Optional[Iterable[int]] = None) -> Iterator[tuple]:
        """Each connection's fields as a plain tuple in `ConnectionSummary`'s field order
        (what streaming writers use: no object per connection)."""
        c = self._c
        rows = None if indices is None else np.asarray(list(indices), dtype=np.int64)
        pick = (lambda array: array) if rows is None else (lambda array: array[rows])
        names = ("tuple", "a_client", "first_a", "handshake", "start", "end", "first_frame", "last_frame",
                 "packets", "bytes_a", "bytes_b", "end_frame", "end_time")
        columns = [pick(c[name]).tolist() for name in names]
        tuples = np.asarray(columns[0], dtype=np.int64)
        ends = [self._keys[name][tuples].tolist() for name in _KEY_NAMES]
        orig, resp = (pick(state).tolist() for state in self._states)
        kinds, by_client = pick(self.end_kind).tolist(), pick(self.ended_by_client).tolist()
        # only the chosen connections' events and letters become Python objects
        events = self._events if rows is None else _events_of(self._events, rows)
        ev_frame, ev_code, ev_at = (array.tolist() for array in events)
        _, hi_letter, hi_at = self._history
        letters = hi_letter.tobytes().decode("ascii")
        hi_from, hi_to = (hi_at[:-1].tolist(), hi_at[1:].tolist()) if rows is None else (
            hi_at[rows].tolist(), hi_at[rows + 1].tolist())
        numbers = range(len(self)) if rows is None else rows.tolist()
        for (k, i, (_t, a_client, first_a, handshake, start, end, first_frame, last_frame, packets, bytes_a, bytes_b,
                 end_frame, end_time), a_hi, a_lo, a_port, b_hi, b_lo, b_port, o_state, r_state, kind, client_ended
             ) in zip(itertools.count(), numbers, zip(*columns), *ends, orig, resp, kinds, by_client):
            a = _endpoint(a_hi, a_lo, a_port)
            b = _endpoint(b_hi, b_lo, b_port)
            client, server = (a, b) if a_client else (b, a)
            bytes_client, bytes_server = (bytes_a, bytes_b) if a_client else (bytes_b, bytes_a)
            fins, rsts, rst_by, retrans = [], [], [], []
            for j in range(ev_at[k], ev_at[k + 1]):
                code = ev_code[j]
                if code == 0:
                    fins.append(ev_frame[j])
                elif code == 3:
                    retrans.append(ev_frame[j])
                else:
                    rsts.append(ev_frame[j])
                    rst_by.append("client" if code == 1 else "server")
            history = letters[hi_from[k]:hi_to[k]]
            if first_a != a_client:
                history = "^" + history
            ended = kind != 3
            yield (i, client, server, HANDSHAKES[handshake], start, end, first_frame, last_frame, packets,
                   bytes_client, bytes_server, END_KINDS[kind],
                   ("client" if client_ended else "server") if ended else None,
                   end_frame if ended else None, end_time if ended else None,
                   tuple(rsts), tuple(fins), tuple(rst_by), tuple(retrans),
                   _conn_state(o_state, r_state, bytes_client, bytes_server, history), history)

    # -- columns for vectorised writers ----------------------------------------------------

    @property
    def exact_times(self) -> bool:
        """False when a garbage timestamp beyond int64 made the time columns Python ints."""
        return self._c["start"].dtype != object and self._c["end_time"].dtype != object

    def table(self, rows) -> dict:
        """The connections `rows` (a slice or an array of indices) as numpy columns in
        client/server terms, for writers that format many connections at once
        (`views.contracts.census`). Text columns come as words: an index per connection
        into the list of their distinct values ("hosts" for both endpoints, "[::1]" for
        IPv6; "histories"; "conn_states")."""
        streams = np.arange(len(self))[rows]
        c = {name: array[rows] for name, array in self._c.items()}
        a_client = c["a_client"]
        keys = {name: self._keys[name][c["tuple"]] for name in _KEY_NAMES}
        host_index, hosts = _host_words(np.concatenate((keys["a_hi"], keys["b_hi"])),
                                        np.concatenate((keys["a_lo"], keys["b_lo"])))
        a_host, b_host = host_index[:len(streams)], host_index[len(streams):]
        _, letters, at = self._history
        history, histories = _history_words(letters, at[streams], at[streams + 1], c["first_a"] != a_client)
        bytes_client = np.where(a_client, c["bytes_a"], c["bytes_b"])
        bytes_server = np.where(a_client, c["bytes_b"], c["bytes_a"])
        orig, resp = (state[rows] for state in self._states)
        conn_state, conn_states = _conn_state_words(orig, resp, bytes_client, bytes_server, history, histories)
        return {
            "stream": streams, "hosts": hosts,
            "client_host": np.where(a_client, a_host, b_host), "client_port": np.where(a_client, keys["a_port"], keys["b_port"]),
            "server_host": np.where(a_client, b_host, a_host), "server_port": np.where(a_client, keys["b_port"], keys["a_port"]),
            "handshake": c["handshake"],
            "end_kind": self.end_kind[rows], "ended_by_client": self.ended_by_client[rows],
            "start": c["start"], "end": c["end"], "end_time": c["end_time"], "end_frame": c["end_frame"],
            "first_frame": c["first_frame"], "last_frame": c["last_frame"], "packets": c["packets"],
            "bytes_client": bytes_client, "bytes_server": bytes_server,
            "history": history, "histories": histories, "conn_state": conn_state, "conn_states": conn_states,
            "events": _events_of(self._events, streams),
        }

    def connection(self, index: int) -> ConnectionSummary:
        return next(self.iter_connections([index]))

    def failing_first(self, limit: Optional[int]) -> list[int]:
        """Indices of up to `limit` connections: RST and refused ones first (by end time), then the rest in order."""
        abnormal = np.flatnonzero((self.end_kind == 1) | (self.end_kind == 2))
        when = self.end_times_ns()[abnormal]
        try:
            abnormal = abnormal[np.lexsort((abnormal, when))]
        except TypeError:  # object times beyond int64
            abnormal = np.array(sorted(abnormal.tolist(), key=lambda i: (self.end_times_ns()[i], i)), dtype=np.int64)
        rest = np.flatnonzero((self.end_kind != 1) & (self.end_kind != 2))
        chosen = np.concatenate((abnormal, rest))
        return chosen.tolist() if limit is None else chosen[:max(limit, 0)].tolist()


# -- entry points --------------------------------------------------------------------

def census_batches(batches: Iterable) -> Census:
    """The census of column batches (`columns.TcpBatch`, or their `grouped`) in frame order."""
    engine = _Engine()
    for batch in batches:
        engine.feed(batch)
    return engine.result()


def census(segments: Sequence[Segment], packets: Optional[int] = None) -> Census:
    """The census of TCP segments in frame order (a Recording's `segments`)."""
    ordered = sorted(segments, key=lambda s: s.frame)
    return census_batches([batch_from_segments(ordered, packets)])
