"""A capture set: several files (rotations, a directory, a glob) read as one stream.

`tcpdump -C/-W/-G` rotations, often `-z gzip`ed, arrive as many files. The
census (and explain and plot, through formats.evidence) must not know there were several: members are ordered by the time of
their first packet (not by name: `cap.pcap10` sorts before `cap.pcap2`),
frame numbers continue from one member to the next, and a connection that
spans a rotation is one connection because the engine only ever sees one
stream of column batches.

Compressed members (.gz, .xz, .zst, recognised by their magic, not by name)
are decompressed as a stream, a window at a time, into memory: no temporary
copy. Plain files keep the memory-mapped fast path. pcapng inside a
compressed file is read whole into memory (a stated limit: rotations by
tcpdump are pcap).

What is said, one line each: a member that overlaps an earlier one in time
(two capture points, or the same file twice: its packets would be counted
twice); a member that is damaged, not a capture, or unreadable (how much of
it was read; the rest of the set is still counted and the result is
partial).

Never: write a file, or hold more than one window of a compressed member.
"""

from __future__ import annotations

import glob
import zlib
import lzma
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from .. import speedups
from ..errors import CaptureFileError, UserError
from .pcapread import PCAP_MAGICS, PCAPNG_SHB, _magic_problem

__all__ = ["CaptureSet", "expand_members", "open_set", "is_set", "set_label", "iter_set_batches"]

# decompressed bytes per window of a compressed member: the reader's own window (a bigger one
# was held three times over, as read, joined and handed on, while the census counted)
CHUNK = 4 << 20
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_GLOB_CHARS = set("*?[")
_HEAD = 1 << 16  # bytes read to find a member's first packet time


def compression_of(head: bytes) -> Optional[str]:
    for magic, name in _COMPRESSED:
        if head.startswith(magic):
            return name
    return None


def open_decompressed(path: str, kind: str):
    """A binary stream of the decompressed contents (streaming, no copy)."""
    if kind == "gzip":
        return _Gunzip(path)
    if kind == "xz":
        return lzma.open(path, "rb")
    import zstandard

    raw = open(path, "rb")
    return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)


