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


def processes_mentioning(text: str) -> list:
    """Command lines (words joined by spaces) of every process with `text` in one of its words."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(text.encode() in word for word in words):
            found.append(b" ".join(words).decode(errors="replace"))
    return found


def descendants(pid: int) -> list:
    """Pids of every process under `pid` (children, theirs, ...), from each task's children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def record_workdir(record_pid: int) -> Path:
    """The temporary folder of THIS `tcpteardown record` (its tcpdump, strace or bpftrace
    names it on their command lines), found among its own descendants: other records may
    run on the host at the same time (another test worker). None when none is running."""
    for pid in descendants(record_pid):
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for word in words:
            text = word.decode(errors="replace")
            if "tcpteardown-record-" in text:
                path = Path(text)
                while path.name and not path.name.startswith("tcpteardown-record-"):
                    path = path.parent
                return path
    return None
