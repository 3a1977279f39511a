"""Capture with tcpdump writing a file: the backend that keeps up under load.

tcpdump reads the kernel's packet ring in C and writes pcap; we start it,
wait until it says it is listening (it prints that once its capture handle is
active), and stop it behind a marker barrier: a UDP datagram of our own must
appear in the file before we interrupt it, so nothing the kernel delivered
earlier is lost. Its "dropped by kernel" count is kept; on Linux `lo` the
ring holds both copies of each packet (outgoing and incoming; libpcap keeps
one), so that count is of copies: at most that many segments are missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable, Optional

from .. import reaper
from ..errors import MissingTool, UserError
from . import platform as host
from .marker import Lifecycle, capture_filter, marker_token, open_marker

READY_SECONDS = 10.0


class TcpdumpCapture(Lifecycle):
    """`tcpdump -i lo -w PATH` for TCP on `ports` (all loopback TCP when None)."""

    def __init__(self, path: "str | os.PathLike", ports: Optional[Iterable[int]] = None, *,
                 iface: Optional[str] = None, buffer_kib: int = 32768, immediate: bool = True):
        self.path = Path(path)
        self.ports = sorted(set(ports)) if ports else []
        self.iface = iface or host.loopback_interface()
        self.buffer_kib = buffer_kib
        # --immediate-mode wakes tcpdump for every packet: the stop barrier
        # returns within milliseconds, but past ~8,000 connections a second
        # the ring overflows. Without it tcpdump reads whole ring blocks (0
        # drops at 15,000 connections a second here) and the stop barrier
        # waits for the block timeout (up to a second).
        self.immediate = immediate
        self.kernel_drops: Optional[int] = None
        self.packets_captured: Optional[int] = None
        self.packets_received: Optional[int] = None
        self._proc: Optional[subprocess.Popen] = None
        self._marker: Optional[socket.socket] = None

    def describe(self) -> str:
        drops = "unknown" if self.kernel_drops is None else str(self.kernel_drops)
        mode = "immediate" if self.immediate else "block"
        return f"tcpdump on {self.iface} (buffer {self.buffer_kib} KiB, {mode} mode), kernel drops {drops}"

    def start(self) -> None:
        binary = shutil.which("tcpdump")
        if binary is None:
            raise MissingTool("tcpdump is not installed (apt-get install tcpdump, or brew install tcpdump)")
        self._marker = open_marker()
        port = self._marker.getsockname()[1]
        command = [binary, "-i", self.iface, "-U", *(["--immediate-mode"] if self.immediate else []),
                   "-n", "-s", "0", "--time-stamp-precision", "nano", "-B", str(self.buffer_kib), "-w", str(self.path),
                   capture_filter(self.ports, port)]
        if os.geteuid() == 0:
            command[1:1] = ["-Z", "root"]  # keep the file ours; tcpdump would drop to user tcpdump
        self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)
        self._reaper_token = reaper.watch_process(self._proc.pid)  # should we be SIGKILLed
        self._stderr = b""
        try:
            self._wait_ready()
        except BaseException:
            self._kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        os.set_blocking(self._proc.stderr.fileno(), False)
        while b"listening on" not in self._stderr:
            if self._proc.poll() is not None:
                self._stderr += self._proc.stderr.read() or b""
                raise UserError(f"tcpdump exited at start: {self._stderr.decode(errors='replace').strip()}")
            if time.monotonic() > deadline:
                raise UserError(f"tcpdump did not start listening within {READY_SECONDS:.0f} s")
            chunk = self._proc.stderr.read()
            if chunk:
                self._stderr += chunk
            else:
                time.sleep(0.005)  # wait-ok: polling tcpdump's stderr for its ready line

    def stop(self) -> Path:
        """Barrier, then SIGINT; returns the pcap path. Idempotent."""
        if self._proc is None:
            return self.path
        try:
            if self._proc.poll() is None:
                self._barrier()
                self._proc.send_signal(signal.SIGINT)
                self._proc.wait(timeout=READY_SECONDS)
            os.set_blocking(self._proc.stderr.fileno(), True)
            self._stderr += self._proc.stderr.read() or b""
            self._parse_stats(self._stderr.decode(errors="replace"))
        finally:
            self._kill()
        return self.path

    def _barrier(self) -> None:
        token = marker_token(b"tcpdump")
        deadline = time.monotonic() + READY_SECONDS
        while True:
            self._marker.sendto(token, self._marker.getsockname())
            if token in _tail(self.path):
                return
            if time.monotonic() > deadline:
                raise UserError(f"tcpdump never wrote its stop marker to {self.path}")
            time.sleep(0.01)  # wait-ok: polling the file for the marker tcpdump must write

    def _parse_stats(self, text: str) -> None:
        captured = re.search(r"(\d+) packets? captured", text)
        received = re.search(r"(\d+) packets? received by filter", text)
        dropped = re.search(r"(\d+) packets? dropped by kernel", text)
        self.packets_captured = int(captured.group(1)) if captured else None
        self.packets_received = int(received.group(1)) if received else None
        self.kernel_drops = int(dropped.group(1)) if dropped else None

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc.stderr.close()
            self._proc = None
            reaper.forget(self._reaper_token)
        if self._marker is not None:
            self._marker.close()
            self._marker = None


def _tail(path: Path, size: int = 65536) -> bytes:
    """The last `size` bytes of `path` (b"" while it does not exist yet)."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - size))
            return file.read()
    except FileNotFoundError:
        return b""
