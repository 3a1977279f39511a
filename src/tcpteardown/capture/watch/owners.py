"""Which process owns a socket: from the socket, never from the CPU's current task.

Two sources, in this order:

1. a task that made a system call on the socket (`teardowns.Task`, from an
   event in process context: connect, close, shutdown, send): its thread id
   is turned into the process (``/proc/<tid>/status`` Tgid) and its command;
2. /proc: ``/proc/net/tcp`` and ``tcp6`` map each socket's 4-tuple to its
   inode, and ``/proc/<pid>/fd/*`` links (``socket:[inode]``) map the inode
   to the processes holding it. A background thread refreshes that map when
   sockets reach ESTABLISHED in softirq (the accept side, whose owner no
   event names), at most every `MIN_REFRESH_S`, and again for up to
   `RETRY_S` while a socket is held by nobody yet (still in its listener's
   accept queue).

An RST removes the socket from /proc/net/tcp at once, so a connection reset
before a refresh saw it has no known owner: the line says so in words
instead of naming a wrong process.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Optional

from ...model import Endpoint
from .teardowns import Key, Task, Teardown

__all__ = ["Owners", "parse_proc_net_tcp"]

MIN_REFRESH_S = 0.05
RETRY_S = 1.0  # how long a socket nobody holds yet (in an accept queue) is looked for again
MAX_OWNERS = 65_536
UNKNOWN_OWNER = "owner unknown: the socket was gone before /proc could name its process"

# Reset reasons that mean the sending socket was already closed by the process that held it:
# the line names that process (the connection was its) and says it no longer holds the socket.
CLOSED_BY_OWNER = {
    "TCP_ABORT_ON_DATA": "it had closed the socket: its kernel answered data that came after",
    "TCP_ABORT_ON_CLOSE": "it closed the socket with unread data",
}


def _hex_address(text: str) -> str:
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits -> an IPv6 address (each 32-bit word host order)."""
    raw = bytes.fromhex(text)
    data = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(data)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def parse_proc_net_tcp(text: str) -> dict[int, Key]:
    """inode -> (local, remote) for the sockets of a /proc/net/tcp{,6} file (listeners left out)."""
    found = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] == "0A":  # 0A: LISTEN
            continue
        try:
            inode = int(parts[9])
            local_host, local_port = parts[1].split(":")
            remote_host, remote_port = parts[2].split(":")
            key = (Endpoint(_hex_address(local_host), int(local_port, 16)),
                   Endpoint(_hex_address(remote_host), int(remote_port, 16)))
        except ValueError:
            continue
        if inode:
            found[inode] = key
    return found


