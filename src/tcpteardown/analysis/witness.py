"""Join the kernel's word to the packets: RST reasons and the agreement check.

Pure functions over `Segment`s and `KernelEvent`s (from `capture.kernel`,
or a bundle). Never imports socket or scapy, never reads a file.

Matching an RST segment to the `tcp:tcp_send_reset` that produced it:

- by endpoints: the event's src (saddr:sport) is the RST's source and its
  dest the RST's destination (IPv4-mapped IPv6 addresses count as IPv4);
- by sequence number, when the event carries one (``seq`` field; the
  tracepoint of 6.x kernels does not, so usually this step has nothing);
- by time: the segment is stamped within `tolerance_ns` of the event; among
  candidates, the closest pairs are joined first, each event and each
  segment used once. Either may come first: a reset answering a segment
  (NO_SOCKET, TCP_TIMEWAIT_SOCKET) fires its tracepoint before the packet
  leaves (capture ~5 us later on loopback), an active reset (close with
  unread data, SO_LINGER 0) fires it after transmitting, which on loopback
  includes delivering it to the peer (capture 5-50 us earlier).

Never by order alone: on loopback the receiver's tcp_receive_reset and
inet_sk_error_report are often stamped *before* the sender's
tcp_send_reset, because the RST is delivered inside the sender's call.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import replace
from typing import Iterable, Optional

from ..model import Endpoint, KernelEvent, Segment

__all__ = ["attach_reset_reasons", "check_agreement", "match_resets", "SEND_RESET", "DEFAULT_TOLERANCE_NS",
           "tolerance_with_delay"]

SEND_RESET = "tcp:tcp_send_reset"
# How far apart a captured RST and its tracepoint may be stamped. Loopback
# puts them microseconds apart; the clock mapping is good to ~1 us; a busy
# host or a capture through a slow tap can add milliseconds.
DEFAULT_TOLERANCE_NS = 200_000_000


def tolerance_with_delay(delay_ns: int) -> int:
    """The tolerance when every segment was held `delay_ns` (run --delay) between the
    kernel's tracepoint and the capture."""
    return DEFAULT_TOLERANCE_NS + max(int(delay_ns), 0)


def attach_reset_reasons(segments: Iterable[Segment], kernel_events: Iterable[KernelEvent], *,
                         tolerance_ns: int = DEFAULT_TOLERANCE_NS) -> tuple[Segment, ...]:
    """`segments` with `reset_reason` set on every RST matched to a
    tcp_send_reset that carries a reason (kernels >= 6.10). Other segments,
    and RSTs without a match, come back unchanged."""
    segments = tuple(segments)
    pairs = match_resets(segments, kernel_events, tolerance_ns=tolerance_ns)
    reason_by_index = {}
    for index, event in pairs:
        reason = event.get("reason")
        if reason:
            reason_by_index[index] = reason
    return tuple(
        replace(segment, reset_reason=reason_by_index[index]) if index in reason_by_index else segment
        for index, segment in enumerate(segments)
    )


def check_agreement(segments: Iterable[Segment], kernel_events: Iterable[KernelEvent], *,
                    tolerance_ns: int = DEFAULT_TOLERANCE_NS,
                    window: Optional[tuple[int, int]] = None) -> tuple[str, ...]:
    """One sentence per disagreement between capture and witness; () when
    every RST the kernel says it sent was captured and every captured RST is
    in the kernel's record.

    Only meaningful when both watched the same host over the same time:
    `window` (start_ns, end_ns), when given, limits the check to RSTs and
    events inside it (e.g. the witness's own running time).
    """
    segments = tuple(segments)
    events = tuple(e for e in kernel_events if e.name == SEND_RESET)
    if window is not None:
        start, end = window
        segments = tuple(s for s in segments if not s.is_rst or start <= s.time_ns <= end)
        events = tuple(e for e in events if start <= e.time_ns <= end)
    pairs = match_resets(segments, events, tolerance_ns=tolerance_ns)
    matched_segments = {index for index, _ in pairs}
    matched_events = {id(event) for _, event in pairs}
    problems = []
    for event in events:
        if id(event) not in matched_events:
            problems.append(_missing_from_capture(event))
    for index, segment in enumerate(segments):
        if segment.is_rst and index not in matched_segments:
            problems.append(_missing_from_kernel(segment))
    return tuple(problems)


def match_resets(segments: tuple[Segment, ...], kernel_events: Iterable[KernelEvent], *,
                 tolerance_ns: int = DEFAULT_TOLERANCE_NS) -> tuple[tuple[int, KernelEvent], ...]:
    """(index into `segments`, tcp_send_reset event) for every matched RST."""
    resets = [e for e in kernel_events if e.name == SEND_RESET and e.src is not None and e.dst is not None]
    by_key: dict = {}  # endpoints -> [(number, event)]: linear, not RSTs x events
    for number, event in enumerate(resets):
        # A listener that resets (tcp_abort_on_overflow) reports its own
        # unconnected socket: the destination is 0.0.0.0:0 or [::]:0.
        dst = None if _unspecified(event.dst) else _plain(event.dst)
        by_key.setdefault((_plain(event.src), dst), []).append((number, event))
    candidates = []
    for index, segment in enumerate(segments):
        if not segment.is_rst:
            continue
        src = _plain(segment.src)
        for number, event in by_key.get((src, _plain(segment.dst)), []) + by_key.get((src, None), []):
            distance = abs(segment.time_ns - event.time_ns)
            if distance > tolerance_ns or not _sequence_agrees(segment, event):
                continue
            candidates.append((distance, index, number))
    candidates.sort()
    used_segments, used_events, pairs = set(), set(), []
    for _, index, number in candidates:
        if index in used_segments or number in used_events:
            continue
        used_segments.add(index)
        used_events.add(number)
        pairs.append((index, resets[number]))
    pairs.sort(key=lambda pair: pair[0])
    return tuple(pairs)


def _sequence_agrees(segment: Segment, event: KernelEvent) -> bool:
    seq = event.get("seq")
    if seq is None:
        return True
    try:
        return int(seq, 0) == segment.seq
    except ValueError:
        return True


def _unspecified(endpoint: Endpoint) -> bool:
    return endpoint.port == 0 and endpoint.host in ("0.0.0.0", "::")


def _plain(endpoint: Endpoint) -> Endpoint:
    """IPv4-mapped IPv6 (``::ffff:127.0.0.1``) as plain IPv4."""
    host = _plain_host(endpoint.host)
    return endpoint if host == endpoint.host else Endpoint(host, endpoint.port)


@functools.lru_cache(maxsize=4096)
def _plain_host(host: str) -> str:
    """(parsing an address costs more than matching it: a watch bundle holds thousands of RSTs)"""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def _seconds(time_ns: int) -> str:
    from ..units import clock_text  # the clock time views print, with its zone: never a raw epoch

    return clock_text(time_ns)


def _missing_from_capture(event: KernelEvent) -> str:
    reason = event.get("reason")
    why = f" (state {event.get('state')}, reason {reason})" if reason else f" (state {event.get('state')})"
    return (f"the kernel sent an RST from {event.src} to {event.dst} at {_seconds(event.time_ns)}{why}, "
            "but the capture has no such RST: the capture dropped it or did not cover that moment")


def _missing_from_kernel(segment: Segment) -> str:
    return (f"frame {segment.frame}: the captured RST from {segment.src} to {segment.dst} at "
            f"{_seconds(segment.time_ns)} is not in the kernel's record: another host sent it, "
            "or the witness lost or did not cover it")
