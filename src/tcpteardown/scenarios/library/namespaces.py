"""Teardowns that need a network namespace of their own.

`accept-overflow` sets net.ipv4.tcp_abort_on_overflow=1, a sysctl no host
should have changed for a demonstration; `no-route` installs an unreachable
route; `icmp-unreachable` has iptables answer SYNs with ICMP host and
network unreachable. All run in a private namespace that the runner creates for every
scenario needing "netns" (capture.netns), so the host never sees either.
accept-overflow orders its race by holding the client's final ACK in a
packet queue of its own (`netns.PacketGate`, iptables + NFQUEUE) until the
accept queue is full; without iptables, TCP_DEFER_ACCEPT holds the
handshake open instead.
"""

from __future__ import annotations

import socket

from ...capture import netns
from .. import xnu
from ..registry import Expectation, Outcome, Scenario, on_xnu, register
from ..stage import Stage
from .basics import _close, _recv, _send

TCP_DEFER_ACCEPT = 9  # linux/tcp.h



# -- accept-overflow ------------------------------------------------------------------

def _overflow_setup(stage: Stage) -> None:
    netns.set_sysctl("net.ipv4.tcp_abort_on_overflow", "1")  # also governs IPv6
    stage.listener = stage.listen(backlog=1)
    if netns.DelayLine.problem() is None:
        # Hold the client's bare ACK (the handshake's last segment) in a queue
        # of our own until the accept queue is full: ordered by events, not time.
        stage.client = stage.socket()
        stage.client.bind((stage.host, 0))
        port = stage.client.getsockname()[1]
        stage.gate = netns.PacketGate(("-p", "tcp", "--sport", str(port),
                                       "--tcp-flags", "SYN,ACK,FIN,RST,PSH", "ACK"))
        stage._cleanup.callback(stage.gate.close)
        stage.notes.append("the client's final handshake ACK was held (NFQUEUE) until the accept queue was full")
    else:
        # Without iptables: the server's kernel defers the handshake until data
        # arrives (TCP_DEFER_ACCEPT), which holds it open just the same.
        stage.client = None
        stage.listener.setsockopt(socket.IPPROTO_TCP, TCP_DEFER_ACCEPT, 5)
        stage.notes.append("TCP_DEFER_ACCEPT held the handshake open: the request, not the bare ACK, meets the full queue")


def _queue_length(listener: socket.socket) -> int:
    """Connections waiting in a Linux listener's accept queue (tcpi_unacked)."""
    info = listener.getsockopt(socket.IPPROTO_TCP, 11, 32)
    return int.from_bytes(info[24:28], "little")


def _accept_overflow(stage: Stage) -> None:
    listener = stage.listener
    address = stage.address(listener.getsockname()[1])
    waiting = stage.socket()  # a client the server has not accepted yet
    stage.rec.call("waiting", "connect", waiting, waiting.connect, address)
    _send(stage, "waiting", waiting, b"GET /first HTTP/1.1\r\n\r\n")
    stage.wait_for("the first connection in the accept queue", lambda: _queue_length(listener) == 1)
    full = lambda: stage.rec.call("server", "listen", listener, listener.listen, 0,  # noqa: E731
                                  text="listen(0): the accept queue is now full")
    if stage.client is not None:
        client = stage.client
        stage.rec.call("client", "connect", client, client.connect, address)  # our side is established...
        stage.wait_for("the final ACK held", lambda: stage.gate.queued >= 1)  # ...the server's is not
        full()
        stage.gate.release()  # the ACK meets a full queue: RST
    else:
        client = stage.socket()
        stage.rec.call("client", "connect", client, client.connect, address)  # handshake deferred by the server
        full()
        _send(stage, "client", client, b"GET /second HTTP/1.1\r\n\r\n")  # completes the handshake: overflow
    stage.wait_state(client, "CLOSE")
    _recv(stage, "client", client)
    _close(stage, "client", client)


_OVERFLOW = Expectation(
    outcomes=(Outcome("client", "recv", "ECONNRESET", "rst"),),
    teardown=(("server", "RST"),),
    why=("The server's accept queue is full (it accepts too slowly), and net.ipv4.tcp_abort_on_overflow=1 "
         "tells the kernel to answer the segment that completes a handshake with RST instead of "
         "silently dropping it. The client's connect() had already succeeded, so the reset shows up on "
         "its first read: ECONNRESET on a connection the server never saw. To make the race "
         "deterministic the scenario holds the client's final ACK in a packet queue until the accept "
         "queue is full (without iptables, TCP_DEFER_ACCEPT holds the handshake open instead and the "
         "request meets the full queue). With the default tcp_abort_on_overflow=0 the ACK is dropped "
         "silently and the client's request is retransmitted into the void."),
)

