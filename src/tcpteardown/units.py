"""How durations and times read in sentences: one format for every explanation.

`0.201 s`, `4.512 ms`, `58 us`: three decimals where a reader compares them
with a capture's timestamps. (Axis labels use `views.timeaxis.format_elapsed`,
three significant digits, because they must stay short.)

Clock times read in one zone everywhere: `clock_text` prints in the zone
`times_in(tz)` set for the work in progress (what `--tz` names; UTC by
default), so that a time analysis writes into a caveat reads like the
paragraph's own times beside it.
"""

import contextlib
import contextvars

# The zone of the clock times being written (None: UTC); set with `times_in`.
_SHOWN_TZ: contextvars.ContextVar = contextvars.ContextVar("tcpteardown_shown_tz", default=None)


@contextlib.contextmanager
def times_in(tz):
    """Clock times written inside this block (`clock_text` without a `tz`) are in `tz`."""
    token = _SHOWN_TZ.set(tz)
    try:
        yield
    finally:
        _SHOWN_TZ.reset(token)


def format_duration(ns: int) -> str:
    """A non-negative duration in nanoseconds, in s, ms or us; from a minute on, with its
    hours and minutes too ("9 h 0 min 0.000 s": a log an hour zone off reads as such)."""
    if ns >= 60_000_000_000:
        minutes, ms = divmod(round(ns / 1e6), 60_000)  # rounded first: never "59 min 60.000 s"
        hours, minutes = divmod(minutes, 60)
        return (f"{hours} h " if hours else "") + f"{minutes} min {ms / 1000:.3f} s"
    scale, unit, digits = next((row for row in _DURATION_UNITS if ns >= row[0]), (1e3, "us", 0))
    return f"{ns / scale:.{digits}f} {unit}"


_DURATION_UNITS = ((1e9, "s", 3), (1e6, "ms", 3))  # (nanoseconds per unit, unit, decimals), largest first


def format_bytes(count: int) -> str:
    """A byte count as people read it: 512 B, 99.7 kB, 1.2 MB, 3.4 GB (SI units, like tshark)."""
    if count < 1000:
        return f"{count} B"
    value, unit = in_unit(count, (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)))
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def in_unit(amount: float, units: tuple[tuple[str, float], ...]) -> tuple[float, str]:
    """`amount` in the first of `units` (smallest first) where it stays under
    999.5, so that it never prints as "1000 kB"; else in the largest."""
    for unit, scale in units:
        value = amount / scale
        if value < 999.5:
            break
    return value, unit


def clock_text(time_ns: int, tz=None, *, zone: bool = True) -> str:
    """``04:01:34.434597 UTC``: the clock time every view prints (views.narrative's
    paragraphs), here with its zone, for the times analysis names in caveats and
    explanations (never a raw epoch). `tz`: the zone `times_in` set, else UTC."""
    moment = calendar_time(time_ns, tz if tz is not None else _SHOWN_TZ.get())
    if moment is None:
        return f"{time_ns / 1e9:.6f} s after the epoch (outside the calendar: a damaged capture?)"
    text = f"{moment:%H:%M:%S}.{(time_ns % 1_000_000_000) // 1000:06d}"
    if not zone:
        return text
    name = moment.tzname() or moment.strftime("%z")
    return f"{text} {name}"


def calendar_time(time_ns: int, tz=None):
    """`time_ns` (since the epoch) as an aware datetime in `tz` (UTC when None),
    or None when it lies outside the calendar datetime can hold (a damaged
    capture: a wrong pcapng if_tsresol puts packets in the year 56,892,546)."""
    import datetime as _dt

    try:
        return _dt.datetime.fromtimestamp(time_ns // 1_000_000_000, tz or _dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
