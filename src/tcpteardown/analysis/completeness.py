"""Is anything missing from this recording? Loss is never silent.

A teardown visualizer that loses the RST it is about to explain is worse
than none, so every command that shows a recording asks this first and puts
the answer before anything else (`banner`), and a link made on incomplete
evidence carries the reason as a caveat (`caveat_for`).

Evidence, from the recording alone (capture.backends writes it into
Metadata.extra; the kernel witness adds its events):

1. the capture's own drop counter (``kernel_drops``: PACKET_STATISTICS for
   scapy, tcpdump's "dropped by kernel"): > 0 means packets were lost, and
   exactly that many; "unknown" means we cannot say;
2. problems the file reader stepped over (``problem``: a truncated file...);
3. RSTs the kernel witness saw the kernel send (``tcp:tcp_send_reset``) on the
   captured ports but that are not in the capture;
4. the witness's own lost events (``witness_lost_events``);
5. the kernel's TCP counters (``kernel_out_rsts``, ``kernel_active_opens``,
   ``kernel_out_segs``: /proc/net/snmp growth during the capture). They count
   every port of the host, so they can only prove a loss when the capture
   took every port (``capture_ports`` = ``all``); for a port-filtered capture
   they are an upper bound and prove nothing.

`complete` is True only when a drop counter was read and is zero and no
other evidence says anything is missing; False when something may be
missing; None when the recording carries no loss counters at all (a capture
made by another tool): we cannot tell, and we never claim.

Never: import socket or scapy, read files, or call a recording complete
without a drop counter that says 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..model import Metadata, Recording, Segment, TcpFlags
from ..units import clock_text
from .witness import SEND_RESET, match_resets, tolerance_with_delay

__all__ = ["Completeness", "completeness", "caveat_for", "banner", "metadata_banner"]


@dataclass(frozen=True, slots=True)
class Completeness:
    complete: Optional[bool]  # None: no loss counters to judge by
    warnings: tuple[str, ...] = ()  # one sentence each, most certain first
    dropped: Optional[int] = None  # packets the capture says it lost, when it says


def completeness(recording: Recording) -> Completeness:
    """What may be missing from `recording`, and how sure we are."""
    meta = recording.metadata
    warnings: list[str] = []
    drops_text = meta.get("kernel_drops")
    dropped = _int(drops_text)
    if dropped:
        warnings.append(f"the capture dropped {dropped} packet{'s' * (dropped != 1)} "
                        f"({_backend(recording)}: its kernel buffer was full); segments, "
                        "FINs or RSTs may be missing")
    elif drops_text is not None and dropped is None:
        warnings.append(f"the capture's drop count is unknown ({_backend(recording)} did not report it); "
                        "segments may be missing")
    warnings.extend(f"the capture file is damaged: {problem}" for problem in _all(meta.extra, "problem"))
    warnings.extend(_witness_resets_missing(recording))
    lost = _int(meta.get("witness_lost_events"))
    if lost:
        warnings.append(f"the kernel witness lost {lost} events (its ring buffer was full); RST reasons "
                        "and socket states may be missing")
    warnings.extend(_counter_deficits(recording))
    if warnings:
        return Completeness(False, tuple(warnings), dropped)
    if dropped == 0:
        return Completeness(True, (), 0)
    return Completeness(None, (), None)


def caveat_for(recording: Recording) -> Optional[str]:
    """One caveat for a Link made on this recording's evidence, or None when
    nothing is known to be missing."""
    verdict = completeness(recording)
    if verdict.complete is not False:
        return None
    return f"the evidence may be incomplete, so the real cause may be missing: {verdict.warnings[0]}"


def banner(recording: Recording) -> str:
    """The lines a command prints before anything else ("" when nothing may
    be missing), ending in a newline; meant for stderr, so JSON on stdout
    stays one object."""
    verdict = completeness(recording)
    if verdict.complete is not False:
        return ""
    return "".join(f"WARNING: {warning}\n" for warning in verdict.warnings)


def metadata_banner(metadata: Optional[Metadata]) -> str:
    """`banner` when only a recording's metadata is at hand (a command that
    streams the packets itself, like census): the counters are checked, the
    witness's RSTs (which need the segments) are not. "" for None."""
    return "" if metadata is None else banner(Recording(metadata=metadata))


