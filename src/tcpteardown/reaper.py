"""The reaper: undoes what this process set up when it dies without doing so.

SIGINT and SIGTERM unwind (see `signals`), so `with` blocks remove tracefs
instances, stop tcpdump and strace, delete temporary folders. SIGKILL (or
the OOM killer) runs no code at all: what the process started would outlive
it, tcpdump still writing to a deleted folder. So the CLI starts one small
watchdog process per command (`enable()`), and each thing worth undoing is
registered with it (`watch_*` returns a token) and forgotten once undone
normally (`forget`). The watchdog reads its instructions from a pipe; when
the pipe reaches end of file (the parent is gone, however it died), it
carries out whatever is still registered: kill processes and process groups,
remove tracefs instances, delete folders. A parent that exits normally has
forgotten everything, so the watchdog then does nothing.

Never: act on anything that was not registered, or act while the parent is
alive. Library use (tests, notebooks) never starts a watchdog: `watch_*`
is a no-op there and the ordinary cleanup paths do the work.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import subprocess
import sys
import threading
from typing import Optional

_lock = threading.Lock()
_tokens = itertools.count(1)
_watchdog: Optional[subprocess.Popen] = None
_owner: Optional[int] = None  # the pid that enabled it (a forked child must not use its pipe)


def enable() -> None:
    """Start the watchdog for this process (idempotent). Linux and macOS."""
    global _watchdog, _owner
    with _lock:
        if _watchdog is not None and _owner == os.getpid():
            return
        _watchdog = subprocess.Popen(
            [sys.executable, "-m", "tcpteardown.reaper"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C at the terminal must not take it down with us
        )
        _owner = os.getpid()
    atexit.register(disable)


def disable() -> None:
    """Close the pipe and let the watchdog finish (what is still registered is undone)."""
    global _watchdog
    with _lock:
        watchdog, _watchdog = _watchdog, None
    if watchdog is not None and _owner == os.getpid():
        watchdog.stdin.close()
        watchdog.wait()


def _send(message: dict) -> Optional[int]:
    with _lock:
        if _watchdog is None or _owner != os.getpid():
            return None
        token = next(_tokens)
        try:
            _watchdog.stdin.write(json.dumps({"token": token, **message}).encode() + b"\n")
            _watchdog.stdin.flush()
        except (BrokenPipeError, ValueError):
            return None
        return token


def watch_process(pid: int) -> Optional[int]:
    """SIGKILL `pid` if we die first."""
    return _send({"kill": pid})


def watch_group(pgid: int) -> Optional[int]:
    """SIGKILL the whole process group `pgid` if we die first (strace and its tracees)."""
    return _send({"killpg": pgid})


def watch_instance(path: "str | os.PathLike") -> Optional[int]:
    """rmdir a tracefs instance if we die first."""
    return _send({"rmdir": os.fspath(path)})


def watch_folder(path: "str | os.PathLike") -> Optional[int]:
    """Delete a temporary folder and everything in it if we die first."""
    return _send({"rmtree": os.fspath(path)})


def forget(token: Optional[int]) -> None:
    """The thing behind `token` was undone normally: leave it alone."""
    if token is not None:
        with _lock:
            if _watchdog is None or _owner != os.getpid():
                return
            try:
                _watchdog.stdin.write(json.dumps({"forget": token}).encode() + b"\n")
                _watchdog.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass


# -- the watchdog itself ----------------------------------------------------------

RMDIR_TRIES = 200  # tracefs answers EBUSY until the dead reader's files are released


def _undo(actions: list) -> None:
    import errno
    import shutil
    import signal
    import time

    # Processes first, so nothing writes into what is removed next.
    for action in actions:
        try:
            if "killpg" in action:
                os.killpg(action["killpg"], signal.SIGKILL)
            elif "kill" in action:
                os.kill(action["kill"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for action in actions:
        if "rmdir" in action:
            for _ in range(RMDIR_TRIES):
                try:
                    os.rmdir(action["rmdir"])
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.005)  # wait-ok: retrying rmdir until the kernel releases the instance
        elif "rmtree" in action:
            shutil.rmtree(action["rmtree"], ignore_errors=True)


def _watch(stream) -> None:
    pending: dict[int, dict] = {}
    for line in stream:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "forget" in message:
            pending.pop(message["forget"], None)
        else:
            pending[message.pop("token")] = message
    _undo(list(pending.values()))


if __name__ == "__main__":
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)  # only the end of the pipe ends us
    _watch(sys.stdin.buffer)
