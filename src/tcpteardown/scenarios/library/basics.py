"""The six seed scenarios: the teardowns every engineer meets first.

Roles: the *client* is the code under study ("our" socket), the *server* is
the peer whose kernel sends the FIN or RST. Every wait is for a TCP state or
a readable socket, never a fixed sleep.
"""

from __future__ import annotations

import socket

from ...capture.sockopts import nosignal_send_flags
from .. import xnu
from ..registry import Expectation, Outcome, Scenario, on_xnu, register
from ..stage import Stage

# Linux raises SIGPIPE on a write to a reset socket unless told not to (macOS
# uses SO_NOSIGPIPE instead, set by prepare_socket); Python ignores SIGPIPE
# anyway, but a scenario must not depend on that.
SEND_FLAGS = nosignal_send_flags()


def _connected_pair(stage: Stage, listener: socket.socket):
    client = stage.socket()
    stage.rec.call("client", "connect", client, client.connect, stage.address(listener.getsockname()[1]))
    accepted = stage.rec.call("server", "accept", listener, listener.accept)
    server, _ = accepted
    stage._cleanup.callback(server.close)
    server.settimeout(client.gettimeout())
    return client, server


def _send(stage: Stage, role: str, sock: socket.socket, data: bytes):
    return stage.rec.call(role, "send", sock, sock.send, data, SEND_FLAGS)


def _recv(stage: Stage, role: str, sock: socket.socket, size: int = 65536):
    return stage.rec.call(role, "recv", sock, sock.recv, size)


def _close(stage: Stage, role: str, sock: socket.socket):
    return stage.rec.call(role, "close", sock, sock.close)


def _listen(stage: Stage) -> None:
    stage.listener = stage.listen()


# -- graceful-close ---------------------------------------------------------

