"""What differs on macOS (the XNU/BSD stack), as constants and pure decoders.

Everything here is data plus functions over bytes, so that it runs and is
tested on any host: the macOS code path is exercised on Linux by feeding it
bytes laid out as XNU lays them out. Only `capture.sockopts` calls into a
live socket with these numbers, and only on a Mac.

This module must never import anything platform-specific, nor touch a socket.
Numbers come from XNU's public headers (bsd/sys/socket.h,
bsd/netinet/tcp.h, bsd/netinet/tcp_fsm.h) and are named where they bite.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# -- capture: lo0, DLT_NULL, BPF ------------------------------------------------

LOOPBACK_INTERFACE = "lo0"  # Linux: "lo"
LOOPBACK_MTU = 16384  # lo0's MTU: SYNs carry MSS 16344 (IPv4) / 16324 (IPv6); Linux lo: 65536
# lo0 frames are DLT_NULL (LINKTYPE_NULL 0): a 4-byte address family in the
# *host* byte order of the capturing machine, then the IP packet. Linux `lo`
# fakes an Ethernet header with zero MACs instead (LINKTYPE_ETHERNET 1).
# The one parser of that header is formats.pcap_links, and its LINKS table
# the one place these numbers live.
from ..formats.pcap_links import LINKS, LINKTYPE_NULL  # noqa: E402  (grouped with what it explains)

NULL_HEADER_LEN = LINKS[LINKTYPE_NULL].header
AF_INET = 2  # the same on every BSD and on Linux
AF_INET6 = 30  # Darwin; FreeBSD 28, NetBSD/OpenBSD 24, Linux 10
# BPF: /dev/bpf0, /dev/bpf1, ...; readable by root, or by the access_bpf group
# that Wireshark's ChmodBPF launch daemon creates and adds the user to.
BPF_DEVICE_GLOB = "/dev/bpf*"
BPF_GROUP = "access_bpf"

# -- socket options --------------------------------------------------------------

SOL_SOCKET = 0xFFFF  # Linux: 1
# No MSG_NOSIGNAL on macOS: a write to a reset socket raises SIGPIPE unless
# the socket itself says SO_NOSIGPIPE (set once, before the first write).
SO_NOSIGPIPE = 0x1022
IPPROTO_TCP = 6
# The BSD TCP_INFO is private; macOS exports struct tcp_connection_info
# through TCP_CONNECTION_INFO instead (macOS 10.11+). Linux: TCP_INFO (11).
TCP_CONNECTION_INFO = 0x106

# -- TCP states -------------------------------------------------------------------

# BSD numbering (tcp_fsm.h TCPS_*), index = number.
BSD_STATES = (
    "CLOSED",  # 0
    "LISTEN",  # 1
    "SYN_SENT",  # 2
    "SYN_RECEIVED",  # 3
    "ESTABLISHED",  # 4
    "CLOSE_WAIT",  # 5
    "FIN_WAIT_1",  # 6
    "CLOSING",  # 7: simultaneous close
    "LAST_ACK",  # 8
    "FIN_WAIT_2",  # 9
    "TIME_WAIT",  # 10
)

# BSD state name -> the Linux name (tcp_states.h TCP_*), which every
# caller in tcpteardown speaks: the scenario runner waits for Linux names.
BSD_TO_LINUX_STATE = {
    "CLOSED": "CLOSE",
    "LISTEN": "LISTEN",
    "SYN_SENT": "SYN_SENT",
    "SYN_RECEIVED": "SYN_RECV",
    "ESTABLISHED": "ESTABLISHED",
    "CLOSE_WAIT": "CLOSE_WAIT",
    "FIN_WAIT_1": "FIN_WAIT1",
    "CLOSING": "CLOSING",
    "LAST_ACK": "LAST_ACK",
    "FIN_WAIT_2": "FIN_WAIT2",
    "TIME_WAIT": "TIME_WAIT",
}

# struct tcp_connection_info (bsd/netinet/tcp.h). Both macOS architectures
# (x86_64, arm64) are little-endian; the u64 counters are 8-aligned, which
# the 56-byte head already is.
TCP_CONNECTION_INFO_FORMAT = struct.Struct(
    "<"
    "B"  # tcpi_state: TCPS_* (BSD numbering, above)
    "B"  # tcpi_snd_wscale
    "B"  # tcpi_rcv_wscale
    "x"  # __pad1
    "I"  # tcpi_options: TCPCI_OPT_* bits
    "I"  # tcpi_flags: TCPCI_FLAG_* bits
    "I"  # tcpi_rto (ms)
    "I"  # tcpi_maxseg
    "I"  # tcpi_snd_ssthresh
    "I"  # tcpi_snd_cwnd
    "I"  # tcpi_snd_wnd
    "I"  # tcpi_snd_sbbytes
    "I"  # tcpi_rcv_wnd
    "I"  # tcpi_rttcur (ms)
    "I"  # tcpi_srtt (ms)
    "I"  # tcpi_rttvar
    "I"  # TFO bit field
    "Q"  # tcpi_txpackets
    "Q"  # tcpi_txbytes
    "Q"  # tcpi_txretransmitbytes
    "Q"  # tcpi_rxpackets
    "Q"  # tcpi_rxbytes
    "Q"  # tcpi_rxoutoforderbytes
    "Q"  # tcpi_txretransmitpackets
)
TCP_CONNECTION_INFO_SIZE = TCP_CONNECTION_INFO_FORMAT.size  # 112

TCPCI_OPT_TIMESTAMPS = 0x1  # timestamps negotiated
TCPCI_OPT_SACK = 0x2  # SACK negotiated
TCPCI_OPT_WSCALE = 0x4  # window scaling negotiated
TCPCI_OPT_ECN = 0x8  # ECN negotiated


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """The fields of struct tcp_connection_info that a teardown story uses."""

    state: str  # Linux name (ESTABLISHED, CLOSE_WAIT, CLOSE, ...)
    bsd_state: str  # as XNU names it (CLOSED, FIN_WAIT_1, ...)
    snd_wscale: int
    rcv_wscale: int
    options: tuple[str, ...]  # negotiated: "TS", "SACK", "WS", "ECN"
    rto_ms: int
    maxseg: int
    txpackets: int
    rxpackets: int


def bsd_state_name(number: int) -> str:
    """TCPS_* number -> BSD name; ``UNKNOWN(n)`` for numbers XNU never uses."""
    return BSD_STATES[number] if 0 <= number < len(BSD_STATES) else f"UNKNOWN({number})"


def linux_state_name(bsd_number: int) -> str:
    """TCPS_* number -> the Linux name tcpteardown speaks everywhere."""
    name = bsd_state_name(bsd_number)
    return BSD_TO_LINUX_STATE.get(name, name)


def state_from_connection_info(data: bytes) -> str:
    """The Linux state name from TCP_CONNECTION_INFO bytes (only byte 0 is needed)."""
    if not data:
        raise ValueError("empty tcp_connection_info: expected at least the 1-byte tcpi_state")
    return linux_state_name(data[0])


def parse_connection_info(data: bytes) -> ConnectionInfo:
    """Decode a whole struct tcp_connection_info; ValueError if it is short."""
    if len(data) < TCP_CONNECTION_INFO_SIZE:
        raise ValueError(f"tcp_connection_info is {TCP_CONNECTION_INFO_SIZE} bytes, got {len(data)}")
    fields = TCP_CONNECTION_INFO_FORMAT.unpack_from(data)
    state, snd_ws, rcv_ws, options, _flags, rto, maxseg = fields[:7]
    named = tuple(name for bit, name in ((TCPCI_OPT_TIMESTAMPS, "TS"), (TCPCI_OPT_SACK, "SACK"),
                                         (TCPCI_OPT_WSCALE, "WS"), (TCPCI_OPT_ECN, "ECN"))
                  if options & bit)
    return ConnectionInfo(
        state=linux_state_name(state), bsd_state=bsd_state_name(state),
        snd_wscale=snd_ws, rcv_wscale=rcv_ws, options=named, rto_ms=rto, maxseg=maxseg,
        txpackets=fields[16], rxpackets=fields[19],
    )