register(Scenario(
    name="accept-overflow",
    summary="accept queue full with tcp_abort_on_overflow=1 (private netns): RST to the handshake's completion",
    family_group="namespaces",
    setup=_overflow_setup,
    play=_accept_overflow,
    expected={"Linux": _OVERFLOW},  # the sysctl is Linux's; BSD drops silently (no expectation)
    needs=("netns",),
    notes="Linux only: BSD stacks have no tcp_abort_on_overflow.",
))


# -- no-route ------------------------------------------------------------------------

# Documentation prefixes (RFC 5737, RFC 3849): never routed anywhere real.
UNREACHABLE = {"ipv4": ("192.0.2.0/24", "192.0.2.1"), "ipv6": ("2001:db8::/32", "2001:db8::1")}


def _no_route_setup(stage: Stage) -> None:
    prefix, _ = UNREACHABLE[stage.family]
    netns.ip("-6" if stage.family == "ipv6" else "-4", "route", "add", "unreachable", prefix)
    stage.notes.append(f"route: unreachable {prefix}")  # the explanation names the route that failed
    stage.closed_port = stage.reserve_port()  # the port we dial; capture watches it


def _no_route(stage: Stage) -> None:
    _, host = UNREACHABLE[stage.family]
    client = stage.socket()
    stage.rec.call("client", "connect", client, client.connect, (host, stage.closed_port))
    _close(stage, "client", client)


_NOROUTE = Expectation(
    outcomes=(Outcome("client", "connect", "EHOSTUNREACH", "none"),),
    teardown=(),
    why=("The routing table says the destination is unreachable, so connect() fails at once with "
         "EHOSTUNREACH ('no route to host') and no SYN is ever sent: there is no segment to blame, the "
         "cause is local routing. Without any route at all the error would be ENETUNREACH; an ICMP "
         "unreachable from a router gives EHOSTUNREACH too, but only after a SYN went out."),
)

register(Scenario(
    name="no-route",
    summary="connect through an unreachable route (private netns): EHOSTUNREACH, no segment at all",
    family_group="namespaces",
    setup=_no_route_setup,
    play=_no_route,
    expected={"Linux": _NOROUTE, "Darwin": on_xnu(_NOROUTE, xnu.NO_ROUTE)},
    needs=("netns",),
))


# -- icmp-unreachable ------------------------------------------------------------------

# How the kernel answers a SYN it rejects, per family: host, then network
# unreachable (ip6tables names them address unreachable and no route).
_ICMP_REPLIES = {"ipv4": (("iptables", "icmp-host-unreachable"), ("iptables", "icmp-net-unreachable")),
                 "ipv6": (("ip6tables", "icmp6-addr-unreachable"), ("ip6tables", "icmp6-no-route"))}


def _icmp_setup(stage: Stage) -> None:
    stage.icmp_ports = []
    for tool, reply in _ICMP_REPLIES[stage.family]:
        port = stage.reserve_port()  # nothing listens; the capture watches it
        netns.iptables(tool, "-A", "INPUT", "-p", "tcp", "--syn", "--dport", str(port),
                       "-j", "REJECT", "--reject-with", reply)
        stage.notes.append(f"{tool} answers SYNs to port {port} with {reply}")
        stage.icmp_ports.append(port)


def _icmp_unreachable(stage: Stage) -> None:
    for role, port in zip(("client", "client2"), stage.icmp_ports):
        sock = stage.socket()
        stage.rec.call(role, "connect", sock, sock.connect, stage.address(port))
        _close(stage, role, sock)


_ICMP = Expectation(
    outcomes=(Outcome("client", "connect", "EHOSTUNREACH", "syn-unanswered"),
              Outcome("client2", "connect", "ENETUNREACH", "syn-unanswered")),
    why=("Each SYN leaves, and instead of a SYN/ACK or an RST the destination answers with ICMP: "
         "host unreachable makes connect() fail with EHOSTUNREACH, network unreachable with ENETUNREACH "
         "(in SYN_SENT the kernel takes either as final; over IPv6 a first SYN was seen retransmitted "
         "before the ICMPv6 reply ended the attempt). Unlike no-route, a segment did leave: the SYN is the "
         "evidence, and the ICMP reply is not in a TCP capture."),
)

register(Scenario(
    name="icmp-unreachable",
    summary="SYNs answered by ICMP host and network unreachable (iptables REJECT, private netns)",
    family_group="namespaces",
    setup=_icmp_setup,
    play=_icmp_unreachable,
    expected={"Linux": _ICMP},
    needs=("netns", "iptables"),
    notes="Linux only here: the ICMP replies come from iptables in the scenario's own namespace.",
))
