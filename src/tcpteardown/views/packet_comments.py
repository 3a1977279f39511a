"""Packet comments for a bundle, so stock Wireshark and tshark tell the story.

Each RST's comment names its reason (the kernel's, or inferred); each socket
call is a comment on the packet next to it, naming the frame that caused
its outcome. They say what `tcpteardown explain` says, from the same
analysis; the bundle's JSON block stays the exact record.

    write_annotated_bundle(path, recording)   # what run, record and refresh use
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Optional

from ..analysis.correlate import correlate
from ..analysis.reasons import reason_phrase, reset_reason
from ..formats.bundle import write_bundle
from ..model import Recording


def write_annotated_bundle(path: "str | os.PathLike", recording: Recording) -> Path:
    """`formats.bundle.write_bundle` with `packet_comments` on the packets."""
    return write_bundle(path, recording, packet_comments(recording))


def packet_comments(recording: Recording) -> dict[int, tuple[str, ...]]:
    """Packet comments, so stock Wireshark and tshark tell the story without us.

    Each RST's own comment names its reason, the kernel's or inferred
    (`_rst_comment`); each socket call is a comment on the first packet at or
    after its start (the last packet when it came after all of them), and a
    call linked to a segment names that frame (`send() -> EPIPE ← frame 8`).
    The JSON custom block stays the exact record; these are for people.
    """
    if not recording.frames:
        return {}
    out: dict[int, list[str]] = {}
    for segment in recording.segments:
        if segment.is_rst and 1 <= segment.frame <= len(recording.frames):
            out.setdefault(segment.frame, []).append(_rst_comment(*reset_reason(segment, recording)))
    link_of = {id(link.call): link for link in correlate(recording)}
    times = [frame.time_ns for frame in recording.frames]
    ordered = all(a <= b for a, b in zip(times, times[1:]))
    for call in recording.calls:
        if ordered:  # one capture's clock: a binary search (3,000 connections are 12,000 calls)
            number = min(bisect.bisect_left(times, call.start_ns) + 1, len(times))
        else:
            number = next((i for i, t in enumerate(times, start=1) if t >= call.start_ns), len(times))
        where = f"{call.local}->{call.remote}" if call.local or call.remote else "no endpoint"
        when = "before" if times[number - 1] >= call.start_ns else "after"
        out.setdefault(number, []).append(
            f"tcpteardown: {call.process} {call.op}() -> {call.outcome}{_cause_note(link_of.get(id(call)))} "
            f"[fd {call.fd}, {where}] "
            f"(call started {abs(times[number - 1] - call.start_ns) / 1e6:.3f} ms {when} this packet)")
    return {number: tuple(lines) for number, lines in sorted(out.items())}


def _rst_comment(reason: Optional[str], inferred: bool) -> str:
    """``tcpteardown: RST reason TCP_ABORT_ON_DATA (kernel: tcp:tcp_send_reset)``, or ``(inferred: ...)``.

    Wireshark filter: ``frame.comment contains "RST reason"``.
    """
    if reason is None:
        return "tcpteardown: RST reason unknown (inferred: the packets do not say, and no kernel witness saw it)"
    phrase = reason_phrase(reason)
    source = "inferred: from the packets, no kernel witness" if inferred else "kernel: tcp:tcp_send_reset"
    return f"tcpteardown: RST reason {reason} ({source})" + (f": {phrase}" if phrase else "")


def _cause_note(link) -> str:
    """`` ← frame 8 (RST, rule send-epipe-after-rst)``: what made the call end so, or ""."""
    if link is None:
        return ""
    if link.cause is not None:
        return f" ← frame {link.cause.frame} ({link.cause.flags.render()}, rule {link.rule})"
    if link.local_call is not None:
        return f" ← own {link.local_call.op}() (rule {link.rule})"
    return f" ← no segment (rule {link.rule})"
