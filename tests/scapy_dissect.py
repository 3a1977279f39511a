"""Frames -> Segments with scapy: an independent dissector the tests compare with ours.

tcpteardown itself decodes every frame, live or from a file, with one pure
decoder (`formats.pcap_links.decode_segment`); scapy's own dissection of
the same bytes is the second opinion (tests/test_live_capture.py compares
them field for field on real runs).
"""

from __future__ import annotations

from typing import Iterable, Optional

from tcpteardown.model import Endpoint, Frame, Segment, TcpFlags

# scapy's TCP option names -> the names Segment.options uses everywhere.
_OPTION_NAMES = {"MSS": "MSS", "WScale": "WS", "SAckOK": "SACK_PERM", "Timestamp": "TS", "SAck": "SACK"}


def segment_from_frame(frame_number: int, frame: Frame) -> Optional[Segment]:
    """The TCP segment in `frame`, or None when it carries no TCP."""
    from scapy.config import conf
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    layer = conf.l2types.num2layer.get(frame.linktype)
    if layer is None:
        return None
    packet = layer(frame.data)
    if TCP not in packet:
        return None
    network = packet[IP] if IP in packet else packet[IPv6] if IPv6 in packet else None
    if network is None:
        return None
    tcp = packet[TCP]
    if IP in packet:
        payload_len = network.len - network.ihl * 4 - tcp.dataofs * 4
    else:
        payload_len = len(bytes(tcp.payload))
        payload_len = network.plen - tcp.dataofs * 4 if network.plen else payload_len
    return Segment(
        frame=frame_number,
        time_ns=frame.time_ns,
        src=Endpoint(network.src, tcp.sport),
        dst=Endpoint(network.dst, tcp.dport),
        flags=TcpFlags(int(tcp.flags) & 0xFF),
        seq=tcp.seq,
        ack=tcp.ack,
        window=tcp.window,
        payload_len=max(payload_len, 0),
        options=_options(tcp.options),
    )


def _options(options) -> tuple:
    named = []
    for name, value in options:
        if name in ("NOP", "EOL"):
            continue
        key = _OPTION_NAMES.get(name, str(name))
        if key == "SACK_PERM":
            value = None
        elif key == "TS":
            value = tuple(value)
        elif key == "SACK":
            pairs = list(value)
            value = tuple(zip(pairs[0::2], pairs[1::2]))
        named.append((key, value))
    return tuple(named)


def segments_from_frames(frames: Iterable[Frame]) -> tuple[Segment, ...]:
    segments = []
    for number, frame in enumerate(frames, start=1):
        segment = segment_from_frame(number, frame)
        if segment is not None:
            segments.append(segment)
    return tuple(segments)
