"""Which segments of a long connection a picture draws, and what it leaves out.

A reader of a ladder wants the teardown, not the bulk transfer before it.
`elide` keeps the handshake, the last few segments before the first FIN or
RST, every SYN/FIN/RST (of a long run of RSTs in a row, a storm, the first and
last few), a few segments around each failing call or EOF (and each
`anchor` time the caller names, such as a linked cause), and the end of the
connection; every longer run of plain data and ACKs in between becomes one
`Band` that says how many segments, bytes, socket calls and how much time it
stands for ("… 180 data segments, 1.2 MB, 3.4 s …"). Socket calls that fall
wholly inside a band are left out with it; failing calls and end-of-file
reads never are (the segments around them are kept).

Pure: model in, model out; shared by every view that draws a connection
(the ladder, and the Mermaid/HTML ladders).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..model import Segment, SocketCall, TcpFlags
from ..units import format_bytes, format_duration

__all__ = ["Band", "Elision", "elide", "HANDSHAKE", "CONTEXT", "MIN_BAND"]

HANDSHAKE = 3  # segments kept at the start even without a SYN (a mid-stream capture)
CONTEXT = 4  # segments kept on each side of a teardown segment or failing call
MIN_BAND = 8  # a shorter run is drawn: a band must save more room than it takes
# Plain ints: IntFlag arithmetic costs microseconds a segment, and a long connection has thousands.
_SYN, _ENDS = int(TcpFlags.SYN), int(TcpFlags.FIN) | int(TcpFlags.RST)
_RST_ONLY = int(TcpFlags.SYN) | int(TcpFlags.FIN) | int(TcpFlags.RST)  # mask: RST alone among the three


@dataclass(frozen=True, slots=True)
class Band:
    """A run of consecutive segments left out of the picture."""

    first_frame: int
    last_frame: int
    segments: int
    data_segments: int  # those carrying payload; the rest are pure ACKs
    payload_bytes: int
    start_ns: int  # the first left-out segment's time
    end_ns: int  # the last one's
    calls: int = 0  # socket calls left out with it
    resets: int = 0  # RSTs among them (the middle of an RST storm)
    after_index: int = -1  # index in `Elision.kept` of the kept segment just before the band

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def label(self) -> str:
        """``… 180 data segments, 180 ACKs, 1.2 MB, 3.400 s …``."""
        acks = self.segments - self.data_segments - self.resets
        parts = []
        if self.resets:
            parts.append(_count(self.resets, "RST"))
        if self.data_segments:
            parts.append(_count(self.data_segments, "data segment"))
        if acks:
            parts.append(_count(acks, "ACK"))
        if self.payload_bytes:
            parts.append(format_bytes(self.payload_bytes))
        parts.append(format_duration(self.duration_ns))
        if self.calls:
            parts.append(_count(self.calls, "socket call"))
        return "… " + ", ".join(parts) + " …"

    @property
    def frames(self) -> str:
        return f"frames {self.first_frame}–{self.last_frame}"


@dataclass(frozen=True, slots=True)
class Elision:
    """What to draw (`kept`, `calls`, in time order) and what was left out (`bands`)."""

    kept: tuple[Segment, ...]
    calls: tuple[SocketCall, ...]
    bands: tuple[Band, ...]

    @property
    def left_out(self) -> int:
        return sum(band.segments for band in self.bands)


def elide(segments: Sequence[Segment], calls: Iterable[SocketCall] = (), *,
          anchors: Iterable[int] = (), full: bool = False, context: int = CONTEXT,
          min_band: int = MIN_BAND) -> Elision:
    """Decide what a picture of one connection draws; `full` keeps everything.

    `segments` in capture order; `calls` those of the same connection;
    `anchors` extra times (ns) to keep the segments around (linked causes).
    """
    segments = tuple(segments)
    calls = tuple(sorted(calls, key=lambda c: (c.start_ns, c.end_ns)))
    if full or len(segments) < HANDSHAKE + min_band:
        return Elision(segments, calls, ())
    runs = _runs_left_out(_must_keep(segments, calls, anchors, context), min_band)
    if not runs:
        return Elision(segments, calls, ())
    keep = [True] * len(segments)
    for first, last in runs:  # shorter runs stay: a band must save more room than it takes
        keep[first:last + 1] = [False] * (last + 1 - first)
    kept = tuple(s for s, k in zip(segments, keep) if k)
    windows = [(segments[first].time_ns, segments[last].time_ns) for first, last in runs]
    hidden = [c for c in calls if c.outcome == "ok" and any(lo <= c.start_ns and c.end_ns <= hi for lo, hi in windows)]
    hidden_ids = {id(c) for c in hidden}
    bands = []
    for (first, last), (lo, hi) in zip(runs, windows):
        run = segments[first:last + 1]
        bands.append(Band(
            first_frame=run[0].frame, last_frame=run[-1].frame, segments=len(run),
            data_segments=sum(1 for s in run if s.payload_len and not s.is_rst),
            resets=sum(1 for s in run if s.is_rst), payload_bytes=sum(s.payload_len for s in run),
            start_ns=lo, end_ns=hi,
            calls=sum(1 for c in hidden if lo <= c.start_ns and c.end_ns <= hi),
            after_index=sum(keep[:first]) - 1))
    return Elision(kept, tuple(c for c in calls if id(c) not in hidden_ids), tuple(bands))


def _must_keep(segments, calls, anchors, context) -> list[bool]:
    count = len(segments)
    bits = [int(s.flags) for s in segments]
    keep = [False] * count
    head = HANDSHAKE
    while head < count and bits[head] & _SYN:  # retransmitted SYNs belong to the opening
        head += 1
    keep[:head] = [True] * min(head, count)
    marks = _storms_trimmed([i for i, b in enumerate(bits) if b & (_SYN | _ENDS)], bits)
    ends = [i for i in marks if bits[i] & _ENDS]
    if ends:
        # The end of the story: the last segments before the first FIN/RST, and everything after,
        # unless a long transfer follows (a half-close): that is elided like any other.
        first_end = ends[0]
        keep[max(first_end - 2 * context, 0):first_end + 1] = [True] * (first_end + 1 - max(first_end - 2 * context, 0))
    keep[max(count - 2 * context, 0):] = [True] * min(2 * context, count)
    times = [s.time_ns for s in segments]
    marks += [_index_at(times, c.end_ns) for c in calls if c.outcome != "ok"]  # failures and EOFs
    marks += [_index_at(times, t) for t in anchors]
    for i in marks:
        lo, hi = max(i - context, 0), min(i + context + 1, count)
        keep[lo:hi] = [True] * (hi - lo)
    return keep


def _storms_trimmed(marks: list[int], bits: list[int]) -> list[int]:
    """`marks` with each run of consecutive RSTs (no SYN or FIN among them) cut to its
    first and last: with the context kept around each, a storm of 1,000 RSTs is drawn
    as its start, a band that counts the rest, and its end."""
    trimmed, run = [], []
    for i in marks + [-2]:
        if run and i == run[-1] + 1 and bits[i] & _RST_ONLY == int(TcpFlags.RST):
            run.append(i)
            continue
        trimmed.extend(run if len(run) <= 2 else (run[0], run[-1]))
        run = [i] if i >= 0 and bits[i] & _RST_ONLY == int(TcpFlags.RST) else []
        if not run and i >= 0:
            trimmed.append(i)
    return trimmed


def _index_at(times: Sequence[int], time_ns: int) -> int:
    """The index of the last segment at or before `time_ns` (0 when none)."""
    return max(bisect.bisect_right(times, time_ns) - 1, 0)


def _runs_left_out(keep: list[bool], min_band: int) -> list[tuple[int, int]]:
    """(first, last) index of each run of at least `min_band` segments not kept."""
    runs, start = [], None
    for i, flag in enumerate(keep + [True]):
        if not flag and start is None:
            start = i
        elif flag and start is not None:
            if i - start >= min_band:
                runs.append((start, i - 1))
            start = None
    return runs


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
