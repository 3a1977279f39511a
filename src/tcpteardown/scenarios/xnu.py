"""What the scenarios' macOS expectations rest on: XNU's source, and real Mac captures.

No Mac has recorded a scenario yet, so every Darwin expectation is either
read in XNU's source or seen in a real loopback capture that a public
project recorded on a Mac. This module holds those citations, once each;
the library's Darwin expectations name the ones they rest on
(`registry.on_xnu`). Source lines are at one tag, `XNU_TAG` (macOS 15.5),
in github.com/apple-oss-distributions/xnu; capture paths are under the
shared corpus (`../shared/corpus/`, MANIFEST.tsv says where each file came
from), and a test reads each cited connection and checks its segments.

A capture shows segments, never the errno an application saw: capture
evidence covers a teardown, source evidence covers the calls.
"""

from __future__ import annotations

from ..xnu import XNU_TAG
from .registry import Evidence


def _src(path_function_line: str, shows: str) -> Evidence:
    return Evidence("source", f"{XNU_TAG} {path_function_line}", shows)


# -- from source --------------------------------------------------------------------

CLOSE_UNREAD_RST = _src(
    "bsd/netinet/tcp_usrreq.c tcp_disconnect() l.3155",
    "close() with unread data (so_rcv.sb_cc != 0) calls tcp_drop(): the connection goes to CLOSED "
    "and tcp_output() sends tcp_outflags[TCPS_CLOSED] = RST,ACK (bsd/netinet/tcp_fsm.h l.121)")
LINGER_ZERO_RST = _src(
    "bsd/netinet/tcp_usrreq.c tcp_disconnect() l.3162",
    "SO_LINGER on with 0 s: tcp_drop(), RST,ACK instead of FIN")
CLOSE_SENDS_FIN = _src(
    "bsd/netinet/tcp_usrreq.c tcp_disconnect() l.3167, tcp_usrclosed() l.3193",
    "close() with nothing unread: FIN_WAIT_1 and a FIN (tcp_outflags[FIN_WAIT_1] = FIN,ACK)")
EXIT_CLOSES = _src(
    "bsd/kern/uipc_socket.c soclose_locked() l.1274 -> bsd/netinet/tcp_usrreq.c tcp_usr_disconnect() l.866",
    "a killed process's descriptors are closed by the kernel through the same soclose() as close()")
SHUTDOWN_WR_FIN = _src(
    "bsd/netinet/tcp_usrreq.c tcp_usr_shutdown() l.982",
    "shutdown(SHUT_WR): socantsendmore() then tcp_usrclosed(): a FIN, the receive side stays open")
WRITE_EPIPE_FIRST = _src(
    "bsd/kern/uipc_socket.c sosendcheck() l.2032",
    "SS_CANTSENDMORE is tested before so_error: once the socket is shut for sending (our shutdown, or "
    "the RST that closed it) every write returns EPIPE, the first one after an RST included; the "
    "pending ECONNRESET stays for the next read")
READ_ERROR_FIRST = _src(
    "bsd/kern/uipc_socket.c soreceive() l.3535",
    "so_error is reported before SS_CANTRCVMORE: a read after an RST returns ECONNRESET even when a "
    "FIN came first (CLOSE_WAIT), where Linux returns end-of-file")
RST_SETS_ECONNRESET = _src(
    "bsd/netinet/tcp_input.c tcp_input() l.4248",
    "an RST in ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2 or CLOSE_WAIT sets so_error = ECONNRESET and closes")
DATA_AFTER_CLOSE_RST = _src(
    "bsd/netinet/tcp_input.c tcp_input() l.4461 and dropwithreset l.6121",
    "data reaching a socket whose process closed it (SS_NOFDREF, past CLOSE_WAIT) is answered with "
    "a bare RST (seq = the segment's ack), as on Linux")
SYN_TO_CLOSED_PORT = _src(
    "bsd/netinet/tcp_input.c dropwithreset l.6127 and l.3749",
    "a SYN to a port with no listener is answered with RST,ACK (ack = its seq + 1); the RST in "
    "SYN_SENT makes connect() fail with ECONNREFUSED")