class Owners:
    """Socket 4-tuple -> (pid, comm), kept fresh by a background thread."""

    def __init__(self, proc: os.PathLike = "/proc"):
        self.proc = Path(proc)
        self._owners: OrderedDict[Key, tuple[int, str]] = OrderedDict()
        self._tasks: OrderedDict[int, tuple[int, str]] = OrderedDict()  # tid -> (pid, comm)
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.refreshes = 0
        self._unowned: dict[Key, float] = {}  # sockets no process held at the last read, first seen

    # -- the background thread

    def start(self) -> "Owners":
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="tcpteardown-watch-owners", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def ask(self) -> None:
        """New sockets to name: refresh soon."""
        self._wanted.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._wanted.clear()
            started = time.monotonic()
            self.refresh()
            self._stopping.wait(max(0.0, MIN_REFRESH_S - (time.monotonic() - started)))

    # -- reading /proc

    def refresh(self) -> None:
        sockets: dict[int, Key] = {}
        for name in ("tcp", "tcp6"):
            try:
                sockets.update(parse_proc_net_tcp((self.proc / "net" / name).read_text()))
            except OSError:
                continue
        with self._lock:
            known = {key for key in self._owners}
        wanted = {inode: key for inode, key in sockets.items() if key not in known}
        found = set()
        if wanted:
            for inode, pid in self._holders(wanted):
                self._keep(wanted[inode], pid, self._comm(pid))
                found.add(wanted[inode])
        self._retry(set(wanted.values()) - found)
        self.refreshes += 1

    def _retry(self, unowned: set) -> None:
        """A socket established in softirq may still wait in its listener's accept queue (no
        process holds it yet): read /proc again soon, for up to RETRY_S after it was first seen."""
        now = time.monotonic()
        self._unowned = {key: self._unowned.get(key, now) for key in unowned
                         if now - self._unowned.get(key, now) < RETRY_S}
        if self._unowned and self._thread is not None:
            self._wanted.set()

    def _holders(self, inodes: dict[int, Key]) -> Iterable[tuple[int, int]]:
        for entry in os.scandir(self.proc):
            if not entry.name.isdigit():
                continue
            try:
                fds = os.scandir(f"{entry.path}/fd")
            except OSError:
                continue
            with fds:
                for fd in fds:
                    try:
                        link = os.readlink(fd.path)
                    except OSError:
                        continue
                    if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                        yield int(link[8:-1]), int(entry.name)

    def _comm(self, pid: int) -> str:
        try:
            return (self.proc / str(pid) / "comm").read_text().strip()
        except OSError:
            return "?"

    def _keep(self, key: Key, pid: int, comm: str) -> None:
        with self._lock:
            self._owners[key] = (pid, comm)
            self._owners.move_to_end(key)
            if len(self._owners) > MAX_OWNERS:
                self._owners.popitem(last=False)

    def of_task(self, task: Task) -> tuple[int, str]:
        """The process of a thread (its tgid) and the process's command."""
        cached = self._tasks.get(task.tid)
        if cached is not None:
            return cached
        pid = task.tid
        try:
            for line in (self.proc / str(task.tid) / "status").read_text().splitlines():
                if line.startswith("Tgid:"):
                    pid = int(line.split()[1])
                    break
        except (OSError, ValueError):
            return task.tid, task.comm  # gone: its thread id and thread name are all we have
        found = (pid, self._comm(pid) if pid != task.tid else task.comm)
        self._tasks[task.tid] = found
        if len(self._tasks) > MAX_OWNERS:
            self._tasks.popitem(last=False)
        return found

    def of_key(self, key: Key) -> Optional[tuple[int, str]]:
        with self._lock:
            return self._owners.get(key)

    def forget(self, keys: Iterable[Key]) -> None:
        """New connections on these 4-tuples: what /proc said of the old ones is not theirs."""
        with self._lock:
            for key in keys:
                self._owners.pop(key, None)

    def learn(self, key: Key, task: Task) -> None:
        """A task made a system call on this socket: it holds it."""
        self._keep(key, *self.of_task(task))

    # -- naming the owners of one teardown

    def resolve(self, teardown: Teardown) -> Teardown:
        changes = {}
        if teardown.received:
            owner = self._owner(teardown.receiver_task, (teardown.local, teardown.remote))
            if owner is not None:
                changes.update(receiver_pid=owner[0], receiver_comm=owner[1])
            elif teardown.state == "TIME_WAIT":
                changes["owner_note"] = "a TIME_WAIT mini-socket: no process holds it any more"
            else:
                changes["owner_note"] = UNKNOWN_OWNER
        if teardown.sent_here and teardown.sender_note is None:
            owner = self._owner(teardown.sender_task, (teardown.remote, teardown.local))
            if owner is not None:
                changes.update(sender_pid=owner[0], sender_comm=owner[1])
                if teardown.reason in CLOSED_BY_OWNER:
                    changes["sender_note"] = CLOSED_BY_OWNER[teardown.reason]
            else:
                changes["sender_note"] = UNKNOWN_OWNER
        return replace(teardown, **changes) if changes else teardown

    def _owner(self, task: Optional[Task], key: Key) -> Optional[tuple[int, str]]:
        if task is not None:
            return self.of_task(task)
        return self.of_key(key)
