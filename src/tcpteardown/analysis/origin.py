"""Time zero of a recording's pictures and tables: its first SYN.

Every view of one recording (ladder, step-through, diff, run output) counts
time from the same instant, so "+6.69 ms" names the same moment everywhere:
the connection's first SYN (without ACK), else its first segment (a capture
that began mid-stream), else the first socket call (nothing on the wire).
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..model import Segment, SocketCall, TcpFlags

__all__ = ["time_origin"]


def time_origin(segments: Iterable[Segment], calls: Iterable[SocketCall] = ()) -> Optional[int]:
    """The time (ns) every view counts from; None when there is nothing at all."""
    first = None
    for segment in segments:
        if segment.is_syn and not segment.flags & TcpFlags.ACK:
            return segment.time_ns
        if first is None:
            first = segment.time_ns
    if first is not None:
        return first
    return min((call.start_ns for call in calls), default=None)