class _Gunzip:
    """gzip as a stream that gives every byte before damage (gzip.open raises first)."""

    def __init__(self, path: str):
        self._raw = open(path, "rb")
        self._inflate = zlib.decompressobj(wbits=31)
        self._out = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = 1 << 62
        while len(self._out) < size and not self._done:
            data = self._raw.read(1 << 16)
            if not data:
                if not self._inflate.eof and not self._out:
                    raise EOFError("compressed file ended before the end-of-stream marker")
                self._done = self._inflate.eof or not self._out
                break
            self._out += self._inflate.decompress(data)
            while self._inflate.eof and self._inflate.unused_data:  # a second gzip member (cat a.gz b.gz)
                rest = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                self._out += self._inflate.decompress(rest)
        head, self._out = self._out[:size], self._out[size:]
        return head

    def close(self) -> None:
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_compressed(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return compression_of(f.read(8)) is not None
    except OSError:
        return False


def is_set(names: list[str]) -> bool:
    """Whether the names are a set (several, a directory, a glob, a compressed file) rather
    than one plain file, pipe or FIFO (which keep their one-file readers)."""
    one = names[0]
    return (len(names) > 1 or os.path.isdir(one) or (not os.path.exists(one) and bool(_GLOB_CHARS & set(one)))
            or (os.path.isfile(one) and is_compressed(one)))


def set_label(names: list[str], capture_set: "CaptureSet") -> str:
    """How output names the set: the name given, or the count and the first name."""
    return names[0] if len(names) == 1 else f"{len(capture_set.members)} files ({names[0]} ...)"


def expand_members(names: list[str]) -> list[str]:
    """Files named, directories' files (sorted), globs' matches; a name that is none is an error."""
    members: list[str] = []
    for name in names:
        if os.path.isdir(name):
            inside = sorted(os.path.join(name, entry) for entry in os.listdir(name)
                            if not entry.startswith(".") and os.path.isfile(os.path.join(name, entry)))
            if not inside:
                raise UserError(f"{name}: is a directory with no files in it (give capture files, a directory of them, or a glob)")
            members.extend(inside)
        elif not os.path.exists(name) and _GLOB_CHARS & set(name):
            matches = sorted(path for path in glob.glob(name) if os.path.isfile(path))
            if not matches:
                raise UserError(f"{name}: no file matches this pattern")
            members.extend(matches)
        elif not os.path.exists(name):
            raise UserError(f"{name}: no such file")
        else:
            members.append(name)
    seen: set = set()
    unique = []
    for path in members:  # the same file named twice (a glob and its name) is read once
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


@dataclass
class Member:
    path: str
    compression: Optional[str] = None
    first_time_ns: Optional[int] = None
    size: int = 0
    problem: Optional[str] = None  # why it cannot be read at all
    expanded: int = 0  # its size decompressed: gzip says it (modulo 4 GiB), xz and zstd are guessed at 5x


def _first_time(head: bytes) -> Optional[int]:
    """The first packet's time from a pcap's first bytes (pcapng: None, ordered last by name)."""
    if len(head) < 40:
        return None
    magic = struct.unpack_from("<I", head, 0)[0]
    if magic not in PCAP_MAGICS:
        return None
    order, nanoseconds = PCAP_MAGICS[magic]
    seconds, fraction = struct.unpack_from(order + "II", head, 24)
    return seconds * 1_000_000_000 + fraction * (1 if nanoseconds else 1000)


def _pcapng_first_time(head: bytes) -> Optional[int]:
    """The first packet's time from a pcapng's first bytes (the blocks before it must fit)."""
    from .pcapread import _Reader

    try:
        for packet in _Reader("", head, False, None).packets():
            return packet.time_ns
    except CaptureFileError:
        return None
    return None


def inspect(path: str) -> Member:
    member = Member(path)
    try:
        member.size = os.path.getsize(path)
        with open(path, "rb") as raw:
            head = raw.read(_HEAD)
        member.compression = compression_of(head)
        member.expanded = member.size if not member.compression else member.size * 5
        if member.compression == "gzip" and member.size >= 18:
            with open(path, "rb") as raw:
                raw.seek(-4, os.SEEK_END)
                member.expanded = max(struct.unpack("<I", raw.read(4))[0], member.size)
        if member.compression:
            with open_decompressed(path, member.compression) as stream:
                head, _damage = _read_some(stream, _HEAD)
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:
        member.problem = f"cannot read: {getattr(exc, 'strerror', None) or exc}"
        return member
    except Exception as exc:  # zstandard.ZstdError and other decompressor errors
        member.problem = f"cannot decompress ({member.compression}): {exc}"
        return member
    problem = _magic_problem(head)
    if problem:
        member.problem = problem + (f" (after {member.compression} decompression)" if member.compression else "")
        return member
    member.first_time_ns = _first_time(head)
    if member.first_time_ns is None and struct.unpack_from("<I", head, 0)[0] == PCAPNG_SHB:
        member.first_time_ns = _pcapng_first_time(head)
    return member


@dataclass
class CaptureSet:
    """The members of a set, in reading order, and what was said about them."""

    members: list
    notes: list = field(default_factory=list)  # overlaps: one line each
    damaged: list = field(default_factory=list)  # members read in part or not at all: one line each

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.members)

    @property
    def expanded_bytes(self) -> int:
        """About what the members hold decompressed (whether to read the set whole)."""
        return sum(m.expanded for m in self.members)

    @property
    def partial(self) -> bool:
        return bool(self.damaged)


def open_set(names: list[str]) -> CaptureSet:
    members = [inspect(path) for path in expand_members(names)]
    order = sorted(range(len(members)), key=lambda i: (members[i].first_time_ns is None,
                                                      members[i].first_time_ns or 0, i))
    return CaptureSet([members[i] for i in order])


