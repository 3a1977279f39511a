"""What a run may leave behind, read from /proc: the probes every leak test uses."""

import os
from pathlib import Path


def open_fds() -> set:
    """This process's open file descriptors."""
    return set(os.listdir("/proc/self/fd"))


def children() -> set:
    """The pids of this process's children (every thread's)."""
    pids = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return pids


def processes_in(namespace: str) -> list:
    """Pids of processes whose network namespace is `namespace` (a /proc/*/ns/net link)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") == namespace:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found
