"""Relative sequence and acknowledgment numbers, as Wireshark shows them.

Each direction of each connection counts from its own initial sequence
number (the SYN's, or the first seen when the capture started mid-stream),
so a ladder reads seq=1 instead of seq=3068514412.
"""

from __future__ import annotations

from typing import Iterable

from ..model import Endpoint, Segment, TcpFlags

MOD = 1 << 32


def relative_numbers(segments: Iterable[Segment]) -> dict[int, tuple[int, int]]:
    """frame -> (relative seq, relative ack); ack is 0 when the ACK flag is off."""
    isn: dict[tuple[Endpoint, Endpoint], int] = {}
    out: dict[int, tuple[int, int]] = {}
    for seg in segments:
        key = (seg.src, seg.dst)
        if seg.is_syn or key not in isn:
            isn[key] = seg.seq
        base = isn[key]
        other = isn.get((seg.dst, seg.src))
        rel_ack = 0
        if seg.flags & TcpFlags.ACK:
            rel_ack = (seg.ack - other) % MOD if other is not None else seg.ack
        out[seg.frame] = ((seg.seq - base) % MOD, rel_ack)
    return out
