"""The ladder's vertical time axis: real nanoseconds -> rows on the page.

Loopback exchanges take microseconds while scenarios pause for milliseconds
or seconds; a linear axis shows either the pause or the exchange, never
both. The *compressed* axis gives every event its own row (in time order,
as tall as its label needs) and replaces each idle gap longer than a
threshold by a marked break labelled with the real elapsed time
("⋯ 201 ms ⋯"). The *real* axis is linear. Time flows downward: y grows
with time, the view inverts the axis.

Pure: no matplotlib, no I/O. Must never reorder events: y is monotonic in
time on both axes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from ..units import in_unit

__all__ = ["Break", "TimeAxis", "build_time_axis", "adaptive_break_ns", "format_elapsed", "signed_elapsed", "MODES",
           "DEFAULT_BREAK_NS", "BREAK_ROWS", "IDLE_BREAK_ROWS"]

MODES = ("compressed", "real")

# An idle gap at least this long becomes a break on the compressed axis.
DEFAULT_BREAK_NS = 1_000_000  # 1 ms: loopback exchanges are tens of microseconds
BREAK_FACTOR = 20  # a gap this many times the median gap is idle time
BREAK_ROWS = 1.9  # height of a break, in rows (room for a two-line band label)
IDLE_BREAK_ROWS = 1.2  # an idle gap's break: its one-line label ("⋯ 201 ms ⋯") and the cut marks
MIN_ROWS = 0.25  # the least an event may move the axis (call starts, receive times)


@dataclass(frozen=True, slots=True)
class Break:
    """An idle gap drawn as a marked break between `top` and `bottom` (rows)."""

    top: float
    bottom: float
    start_ns: int
    end_ns: int
    note: str = ""  # what else the break hides, after its length ("933 segments not drawn")
    text: str = ""  # the whole label, when the break stands for left-out events ("… 180 data segments, …")

    @property
    def elapsed_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def label(self) -> str:
        if self.text:
            return self.text
        note = f", {self.note}" if self.note else ""
        return f"⋯ {format_elapsed(self.elapsed_ns)}{note} ⋯"


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """A monotonic map from time (ns) to rows, with its breaks.

    `knots` are (time_ns, row) pairs, strictly increasing in both; times in
    between are interpolated linearly, times outside are clamped to the ends.
    """

    mode: str
    knots: tuple[tuple[int, float], ...]
    breaks: tuple[Break, ...] = ()
    origin_ns: int = 0
    times: tuple[int, ...] = ()  # the knots' times, for bisection (derived from knots)

    def __post_init__(self):
        if len(self.times) != len(self.knots):
            object.__setattr__(self, "times", tuple(t for t, _ in self.knots))

    @property
    def height(self) -> float:
        return self.knots[-1][1] if self.knots else 0.0

    def y(self, time_ns: int) -> float:
        """The row of `time_ns`."""
        if not self.knots:
            return 0.0
        times = self.times
        i = bisect.bisect_left(times, time_ns)
        if i < len(times) and times[i] == time_ns:
            return self.knots[i][1]
        if i == 0:
            return self.knots[0][1]
        if i == len(times):
            return self.knots[-1][1]
        (t0, y0), (t1, y1) = self.knots[i - 1], self.knots[i]
        return y0 + (y1 - y0) * (time_ns - t0) / (t1 - t0)

    def ticks(self, at: Optional[Iterable[int]] = None, spacing: float = 0.9) -> list[tuple[float, str]]:
        """(row, label) pairs for the time axis: elapsed time since the origin.

        Compressed: one tick per knot (or per time in `at`), skipping any
        closer than `spacing` rows to the last one labelled, so labels never
        collide. Real: about eight evenly spaced ticks.
        """
        if not self.knots:
            return []
        if self.mode == "real":
            start, end = self.knots[0][0], self.knots[-1][0]
            span = max(end - start, 1)
            step = _nice_step(span / 8)
            ticks, t = [], 0
            while start + t <= end and len(ticks) < 50:
                ticks.append((self.y(start + t), signed_elapsed(start + t - self.origin_ns)))
                t += step
            return ticks
        ticks, last_row = [], None
        points = self.knots if at is None else [(t, self.y(t)) for t in sorted(set(at))]
        for time_ns, row in points:
            if last_row is not None and row - last_row < spacing:
                continue
            ticks.append((row, signed_elapsed(time_ns - self.origin_ns)))
            last_row = row
        return ticks


def build_time_axis(
    events: Iterable[tuple[int, float]],
    mode: str = "compressed",
    *,
    break_ns: Optional[int] = None,
    real_height: Optional[float] = None,
    cuts: "Iterable[tuple[int, str]] | Mapping[int, str]" = (),
    origin_ns: Optional[int] = None,
) -> TimeAxis:
    """The axis for `events`: (time_ns, rows the event's label needs above it),
    or (time_ns, rows, lane) where labels sit in columns side by side.

    Compressed: each distinct time moves the axis down by at least MIN_ROWS,
    and far enough below the last time that had an event in the same lane
    for each of its labels to fit (events without a lane share one lane, so
    each time then moves the axis by its largest weight): labels in
    different columns of the picture share rows instead of stacking. A gap of `break_ns` or more
    (default: `adaptive_break_ns`) becomes a Break, and so does the gap
    holding each time of `cuts` ((time, text) pairs for events left out
    there, the text labelling the break); a mapping {time: note} instead
    breaks the gap after each time, the note following the break's length. Real: linear from the first to the last
    event over `real_height` rows (default: the height the compressed axis
    would have), so both fit the same page. Ticks count from `origin_ns`
    (default: the first event; views pass the first SYN, so every view of a
    recording shares one zero).
    """
    if mode not in MODES:
        raise ValueError(f"time axis mode must be one of {', '.join(MODES)}, not {mode!r}")
    weights: dict[int, float] = {}
    lanes: dict[int, dict] = {}  # time -> {lane: rows its labels need above it}
    for time_ns, weight, *lane in events:
        weights[time_ns] = max(weights.get(time_ns, 0.0), float(weight))
        needs = lanes.setdefault(time_ns, {})
        key = lane[0] if lane else None
        needs[key] = max(needs.get(key, 0.0), float(weight))
    if not weights:
        return TimeAxis(mode, ())
    times = sorted(weights)
    origin = times[0] if origin_ns is None else origin_ns
    threshold = adaptive_break_ns(times) if break_ns is None else break_ns
    after = dict(cuts) if isinstance(cuts, Mapping) else {}
    pending = [] if isinstance(cuts, Mapping) else sorted(cuts)

    knots: list[tuple[int, float]] = [(times[0], 0.0)]
    breaks: list[Break] = []
    last_row = dict.fromkeys(lanes[times[0]], 0.0)  # lane -> the row of its last event
    for previous, current in zip(times, times[1:]):
        row = knots[-1][1]
        texts = []
        while pending and pending[0][0] <= current:
            texts.append(pending.pop(0)[1])
        floor, least = row, row + MIN_ROWS
        if current - previous >= threshold or texts or previous in after:
            top = row + 0.5
            note = after.get(previous, "")
            bottom = top + (BREAK_ROWS if texts or note else IDLE_BREAK_ROWS)
            breaks.append(Break(top, bottom, previous, current, note, " ".join(texts)))
            floor, least = bottom - 0.2, bottom + MIN_ROWS  # labels hang below the break, not into it
            last_row = dict.fromkeys(last_row, floor)
        needs = lanes[current]
        new_row = max(least, *(last_row.get(lane, floor) + weight for lane, weight in needs.items()))
        knots.append((current, new_row))
        for lane in needs:
            last_row[lane] = new_row
    compressed = TimeAxis("compressed", tuple(knots), tuple(breaks), origin)
    if mode == "compressed":
        return compressed

    height = real_height if real_height is not None else max(compressed.height, 1.0)
    if times[-1] == times[0]:
        return TimeAxis("real", ((times[0], 0.0),), (), origin)
    return TimeAxis("real", ((times[0], 0.0), (times[-1], float(height))), (), origin)


def adaptive_break_ns(times: list[int]) -> int:
    """The idle-gap threshold for sorted `times`: DEFAULT_BREAK_NS, or
    BREAK_FACTOR times the median gap when that is longer. Loopback packets
    come microseconds apart, a WAN capture's milliseconds apart: a gap is
    idle when it is long *for this recording*."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    if not gaps:
        return DEFAULT_BREAK_NS
    return max(DEFAULT_BREAK_NS, BREAK_FACTOR * gaps[len(gaps) // 2])


def signed_elapsed(ns: int) -> str:
    """A tick label: ``0``, ``+16.3 µs``, ``-32.9 µs`` (before the origin)."""
    if not ns:
        return "0"
    return ("+" if ns > 0 else "") + format_elapsed(ns)


def format_elapsed(ns: int) -> str:
    """Human elapsed time with three significant digits: 16.3 µs, 201 ms, 3.00 s."""
    ns = int(ns)
    if ns < 0:
        return "-" + format_elapsed(-ns)
    if ns < 1_000:
        return f"{ns} ns"
    value, unit = in_unit(ns, (("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)))
    if unit == "s" and value >= 2 * 86400:
        days = value / 86400
        return f"{days / 365.25:.1f} years" if days >= 730 else f"{days:.1f} days"
    if unit == "s" and value >= 3600:
        hours, minutes = divmod(int(round(value / 60)), 60)
        return f"{hours} h {minutes:02d} min"
    if unit == "s" and value >= 600:
        minutes, seconds = divmod(int(round(value)), 60)
        return f"{minutes} min {seconds:02d} s"
    return _three_digits(value) + " " + unit


def _three_digits(value: float) -> str:
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{decimals}f}"


def _nice_step(raw_ns: float) -> int:
    """1, 2 or 5 times a power of ten, at least `raw_ns` (and at least 1 ns)."""
    raw_ns = max(raw_ns, 1.0)
    magnitude = 1
    while magnitude * 10 <= raw_ns:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if magnitude * factor >= raw_ns:
            return magnitude * factor
    return magnitude * 10