# -- evidence ---------------------------------------------------------------------

def _witness_resets_missing(recording: Recording) -> list[str]:
    """RSTs the kernel says it sent on the captured ports, absent from the capture
    (paired by `witness.match_resets`, which buckets by endpoints: linear time)."""
    ports = _ports(recording.metadata.get("capture_ports"))
    events = [e for e in recording.kernel_events
              if e.name == SEND_RESET and e.src is not None and e.dst is not None
              and (ports is None or e.src.port in ports or e.dst.port in ports)]
    if not events:
        return []
    resets = tuple(segment for segment in recording.segments if segment.is_rst)
    try:  # run --delay held every segment that long between the kernel and the capture
        delay_ns = int(float(recording.metadata.get("delay_ms") or 0) * 1_000_000)
    except ValueError:
        delay_ns = 0
    matched = {id(event) for _, event in match_resets(resets, events, tolerance_ns=tolerance_with_delay(delay_ns))}
    missing = [e for e in events if id(e) not in matched]
    if not missing:
        return []
    first = min(missing, key=lambda e: e.time_ns)
    return [f"the kernel witness saw {len(missing)} RST{'s' * (len(missing) != 1)} sent that the capture "
            f"does not hold (first: {first.src} -> {first.dst} at {clock_text(first.time_ns)})"]


def _counter_deficits(recording: Recording) -> list[str]:
    """Kernel counters above the captured counts, for captures of every port.

    Segments that other interfaces sent meanwhile (``kernel_tx_packets_elsewhere``)
    may explain a deficit; only what they cannot explain is reported as lost.
    When that count is unknown, any deficit is reported as a possible loss."""
    meta = recording.metadata
    if meta.get("capture_ports") != "all":
        return []
    captured = _captured_counts(recording)
    elsewhere = _int(meta.get("kernel_tx_packets_elsewhere"))
    checks = (("kernel_out_rsts", "rst", "RSTs"), ("kernel_active_opens", "syn", "connection attempts (SYNs)"),
              ("kernel_out_segs", "segs", "segments"))
    out = []
    for key, kind, words in checks:
        sent = _int(meta.get(key))
        if sent is None:
            continue
        if elsewhere is None and sent > captured[kind]:
            out.append(f"the kernel sent {sent} {words} during the capture and {captured[kind]} were "
                       f"captured: up to {sent - captured[kind]} may be missing (the kernel's counters are "
                       "host-wide, so traffic on other interfaces may count too)")
        elif elsewhere is not None and sent - elsewhere > captured[kind]:
            out.append(f"the kernel sent {sent} {words} during the capture, other interfaces sent at most "
                       f"{elsewhere} packets, and {captured[kind]} were captured: at least "
                       f"{sent - elsewhere - captured[kind]} are missing")
    return out


def _captured_counts(recording: Recording) -> dict[str, int]:
    """What the capture itself held (before any later filtering of the recording)."""
    meta = recording.metadata
    from_meta = {"rst": _int(meta.get("captured_rsts")), "syn": _int(meta.get("captured_syns")),
                 "segs": _int(meta.get("captured_segs"))}
    counted = _count(recording.segments)
    return {kind: value if value is not None else counted[kind] for kind, value in from_meta.items()}


def _count(segments: tuple[Segment, ...]) -> dict[str, int]:
    return {"rst": sum(s.is_rst for s in segments),
            "syn": sum(1 for s in segments if s.is_syn and not s.flags & TcpFlags.ACK),
            "segs": len(segments)}


def _backend(recording: Recording) -> str:
    return recording.metadata.get("capture_backend") or recording.metadata.capture or "the capture"


def _ports(text: Optional[str]) -> Optional[set[int]]:
    if not text or text == "all":
        return None
    return {int(p) for p in text.split(",") if p.strip().isdigit()}


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _all(extra, key: str) -> list[str]:
    return [value for name, value in extra if name == key]