LISTEN_DROP = _src(
    "bsd/netinet/tcp_input.c tcp_input() l.2719-2735",
    "when sonewconn() refuses (a full backlog, bsd/kern/uipc_socket2.c l.359) the SYN is dropped "
    "silently: no SYN-ACK, no RST; the client retransmits until its connection timer "
    "(TCP_CONNECTIONTIMEOUT, bsd/netinet/tcp_timer.c TCPT_KEEP l.1502) drops it with ETIMEDOUT")
RECEIVE_TIMEOUT = _src(
    "bsd/kern/uipc_socket2.c sbwait() l.535",
    "SO_RCVTIMEO bounds the sleep in sbwait(); when it expires recv() returns EWOULDBLOCK "
    "(= EAGAIN, 35 on macOS)")
CLOSING_FIN_ACK = _src(
    "bsd/netinet/tcp_fsm.h tcp_outflags[TCPS_CLOSING] l.128 and bsd/netinet/tcp_output.c l.2728",
    "in a simultaneous close each side answers the peer's FIN from CLOSING with FIN,ACK (its own "
    "FIN retransmitted, snd_nxt stepped back) where Linux sends a bare ACK")
TIME_WAIT_30S = _src(
    "bsd/netinet/tcp_timer.h TCPTV_MSL l.175, bsd/netinet/tcp_input.c add_to_time_wait(tp, 2 * tcp_msl) l.5628",
    "TIME_WAIT lasts 2 x MSL = 30 s (Linux: 60 s)")
NO_ROUTE = _src(
    "bsd/netinet/ip_output.c ip_output_list() l.853",
    "no usable route: EHOSTUNREACH at once, nothing on the wire")
OWN_CLOSE_EBADF = _src(
    "bsd/kern/kern_descrip.c fp_lookup() l.1491",
    "a descriptor that was closed is gone: EBADF before any socket code runs")


# -- seen in real Mac captures (../shared/corpus) ------------------------------------------

def _seen(path: str, connection: int, shows: str, *, swap_roles: bool = False) -> Evidence:
    return Evidence("capture", path, shows, connection, swap_roles)


SEEN_REFUSED = _seen(
    "macos/tls-duplicate-hello.pcap", 1,
    "Darwin lo0 (suricata-verify, 2024): SYN to closed port 8442 answered [R.] seq 0 ack 1 win 0")
SEEN_REFUSED_V6 = _seen(
    "macos/zip64.pcap", 1,
    "Darwin lo0 (zeek, 2021): SYN to [::1]:80 where nothing listens on ::1, answered RST,ACK")
SEEN_SERVER_FIN = _seen(
    "macos/zip64.pcap", 2,
    "Darwin lo0 (zeek, 2021): an HTTP server closes first (FIN), the client answers with its FIN")
SEEN_CLIENT_FIN = _seen(
    "macos/bulk-loading.pcap", 1,
    "Darwin lo0 (zeek, 2024): a redis client closes first (FIN), the server answers with its FIN")
SEEN_CLOSE_UNREAD = _seen(
    "macos/tls-duplicate-hello.pcap", 2,
    "Darwin lo0 (suricata-verify, 2024): a Python client closes with 1122 bytes unread: [R.] seq 595 "
    "ack 1123, no FIN")
SEEN_CLOSE_UNREAD_SERVER = _seen(
    "macos/tls-duplicate-hello.pcap", 2,
    "Darwin lo0 (suricata-verify, 2024): the side that closes with data unread (there the SYN sender) "
    "sends RST,ACK, no FIN", swap_roles=True)
SEEN_DATA_AFTER_FIN = _seen(
    "macos/http2-deflate-case.pcap", 1,
    "Darwin lo0 (suricata-verify, 2026): curl closes (FIN); the Go server still writes 17 bytes; "
    "the closed side's kernel answers a bare [R] seq 298 win 0", swap_roles=True)
SEEN_FIN_THEN_RST = _seen(
    "nDPI/nats.pcap", 1,
    "macOS lo0 (nDPI; MSS 16344, XNU's option order): a NATS client sends FIN, then RST,ACK with "
    "nothing arriving between (close() with unread data after its shutdown: tcp_disconnect's tcp_drop)")