PIECE = 1 << 18


def _read_some(stream, size: int):
    """Up to `size` bytes, in pieces, so a damaged compressed stream still gives what came
    before the damage: (bytes, the exception that stopped it or None)."""
    pieces, got = [], 0
    while got < size:
        try:
            piece = stream.read(min(PIECE, size - got))
        except Exception as exc:  # EOFError, zlib/lzma/zstd errors: said by the caller
            return b"".join(pieces), exc
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces), None


class _BytesView:
    """What `pcap_columns._Walker` reads from: a buffer held in memory."""

    def __init__(self, buf: bytes):
        self.buf = buf

    def release(self, upto: int) -> None:
        pass

    def close(self) -> None:
        pass


def _whole_records(buf: bytes, order: str, caplen_at) -> int:
    """Where the last whole pcap record in `buf` ends (records from offset 0)."""
    size = len(buf)
    fast = speedups.compiled()
    if fast is not None and size >= 16:  # the per-record walk, compiled (1M records: ~0.3 s less per member)
        walked, end = fast.walk_pcap(buf, 0, size - 15, order == ">")
        return end if end <= size else int.from_bytes(walked[-8:], sys.byteorder)
    offset = 0
    while offset + 16 <= size:
        end = offset + 16 + caplen_at(buf, offset)[0]
        if end > size:
            break
        offset = end
    return offset


def _pcap_windows(stream, path: str) -> Iterator[tuple[bytes, int, bool]]:
    """(a pcap: the file header and whole records, offset in the member of its first record,
    last?) from a decompressed stream, one CHUNK at a time."""
    header = stream.read(24)
    order = PCAP_MAGICS[struct.unpack_from("<I", header, 0)[0]][0]
    caplen_at = struct.Struct(order + "8xI").unpack_from
    pending = b""
    base = 24
    while True:
        data, damage = _read_some(stream, CHUNK)
        ended = not data
        buf = pending + data if pending else data
        del data
        if damage is not None:
            yield header + buf, base, True
            raise damage
        if ended:
            yield header + buf, base, True
            return
        offset, size = _whole_records(buf, order, caplen_at), len(buf)
        if offset == 0 and size > 2 * CHUNK:  # a record of garbage length: let the reader say so
            yield header + buf, base, True
            return
        window = header + memoryview(buf)[:offset]
        pending = buf[offset:]
        del buf  # only the window is held while it is read
        yield window, base, False
        del window
        base += offset


