"""Timeouts: the call gave up waiting, and (almost) nothing is on the wire.

Both timeouts are the kernel's own, so the errno in the recording is what
the kernel said, not a label we chose:

- `connect-timeout`: TCP_USER_TIMEOUT of 1.2 s on the connecting socket.
  The SYN goes to a listener whose accept queue is full (Linux drops a SYN
  then, it does not refuse it), is retransmitted once after the initial
  1 s RTO, and the kernel fails connect() with ETIMEDOUT at 1.2 s (read
  through SO_ERROR: Python's own 5 s guard never fires first). SYN_SENT
  honours TCP_USER_TIMEOUT on Linux; TCP_SYNCNT=1 would take 3 s.
- `read-timeout`: SO_RCVTIMEO of 100 ms on a blocking socket; recv()
  returns EAGAIN, which is what the kernel reports for an expired receive
  timeout. (Python's settimeout(), Go's deadlines and Java's soTimeout
  time out in user space instead: Python's socket.timeout carries no errno
  and the recorder names it ETIMEDOUT by convention; we avoid that here.)
"""

from __future__ import annotations

import socket
import struct
import sys

from .. import xnu
from ..registry import Expectation, Outcome, Scenario, on_xnu, register
from ..stage import Stage
from .basics import _close, _connected_pair, _listen, _recv

CONNECT_TIMEOUT_MS = 1200
READ_TIMEOUT_MS = 100
LINUX_TCP_USER_TIMEOUT = 18
DARWIN_TCP_CONNECTIONTIMEOUT = 0x20  # seconds, netinet/tcp.h


def _queue_length(listener: socket.socket) -> int:
    """Connections waiting in a Linux listener's accept queue (tcpi_unacked of a LISTEN socket)."""
    info = listener.getsockopt(socket.IPPROTO_TCP, 11, 32)
    return int.from_bytes(info[24:28], "little")


# -- connect-timeout ---------------------------------------------------------------------

def _full_listener(stage: Stage) -> None:
    # listen(1): Linux queues backlog + 1 = 2 connections; the third SYN is dropped.
    # (Backlog 0 would answer with SYN cookies and log "possible SYN flooding".)
    stage.listener = stage.listen(backlog=1)


def _connect_timeout(stage: Stage) -> None:
    listener = stage.listener
    address = stage.address(listener.getsockname()[1])
    for n in (1, 2):  # two clients the server never accepts: the queue is full
        filler = stage.socket()
        stage.rec.call(f"waiting-{n}", "connect", filler, filler.connect, address)
    if sys.platform.startswith("linux"):
        stage.wait_for("a full accept queue", lambda: _queue_length(listener) == 2)
    client = stage.socket()
    if sys.platform == "darwin":
        client.setsockopt(socket.IPPROTO_TCP, DARWIN_TCP_CONNECTIONTIMEOUT, 2)
        text = "setsockopt(TCP_CONNECTIONTIMEOUT, 2 s)"
    else:
        client.setsockopt(socket.IPPROTO_TCP, LINUX_TCP_USER_TIMEOUT, CONNECT_TIMEOUT_MS)
        text = f"setsockopt(TCP_USER_TIMEOUT, {CONNECT_TIMEOUT_MS} ms)"
    stage.notes.append(text + " on the client; Python's own timeout (5 s) is only a guard")
    stage.rec.call("client", "connect", client, client.connect, address)


_CONNECT = Expectation(
    outcomes=(Outcome("client", "connect", "ETIMEDOUT", "syn-unanswered"),),
    teardown=(),
    why=("The server's accept queue is full: it has two connections it never accepted. Linux does not "
         "refuse the next SYN, it drops it, hoping the queue drains; the client retransmits the SYN "
         "after 1 s, and its TCP_USER_TIMEOUT of 1.2 s makes the kernel give up with ETIMEDOUT "
         "('connection timed out'; Go: dial tcp: i/o timeout when its own deadline is shorter). "
         "Nothing answered, so there is no FIN or RST: the cause is the unanswered SYNs themselves."),
)

register(Scenario(
    name="connect-timeout",
    summary="our SYN goes unanswered (the listener's accept queue is full); retransmitted once; connect times out at 1.2 s",
    family_group="timeouts",
    setup=_full_listener,
    play=_connect_timeout,
    expected={"Linux": _CONNECT,
              "Darwin": on_xnu(_CONNECT, xnu.LISTEN_DROP, why=(
                  "XNU drops a SYN to a full backlog silently too (no RST: sonewconn() refuses and "
                  "tcp_input() drops it), so the client retransmits until its own timer gives up with "
                  "ETIMEDOUT. TCP_CONNECTIONTIMEOUT (whole seconds) stands in for TCP_USER_TIMEOUT, so it "
                  "takes 2 s there. XNU has no tcp_abort_on_overflow, which is why accept-overflow has no "
                  "Darwin expectation."))},
))


# -- read-timeout ------------------------------------------------------------------------

def _read_timeout(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    client.settimeout(None)  # blocking: the kernel's receive timeout decides, not Python's
    seconds, micros = divmod(READ_TIMEOUT_MS * 1000, 1_000_000)
    timeval = struct.pack("ll", seconds, micros)
    stage.rec.call("client", "setsockopt", client, client.setsockopt, socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                   timeval, text=f"setsockopt(SO_RCVTIMEO, {READ_TIMEOUT_MS} ms)")
    _recv(stage, "client", client)  # the server stays silent: EAGAIN after 100 ms
    _close(stage, "client", client)
    stage.wait_state(server, "CLOSE_WAIT")
    _close(stage, "server", server)


_READ = Expectation(
    outcomes=(Outcome("client", "recv", "EAGAIN", "none"),),
    teardown=(("client", "FIN,ACK"), ("server", "FIN,ACK")),
    why=("The server accepted and then said nothing. The client's receive timeout (SO_RCVTIMEO, 100 ms) "
         "expired and recv() returned EAGAIN ('resource temporarily unavailable'): nothing arrived, "
         "so no segment is to blame, and the capture is silent between the handshake and the client's "
         "own close. Runtimes with deadlines report the same silence as their own timeout (Python: "
         "timed out; Go: i/o timeout; Java: SocketTimeoutException)."),
)

register(Scenario(
    name="read-timeout",
    summary="the peer stays silent; our receive timeout (SO_RCVTIMEO 100 ms) fires: EAGAIN, nothing on the wire",
    family_group="timeouts",
    setup=_listen,
    play=_read_timeout,
    expected={"Linux": _READ, "Darwin": on_xnu(_READ, xnu.RECEIVE_TIMEOUT, xnu.CLOSE_SENDS_FIN, xnu.SEEN_CLIENT_FIN)},
))
