"""The stage a scenario plays on: loopback sockets it owns and cleans up.

A scenario asks the stage for listeners and reserved ports during `setup`
(so the capture knows which ports to watch before anything is sent), then
plays. Every socket the stage made is closed when the run ends, whatever
happened; anything else a scenario starts it hands to `on_cleanup`.
Waiting is always for an event (a TCP state, a readable socket), with a
deadline, never a fixed sleep.

The library's shared moves live here too, as public functions: `listen`
(the usual `setup`), `connected_pair`, and the recorded calls `send`,
`recv` and `close` (each one a `SocketCall` through the stage's recorder).
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Callable, Optional

from ..errors import UserError
from .recorder import Recorder

LOOPBACK = {"ipv4": ("127.0.0.1", socket.AF_INET), "ipv6": ("::1", socket.AF_INET6)}

# Deadline for one wait: generous on a loaded CI machine, yet a broken
# scenario fails in seconds instead of hanging.
WAIT_SECONDS = 5.0


class ScenarioTimeout(RuntimeError):
    """A state the scenario waited for never came."""


class Stage:
    def __init__(self, family: str = "ipv4", recorder: Optional[Recorder] = None):
        if family not in LOOPBACK:
            raise UserError(f"unknown address family {family!r} (expected ipv4 or ipv6)")
        self.family = family
        self.host, self.af = LOOPBACK[family]
        self.rec = recorder or Recorder()
        self.ports: list[int] = []  # ports the capture must watch
        self.notes: list[str] = []  # what the scenario wants a reader to know
        self._cleanup = contextlib.ExitStack()
        self.listener: Optional[socket.socket] = None  # the usual server socket
        self.closed_port: Optional[int] = None  # a port nothing listens on

    # -- sockets -----------------------------------------------------------
    def socket(self) -> socket.socket:
        from ..capture.sockopts import prepare_socket

        sock = socket.socket(self.af, socket.SOCK_STREAM)
        self._cleanup.callback(sock.close)
        prepare_socket(sock)
        sock.settimeout(WAIT_SECONDS)
        return sock

    def listen(self, backlog: int = 8) -> socket.socket:
        """A listener on an ephemeral loopback port (parallel runs never collide)."""
        sock = self.socket()
        sock.bind((self.host, 0))
        sock.listen(backlog)
        self.ports.append(sock.getsockname()[1])
        return sock

    def reserve_port(self) -> int:
        """A port that is bound but not listening: a SYN to it draws RST."""
        sock = self.socket()
        sock.bind((self.host, 0))
        port = sock.getsockname()[1]
        self.ports.append(port)
        return port

    def address(self, port: int) -> tuple:
        return (self.host, port)

    def on_cleanup(self, callback: Callable[[], object]) -> None:
        """Run `callback` when the run ends, whatever happened (last registered, first run)."""
        self._cleanup.callback(callback)

    def close(self) -> None:
        self._cleanup.close()

    # -- waiting for events --------------------------------------------------
    def wait_for(self, what: "str | Callable[[], str]", predicate: Callable[[], bool],
                 timeout: float = WAIT_SECONDS) -> None:
        """Poll `predicate` until true; the deadline only guards against hangs.
        `what` may be a callable, asked only when the wait failed."""
        deadline = time.monotonic() + timeout
        pause = 0.0001
        while not predicate():
            if time.monotonic() > deadline:
                raise ScenarioTimeout(f"waited {timeout:g} s for {what() if callable(what) else what}")
            time.sleep(pause)  # wait-ok: polling an event with back-off, not guessing a duration
            pause = min(pause * 2, 0.005)

    def wait_state(self, sock: socket.socket, *states: str, timeout: float = WAIT_SECONDS) -> str:
        """Wait until the kernel says `sock` is in one of `states` (Linux names)."""
        from ..capture.sockopts import tcp_state

        seen = []

        def reached() -> bool:
            seen[:] = [tcp_state(sock)]
            return seen[0] in states

        self.wait_for(lambda: f"TCP state {'/'.join(states)} (last seen {seen[0] if seen else '?'})",
                      reached, timeout)
        return seen[0]

    def wait_readable(self, sock: socket.socket, timeout: float = WAIT_SECONDS) -> None:
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            raise ScenarioTimeout(f"waited {timeout:g} s for the socket to become readable")



# -- the moves every scenario shares ------------------------------------------------

def _send_flags() -> int:
    # Linux raises SIGPIPE on a write to a reset socket unless told not to (macOS
    # uses SO_NOSIGPIPE instead, set by prepare_socket); Python ignores SIGPIPE
    # anyway, but a scenario must not depend on that.
    from ..capture.sockopts import nosignal_send_flags

    return nosignal_send_flags()


def listen(stage: Stage) -> None:
    """The usual `setup`: one listener, kept as `stage.listener`."""
    stage.listener = stage.listen()


def connected_pair(stage: Stage, listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(client, server): a recorded connect() and accept(); both closed when the run ends."""
    client = stage.socket()
    stage.rec.call("client", "connect", client, client.connect, stage.address(listener.getsockname()[1]))
    accepted = stage.rec.call("server", "accept", listener, listener.accept)
    server, _ = accepted
    stage.on_cleanup(server.close)
    server.settimeout(client.gettimeout())
    return client, server


def send(stage: Stage, role: str, sock: socket.socket, data: bytes):
    """A recorded send() (never raising SIGPIPE); the byte count, or the OSError."""
    return stage.rec.call(role, "send", sock, sock.send, data, _send_flags())


def recv(stage: Stage, role: str, sock: socket.socket, size: int = 65536):
    """A recorded recv(); the bytes (b"" at end-of-file), or the OSError."""
    return stage.rec.call(role, "recv", sock, sock.recv, size)


def close(stage: Stage, role: str, sock: socket.socket):
    """A recorded close()."""
    return stage.rec.call(role, "close", sock, sock.close)