def iter_set_batches(capture_set: CaptureSet, *, on_problem: Callable[[str], None],
                     progress: Optional[Callable[[int, int, int], None]] = None,
                     with_frames: bool = False) -> Iterator:
    """TcpBatches of every member in order, frame numbers continuing; problems to `on_problem`
    (the set's damaged and overlap lines are kept on `capture_set`). `progress(member index,
    bytes done in the set, packets so far)`. `with_frames`: (batch, frame_bytes(frames), frames())
    instead, for the readers that decode frames (formats.evidence): the (linktype, bytes) of
    some of the batch's frames, and every frame of its window as a model.Frame."""
    from .pcap_columns import WINDOW_BYTES, _decode_window, _Walker, frame_bytes_of, frames_of

    frames = 0
    done_bytes = 0
    overlaps: list = []  # (member, the earlier member it overlaps, by seconds)
    latest: Optional[tuple[int, str]] = None  # the last packet time so far, and its member
    for index, member in enumerate(capture_set.members):
        if member.problem:
            capture_set.damaged.append(f"{member.path}: {member.problem}; nothing of it was read")
            continue
        if latest is not None and member.first_time_ns is not None and member.first_time_ns < latest[0]:
            overlaps.append((member.path, latest[1], (latest[0] - member.first_time_ns) / 1e9))
        problems: list = []
        read = 0
        last_time = None
        try:
            if member.compression is None:
                walker_batches = _plain_batches(member, problems, WINDOW_BYTES, _Walker, _decode_window)
            else:
                walker_batches = _compressed_batches(member, problems, WINDOW_BYTES, _Walker, _decode_window)
            before = frames  # a member's batches number their frames from its own start
            for batch, reached, packets in walker_batches:
                batch = _renumbered(batch, before)
                read = reached
                if len(batch.time_ns):
                    last_time = int(batch.time_ns.max())
                frames += batch.packets
                if progress is not None:
                    progress(index, done_bytes + min(reached, member.size), frames)
                if with_frames:
                    yield batch, frame_bytes_of(packets, before), lambda packets=packets: frames_of(packets)
                else:
                    yield batch
        except CaptureFileError as exc:
            problems.append(str(exc))
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            # the damage itself, not the cut record it leaves at the end of what came out
            problems[:] = [f"{member.path}: {member.compression or 'read'} error after {read:,} bytes: "
                           f"{getattr(exc, 'strerror', None) or exc}"]
        except Exception as exc:  # zstandard.ZstdError
            if type(exc).__module__.startswith("zstandard") or "zstd" in type(exc).__name__.lower():
                problems[:] = [f"{member.path}: zstd error after {read:,} bytes: {exc}"]
            else:
                raise
        done_bytes += member.size
        if problems:
            capture_set.damaged.append(f"{problems[0]} (read {read:,} bytes of it"
                                       f"{' decompressed' if member.compression else ''}; the rest of the set "
                                       "is counted)")
            for problem in problems[1:]:
                on_problem(problem)
        if last_time is not None and (latest is None or last_time > latest[0]):
            latest = (last_time, member.path)
    if overlaps:
        path, earlier, seconds = overlaps[0]
        more = f" and {len(overlaps) - 1} more member(s) after it" if len(overlaps) > 1 else ""
        capture_set.notes.append(
            f"{path}{more} overlap earlier files in time ({path} starts {seconds:.3f} s before {earlier} ended): "
            "two capture points or the same traffic twice? their packets are counted as well, not merged")


def _plain_batches(member: Member, problems: list, window_bytes, walker_class, decode):
    """(batch, bytes reached, its window) of a plain member, through the memory map."""
    from .pcapread import _Map

    view = _Map(member.path)
    try:
        for packets in walker_class(member.path, view, False, problems.append, window_bytes).windows():
            batch = decode(packets)
            yield batch, batch.end_offset, packets
    finally:
        view.close()


def _compressed_batches(member: Member, problems: list, window_bytes, walker_class, decode):
    """(batch, decompressed bytes reached, its window) of a compressed member, window by window."""
    with open_decompressed(member.path, member.compression) as stream:
        head = stream.read(4)
        if struct.unpack_from("<I", head, 0)[0] == PCAPNG_SHB:  # pcapng: whole, in memory
            windows = [(head + stream.read(), 0, True)]
            frame_base = 0
        else:
            rest = _Prefixed(head, stream)
            windows = _pcap_windows(rest, member.path)
        frame_base = 0
        for buf, base, _last in windows:
            walker = walker_class(member.path, _BytesView(buf), False, problems.append, window_bytes)
            walker.frame = frame_base
            shift = base - 24 if base else 0
            for packets in walker.windows():
                batch = decode(packets)
                yield batch, batch.end_offset + shift, packets
            frame_base = walker.frame


class _Prefixed:
    def __init__(self, head: bytes, stream):
        self.head, self.stream = head, stream

    def read(self, size: int) -> bytes:
        if self.head:
            head, self.head = self.head, b""
            return head + self.stream.read(size - len(head))
        return self.stream.read(size)


def _renumbered(batch, frames: int):
    """The batch with frame numbers counted from the set's start."""
    if not frames:
        return batch
    from dataclasses import replace

    return replace(batch, frame=batch.frame + frames, last_frame=batch.last_frame + frames)
