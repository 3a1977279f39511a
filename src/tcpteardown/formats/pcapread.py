"""Fast streaming reader for pcap and pcapng files: the path for files on disk.

Why this exists: scapy dissects ~5,500 packets/s and holds ~5 KB per packet,
which is fine for a scenario's hundred packets and hopeless for a production
capture with millions. This reader walks the file with `struct.unpack_from`
over a memory map, decodes only what census and correlation need (link
header, IPv4/IPv6 addresses, the TCP header and its options), and streams:
memory does not grow with the file unless the caller keeps the packets.
Live captures are decoded by the same header walk (`pcap_links.decode_segment`);
the tests hold it equal to scapy's dissection field for field. The census of a
big file skips even the per-packet objects: `pcap_columns` walks the same
containers (sharing this module's pcapng block reader) and decodes headers
a window at a time with numpy; tests hold the two paths equal.

Formats: pcap (microsecond and nanosecond, either byte order) and pcapng
(either byte order, several sections, several interfaces with their own link
types, if_tsresol and if_tsoffset; EPB, SPB, OPB; comments; Custom Blocks;
Apple's process information from `tcpdump -k`: Process Information Blocks
and the EPB options that point into them). Link types: see
`pcap_links.LINK_NAMES` (Apple's PKTAP names the process in every header).

Bad input: problems the reader can step over (a truncated last record,
garbage, lengths that disagree, a record claiming gigabytes) are recorded as
one line naming the file and byte offset, and everything read before them is
kept; with ``strict=True`` they raise `CaptureFileError` instead. A file that
cannot be read at all (wrong magic, unknown link type) always raises.

Never: import scapy, write files, or decode application layers.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, NamedTuple, Optional

from ..errors import CaptureFileError
from ..model import Frame
from .pcap_links import (KNOWN_LINKTYPES, LINK_NAMES, LINKTYPE_PKTAP,  # decode_segment: re-exported
                         decode_segment, pktap_process)

__all__ = [
    "RawPacket",
    "CaptureContents",
    "iter_packets",
    "read_capture",
    "decode_segment",
    "open_capture",
    "LINK_NAMES",
]

PCAP_MAGICS = {  # magic as read little-endian -> (byte order, nanoseconds?)
    0xA1B2C3D4: ("<", False),
    0xD4C3B2A1: (">", False),
    0xA1B23C4D: ("<", True),
    0x4D3CB2A1: (">", True),
}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D

BLOCK_IDB = 0x00000001
BLOCK_OPB = 0x00000002  # obsolete Packet Block
BLOCK_SPB = 0x00000003
BLOCK_EPB = 0x00000006
BLOCK_CUSTOM = (0x00000BAD, 0x40000BAD)  # copyable, do-not-copy
# Apple's pcapng additions (libpcap-apple pcap-ng.h, written by macOS `tcpdump -k`):
BLOCK_APPLE_PIB = 0x80000001  # Process Information Block: pid (u32), options: 2 name, 4 UUID
PIB_NAME = 2
EPB_PIB_INDEX = 0x8001  # which PIB of the section sent/received this packet
EPB_E_PIB_INDEX = 0x8003  # the "effective" process it was sent on behalf of

OPT_ENDOFOPT, OPT_COMMENT = 0, 1
SHB_OS = 3  # the capturing host's operating system, as the writer named it
IF_TSRESOL, IF_TSOFFSET = 9, 14

# libpcap refuses records larger than this unless the snaplen is larger.
MAXIMUM_SNAPLEN = 262144
# Beyond this a pcapng block length is garbage, not a packet.
MAXIMUM_BLOCK = 64 * 1024 * 1024


class RawPacket(NamedTuple):
    """One captured packet, exactly as the file holds it."""

    frame: int  # 1-based, every packet in file order (as Wireshark counts)
    time_ns: int
    linktype: int
    data: bytes
    orig_len: int
    comments: tuple = ()
    process: Optional[tuple[int, str]] = None  # (pid, name) from Apple's process information


@dataclass
class CaptureContents:
    """Everything `read_capture` found in one file."""

    segments: list = field(default_factory=list)  # list[Segment], TCP only
    frames: list = field(default_factory=list)  # list[Frame], every packet (keep_frames)
    custom_blocks: list = field(default_factory=list)  # (PEN, payload after the PEN)
    section_comments: list = field(default_factory=list)
    section_os: list = field(default_factory=list)  # each section header's shb_os text ("Darwin 19.6.0")
    problems: list = field(default_factory=list)
    linktypes: set = field(default_factory=set)
    packet_comments: dict = field(default_factory=dict)  # frame -> comments
    packet_count: int = 0


ProblemHandler = Callable[[str], None]


def _magic_problem(head: bytes) -> Optional[str]:
    """Why a stream cannot be a capture, from its first bytes (pipes are checked
    before they are copied, so an endless stream of anything else stops at once)."""
    if len(head) < 4:
        return f"not a pcap or pcapng file: only {len(head)} bytes"
    magic = struct.unpack_from("<I", head, 0)[0]
    if magic in PCAP_MAGICS or magic == PCAPNG_SHB:
        return None
    return f"not a pcap or pcapng file: magic 0x{magic:08x} (expected a pcap or pcapng magic)"


class _Map:
    """A read-only view of the whole file: mmap for regular files, bytes otherwise."""

    def __init__(self, path: str):
        from .inputs import open_seekable

        self.path = path
        self._file = open_seekable(path, check=_magic_problem,
                                   error=lambda problem: CaptureFileError(path, None, problem))
        self._map = None
        try:
            size = os.fstat(self._file.fileno()).st_size
            if size > 0:
                try:
                    self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError):
                    self._map = None
            self.buf = self._map if self._map is not None else self._file.read()
        except BaseException:
            self._file.close()
            raise

    _released = 0

    def release(self, upto: int) -> None:
        """Let the kernel drop pages before `upto` from our RSS (they are file-backed)."""
        if self._map is not None and hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            end = upto - upto % mmap.PAGESIZE
            if end > self._released:
                self._map.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
                self._released = end

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._file.close()


def open_capture(path: str) -> _Map:
    """The whole file as a buffer (used by the census fast path too). Close it."""
    return _Map(path)


class _Reader:
    """Walks one file; yields RawPackets; keeps side results for read_capture."""

    def __init__(self, path: str, buf, strict: bool, on_problem: Optional[ProblemHandler],
                 release: Optional[Callable[[int], None]] = None):
        self.path = path
        self.buf = buf
        self.strict = strict
        self.on_problem = on_problem
        self.release = release
        self.custom_blocks: list = []
        self.section_comments: list = []
        self.section_os: list = []
        self.linktypes: set = set()
        self.frame = 0

    def problem(self, offset: int, text: str, *, fatal: bool = False) -> None:
        if fatal or self.strict:
            raise CaptureFileError(self.path, offset, text)
        if self.on_problem is not None:
            self.on_problem(f"{self.path} at byte offset {offset}: {text}")

    def packets(self) -> Iterator[RawPacket]:
        pcap = self.pcap_format()
        return self._pcap(*pcap) if pcap is not None else self._pcapng()

    def pcap_format(self) -> Optional[tuple[str, bool]]:
        """From the file's magic: (byte order, nanoseconds) for pcap, None for
        pcapng; anything else is a fatal problem naming the magic found."""
        buf = self.buf
        if len(buf) < 4:
            self.problem(0, f"not a pcap or pcapng file: only {len(buf)} bytes", fatal=True)
        magic = struct.unpack_from("<I", buf, 0)[0]
        if magic in PCAP_MAGICS:
            return PCAP_MAGICS[magic]
        if magic == PCAPNG_SHB:
            return None
        self.problem(0, f"not a pcap or pcapng file: magic 0x{magic:08x} (expected a1b2c3d4, "
                        f"a1b23c4d or pcapng 0a0d0d0a)", fatal=True)
        raise AssertionError("unreachable")

    # -- pcap --------------------------------------------------------------------

    def _pcap(self, order: str, nanoseconds: bool) -> Iterator[RawPacket]:
        buf, size = self.buf, len(self.buf)
        if size < 24:
            self.problem(0, f"pcap file header cut short: {size} of 24 bytes", fatal=True)
        snaplen, network = struct.unpack_from(order + "II", buf, 16)
        linktype = network & 0xFFFF  # upper bits: FCS length flags (pcap spec, LinkType field)
        if linktype not in KNOWN_LINKTYPES:
            self.problem(20, f"unknown link type {linktype}: this reader decodes "
                             f"{', '.join(f'{n} ({v})' for v, n in sorted(LINK_NAMES.items()))}", fatal=True)
        self.linktypes.add(linktype)
        record = struct.Struct(order + "IIII")
        unpack = record.unpack_from
        scale = 1 if nanoseconds else 1000
        limit = max(snaplen, MAXIMUM_SNAPLEN)
        offset = 24
        next_release = 64 << 20
        while offset < size:
            if offset + 16 > size:
                self.problem(offset, f"truncated record header: {size - offset} of 16 bytes at end of file")
                return
            seconds, fraction, caplen, orig_len = unpack(buf, offset)
            if caplen > limit:
                self.problem(offset, f"record claims {caplen} bytes, more than the snaplen "
                                     f"{snaplen} allows (garbage or a damaged file)")
                return
            start = offset + 16
            end = start + caplen
            if end > size:
                self.problem(offset, f"truncated record: header says {caplen} bytes, "
                                     f"only {size - start} left in the file")
                return
            self.frame += 1
            yield RawPacket(self.frame, seconds * 1_000_000_000 + fraction * scale, linktype,
                            buf[start:end], orig_len)
            offset = end
            if offset > next_release and self.release is not None:
                self.release(offset)
                next_release = offset + (64 << 20)

    # -- pcapng ------------------------------------------------------------------

    def _pcapng(self) -> Iterator[RawPacket]:
        size = len(self.buf)
        offset = 0
        next_release = 64 << 20
        while offset < size:
            offset, stop = yield from self.one_block(offset)
            if stop:
                return
            if offset > next_release and self.release is not None:
                self.release(offset)
                next_release = offset + (64 << 20)

    # pcapng state: byte order of the section, its interfaces and processes, the last packet time
    order = "<"
    interfaces: list = []
    processes: list = []  # (pid, name) per Apple Process Information Block, in order
    last_time = 0

    def one_block(self, offset: int):
        """Generator: the packet (if any) of the block at `offset`; returns (next offset, stop?)."""
        buf, size = self.buf, len(self.buf)
        order = self.order
        if offset + 12 > size:
            self.problem(offset, f"truncated block header: {size - offset} bytes at end of file")
            return offset, True
        block_type = struct.unpack_from(order + "I", buf, offset)[0]
        if block_type == PCAPNG_SHB:
            bom = struct.unpack_from("<I", buf, offset + 8)[0]
            if bom == PCAPNG_BYTE_ORDER_MAGIC:
                order = "<"
            elif bom == 0x4D3C2B1A:
                order = ">"
            else:
                self.problem(offset + 8, f"section header with a bad byte-order magic 0x{bom:08x}",
                             fatal=offset == 0)
                return offset, True
            self.order = order
            self.interfaces = []
            self.processes = []
        elif offset == 0:
            self.problem(0, "not a pcapng file: the first block is not a section header", fatal=True)
        length = struct.unpack_from(order + "I", buf, offset + 4)[0]
        if length < 12 or length % 4 or length > MAXIMUM_BLOCK:
            self.problem(offset, f"block of type 0x{block_type:08x} claims length {length} "
                                 "(must be a multiple of 4, at least 12)", fatal=offset == 0)
            return offset, True
        end = offset + length
        if end > size:
            self.problem(offset, f"truncated block of type 0x{block_type:08x}: length {length}, "
                                 f"only {size - offset} bytes left in the file", fatal=offset == 0)
            return offset, True
        trailer = struct.unpack_from(order + "I", buf, end - 4)[0]
        if trailer != length:
            self.problem(offset, f"block of type 0x{block_type:08x} lengths disagree: "
                                 f"{length} at its start, {trailer} at its end", fatal=offset == 0)
            return offset, True
        body = offset + 8
        body_end = end - 4
        interfaces = self.interfaces
        if block_type == PCAPNG_SHB:
            if body_end - body >= 16:
                for code, value in self._options(order, body + 16, body_end):
                    if code == OPT_COMMENT:
                        self.section_comments.append(_text(value))
                    elif code == SHB_OS:
                        self.section_os.append(_text(value))
        elif block_type == BLOCK_IDB:
            if body_end - body < 8:
                self.problem(offset, "interface description block too short")
                return offset, True
            linktype, snaplen = struct.unpack_from(order + "HxxI", buf, body)
            numerator, denominator, shift_ns = 1000, 1, 0  # default resolution: microseconds
            for code, value in self._options(order, body + 8, body_end):
                if code == IF_TSRESOL and value:
                    numerator, denominator = _resolution(value[0])
                elif code == IF_TSOFFSET and len(value) == 8:
                    shift_ns = struct.unpack(order + "q", value)[0] * 1_000_000_000
            if linktype not in KNOWN_LINKTYPES:
                self.problem(offset, f"interface {len(interfaces)} has unknown link type {linktype}; "
                                     "its packets are counted, not decoded")
            self.interfaces = interfaces + [(linktype, snaplen, numerator, denominator, shift_ns)]
            self.linktypes.add(linktype)
        elif block_type in (BLOCK_EPB, BLOCK_OPB):
            if body_end - body < 20:
                self.problem(offset, "packet block too short")
                return offset, True
            if block_type == BLOCK_EPB:
                interface, high, low, caplen, orig_len = struct.unpack_from(order + "IIIII", buf, body)
            else:
                interface, high, low, caplen, orig_len = struct.unpack_from(order + "HxxIIII", buf, body)
            data_start = body + 20
            if data_start + caplen > body_end:
                self.problem(offset, f"packet block says {caplen} captured bytes but holds only "
                                     f"{body_end - data_start}")
                return offset, True
            if interface >= len(interfaces):
                self.problem(offset, f"packet on interface {interface}, but the section describes "
                                     f"only {len(interfaces)}")
                return offset, True
            linktype, _snap, numerator, denominator, shift_ns = interfaces[interface]
            ticks = (high << 32) | low
            self.last_time = ticks * numerator // denominator + shift_ns
            comments = ()
            process = None
            options_start = data_start + ((caplen + 3) & ~3)
            if options_start < body_end:
                options = list(self._options(order, options_start, body_end))
                comments = tuple(_text(value) for code, value in options if code == OPT_COMMENT)
                if self.processes:
                    process = self._process_of(offset, order, options)
            self.frame += 1
            yield RawPacket(self.frame, self.last_time, linktype, buf[data_start:data_start + caplen],
                            orig_len, comments, process)
        elif block_type == BLOCK_SPB:
            if not interfaces:
                self.problem(offset, "simple packet block before any interface description")
                return offset, True
            if body_end - body < 4:
                self.problem(offset, "simple packet block too short")
                return offset, True
            linktype, snaplen, *_ = interfaces[0]
            orig_len = struct.unpack_from(order + "I", buf, body)[0]
            caplen = min(orig_len, body_end - body - 4)
            if snaplen:
                caplen = min(caplen, snaplen)
            self.frame += 1
            # SPBs carry no time stamp: keep the previous packet's time.
            yield RawPacket(self.frame, self.last_time, linktype, buf[body + 4:body + 4 + caplen], orig_len)
        elif block_type == BLOCK_APPLE_PIB:
            if body_end - body < 4:
                self.problem(offset, "Apple process information block too short for its pid")
                return end, False
            pid = struct.unpack_from(order + "I", buf, body)[0]
            name = next((_text(value) for code, value in self._options(order, body + 4, body_end)
                         if code == PIB_NAME), "")
            self.processes = self.processes + [(pid, name)]
        elif block_type in BLOCK_CUSTOM:
            if body_end - body >= 4:
                pen = struct.unpack_from(order + "I", buf, body)[0]
                payload = bytes(buf[body + 4:body_end])
                # The block pads its data to 4 bytes with zeros; the padding is not data.
                stripped = payload.rstrip(b"\0")
                payload = payload[:max(len(stripped), len(payload) - 3)]
                self.custom_blocks.append((pen, payload))
        return end, False

    def _process_of(self, offset: int, order: str, options: list) -> Optional[tuple[int, str]]:
        """The process an EPB's Apple options point at: its own, else the effective one."""
        by_code = dict(options)
        for code in (EPB_PIB_INDEX, EPB_E_PIB_INDEX):
            value = by_code.get(code)
            if value is None or len(value) != 4:
                continue
            index = struct.unpack(order + "I", value)[0]
            if index < len(self.processes):
                return self.processes[index]
            self.problem(offset, f"packet names process information block {index}, but the section "
                                 f"holds only {len(self.processes)}")
        return None

    def _options(self, order: str, start: int, end: int):
        buf = self.buf
        offset = start
        while offset + 4 <= end:
            code, length = struct.unpack_from(order + "HH", buf, offset)
            if code == OPT_ENDOFOPT:
                return
            value_end = offset + 4 + length
            if value_end > end:
                self.problem(offset, f"option {code} claims {length} bytes beyond its block")
                return
            yield code, bytes(buf[offset + 4:value_end])
            offset += 4 + ((length + 3) & ~3)


