"""A bounded burst of loopback connections at a given rate, each one counted:
the load that the capture backends are measured and tested with.

Each connection, played in one thread so that its segments are certain:

    client connect()            SYN, SYN/ACK, ACK
    server accept()
    client shutdown(SHUT_WR)    FIN (client) and the server's ACK
    client close(), linger 0    RST (client): FIN_WAIT2 + SO_LINGER 0 aborts
    server close()              nothing: the RST has already closed it

so per connection the client sends exactly one SYN, one FIN and one RST; the
burst keeps each connection's client port to check a capture against.

Never: touch anything but 127.0.0.1/::1, run unbounded (a count and a rate,
or at most `count` connections as fast as possible), or leave a socket open.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Iterable, Optional

from ..model import Segment, TcpFlags

__all__ = ["Burst", "Listener", "play_burst", "connection_shares", "connections_seen"]


class Listener:
    """A listening socket on loopback that the burst connects to."""

    def __init__(self, family: str = "ipv4"):
        self.family = socket.AF_INET6 if family == "ipv6" else socket.AF_INET
        self.host = "::1" if family == "ipv6" else "127.0.0.1"
        self.sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((self.host, 0))
            self.sock.listen(128)
        except BaseException:
            self.sock.close()
            raise
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Burst:
    """What the burst did, connection by connection."""

    server_port: int
    client_ports: tuple[int, ...]  # one per connection, in order (a port may come back)
    rate: Optional[float]  # asked-for connections per second; None: as fast as possible
    seconds: float  # how long it took

    @property
    def achieved_rate(self) -> float:
        return len(self.client_ports) / self.seconds if self.seconds > 0 else 0.0


_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 seconds: close() sends RST


def play_burst(listener: Listener, count: int, rate: Optional[float] = None, *,
               max_seconds: Optional[float] = None) -> Burst:
    """`count` connections at `rate` a second (None: as fast as possible),
    stopping early once `max_seconds` have passed."""
    clients = []
    address = (listener.host, listener.port)
    started = time.perf_counter()
    for number in range(count):
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
        if rate:
            due = started + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # wait-ok: pacing the load, not synchronising with anything
        clients.append(_one_connection(listener, address))
    return Burst(listener.port, tuple(clients), rate, time.perf_counter() - started)


def _one_connection(listener: Listener, address) -> int:
    client = socket.socket(listener.family, socket.SOCK_STREAM)
    server = None
    try:
        client.connect(address)
        port = client.getsockname()[1]
        server, _ = listener.sock.accept()
        client.shutdown(socket.SHUT_WR)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
    finally:
        client.close()
        if server is not None:
            server.close()
    return port


def connections_seen(burst: Burst, segments: Iterable[Segment]) -> list[set[str]]:
    """One entry per connection found in `segments` (client side only): the
    kinds of segment its client was seen sending ("SYN", "FIN", "RST").

    A client port freed by an RST is soon handed to a later connect of the
    same burst, so a connection begins at each client SYN with a new sequence
    number (a retransmitted SYN repeats its number and stays in it)."""
    wanted = set(burst.client_ports)
    current: dict[int, tuple[int, set]] = {}
    found: list[set[str]] = []
    for segment in segments:
        port = segment.src.port
        if segment.dst.port != burst.server_port or port not in wanted:
            continue
        if segment.is_syn and not segment.flags & TcpFlags.ACK:
            if port not in current or current[port][0] != segment.seq:
                current[port] = (segment.seq, set())
                found.append(current[port][1])
            current[port][1].add("SYN")
            continue
        if port not in current:  # its SYN was not captured
            current[port] = (-1, set())
            found.append(current[port][1])
        if segment.is_fin:
            current[port][1].add("FIN")
        if segment.is_rst:
            current[port][1].add("RST")
    return found


def connection_shares(burst: Burst, segments: Iterable[Segment]) -> dict[str, float]:
    """Share of the burst's connections whose client SYN, FIN and RST were captured."""
    found = connections_seen(burst, segments)
    total = len(burst.client_ports) or 1
    return {kind: min(sum(kind in kinds for kinds in found), total) / total for kind in ("SYN", "FIN", "RST")}
