"""The bundle: one .pcapng that holds a whole recording (DESIGN.md contract).

Wireshark and tshark open it unmodified: packets are ordinary Enhanced
Packet Blocks, with comments for people that the caller gives
(`views.packet_comments`: each RST's reason, each socket call on the packet
next to it with the frame that caused its outcome). The machine-readable
part (socket calls, kernel events, metadata, kernel reasons for RSTs) travels in one pcapng Custom Block after the last
packet (so frame numbers are the packets' own), as JSON tagged
`tcpteardown-bundle/1`, and round-trips exactly: times are integer
nanoseconds, errnos are names.

`load_recording(path)` reads a bundle or any pcap/pcapng: without the custom
block the recording has packets only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from dataclasses import asdict, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence

from .. import __version__
from ..errors import UserError
from ..model import Endpoint, Frame, KernelEvent, Metadata, Recording, Segment, SocketCall
from . import pcapng_write as pcapng
from .pcap_links import interface_name

TAG = b"tcpteardown-bundle/1\n"

# -- writing -------------------------------------------------------------------

def write_bundle(path: "str | os.PathLike", recording: Recording,
                 comments: Mapping[int, Sequence[str]] = MappingProxyType({})) -> Path:
    """Write `recording` (which must carry its captured frames) as a bundle,
    with `comments` (frame number -> lines) on its packets for people
    reading it in Wireshark (`views.packet_comments` makes them)."""
    path = Path(path)
    if recording.segments and not recording.frames:
        raise UserError("this recording has no captured frames to write; a bundle holds the kernel's own "
                        "packets, never re-encoded ones")
    meta = recording.metadata
    linktypes = sorted({frame.linktype for frame in recording.frames}) or [1]
    interface_of = {linktype: index for index, linktype in enumerate(linktypes)}
    blocks = [
        pcapng.section_header(
            hardware=platform.machine(),
            os_name=f"{meta.os or platform.system()} {meta.kernel or ''}".strip(),
            application=f"tcpteardown {__version__}",
            comment=_summary(recording),
        ),
        *(pcapng.interface(linktype, interface_name(linktype)) for linktype in linktypes),
        *(pcapng.enhanced_packet(interface_of[frame.linktype], frame.time_ns, frame.data, frame.orig_len,
                                 comments.get(number, ()))
          for number, frame in enumerate(recording.frames, start=1)),
        # Last: Wireshark 4.0 lists a custom block as a record of its own, and
        # one placed before the packets would shift every frame number.
        pcapng.custom(TAG + json.dumps(_to_json(recording), sort_keys=True).encode()),
    ]
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            pcapng.write_all(out, blocks)
        os.replace(tmp, path)  # never leave a half-written bundle under the real name
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


SUMMARY_FAILURES = 20  # the section comment is for a human opening the file, not the record


def _summary(recording: Recording) -> str:
    meta = recording.metadata
    failed = [c for c in recording.calls if c.outcome != "ok"]
    lines = [f"tcpteardown recording: scenario {meta.scenario or '-'}",
             f"captured with: {meta.capture or '-'}"]
    lines += [f"{c.role} {c.op}() -> {c.outcome}" for c in failed[:SUMMARY_FAILURES]]
    if len(failed) > SUMMARY_FAILURES:
        lines.append(f"... and {len(failed) - SUMMARY_FAILURES} more failing calls "
                     "(every call is in the tcpteardown block and on its packet)")
    return "\n".join(lines)


# -- JSON codec (exact round trip) ----------------------------------------------

def _endpoint(value: Optional[Endpoint]) -> Optional[str]:
    return None if value is None else str(value)


def _parse_endpoint(text: Optional[str]) -> Optional[Endpoint]:
    return None if text is None else Endpoint.parse(text)


def _to_json(recording: Recording) -> dict[str, Any]:
    return {
        "calls": [{**asdict(call), "local": _endpoint(call.local), "remote": _endpoint(call.remote)}
                  for call in recording.calls],
        "kernel_events": [{"time_ns": e.time_ns, "name": e.name, "src": _endpoint(e.src),
                           "dst": _endpoint(e.dst), "fields": [list(pair) for pair in e.fields]}
                          for e in recording.kernel_events],
        "metadata": {**asdict(recording.metadata),
                     "extra": [list(pair) for pair in recording.metadata.extra]},
        "reset_reasons": {str(s.frame): s.reset_reason for s in recording.segments if s.reset_reason},
    }


def _from_json(data: dict[str, Any]) -> tuple:
    calls = tuple(SocketCall(**{**call, "local": _parse_endpoint(call["local"]),
                                "remote": _parse_endpoint(call["remote"])}) for call in data.get("calls", ()))
    events = tuple(KernelEvent(time_ns=e["time_ns"], name=e["name"], src=_parse_endpoint(e["src"]),
                               dst=_parse_endpoint(e["dst"]), fields=tuple(tuple(p) for p in e["fields"]))
                   for e in data.get("kernel_events", ()))
    meta = data.get("metadata", {})
    known = {f.name for f in fields(Metadata)}
    metadata = Metadata(**{k: v for k, v in meta.items() if k in known and k != "extra"},
                        extra=tuple(tuple(pair) for pair in meta.get("extra", ())))
    reasons = {int(frame): reason for frame, reason in data.get("reset_reasons", {}).items()}
    return calls, events, metadata, reasons


# -- reading ---------------------------------------------------------------------

def load_recording(path: "str | os.PathLike", *, strict: bool = False) -> Recording:
    """A Recording from a bundle, or from any pcap/pcapng (packets only).

    Raises CaptureFileError (a UserError) for unreadable files; problems the
    reader could step over are kept in metadata.extra as ("problem", text).
    """
    from .pcapread import read_capture

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    contents = read_capture(str(path), strict=strict)
    calls, events, metadata, reasons = (), (), Metadata(), {}
    for _pen, payload in contents.custom_blocks:
        if payload.startswith(TAG):
            try:
                calls, events, metadata, reasons = _from_json(json.loads(payload[len(TAG):]))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # As for a truncated file: keep the packets, say what is missing.
                problem = (f"{path}: the tcpteardown block is damaged ({type(exc).__name__}: {exc}); "
                           "using the packets alone, without socket calls, kernel events or RST reasons")
                if strict:
                    raise UserError(problem) from None
                contents.problems.append(problem)
                calls, events, metadata, reasons = (), (), Metadata(), {}
            break
    segments = tuple(_with_reason(s, reasons.get(s.frame)) for s in contents.segments)
    extra = tuple(metadata.extra) + tuple(("problem", p) for p in contents.problems)
    if metadata.os is None:  # a plain capture: its section header may name the capturing OS
        extra += tuple(("shb_os", text) for text in dict.fromkeys(contents.section_os) if text)
    metadata = Metadata(**{**{f.name: getattr(metadata, f.name) for f in fields(Metadata)},
                           "source_file": str(path), "extra": extra})
    return Recording(segments=segments, calls=calls, kernel_events=events, metadata=metadata,
                     frames=tuple(contents.frames))


def _with_reason(segment: Segment, reason: Optional[str]) -> Segment:
    if reason is None or segment.reset_reason == reason:
        return segment
    from dataclasses import replace

    return replace(segment, reset_reason=reason)


def bundle_metadata(path: "str | os.PathLike") -> Optional[Metadata]:
    """A bundle's metadata from its last block alone, without reading the
    packets (for commands that stream them themselves); None for any other
    file. (The tcpteardown block is always written last.)"""
    import struct

    from .inputs import is_regular

    if not is_regular(path):
        return None  # a pipe or FIFO is read once, by the reader that needs its packets
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            if size < 16:
                return None
            file.seek(size - 4)
            tail = file.read(4)
            for order in "<>":
                (length,) = struct.unpack(order + "I", tail)
                if length % 4 or not 16 <= length <= min(size, 64 << 20):
                    continue
                file.seek(size - length)
                block = file.read(length)
                kind, again = struct.unpack_from(order + "II", block)
                body = block[12:-4]
                if again == length and kind in (0x00000BAD, 0x40000BAD) and body.startswith(TAG):
                    return _from_json(json.loads(body[len(TAG):].rstrip(b"\0")))[2]
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return None


def is_bundle(path: "str | os.PathLike") -> bool:
    from .pcapread import read_capture

    return any(payload.startswith(TAG) for _pen, payload in read_capture(str(path)).custom_blocks)


__all__ = ["write_bundle", "load_recording", "is_bundle", "bundle_metadata", "Frame"]