def _graceful_close(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    _close(stage, "server", server)
    stage.wait_state(client, "CLOSE_WAIT")
    _recv(stage, "client", client)  # returns b"": the peer's FIN, seen as end-of-file
    _close(stage, "client", client)


_GRACEFUL = Expectation(
    outcomes=(Outcome("client", "recv", "EOF", "fin"),),
    teardown=(("server", "FIN,ACK"), ("client", "FIN,ACK")),
    why="The server closes with nothing unread, so its kernel sends FIN; the client's recv returns 0 bytes.",
)

register(Scenario(
    name="graceful-close",
    summary="the peer closes cleanly; our recv returns end-of-file (FIN)",
    family_group="basics",
    setup=_listen,
    play=_graceful_close,
    expected={"Linux": _GRACEFUL, "Darwin": on_xnu(_GRACEFUL, xnu.CLOSE_SENDS_FIN, xnu.SEEN_SERVER_FIN)},
))


# -- reset-by-peer ------------------------------------------------------------

def _reset_by_peer(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    _send(stage, "client", client, b"request the server never reads")
    stage.wait_readable(server)  # the data sits unread in the server's receive buffer
    _close(stage, "server", server)  # unread data: RFC 2525 says RST, not FIN
    stage.wait_state(client, "CLOSE")
    _recv(stage, "client", client)
    _close(stage, "client", client)


_RESET = Expectation(
    outcomes=(Outcome("client", "recv", "ECONNRESET", "rst"),),
    teardown=(("server", "RST,ACK"),),
    why=("The server closes while the client's request is still unread in its receive buffer; "
         "its kernel aborts the connection with RST instead of FIN (RFC 2525 2.17), and the "
         "client's next recv reports ECONNRESET."),
)

register(Scenario(
    name="reset-by-peer",
    summary="the peer closes with unread data, its kernel sends RST; our recv fails with ECONNRESET",
    family_group="basics",
    setup=_listen,
    play=_reset_by_peer,
    expected={"Linux": _RESET, "Darwin": on_xnu(_RESET, xnu.CLOSE_UNREAD_RST, xnu.RST_SETS_ECONNRESET, xnu.READ_ERROR_FIRST,
                                         xnu.SEEN_CLOSE_UNREAD_SERVER)},
))


# -- broken-pipe --------------------------------------------------------------

def _broken_pipe(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    _send(stage, "client", client, b"a")
    stage.wait_readable(server)
    _recv(stage, "server", server, 1)  # reads everything: its close will send FIN, not RST
    _close(stage, "server", server)
    stage.wait_state(client, "CLOSE_WAIT")
    _send(stage, "client", client, b"more data")  # succeeds locally; the closed peer answers RST
    stage.wait_state(client, "CLOSE")
    _send(stage, "client", client, b"and more")  # EPIPE: the RST in CLOSE_WAIT left it
    _close(stage, "client", client)


_BROKEN = Expectation(
    outcomes=(Outcome("client", "send", "EPIPE", "rst"),),
    teardown=(("server", "FIN,ACK"), ("server", "RST")),
    why=("The server reads what it was sent and closes: FIN. A write into a half-closed "
         "connection still succeeds locally, but the data reaches a socket that no longer "
         "exists, so the server's kernel answers RST. That RST arrives in CLOSE_WAIT, which "
         "leaves EPIPE: the next write fails with 'broken pipe'. The kernel names its reason "
         "TCP_TIMEWAIT_SOCKET when the closed socket had already become a time-wait socket, and "
         "TCP_ABORT_ON_DATA when it was still a full socket in FIN_WAIT2 (close() still held the "
         "socket lock when the ACK of its FIN came back); both happen on the same kernel."),
)

register(Scenario(
    name="broken-pipe",
    summary="the peer reads one byte and closes; our next write draws an RST, the write after it fails with EPIPE",
    family_group="basics",
    setup=_listen,
    play=_broken_pipe,
    expected={"Linux": _BROKEN, "Darwin": on_xnu(
        _BROKEN, xnu.DATA_AFTER_CLOSE_RST, xnu.RST_SETS_ECONNRESET, xnu.WRITE_EPIPE_FIRST, xnu.SEEN_DATA_AFTER_FIN,
        why=("Same segments as on Linux, for another reason: the closed peer answers the write with a bare "
             "RST, which sets ECONNRESET and shuts the socket; XNU's sosendcheck() tests 'cannot send' "
             "before the pending error, so the next write fails with EPIPE and ECONNRESET waits for a read."))},
))


# -- write-after-reset ----------------------------------------------------------

def _write_after_reset(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    _send(stage, "client", client, b"request the server never reads")
    stage.wait_readable(server)
    _close(stage, "server", server)  # unread data: RST while the client is ESTABLISHED
    stage.wait_state(client, "CLOSE")
    _send(stage, "client", client, b"first write after the reset")  # ECONNRESET: the error the RST left
    _send(stage, "client", client, b"second write")  # EPIPE: the error was reported, the pipe is gone
    _close(stage, "client", client)


_WAR = Expectation(
    outcomes=(Outcome("client", "send", "ECONNRESET", "rst"), Outcome("client", "send", "EPIPE", "rst")),
    teardown=(("server", "RST,ACK"),),
    why=("Articles often say the first write after a reset gives 'broken pipe'. The kernel says "
         "otherwise: the RST reached an ESTABLISHED socket and left ECONNRESET pending, so the first "
         "write reports 'connection reset by peer' (Go: write: connection reset by peer); that "
         "reports and clears the error, and every later write finds the connection shut: EPIPE."),
)

register(Scenario(
    name="write-after-reset",
    summary="the peer closes with unread data (RST); our first write fails with ECONNRESET, the next with EPIPE",
    family_group="basics",
    setup=_listen,
    play=_write_after_reset,
    expected={"Linux": _WAR, "Darwin": on_xnu(
        _WAR, xnu.CLOSE_UNREAD_RST, xnu.RST_SETS_ECONNRESET, xnu.WRITE_EPIPE_FIRST, xnu.SEEN_CLOSE_UNREAD_SERVER,
        outcomes=(Outcome("client", "send", "EPIPE", "rst"), Outcome("client", "send", "EPIPE", "rst")),
        why=("Where Linux and macOS part: the RST leaves ECONNRESET pending and shuts the socket, and XNU's "
             "sosendcheck() tests 'cannot send' first, so the *first* write after the reset already fails "
             "with EPIPE (Linux: ECONNRESET), and so does every later one; the ECONNRESET goes to the next "
             "read, once."))},
))


# -- refused --------------------------------------------------------------------

def _reserve(stage: Stage) -> None:
    stage.closed_port = stage.reserve_port()


def _refused(stage: Stage) -> None:
    client = stage.socket()
    stage.rec.call("client", "connect", client, client.connect, stage.address(stage.closed_port),
                   remote=None)


_REFUSED = Expectation(
    outcomes=(Outcome("client", "connect", "ECONNREFUSED", "rst"),),
    teardown=(("server", "RST,ACK"),),
    why="Nothing listens on the port, so the kernel answers the SYN with RST,ACK; connect() fails with ECONNREFUSED.",
)

register(Scenario(
    name="refused",
    summary="connect to a loopback port where nothing listens; ECONNREFUSED from the RST/ACK",
    family_group="basics",
    setup=_reserve,
    play=_refused,
    expected={"Linux": _REFUSED, "Darwin": on_xnu(_REFUSED, xnu.SYN_TO_CLOSED_PORT, xnu.SEEN_REFUSED, xnu.SEEN_REFUSED_V6)},
))


# -- use-after-close --------------------------------------------------------------

def _use_after_close(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    _close(stage, "client", client)
    stage.wait_state(server, "CLOSE_WAIT")
    _recv(stage, "client", client)  # EBADF: our own close; no packet caused it
    _close(stage, "server", server)


_UAC = Expectation(
    outcomes=(Outcome("client", "recv", "EBADF", "local-close"),),
    teardown=(("client", "FIN,ACK"), ("server", "FIN,ACK")),
    why=("The client closed its own socket and then read from it. No packet is involved: the "
         "descriptor is gone (Go: use of closed network connection; Python: [Errno 9] Bad file descriptor)."),
)

register(Scenario(
    name="use-after-close",
    summary="we close, then read; EBADF, no packet involved",
    family_group="basics",
    setup=_listen,
    play=_use_after_close,
    expected={"Linux": _UAC, "Darwin": on_xnu(_UAC, xnu.OWN_CLOSE_EBADF, xnu.CLOSE_SENDS_FIN, xnu.SEEN_CLIENT_FIN)},
))
