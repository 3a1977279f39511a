"""The capture barrier's marker: a UDP datagram of our own the capture must see.

Both capture backends (`live`, `tcpdump`) capture "TCP on the watched ports,
or UDP to our marker's port", and know that everything the kernel delivered
before a moment is captured once a marker token sent at that moment shows up
in what they captured (`backends.tcp_frames` leaves the markers out again).
This module is what they share: the socket, the filter and the token.
"""

from __future__ import annotations

import os
import socket
from typing import Sequence

from ..errors import NoCapturePrivilege
from . import platform as host

PREFIX = b"tcpteardown-marker:"


class Lifecycle:
    """What both backends are as context managers: `start()` on entry, `stop()` on
    exit, also when the body raised (stop is idempotent in both)."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def open_marker() -> socket.socket:
    """A UDP socket on 127.0.0.1 to send markers from and to; first, the
    capture privilege is checked (NoCapturePrivilege saying what is missing)."""
    problem = host.capture_problem()
    if problem:
        raise NoCapturePrivilege(problem)
    marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    marker.bind(("127.0.0.1", 0))
    return marker


def capture_filter(ports: Sequence[int], marker_port: int) -> str:
    """The BPF filter: TCP on `ports` (all TCP when empty), or our markers."""
    tcp = " or ".join(f"tcp port {port}" for port in ports) or "tcp"
    # Not "inbound and ...", though it would keep lo's outgoing copies out
    # of the ring: libpcap runs the filter in user space on the ring's
    # first blocks (TPACKET_V3), where the packet-type load always fails,
    # and silently loses the first packets. libpcap drops the outgoing
    # copies on lo itself; the ring (and "dropped by kernel") holds both.
    return f"({tcp}) or (udp and dst port {marker_port})"


def marker_token(phase: bytes) -> bytes:
    """A token no other datagram carries: the prefix, the phase, 12 random hex digits."""
    return PREFIX + phase + b":" + os.urandom(6).hex().encode()
