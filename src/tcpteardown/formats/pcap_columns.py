"""The census fast path: a capture file as column batches of TCP header fields.

`pcapread` builds one Python object per packet, which is what correlation
wants and ~3x too slow for a million-packet census. Here the only per-packet
Python is the loop that follows record lengths through the file (it has to
be sequential); every header field is then gathered for a whole batch at once
with numpy from a copy of that stretch of the file. Odd packets (VLAN tags,
NFLOG, FDDI, IPv6 extension headers, short frames) go through the same
pure-Python decoder `pcapread` uses, one at a time, so both paths agree
field for field (tests check it on the corpus and under fuzzing).

Memory stays flat: one window of the file (a few MB) is held at a time and
the memory map's pages are dropped behind the cursor.

Never: build Segment objects, import scapy, or decode past the TCP header.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import speedups
from ..columns import IPV4_MARK, TcpBatch
from . import pcap_links as links
from .pcapread import BLOCK_EPB, MAXIMUM_SNAPLEN, _Map, _Reader

WINDOW_BYTES = 4 << 20  # stretch of file decoded per batch
_PAD = 128  # zero bytes after each window so fixed-width gathers never run off the end


def _any_of(array: np.ndarray, values) -> np.ndarray:
    """np.isin for a few values: equality tests (np.isin hashes the whole array, far slower here)."""
    result = np.zeros(len(array), dtype=bool)
    for value in values:
        result |= array == value
    return result


def _gather(window: np.ndarray, index: np.ndarray, width: int, dtype: str) -> np.ndarray:
    """The `width`-byte number (`dtype`, e.g. ">u2") at each index, as native integers."""
    if not len(index):
        return np.zeros(0, dtype=np.dtype(dtype).newbyteorder("="))
    rows = sliding_window_view(window, width)[index]
    return rows.view(dtype).reshape(-1).astype(np.dtype(dtype).newbyteorder("="))


class _Packets:
    """Frames of one window: where each starts in `window`, its length, time, link type."""

    __slots__ = ("window", "start", "caplen", "time_ns", "linktype", "first_frame", "end_offset")

    def __init__(self, window, start, caplen, time_ns, linktype, first_frame, end_offset):
        self.window, self.start, self.caplen = window, start, caplen
        self.time_ns, self.linktype, self.first_frame, self.end_offset = time_ns, linktype, first_frame, end_offset


def _times(values: list) -> np.ndarray:
    """Nanosecond times as int64, or as Python ints when a garbage time overflows int64."""
    if all(-2**63 <= value < 2**63 for value in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=object)


def _window(buf, begin: int, end: int) -> np.ndarray:
    """A copy of buf[begin:end] followed by _PAD zero bytes."""
    window = np.zeros(end - begin + _PAD, dtype=np.uint8)
    source = np.frombuffer(buf, dtype=np.uint8, count=end - begin, offset=begin)
    window[:end - begin] = source
    del source  # release the export on the memory map at once
    return window


def _follow_records(buf, offset: int, stop: int, order: str, nanoseconds: bool, limit: int):
    """The offsets of the pcap records from `offset` while below `stop` (an int64 array), found
    without a Python loop per record, or None (then the caller walks record by record).
    The compiled walk (`speedups`) is that per-record walk in C and always answers; without
    it, `_follow_records_vectorised` answers where the records chain plainly."""
    fast = speedups.compiled()
    if fast is not None:
        return np.frombuffer(fast.walk_pcap(buf, offset, stop, order == ">")[0], dtype=np.int64)
    return _follow_records_vectorised(buf, offset, stop, order, nanoseconds, limit)


def _follow_records_vectorised(buf, offset: int, stop: int, order: str, nanoseconds: bool, limit: int):
    """`_follow_records` in numpy, or None.

    Every offset where a plausible record header starts (seconds near the first
    record's, a valid fraction, caplen <= limit <= orig_len's bound) is a candidate;
    those no other candidate points to are dropped (stray bytes that look like a
    header); what is left is accepted only if it is exactly the walk: it starts at
    `offset` and each record's length leads to the next one.
    """
    if stop - offset < 4096:
        return None
    end = min(len(buf), stop + 16)
    region = np.frombuffer(buf, dtype=np.uint8, count=end - offset, offset=offset)
    u4 = np.dtype(order + "u4")
    first_seconds = int(region[:4].view(u4)[0])
    # One byte compare over the window finds where the seconds' top byte sits (cheap), then
    # the whole header is checked there only.
    top = 3 if order == "<" else 0
    candidates = np.flatnonzero(region[top:stop - offset + top] == (first_seconds >> 24) & 0xFF)
    candidates = candidates[candidates + 16 <= len(region)]
    # the 16 bytes at each candidate in one gather, read as the four header words
    fields = sliding_window_view(region, 16)[candidates].view(u4).astype(np.int64)
    fraction_limit = 1_000_000_000 if nanoseconds else 1_000_000
    seconds = fields[:, 0].astype(np.int64)
    # a day either side of the first record: anything else ends the fast path (and is walked)
    plausible = ((np.abs(seconds - first_seconds) <= 86400) & (fields[:, 1] < fraction_limit)
                 & (fields[:, 2] <= limit) & (fields[:, 3] >= fields[:, 2]) & (fields[:, 3] <= 0x40000000))
    candidates, caplen = candidates[plausible], fields[plausible, 2].astype(np.int64)
    if not len(candidates) or candidates[0] != 0:
        return None
    following = candidates + 16 + caplen
    at = np.minimum(np.searchsorted(candidates, following), len(candidates) - 1)
    pointed = np.zeros(len(candidates), dtype=bool)
    pointed[at[candidates[at] == following]] = True
    pointed[0] = True
    chain, following = candidates[pointed], following[pointed]
    if not np.array_equal(following[:-1], chain[1:]) or following[-1] < stop - offset:
        return None
    return chain + offset


class _Walker(_Reader):
    """Follows records through the file and hands out windows of frames."""

    def __init__(self, path, view, strict, on_problem, window_bytes):
        super().__init__(path, view.buf, strict, on_problem)
        self.view = view
        self.window_bytes = window_bytes

    def windows(self) -> Iterator[_Packets]:
        pcap = self.pcap_format()
        return self._pcap_windows(*pcap) if pcap is not None else self._pcapng_windows()

    def _pcap_windows(self, order: str, nanoseconds: bool) -> Iterator[_Packets]:
        buf, size = self.buf, len(self.buf)
        if size < 24:
            self.problem(0, f"pcap file header cut short: {size} of 24 bytes", fatal=True)
        snaplen, network = struct.unpack_from(order + "II", buf, 16)
        linktype = network & 0xFFFF
        if linktype not in links.KNOWN_LINKTYPES:
            self.packets().__next__()  # raises the unknown-link-type error
        self.linktypes.add(linktype)
        caplen_at = struct.Struct(order + "8xI").unpack_from  # the caplen field of a record header
        limit = max(snaplen, MAXIMUM_SNAPLEN)
        header = np.dtype([("seconds", order + "u4"), ("fraction", order + "u4"),
                           ("caplen", order + "u4"), ("orig_len", order + "u4")])
        scale = 1 if nanoseconds else 1000
        offset = 24
        last_header = size - 16  # the last offset where a whole record header fits
        while offset < size:
            if offset > last_header:
                self.problem(offset, f"truncated record header: {size - offset} of 16 bytes at end of file")
                return
            begin = offset
            stop = min(last_header + 1, offset + self.window_bytes)
            starts = _follow_records(buf, offset, stop, order, nanoseconds, limit)
            if starts is not None:
                offset = int(starts[-1]) + 16 + caplen_at(buf, int(starts[-1]))[0]
            else:
                starts = []
                append = starts.append
                # The per-packet Python loop: follow record lengths. Checks happen
                # after it, for the whole window at once.
                while offset < stop:
                    append(offset)
                    offset += 16 + caplen_at(buf, offset)[0]
            window = _window(buf, begin, min(offset, size))
            rel = np.asarray(starts, dtype=np.int64) - begin
            headers = sliding_window_view(window, 16)[rel].copy().view(header).reshape(-1)
            caplens = headers["caplen"].astype(np.int64)
            too_big = caplens > limit
            done = False
            if too_big.any():
                cut = int(np.argmax(too_big))
                self.problem(starts[cut], f"record claims {int(caplens[cut])} bytes, more than the snaplen "
                                          f"{snaplen} allows (garbage or a damaged file)")
                rel, headers, caplens, done = rel[:cut], headers[:cut], caplens[:cut], True
            elif offset > size:
                cut = len(starts) - 1
                self.problem(starts[cut], f"truncated record: header says {int(caplens[cut])} bytes, "
                                          f"only {size - starts[cut] - 16} left in the file")
                rel, headers, caplens, done = rel[:cut], headers[:cut], caplens[:cut], True
            if not len(rel):
                return
            time_ns = (headers["seconds"].astype(np.int64) * 1_000_000_000
                       + headers["fraction"].astype(np.int64) * scale)
            first = self.frame + 1
            self.frame += len(rel)
            yield _Packets(window, rel + 16, caplens, time_ns, linktype, first, min(offset, size))
            if done:
                return
            self.view.release(offset)

    def _pcapng_windows(self) -> Iterator[_Packets]:
        # Fast loop for runs of EPBs; every other block goes through the
        # general reader's one_block (it knows sections, interfaces, comments).
        size = len(self.buf)
        offset = 0
        while offset < size:
            offset, batch, stop = self._pcapng_run(offset)
            if batch is not None:
                yield batch
            if stop:
                return
            self.view.release(offset)

    def _pcapng_run(self, offset: int):
        """From `offset`: a run of well-formed EPBs in one window, or else one
        block through the general reader. Returns (next offset, batch or None, stop?)."""
        buf, size = self.buf, len(self.buf)
        order = self.order
        two = struct.Struct(order + "II").unpack_from
        begin = offset
        stop_at = min(size - 8, offset + self.window_bytes)
        starts = []
        fast = speedups.compiled()
        if offset and fast is not None:  # the per-block loop below, in C
            walked, offset = fast.walk_pcapng(buf, offset, stop_at, order == ">")
            starts = np.frombuffer(walked, dtype=np.int64)
        elif offset:  # the first block is the section header
            append = starts.append
            # The per-packet Python loop: follow EPB lengths; checks come after, per window.
            while offset < stop_at:
                block_type, length = two(buf, offset)
                if block_type != BLOCK_EPB or length < 32:
                    break
                append(offset)
                offset += length
        if not len(starts):
            return self._one_block(offset)
        held = min(offset, size) - begin
        window = _window(buf, begin, begin + held)
        rel = np.asarray(starts, dtype=np.int64) - begin
        u4 = np.dtype(order + "u4")
        raw = sliding_window_view(window, 28)[rel].copy()
        length = raw[:, 4:8].copy().view(u4).reshape(-1).astype(np.int64)
        interface = raw[:, 8:12].copy().view(u4).reshape(-1).astype(np.int64)
        high = raw[:, 12:16].copy().view(u4).reshape(-1).astype(np.uint64)
        low = raw[:, 16:20].copy().view(u4).reshape(-1).astype(np.uint64)
        caplen = raw[:, 20:24].copy().view(u4).reshape(-1).astype(np.int64)
        bad = (length % 4 != 0) | (rel + length > held)
        trailer = sliding_window_view(window, 4)[np.where(bad, rel, rel + length - 4)].copy().view(u4).reshape(-1)
        bad |= (trailer != length) | (caplen > length - 32) | (interface >= len(self.interfaces))
        # A block with options (comments) goes through the general reader, which checks them.
        bad |= length > 32 + ((caplen + 3) & ~3)
        if bad.any():
            # Stop the run before the bad block; the general reader then reads it
            # on the next call and describes the problem (or, strict, raises).
            cut = int(np.argmax(bad))
            if cut == 0:
                return self._one_block(begin)
            offset = int(starts[cut])
            rel, length, interface, high, low, caplen = (a[:cut] for a in (rel, length, interface, high, low, caplen))
        batch = None
        if len(rel):
            ticks = (high << np.uint64(32)) | low
            linktype = np.zeros(len(rel), dtype=np.int64)
            time_ns = np.zeros(len(rel), dtype=np.int64)
            for number, (lt, _snap, numerator, denominator, shift_ns) in enumerate(self.interfaces):
                mine = interface == number
                if not mine.any():
                    continue
                linktype[mine] = lt
                mine_ticks = ticks[mine]
                if denominator == 1 and int(mine_ticks.max()) * numerator + abs(shift_ns) < 2**62:
                    time_ns[mine] = mine_ticks.astype(np.int64) * numerator + shift_ns
                else:
                    # Exotic resolutions, or garbage times beyond int64 (Wireshark shows them
                    # unsigned, year 586,000): exact Python integers.
                    exact = [t * numerator // denominator + shift_ns for t in mine_ticks.tolist()]
                    if time_ns.dtype != object and any(not -2**63 <= t < 2**63 for t in exact):
                        time_ns = time_ns.astype(object)
                    time_ns[mine] = exact
            first = self.frame + 1
            self.frame += len(rel)
            self.last_time = int(time_ns[-1])
            batch = _Packets(window, rel + 28, caplen, time_ns, linktype, first, offset)
        return offset, batch, False

    def _one_block(self, offset: int):
        """The general reader over exactly one block at `offset`."""
        gen = self.one_block(offset)
        packets = []
        while True:
            try:
                packets.append(next(gen))
            except StopIteration as result:
                next_offset, stop = result.value
                break
        batch = None
        if packets:
            window = np.frombuffer(b"".join(p.data for p in packets) + bytes(_PAD), dtype=np.uint8)
            lengths = np.array([len(p.data) for p in packets], dtype=np.int64)
            start = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
            batch = _Packets(window, start, lengths, _times([p.time_ns for p in packets]),
                             np.array([p.linktype for p in packets], dtype=np.int64), packets[0].frame,
                             next_offset)
        return next_offset, batch, stop or next_offset >= len(self.buf)


def _decode_compiled(packets: _Packets) -> Optional[TcpBatch]:
    """`_decode_window` in one compiled pass (`speedups`), for a window of Ethernet or Linux
    cooked frames with nothing odd in it; None otherwise (then numpy decodes it)."""
    fast = speedups.compiled()
    if fast is None:
        return None
    linktype = packets.linktype
    if not (np.isscalar(linktype) or getattr(linktype, "ndim", 1) == 0):
        if not len(linktype) or (linktype != linktype[0]).any():
            return None
        linktype = linktype[0]
    link = links.LINKS.get(int(linktype))
    if link is None or link.layout not in ("ethernet", "cooked"):
        return None
    count = len(packets.start)
    rows, sport, dport, payload = (np.empty(count, dtype=np.int64) for _ in range(4))
    seq, ack = np.empty(count, dtype=np.uint32), np.empty(count, dtype=np.uint32)
    flags = np.empty(count, dtype=np.uint8)
    src_hi, src_lo, dst_hi, dst_lo = (np.empty(count, dtype=np.uint64) for _ in range(4))
    tcp = fast.decode_tcp(packets.window, np.ascontiguousarray(packets.start, dtype=np.int64),
                          np.ascontiguousarray(packets.caplen, dtype=np.int64), link.ethertype_at, link.header,
                          link.layout == "ethernet", int(IPV4_MARK), rows, sport, dport, seq, ack, flags, payload,
                          src_hi, src_lo, dst_hi, dst_lo)
    if tcp < 0:
        return None
    rows = rows[:tcp]
    return TcpBatch(
        frame=rows + packets.first_frame, time_ns=packets.time_ns[rows], flags=flags[:tcp], seq=seq[:tcp],
        ack=ack[:tcp], payload_len=payload[:tcp], src_hi=src_hi[:tcp], src_lo=src_lo[:tcp], sport=sport[:tcp],
        dst_hi=dst_hi[:tcp], dst_lo=dst_lo[:tcp], dport=dport[:tcp], packets=count,
        last_frame=packets.first_frame + count - 1, end_offset=packets.end_offset)


def _decode_window(packets: _Packets) -> TcpBatch:
    """Vectorized link/IP/TCP decoding of one window; odd frames fall back to Python.
    Compiled in one pass where it can be (`_decode_compiled`): the same columns."""
    batch = _decode_compiled(packets)
    if batch is not None:
        return batch
    return _decode_numpy(packets)


def _decode_numpy(packets: _Packets) -> TcpBatch:
    """`_decode_window` in numpy, for every link type."""
    window, start, caplen = packets.window, packets.start, packets.caplen
    count = len(start)
    linktype = packets.linktype
    if np.isscalar(linktype) or getattr(linktype, "ndim", 1) == 0:
        linktype = np.full(count, int(linktype), dtype=np.int64)
    end = start + caplen
    l3 = np.full(count, -1, dtype=np.int64)
    version = np.zeros(count, dtype=np.int64)
    odd = np.zeros(count, dtype=bool)  # decided by the Python decoder

    def ethertype_at(mask, where, header, vlan_tags):
        rows = np.flatnonzero(mask)
        if not len(rows):
            return
        long_enough = caplen[rows] >= header
        short_rows = rows[~long_enough]
        odd[short_rows] = True
        rows = rows[long_enough]
        ethertype = _gather(window, start[rows] + where, 2, ">u2")
        v4 = ethertype == links.ETHERTYPE_IPV4
        v6 = ethertype == links.ETHERTYPE_IPV6
        l3[rows[v4 | v6]] = start[rows[v4 | v6]] + header
        version[rows[v4]] = 4
        version[rows[v6]] = 6
        if vlan_tags:  # VLAN-tagged frames go to the Python decoder
            vlan = _any_of(ethertype, list(links.ETHERTYPE_VLANS))
            odd[rows[vlan]] = True

    for link in links.LINKS.values():  # one pass per link type of the table, by its layout
        mine = linktype == link.number
        if link.layout in ("ethernet", "cooked"):
            ethertype_at(mine, link.ethertype_at, link.header, link.layout == "ethernet")
        elif link.layout in ("ipv4", "ipv6"):
            rows = np.flatnonzero(mine)
            l3[rows] = start[rows]
            version[rows] = int(link.layout[-1])
    raw = _any_of(linktype, links.linktypes_with("raw"))
    if raw.any():
        rows = np.flatnonzero(raw & (caplen > 0))
        nibble = window[start[rows]] >> 4
        ip = (nibble == 4) | (nibble == 6)
        l3[rows[ip]] = start[rows[ip]]
        version[rows[ip]] = nibble[ip]
    loop = np.flatnonzero(_any_of(linktype, links.linktypes_with("family")) & (caplen >= 4))
    if len(loop):
        family = _gather(window, start[loop], 4, "<u4").astype(np.int64)
        swapped = family > 0xFFFF
        family[swapped] = _gather(window, start[loop[swapped]], 4, ">u4")
        v4 = family == links.AF_INET
        v6 = _any_of(family, list(links.AF_INET6))
        l3[loop[v4 | v6]] = start[loop[v4 | v6]] + 4
        version[loop[v4]] = 4
        version[loop[v6]] = 6
    odd |= _any_of(linktype, links.linktypes_with("nflog") + links.linktypes_with("fddi")
                   + links.linktypes_with("pktap"))

    tcp = np.full(count, -1, dtype=np.int64)
    tcp_len = np.zeros(count, dtype=np.int64)

    # IPv4
    rows = np.flatnonzero((version == 4) & ~odd)
    if len(rows):
        fits = l3[rows] + 20 <= end[rows]
        rows = rows[fits]
        head = sliding_window_view(window, 10)[l3[rows]]
        ver_ihl = head[:, 0].astype(np.int64)
        total = (head[:, 2].astype(np.int64) << 8) | head[:, 3]
        fragment = ((head[:, 6].astype(np.int64) << 8) | head[:, 7]) & 0x3FFF
        ihl = (ver_ihl & 0x0F) * 4
        ok = (ver_ihl >> 4 == 4) & (ihl >= 20) & (head[:, 9] == links.IPPROTO_TCP) & (fragment == 0)
        rows, ihl, total = rows[ok], ihl[ok], total[ok]
        tcp[rows] = l3[rows] + ihl
        tcp_len[rows] = np.where(total > 0, total, end[rows] - l3[rows]) - ihl
    # IPv6: TCP right after the fixed header here; extension headers go to Python.
    rows = np.flatnonzero((version == 6) & ~odd)
    if len(rows):
        fits = l3[rows] + 40 <= end[rows]
        rows = rows[fits]
        head = sliding_window_view(window, 7)[l3[rows]]
        payload = (head[:, 4].astype(np.int64) << 8) | head[:, 5]
        next_header = head[:, 6]
        is_v6 = head[:, 0] >> 4 == 6
        direct = is_v6 & (next_header == links.IPPROTO_TCP)
        extension = is_v6 & _any_of(next_header, (links.IPV6_HOP_BY_HOP, links.IPV6_ROUTING, links.IPV6_DEST_OPTS,
                                                  links.IPV6_AUTH, links.IPV6_FRAGMENT))
        odd[rows[extension]] = True
        rows, payload = rows[direct], payload[direct]
        tcp[rows] = l3[rows] + 40
        tcp_len[rows] = np.where(payload > 0, l3[rows] + 40 + payload, end[rows]) - (l3[rows] + 40)

    for row in np.flatnonzero(odd).tolist():
        s, e = int(start[row]), int(end[row])
        data = window[s:e].tobytes()
        offset, ver = links.network_offset(int(linktype[row]), data)
        l3[row], version[row], tcp[row] = -1, 0, -1
        if not ver:
            continue
        try:
            at, length, _src, _dst, fragment = links.tcp_offset(data, offset, ver)
        except links.NotTcp:
            continue
        if fragment:
            continue
        l3[row], version[row], tcp[row], tcp_len[row] = s + offset, ver, s + at, length

    rows = np.flatnonzero((tcp >= 0) & (tcp + 20 <= end))
    at = tcp[rows]
    header = sliding_window_view(window, 14)[at]
    sport = (header[:, 0].astype(np.int64) << 8) | header[:, 1]
    dport = (header[:, 2].astype(np.int64) << 8) | header[:, 3]
    seq = header[:, 4:8].copy().view(">u4").reshape(-1).astype(np.uint32)
    ack = header[:, 8:12].copy().view(">u4").reshape(-1).astype(np.uint32)
    data_offset = (header[:, 12].astype(np.int64) >> 4) * 4
    flags = header[:, 13].copy()
    payload_len = np.maximum(tcp_len[rows] - data_offset, 0)

    src_hi = np.empty(len(rows), dtype=np.uint64)
    src_lo = np.empty(len(rows), dtype=np.uint64)
    dst_hi = np.empty(len(rows), dtype=np.uint64)
    dst_lo = np.empty(len(rows), dtype=np.uint64)
    ip = l3[rows]
    v4 = version[rows] == 4
    if v4.any():
        pair = sliding_window_view(window, 8)[ip[v4] + 12].copy().view(">u4").astype(np.uint64)
        src_hi[v4] = IPV4_MARK
        dst_hi[v4] = IPV4_MARK
        src_lo[v4] = pair[:, 0]
        dst_lo[v4] = pair[:, 1]
    v6 = ~v4
    if v6.any():
        quad = sliding_window_view(window, 32)[ip[v6] + 8].copy().view(">u8").astype(np.uint64)
        src_hi[v6], src_lo[v6], dst_hi[v6], dst_lo[v6] = quad[:, 0], quad[:, 1], quad[:, 2], quad[:, 3]
    return TcpBatch(
        frame=rows + packets.first_frame,
        time_ns=packets.time_ns[rows],
        flags=flags,
        seq=seq,
        ack=ack,
        payload_len=payload_len,
        src_hi=src_hi, src_lo=src_lo, sport=sport,
        dst_hi=dst_hi, dst_lo=dst_lo, dport=dport,
        packets=count,
        last_frame=packets.first_frame + count - 1,
        end_offset=packets.end_offset,
    )


def iter_tcp_batches(path: str, *, strict: bool = False, on_problem: Optional[Callable[[str], None]] = None,
                     window_bytes: int = WINDOW_BYTES) -> Iterator[TcpBatch]:
    """Stream a capture file as TcpBatches, in frame order.

    Same problems, same errors and same frame numbers as `pcapread.iter_packets`.
    """
    view = _Map(path)
    try:
        walker = _Walker(path, view, strict, on_problem, window_bytes)
        for packets in walker.windows():
            yield _decode_window(packets)
    finally:
        view.close()


def iter_tcp_batches_with_bytes(path: str, *, strict: bool = False,
                                on_problem: Optional[Callable[[str], None]] = None,
                                window_bytes: int = WINDOW_BYTES) -> Iterator[tuple[TcpBatch, Callable]]:
    """`iter_tcp_batches`, each batch paired with `frame_bytes(frames)`: the
    (linktype, captured bytes) of some of its frames (the window is a copy, so
    it stays valid while later batches are read). For readers that decode only
    the few frames they select."""
    view = _Map(path)
    try:
        walker = _Walker(path, view, strict, on_problem, window_bytes)
        for packets in walker.windows():
            yield _decode_window(packets), frame_bytes_of(packets)
    finally:
        view.close()


def frame_bytes_of(packets: _Packets, shift: int = 0) -> Callable:
    """`frame_bytes(frames)` of one window: the (linktype, captured bytes) of
    those frames (numbered `shift` more than the window's own numbers)."""
    def frame_bytes(frames) -> list[tuple[int, bytes]]:
        rows = np.asarray(frames, dtype=np.int64) - shift - packets.first_frame
        linktype = np.broadcast_to(np.asarray(packets.linktype), packets.start.shape)
        return [(int(linktype[row]), packets.window[packets.start[row]:packets.start[row] + packets.caplen[row]]
                 .tobytes()) for row in rows]
    return frame_bytes


def frames_of(packets: _Packets) -> list:
    """Every frame of one window as a model.Frame (TCP or not), in order; the
    length on the wire is not kept in a window: the captured length stands for it."""
    from ..model import Frame

    linktype = np.broadcast_to(np.asarray(packets.linktype), packets.start.shape).tolist()
    window = packets.window
    return [Frame(int(time), link, window[start:start + caplen].tobytes(), int(caplen))
            for time, link, start, caplen in zip(packets.time_ns.tolist(), linktype, packets.start.tolist(),
                                                 packets.caplen.tolist())]
