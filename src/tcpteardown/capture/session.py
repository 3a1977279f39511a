"""One recording session's evidence assembled into a Recording: the one home.

Both ways of recording end here: a scenario run (`scenarios.runner`) and
`tcpteardown record` (a program under strace). Given what the capture got
(a `backends.Captured`: frames and the segments the pure decoder
`formats.pcap_links.decode_segment` read from them), the socket calls, and
what the kernel witness saw, it keeps the frames of the story (renumbered
1..n, as the bundle counts them), attaches the kernel's RST reasons, states
every disagreement between witness and capture, and writes the metadata
every recording carries (host, versions, loss counters, witness).

Pure apart from reading the host's name and versions; no scapy: the live
path's frames are decoded by the same pure decoder as files.
"""

from __future__ import annotations

import platform
import socket
from dataclasses import replace
from typing import Callable, Iterable, Optional, Sequence

from .. import __version__
from ..model import Frame, KernelEvent, Metadata, Recording, Segment, SocketCall

__all__ = ["assemble", "keep_segments", "scapy_version"]


def keep_segments(frames: Sequence[Frame], segments: Iterable[Segment], keep: Callable[[Segment], bool]
                  ) -> tuple[tuple[Frame, ...], tuple[Segment, ...]]:
    """Only the frames of segments `keep` accepts, renumbered 1..n (bundle
    frame numbers are positions in its frames). segment.frame n is frames[n - 1]."""
    kept_frames, kept_segments = [], []
    for segment in segments:
        if keep(segment):
            kept_frames.append(frames[segment.frame - 1])
            number = len(kept_frames)
            kept_segments.append(segment if segment.frame == number else replace(segment, frame=number))
    return tuple(kept_frames), tuple(kept_segments)


def assemble(*, captured, calls: Sequence[SocketCall], events: Sequence[KernelEvent] = (), witness=None,
             window: tuple[int, int], started_ns: int, keep: Optional[Callable[[Segment], bool]] = None,
             scenario: Optional[str] = None, capture_text: Optional[str] = None,
             extra: Iterable[tuple[str, str]] = ()) -> tuple[Recording, tuple[str, ...]]:
    """The Recording, and the notes a person should read about it.

    `captured`: a `backends.Captured` or None (nothing captured); `keep`:
    which segments belong to the story (default all); `witness`: the
    `kernel.KernelWitness` that watched, or None when none was asked for;
    `window`: when both capture and witness were watching (for the
    agreement check); `extra`: the caller's own metadata pairs, first.
    """
    from ..analysis.witness import attach_reset_reasons, check_agreement, tolerance_with_delay
    from .netns.shaping import added_delay_ns

    notes: list[str] = []
    frames, segments = (captured.frames, captured.segments) if captured is not None else ((), ())
    if keep is not None:
        frames, segments = keep_segments(frames, segments, keep)
    extra = list(extra)
    if captured is not None:
        notes.extend(f"capture: {problem}" for problem in captured.problems)
        extra.extend(pair for pair in captured.loss_extra() if pair[0] != "problem")
    if witness is not None and witness.available:
        # with --delay the capture sees each segment that much after the kernel sent it
        tolerance = tolerance_with_delay(added_delay_ns())
        segments = attach_reset_reasons(segments, events, tolerance_ns=tolerance)
        extra.append(("witness", "tracefs"))
        extra.append(("witness_precision_ns", str(witness.precision_ns)))
        if witness.lost_events:
            notes.append(f"the kernel witness lost {witness.lost_events} events (ring buffer full)")
            extra.append(("witness_lost_events", str(witness.lost_events)))
        # Never hidden: an RST the kernel sent that the capture missed, or the reverse.
        for sentence in check_agreement(segments, events, window=window, tolerance_ns=tolerance):
            notes.append(f"witness and capture disagree: {sentence}")
            extra.append(("witness_disagreement", sentence))
    elif witness is not None:
        notes.append(f"no kernel witness ({witness.reason}); RST reasons will be inferred from the packets")
        extra.append(("witness_unavailable", witness.reason or "unknown"))
    metadata = Metadata(
        scenario=scenario, os=platform.system(), kernel=platform.release(), python=platform.python_version(),
        scapy=scapy_version(), tcpteardown=__version__, hostname=socket.gethostname(),
        capture=capture_text or (captured.description if captured is not None else "no capture"),
        started_ns=started_ns, extra=tuple(extra),
    )
    recording = Recording(segments=tuple(segments), calls=tuple(calls), kernel_events=tuple(events),
                          metadata=metadata, frames=tuple(frames))
    return recording, tuple(notes)


def scapy_version() -> Optional[str]:
    """The installed scapy's version, read from its package metadata (importing scapy costs most of a second)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scapy")
    except PackageNotFoundError:
        return None
