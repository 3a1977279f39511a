"""Shared fixtures and the host probes behind the skip markers.

Each probe runs once; a skipped test names exactly what is missing. CI runs
as root with every tool installed, so nothing is skipped there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def tool_or_skip(name: str) -> str:
    """The path of an external program, or skip naming the missing tool."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs the program {name!r} on PATH (apt-get install {name})")
    return path


@dataclass
class LoopbackCapture:
    """What `tcpdump_on_loopback` set up: a listening socket on `port`, a port
    bound with nobody listening (`refused_port`: a connect there is refused),
    the file tcpdump writes, and tcpdump's stderr once it stopped."""

    listener: socket.socket
    port: int
    refused_port: int
    capture: Path
    stderr: str = ""


@contextlib.contextmanager
def tcpdump_on_loopback(capture: Path, *, backlog: int, buffer_kib: Optional[int] = None
                        ) -> Iterator[LoopbackCapture]:
    """`tcpdump -w capture` on lo for a real listener and a closed port, both
    on 127.0.0.1, started once tcpdump says it is listening; on exit the
    sockets close and tcpdump is stopped (SIGINT) and reaped, its stderr kept."""
    tcpdump = tool_or_skip("tcpdump")
    with socket.socket() as listener, socket.socket() as closed:
        listener.bind(("127.0.0.1", 0))
        listener.listen(backlog)
        closed.bind(("127.0.0.1", 0))
        run = LoopbackCapture(listener, listener.getsockname()[1], closed.getsockname()[1], capture)
        buffer = ["-B", str(buffer_kib)] if buffer_kib else []
        proc = subprocess.Popen([tcpdump, "-i", "lo", "-n", "-U", *buffer, "-w", str(capture),
                                 f"tcp port {run.port} or tcp port {run.refused_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert "listening" in proc.stderr.readline()
            yield run
        finally:
            listener.close()  # before tcpdump stops: what their closing sends is captured
            closed.close()
            proc.send_signal(signal.SIGINT)
            _, run.stderr = proc.communicate(timeout=30)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus, the real captures from public projects."""
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"needs the shared corpus at {CORPUS}")
    return CORPUS


def pytest_collection_modifyitems(config, items):
    from tcpteardown.capture import platform as host
    from tcpteardown.capture.kernel import mount_tracefs_if_missing

    mount_tracefs_if_missing()  # a fresh CI machine may have tracefs unmounted

    reasons = {
        "needs_capture": host.capture_problem(),
        "needs_tracefs": host.tracefs_problem(),
        "needs_netns": host.netns_problem(),
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: {reason}"))


@pytest.fixture
def is_root() -> bool:
    return os.geteuid() == 0
