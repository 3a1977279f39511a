"""watch -> flight recorder worker: framed messages on a pipe, never blocking watch.

A message is one type byte, a 4-byte big-endian length and the payload:
``E`` raw trace_pipe bytes, ``T`` one RST line (JSON), ``L`` the kernel's
lost-event count so far. `Sender` writes without ever blocking the caller:
what the pipe does not take now waits in a backlog of at most
`backlog_bytes`; past that, messages are dropped and counted (`dropped`,
by type), for the summary to say.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import BinaryIO, Iterator

__all__ = ["Sender", "read_messages"]

_HEADER = struct.Struct(">cI")
PIPE_BYTES = 1 << 20  # ask the kernel for a 1 MB pipe (fs.pipe-max-size allows it by default)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # a smaller pipe still works: the backlog takes the rest


class Sender:
    def __init__(self, fd: int, backlog_bytes: int = 16 << 20):
        self.fd = fd
        self.backlog_bytes = backlog_bytes
        self._backlog = bytearray()
        self.dropped: dict[str, int] = {}
        self.broken = False  # the worker is gone
        os.set_blocking(fd, False)
        grow_pipe(fd)

    def send(self, kind: bytes, payload: bytes) -> bool:
        """Queue one message and write what the pipe takes; False when it was dropped."""
        if self.broken:
            return False
        if len(self._backlog) + len(payload) > self.backlog_bytes:
            name = kind.decode()
            self.dropped[name] = self.dropped.get(name, 0) + 1
            self.pump()
            return False
        self._backlog += _HEADER.pack(kind, len(payload))
        self._backlog += payload
        self.pump()
        return True

    def pump(self) -> None:
        """Write as much of the backlog as the pipe takes now."""
        while self._backlog and not self.broken:
            try:
                written = os.write(self.fd, self._backlog)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EBADF):
                    self.broken = True
                    return
                raise
            del self._backlog[:written]

    def close(self, timeout: float = 30.0) -> None:
        """Write the rest (blocking, at most `timeout` seconds), then end of file."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while self._backlog and not self.broken and time.monotonic() < deadline:
            select.select([], [self.fd], [], max(0.0, deadline - time.monotonic()))
            self.pump()
        os.close(self.fd)


def read_messages(stream: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) until end of file (a cut message at the end is dropped)."""
    while True:
        header = stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        kind, size = _HEADER.unpack(header)
        payload = stream.read(size)
        if len(payload) < size:
            return
        yield kind, payload
