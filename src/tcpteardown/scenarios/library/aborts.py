"""Aborts: the connection ends with RST because someone gave up on it.

`linger-abort` closes with SO_LINGER set to zero seconds (an abortive
close, RFC 9293 3.10.4 "ABORT"); `peer-crash-fin` and `peer-crash-rst` kill
the server's process with SIGKILL and let its kernel close what the process
left open: FIN when nothing was unread, RST when something was.

The crashed server is a tiny Python program of its own (a real process,
really killed, reaped with waitpid); it reports its accept() back on a
pipe so the recording still shows it. Nothing here sleeps to synchronise.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys

from ...model import SocketCall
from ..recorder import endpoint_of
from .. import xnu
from ..registry import Expectation, Outcome, Scenario, on_xnu, register
from ..stage import WAIT_SECONDS, ScenarioTimeout, Stage
from .basics import _close, _connected_pair, _listen, _recv, _send



# -- linger-abort ---------------------------------------------------------------

def _linger_abort(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    stage.rec.call("server", "setsockopt", server, server.setsockopt, socket.SOL_SOCKET, socket.SO_LINGER,
                   struct.pack("ii", 1, 0), text="setsockopt(SO_LINGER, on, 0 s)")
    _close(stage, "server", server)  # abortive close: RST, the send queue thrown away
    stage.wait_state(client, "CLOSE")
    _recv(stage, "client", client)
    _close(stage, "client", client)


_LINGER = Expectation(
    outcomes=(Outcome("client", "recv", "ECONNRESET", "rst"),),
    teardown=(("server", "RST,ACK"),),
    why=("The server set SO_LINGER on with a timeout of 0 s and closed: that asks the kernel for an "
         "abortive close, so it throws the connection away and sends RST instead of FIN, although "
         "nothing was unread. Load balancers and proxies do this on purpose to skip TIME_WAIT. The "
         "client's next recv reports ECONNRESET (Go: read: connection reset by peer)."),
)

register(Scenario(
    name="linger-abort",
    summary="the peer closes with SO_LINGER 0 s: RST instead of FIN; our recv fails with ECONNRESET",
    family_group="aborts",
    setup=_listen,
    play=_linger_abort,
    expected={"Linux": _LINGER, "Darwin": on_xnu(_LINGER, xnu.LINGER_ZERO_RST, xnu.RST_SETS_ECONNRESET, xnu.READ_ERROR_FIRST)},
))


# -- peer-crash-fin / peer-crash-rst ----------------------------------------------

# The server: accept one connection, (for "unread") wait until the request
# is in its receive buffer, report, then block until killed -- or until our
# end of its stdin closes, so it never outlives us.
_SERVER = r"""
import os, select, socket, sys, time
listener = socket.socket(fileno=int(sys.argv[1]))  # shares the parent's non-blocking flag
start = time.time_ns()
select.select([listener], [], [], 5.0)
conn, peer = listener.accept()
end = time.time_ns()
if sys.argv[2] == "unread":
    select.select([conn], [], [], 5.0)
sys.stdout.write("%d %d %d %d\n" % (start, end, conn.fileno(), os.getpid()))
sys.stdout.flush()
sys.stdin.buffer.read()
"""


def _crash_setup(unread: bool):
    def setup(stage: Stage) -> None:
        stage.listener = stage.listen()
        fd = stage.listener.fileno()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _SERVER, str(fd), "unread" if unread else "idle"],
                                pass_fds=(fd,), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        stage.server_process = proc

        def reap() -> None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()

        stage._cleanup.callback(reap)
    return setup


def _crash_play(unread: bool):
    def play(stage: Stage) -> None:
        proc = stage.server_process
        listener = stage.listener
        client = stage.socket()
        stage.rec.call("client", "connect", client, client.connect, stage.address(listener.getsockname()[1]))
        if unread:
            _send(stage, "client", client, b"GET /report HTTP/1.1\r\nHost: example\r\n\r\n")
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_SECONDS)
        if not ready:
            raise ScenarioTimeout("the server process never reported its accept()")
        start, end, fd, pid = (int(x) for x in proc.stdout.readline().split())
        stage.rec.add(SocketCall("server", "accept", start, end, result=fd, pid=pid, fd=listener.fileno(),
                                 local=endpoint_of(listener.getsockname()), remote=endpoint_of(client.getsockname()),
                                 text=f"accept() -> {fd} (in server process {pid})"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()  # reaped: its descriptors were closed by its kernel on the way out
        stage.notes.append(f"server process {pid} killed with SIGKILL and reaped")
        stage.wait_state(client, "CLOSE" if unread else "CLOSE_WAIT")
        _recv(stage, "client", client)
        _close(stage, "client", client)
    return play


_CRASH_FIN = Expectation(
    outcomes=(Outcome("client", "recv", "EOF", "fin"),),
    teardown=(("server", "FIN,ACK"), ("client", "FIN,ACK")),
    why=("The server process was killed with SIGKILL. A process cannot close anything once killed, but "
         "its kernel closes every descriptor it held, exactly as close() would: nothing was unread, so "
         "the kernel sends FIN and the client reads end-of-file. From the wire alone a crash looks like "
         "a clean close (Python: RemoteDisconnected; Go: unexpected EOF)."),
)

_CRASH_RST = Expectation(
    outcomes=(Outcome("client", "recv", "ECONNRESET", "rst"),),
    teardown=(("server", "RST,ACK"),),
    why=("The server process was killed with SIGKILL while the client's request sat unread in its "
         "receive buffer. Its kernel closes the socket for it, and a close with unread data is an "
         "abort: RST, not FIN (RFC 2525 2.17). The client's recv reports ECONNRESET."),
)

register(Scenario(
    name="peer-crash-fin",
    summary="the server process is killed (SIGKILL) with nothing unread; its kernel sends FIN; our recv gets EOF",
    family_group="aborts",
    setup=_crash_setup(unread=False),
    play=_crash_play(unread=False),
    expected={"Linux": _CRASH_FIN, "Darwin": on_xnu(_CRASH_FIN, xnu.EXIT_CLOSES, xnu.CLOSE_SENDS_FIN)},
))

register(Scenario(
    name="peer-crash-rst",
    summary="the server process is killed (SIGKILL) with our request unread; its kernel sends RST; ECONNRESET",
    family_group="aborts",
    setup=_crash_setup(unread=True),
    play=_crash_play(unread=True),
    expected={"Linux": _CRASH_RST, "Darwin": on_xnu(_CRASH_RST, xnu.EXIT_CLOSES, xnu.CLOSE_UNREAD_RST, xnu.RST_SETS_ECONNRESET)},
))
