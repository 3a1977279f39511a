"""The recorder: every socket call a scenario makes, timed, with its errno.

This is the one place where a socket call becomes a `SocketCall`: start and
end on the realtime clock (the clock packet timestamps use), the result, and
the errno translated to its *name* here, at the edge, so numbers never leave.
Scenarios call `rec.call(role, "send", sock, sock.send, data)` instead of
`sock.send(data)`; the exception is swallowed and recorded, because in a
teardown story a failing call is the point, not an accident.
"""

from __future__ import annotations

import errno as errno_module
import socket
import threading
import time
from typing import Any, Callable, Optional

from ..model import Endpoint, SocketCall


def endpoint_of(address: Any) -> Optional[Endpoint]:
    """A socket address tuple as an Endpoint (None for unbound or non-IP)."""
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    if not host or (port == 0 and host in ("0.0.0.0", "::")):
        return None
    return Endpoint(host.split("%")[0], int(port))


def errno_name(exc: OSError) -> str:
    """The errno name of an exception; timeouts without errno are ETIMEDOUT."""
    if exc.errno is not None:
        return errno_module.errorcode.get(exc.errno, f"E{exc.errno}")
    if isinstance(exc, socket.timeout):
        return "ETIMEDOUT"
    return "EIO"


class Recorder:
    """Collects the SocketCalls of one scenario run, in the order they ended."""

    def __init__(self, pid: Optional[int] = None):
        import os

        self.pid = os.getpid() if pid is None else pid
        self._calls: list[SocketCall] = []
        # What each Python socket object was last seen as: after close() its
        # fileno() is -1, yet a call on it still belongs to the same story.
        self._last_seen: dict[int, tuple] = {}
        self._lock = threading.Lock()  # a few scenarios act from two threads

    @property
    def calls(self) -> tuple[SocketCall, ...]:
        with self._lock:
            return tuple(sorted(self._calls, key=lambda c: (c.start_ns, c.end_ns)))

    def add(self, call: SocketCall) -> None:
        with self._lock:
            self._calls.append(call)

    def call(self, role: str, op: str, sock: socket.socket, fn: Callable[..., Any], *args: Any,
             text: str = "", remote: Optional[Endpoint] = None) -> Any:
        """Run `fn(*args)`, time it, record it. Returns fn's result, or the
        OSError it raised (so the scenario can branch on it)."""
        fd = sock.fileno()
        local, peer = self._endpoints(sock)
        known_fd, known_local, known_peer = self._last_seen.get(id(sock), (-1, None, None))
        if fd < 0:  # closed: the call still belongs to the socket it was
            fd, local, peer = known_fd, known_local, known_peer
        # After an RST getpeername() fails, yet the call is still about that peer.
        local, peer = local or known_local, peer or known_peer or remote
        if op == "connect" and args:
            peer = peer or endpoint_of(args[0])
        start = time.time_ns()
        try:
            value = fn(*args)
        except OSError as exc:
            end = time.time_ns()
            local = local or self._endpoints(sock)[0]  # a failed connect() still bound a port
            self._last_seen[id(sock)] = (fd, local, peer)
            self.add(SocketCall(role, op, start, end, result=-1, errno=errno_name(exc), pid=self.pid,
                                fd=fd if fd >= 0 else None, local=local, remote=peer,
                                text=text or f"{op}() -> {errno_name(exc)}"))
            return exc
        end = time.time_ns()
        result = _result_number(value)
        if op == "accept":
            peer = endpoint_of(value[1])
        elif local is None or peer is None:
            # connect() learns its local port only when it returns.
            local2, peer2 = self._endpoints(sock)
            local, peer = local or local2, peer or peer2
        if op != "accept":
            self._last_seen[id(sock)] = (fd, local, peer)
        self.add(SocketCall(role, op, start, end, result=result, pid=self.pid,
                            fd=fd if fd >= 0 else None, local=local, remote=peer,
                            text=text or f"{op}() -> {result}"))
        return value

    @staticmethod
    def _endpoints(sock: socket.socket) -> tuple[Optional[Endpoint], Optional[Endpoint]]:
        try:
            local = endpoint_of(sock.getsockname())
        except OSError:
            local = None
        try:
            peer = endpoint_of(sock.getpeername())
        except OSError:
            peer = None
        return local, peer


def _result_number(value: Any) -> Optional[int]:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, tuple) and value and isinstance(value[0], socket.socket):
        return value[0].fileno()  # accept(): the new fd
    return None
