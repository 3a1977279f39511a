"""HTTP teardowns: a client that gives up mid-response, and the keep-alive race.

The server is a small HTTP/1.1 responder running in a thread of its own
(`Responder`), on a real socket, writing real responses; the client is our
code. Each step that would race in production (the client's abort against
the server's next write; the server's idle close against the client's next
request) is put in one order by waiting for a TCP state or for data in a
receive buffer, so every run tells the same story. Every thread is joined
before play() returns.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
from typing import Callable

from .. import xnu
from ..registry import Expectation, Outcome, Scenario, on_xnu, register
from ..stage import WAIT_SECONDS, ScenarioTimeout, Stage
from .basics import _close, _connected_pair, _listen, _recv, _send

CHUNK = 16 * 1024  # one piece of the streamed body
FIRST_CHUNKS = 2  # sent before the client gives up: fits any loopback receive buffer



def queued_bytes(sock: socket.socket) -> int:
    """Bytes waiting in `sock`'s receive buffer (FIONREAD, Linux and macOS)."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


class Responder:
    """The server side of one HTTP/1.1 connection, in its own thread.

    `steps` is the handler: a function of (responder) run in the thread; it
    uses `read_request`, `send`, `close` and `wait(event)`. The scenario
    sets `Responder.go` events to let it move on.
    """

    def __init__(self, stage: Stage, conn: socket.socket, steps: Callable[["Responder"], None]):
        self.stage, self.conn, self.steps = stage, conn, steps
        self.go = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="tcpteardown-http-server", daemon=True)

    def __enter__(self) -> "Responder":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.go.set()
        self.thread.join(WAIT_SECONDS)
        if self.thread.is_alive():
            raise ScenarioTimeout("the HTTP server thread did not finish")
        if self.error is not None and exc[0] is None:
            raise self.error

    def _run(self) -> None:
        try:
            self.steps(self)
        except BaseException as exc:  # surfaced by __exit__ in the scenario's thread
            self.error = exc

    def read_request(self) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = _recv(self.stage, "server", self.conn)
            if not isinstance(chunk, bytes) or not chunk:
                raise ScenarioTimeout("the client's request never arrived whole")
            data += chunk
        return data

    def send(self, data: bytes):
        return _send(self.stage, "server", self.conn, data)

    def close(self):
        return _close(self.stage, "server", self.conn)

    def wait(self) -> None:
        if not self.go.wait(WAIT_SECONDS):
            raise ScenarioTimeout("the scenario never let the HTTP server go on")
        self.go.clear()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")


# -- http-client-abort ------------------------------------------------------------------

def _streaming_handler(server: Responder) -> None:
    server.read_request()
    server.send(STREAM_HEAD + _chunk(b"x" * CHUNK))
    for _ in range(FIRST_CHUNKS - 1):
        server.send(_chunk(b"x" * CHUNK))
    server.wait()  # the next piece of the export is not ready yet...
    server.send(_chunk(b"y" * CHUNK))  # ECONNRESET: the client's RST arrived meanwhile
    server.send(_chunk(b"y" * CHUNK))  # EPIPE: the error was reported, the pipe is gone
    server.close()


def _http_client_abort(stage: Stage) -> None:
    client, conn = _connected_pair(stage, stage.listener)
    sent = len(STREAM_HEAD) + FIRST_CHUNKS * len(_chunk(b"x" * CHUNK))
    with Responder(stage, conn, _streaming_handler) as server:
        _send(stage, "client", client, b"GET /export.csv HTTP/1.1\r\nHost: example\r\n\r\n")
        stage.wait_for("the first chunks in the client's receive buffer", lambda: queued_bytes(client) >= sent)
        _recv(stage, "client", client, 4096)  # the head and a little body; the rest stays unread
        _close(stage, "client", client)  # gives up with unread data: RST, not FIN
        stage.wait_state(conn, "CLOSE")
        server.go.set()


_ABORT = Expectation(
    outcomes=(Outcome("server", "send", "ECONNRESET", "rst"), Outcome("server", "send", "EPIPE", "rst")),
    teardown=(("client", "RST,ACK"),),
    why=("The client read the response head and a little of the body, then gave up and closed with the "
         "rest still unread in its receive buffer, so its kernel sent RST, not FIN. The server, still "
         "streaming, finds the reset on its next write: ECONNRESET (Go: write: connection reset by "
         "peer); the write after that finds the connection gone: EPIPE, the 'broken pipe' Go and nginx "
         "log while writing a response whose client went away. Which one a server logs depends only on "
         "whether an earlier write already reported the reset."),
)

register(Scenario(
    name="http-client-abort",
    summary="an HTTP client gives up mid-response with unread data (RST); the server's writes fail: ECONNRESET, then EPIPE",
    family_group="http",
    setup=_listen,
    play=_http_client_abort,
    expected={"Linux": _ABORT, "Darwin": on_xnu(
        _ABORT, xnu.CLOSE_UNREAD_RST, xnu.RST_SETS_ECONNRESET, xnu.WRITE_EPIPE_FIRST, xnu.SEEN_CLOSE_UNREAD,
        outcomes=(Outcome("server", "send", "EPIPE", "rst"), Outcome("server", "send", "EPIPE", "rst")),
        why=("The client closes with the response unread: RST,ACK, as on Linux (a real Mac capture shows "
             "exactly this). The server's writes differ: XNU's sosendcheck() reports 'cannot send' before "
             "the pending ECONNRESET, so a macOS server logs 'broken pipe' from the first write on."))},
))


