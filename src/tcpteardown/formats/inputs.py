"""Opening an input once, whatever the user named: a file, a pipe or a FIFO.

Readers need a regular file (the capture reader maps it; the bundle's
metadata sits in its last block). What a user may pass instead: a pipe
(`<(tcpdump -w - ...)`), a FIFO (`mkfifo`), and by mistake a device
(`/dev/zero` would be read forever), a directory or a socket. So:

- a regular file is opened as it is;
- a pipe or FIFO is read once, to its end, into an anonymous temporary
  file (deleted by the kernel when closed), after its first bytes passed
  `check` (so an endless stream of garbage stops at once); a FIFO that no
  program opens for writing within FIFO_WAIT_SECONDS is an error, not a
  hang;
- anything else is refused with its kind named.

Never: open the same pipe twice (a second open steals or loses data), or
buffer a whole stream in memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tempfile
import time
from typing import BinaryIO, Callable, Optional

from ..errors import UserError

FIFO_WAIT_SECONDS = 5.0  # the default; TCPTEARDOWN_FIFO_WAIT_S sets another (a writer slow to start)
CHUNK = 1 << 20

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_problem(path: "str | os.PathLike") -> Optional[str]:
    """Why `path` cannot be read as an input (without naming it), or None (a
    regular file, pipe or FIFO). A missing file is left to open() to report."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, kind in _KINDS:
        if test(mode):
            return f"this is {kind}, not a file (give a capture or log file, a pipe or a FIFO)"
    return None


def is_regular(path: "str | os.PathLike") -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def open_seekable(path: "str | os.PathLike", *, check: Optional[Callable[[bytes], Optional[str]]] = None,
                  error: Optional[Callable[[str], Exception]] = None) -> BinaryIO:
    """A seekable binary file with the contents of `path` (see the module docstring).

    `check(first_bytes)` returns a problem (the stream is not what we read)
    or None. Problems are raised as `error(problem)`, by default a UserError
    naming the file.
    """
    if error is None:
        def error(problem: str) -> Exception:
            return UserError(f"{os.fsdecode(path)}: {problem}")
    problem = kind_problem(path)
    if problem:
        raise error(problem)
    if not os.path.exists(path) or is_regular(path):
        try:
            return open(path, "rb")
        except OSError as exc:
            raise error(f"cannot open: {exc.strerror or exc}") from None
    return _spool(_open_stream(path, error), check, error)


def fifo_wait_seconds() -> float:
    """How long a FIFO may wait for its writer: TCPTEARDOWN_FIFO_WAIT_S, else FIFO_WAIT_SECONDS."""
    text = os.environ.get("TCPTEARDOWN_FIFO_WAIT_S", "")
    if not text:
        return FIFO_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise UserError(f"TCPTEARDOWN_FIFO_WAIT_S={text!r}: expected seconds, a number above 0")
    return seconds


def _open_stream(path, error) -> BinaryIO:
    """A pipe as it is; a FIFO without blocking forever in open() for a writer."""
    if not stat.S_ISFIFO(os.stat(path).st_mode):
        return open(path, "rb")
    wait_s = fifo_wait_seconds()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                first = os.read(fd, CHUNK)
            except BlockingIOError:  # a writer is there, nothing written yet
                first = None
            if first or first is None:
                break
            # b"": no writer has opened it yet (or it closed without writing)
            if time.monotonic() > deadline:
                raise error(f"a FIFO that no program wrote to within {wait_s:g} s "
                            "(start the writer first, or wait longer with TCPTEARDOWN_FIFO_WAIT_S)")
            time.sleep(0.05)  # wait-ok: waiting for a writer to open the FIFO (bounded above)
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return _Prefixed(first or b"", stream)


class _Prefixed:
    """A stream with bytes already read put back in front."""

    def __init__(self, first: bytes, stream: BinaryIO):
        self._first, self._stream = first, stream

    def read(self, size: int = -1) -> bytes:
        if self._first:
            head, self._first = self._first, b""
            return head
        return self._stream.read(size)

    def close(self) -> None:
        self._stream.close()


def _spool(stream, check, error) -> BinaryIO:
    spool = tempfile.TemporaryFile(prefix="tcpteardown-input-")
    try:
        with contextlib.closing(stream):
            head = b""
            while check is not None and len(head) < 64:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                head += chunk
            if check is not None:
                problem = check(head)
                if problem:
                    raise error(problem)
            spool.write(head)
            shutil.copyfileobj(stream, spool, CHUNK)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


# Byte order marks, longest first (UTF-32 LE starts like UTF-16 LE).
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def text_encoding(head: bytes) -> str:
    """The encoding of a text log from its first bytes: a byte order mark
    decides (Windows tools write UTF-16 logs); without one, NUL bytes in every
    other position are UTF-16 without a mark (what .NET's Encoding.Unicode
    and PowerShell's Out-File write); else UTF-8."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    sample = head[:4096]
    if len(sample) >= 4:
        odd, even = sample[1::2].count(0), sample[0::2].count(0)
        if odd > len(sample) // 4 and even == 0:
            return "utf-16-le"
        if even > len(sample) // 4 and odd == 0:
            return "utf-16-be"
    return "utf-8"


def _text_problem(head: bytes) -> Optional[str]:
    if text_encoding(head) == "utf-8" and head[:64].count(0) > 16:
        return "binary data, not a text log (NUL bytes where text should be)"
    return None


def open_text(path: "str | os.PathLike") -> io.TextIOWrapper:
    """A text log, read once (see the module docstring), in the encoding its
    byte order mark names (UTF-8 otherwise); undecodable bytes become U+FFFD."""
    binary = open_seekable(path, check=_text_problem)
    try:
        head = binary.read(4096)
        binary.seek(0)
        return io.TextIOWrapper(binary, encoding=text_encoding(head), errors="replace", newline=None)
    except BaseException:
        binary.close()
        raise
