"""SIGTERM and SIGHUP unwind like Ctrl-C, so every cleanup path runs.

Python turns SIGINT into KeyboardInterrupt, which `with` blocks and
`finally` clauses see; SIGTERM (systemd, `kill`, `timeout`) and SIGHUP (the
terminal went away) kill the process on the spot by default, leaving
tcpdump, strace, tracefs instances and half-written files behind and losing
a recording that Ctrl-C would have kept. Inside `unwinding()`, they raise
`Terminated`, a KeyboardInterrupt, so the code written for Ctrl-C handles
them too, and the exit status says which signal it was (128 + N).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

UNWINDING = ("SIGTERM", "SIGHUP")


class Terminated(KeyboardInterrupt):
    """A terminating signal other than SIGINT, raised where the program was."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(interrupt: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process killed by it."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def signal_of(interrupt: BaseException) -> int:
    """The signal to pass on to a program we run: the one we received."""
    return getattr(interrupt, "signum", signal.SIGINT)


def name_of(interrupt: BaseException) -> str:
    """SIGINT, SIGTERM or SIGHUP."""
    return signal.Signals(signal_of(interrupt)).name


def _raise(signum, frame):
    # Once is enough: a second SIGTERM must not abort the cleanup the first started.
    for name in UNWINDING:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def unwinding() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated while inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {name: signal.signal(getattr(signal, name), _raise) for name in UNWINDING
                if signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN}  # nohup stays nohup
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