# -- keepalive-race-eof / keepalive-race-reset ---------------------------------------------

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


def _keepalive_handler(server: Responder) -> None:
    server.read_request()
    server.send(RESPONSE)
    server.wait()  # idle... until the keep-alive timeout fires
    server.close()


def _first_exchange(stage: Stage, client: socket.socket) -> None:
    _send(stage, "client", client, b"GET /first HTTP/1.1\r\nHost: example\r\n\r\n")
    stage.wait_for("the first response", lambda: queued_bytes(client) >= len(RESPONSE))
    _recv(stage, "client", client)


def _keepalive_eof(stage: Stage) -> None:
    client, conn = _connected_pair(stage, stage.listener)
    with Responder(stage, conn, _keepalive_handler) as server:
        _first_exchange(stage, client)
        server.go.set()  # the idle timeout fires first: the server closes, FIN
    stage.wait_state(client, "CLOSE_WAIT")
    # The pool hands out the connection anyway; the request goes out...
    _send(stage, "client", client, b"GET /second HTTP/1.1\r\nHost: example\r\n\r\n")
    stage.wait_state(client, "CLOSE")  # ...and the server's kernel answers RST
    _recv(stage, "client", client)  # EOF: the FIN came first, and a read reports it first
    _close(stage, "client", client)


_KA_EOF = Expectation(
    outcomes=(Outcome("client", "recv", "EOF", "fin"),),
    teardown=(("server", "FIN,ACK"), ("server", "RST")),
    why=("The server closed the idle keep-alive connection (FIN) just before the client reused it. "
         "The client's request still goes out, since writing into a half-closed connection succeeds; "
         "the server's kernel has no socket for it and answers RST. Yet the client's read returns "
         "end-of-file, not a reset: the FIN arrived first, and Linux reports end-of-file before a "
         "later error. Python says RemoteDisconnected, Go 'server closed idle connection' or EOF; "
         "clients retry idempotent requests for exactly this race."),
)

register(Scenario(
    name="keepalive-race-eof",
    summary="the server closes an idle keep-alive connection (FIN); we reuse it: our request draws RST, our read gets EOF",
    family_group="http",
    setup=_listen,
    play=_keepalive_eof,
    expected={"Linux": _KA_EOF, "Darwin": on_xnu(
        _KA_EOF, xnu.DATA_AFTER_CLOSE_RST, xnu.RST_SETS_ECONNRESET, xnu.READ_ERROR_FIRST, xnu.SEEN_DATA_AFTER_FIN,
        outcomes=(Outcome("client", "recv", "ECONNRESET", "rst"),),
        why=("The same segments as on Linux (FIN, the reused request, a bare RST), but the read differs: the "
             "RST in CLOSE_WAIT leaves ECONNRESET, and XNU's soreceive() reports a pending error before "
             "end-of-file, so the client reads 'connection reset by peer' where Linux reads EOF."))},
))


def _keepalive_reset(stage: Stage) -> None:
    client, conn = _connected_pair(stage, stage.listener)
    with Responder(stage, conn, _keepalive_handler) as server:
        _first_exchange(stage, client)
        # The client reuses the connection: a POST, head first, body next.
        head = b"POST /upload HTTP/1.1\r\nHost: example\r\nContent-Length: 11\r\n\r\n"
        _send(stage, "client", client, head)
        stage.wait_for("the request head in the server's buffer", lambda: queued_bytes(conn) >= len(head))
        server.go.set()  # the idle timeout fires now, with the request unread: RST
    stage.wait_state(client, "CLOSE")
    _send(stage, "client", client, b"hello world")  # ECONNRESET
    _close(stage, "client", client)


_KA_RST = Expectation(
    outcomes=(Outcome("client", "send", "ECONNRESET", "rst"),),
    teardown=(("server", "RST,ACK"),),
    why=("The client reused the idle keep-alive connection just as the server's idle timeout fired: "
         "the request head arrived, but the server closed without reading it. A close with unread "
         "data is an abort, so the server's kernel sent RST instead of FIN, and the client's next "
         "write (the request body) fails with ECONNRESET (Go: write: connection reset by peer; a "
         "later write would say broken pipe)."),
)

register(Scenario(
    name="keepalive-race-reset",
    summary="we reuse a keep-alive connection as the server's idle timeout fires; it closes with our request unread (RST); our write fails with ECONNRESET",
    family_group="http",
    setup=_listen,
    play=_keepalive_reset,
    expected={"Linux": _KA_RST, "Darwin": on_xnu(
        _KA_RST, xnu.CLOSE_UNREAD_RST, xnu.RST_SETS_ECONNRESET, xnu.WRITE_EPIPE_FIRST, xnu.SEEN_CLOSE_UNREAD_SERVER,
        outcomes=(Outcome("client", "send", "EPIPE", "rst"),),
        why=("The server closes with the request head unread: RST,ACK, as on Linux. The client's write of "
             "the body fails with EPIPE, not ECONNRESET: XNU's sosendcheck() tests 'cannot send' first."))},
))