def _resolution(value: int) -> tuple[int, int]:
    """if_tsresol -> (numerator, denominator) turning ticks into nanoseconds."""
    exponent = value & 0x7F
    if value & 0x80:  # negative power of two
        return 1_000_000_000, 1 << exponent
    if exponent <= 9:
        return 10 ** (9 - exponent), 1
    return 1, 10 ** (exponent - 9)


def _text(value: bytes) -> str:
    return value.rstrip(b"\0").decode("utf-8", "replace")


def iter_packets(path: str, *, strict: bool = False,
                 on_problem: Optional[ProblemHandler] = None) -> Iterator[RawPacket]:
    """Stream every packet of a pcap/pcapng file, in file order.

    Problems the reader steps over go to `on_problem` (one line each, naming
    the file and byte offset); with `strict` they raise CaptureFileError.
    """
    view = _Map(path)
    try:
        reader = _Reader(path, view.buf, strict, on_problem)
        yield from reader.packets()
    finally:
        view.close()


def read_capture(path: str, *, strict: bool = False, keep_frames: bool = True) -> CaptureContents:
    """Read a whole capture: TCP segments, frames, custom blocks, comments, problems.

    On a fatal problem the CaptureFileError carries the CaptureContents read
    so far as `partial`.
    """
    contents = CaptureContents()
    view = _Map(path)
    reader = _Reader(path, view.buf, strict, contents.problems.append)
    segments, frames, comments = contents.segments, contents.frames, contents.packet_comments
    try:
        for packet in reader.packets():
            if keep_frames:
                frames.append(Frame(packet.time_ns, packet.linktype, packet.data, packet.orig_len))
            if packet.comments:
                comments[packet.frame] = packet.comments
            segment = decode_segment(packet.frame, packet.time_ns, packet.linktype, packet.data)
            if segment is not None:
                process = pktap_process(packet.data) if packet.linktype == LINKTYPE_PKTAP else packet.process
                if process is not None:
                    segment = replace(segment, pid=process[0], process=process[1] or None)
                segments.append(segment)
    except CaptureFileError as exc:
        _collect(contents, reader)
        exc.partial = contents
        raise
    finally:
        view.close()
    _collect(contents, reader)
    return contents


def _collect(contents: CaptureContents, reader: _Reader) -> None:
    contents.custom_blocks = reader.custom_blocks
    contents.section_comments = reader.section_comments
    contents.section_os = reader.section_os
    contents.linktypes = reader.linktypes
    contents.packet_count = reader.frame

