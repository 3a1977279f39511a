"""The flight recorder of `watch --keep DIR`: recent packets per connection, a bundle at each RST.

tcpdump (``-i any -U -w -``, every interface) streams pcap into a reader
thread, which keeps each connection's packets in a ring: all connections
together hold at most `megabytes` (packet bytes plus PACKET_OVERHEAD each); past that, the oldest
packets of the least recently active connection are dropped first (and
counted: the summary says how many). At each RST line `bundle_for` waits
(bounded) for the RST itself to arrive from tcpdump, then writes that
connection's packets, the kernel events about it and their reasons as one
bundle, the way `record` does (capture.session.assemble +
views.packet_comments.write_annotated_bundle, written under a ``.part``
name and renamed: never half a file). `explain` and `plot` open it.

Never: leave tcpdump running (stopped in `stop()`; the reaper kills it
should watch be SIGKILLed), or keep more packet bytes than the bound.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import shutil
import struct
import subprocess
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Iterable, Optional

from ... import reaper
from ...errors import MissingTool, UserError
from ...model import Frame

__all__ = ["FlightRecorder", "DEFAULT_MB"]

DEFAULT_MB = 8.0
RECENT_EVENTS = 8192  # kernel events kept for the bundles' witness
RST_WAIT_S = 1.0  # how long a bundle waits for tcpdump to deliver the RST itself
PACKET_OVERHEAD = 200  # bytes a kept packet costs beyond its data (its Frame and ring slot), roughly
QUEUED_BUNDLES = 256  # RSTs waiting for their bundle; beyond, they are counted as not written
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
               b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}


class FlightRecorder:
    def __init__(self, directory: "str | os.PathLike", *, megabytes: Optional[float] = None,
                 ports: Iterable[int] = ()):
        self.directory = Path(directory)
        self.limit = int((megabytes if megabytes is not None else DEFAULT_MB) * 1_000_000)
        if self.limit <= 0:
            raise UserError(f"--keep-mb {megabytes}: expected a size in megabytes above 0")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--keep {directory}: cannot make the folder ({exc.strerror})") from None
        if not os.access(self.directory, os.W_OK):
            raise UserError(f"--keep {directory}: the folder is not writable")
        self.tcpdump = shutil.which("tcpdump")
        if self.tcpdump is None:
            raise MissingTool("watch --keep needs tcpdump (apt-get install tcpdump)")
        self.ports = tuple(sorted(ports))
        self._rings: OrderedDict[frozenset, deque] = OrderedDict()
        self._bytes = 0
        self._cond = threading.Condition()
        self._events: deque = deque(maxlen=RECENT_EVENTS)
        self.dropped = 0  # packets the bound made us forget
        self.packets = 0
        self.bundles: list[Path] = []
        self.failures: list[str] = []
        self.witness = None
        self._proc: Optional[subprocess.Popen] = None
        self._token = None
        self._thread: Optional[threading.Thread] = None
        self._queue: queue.Queue = queue.Queue(QUEUED_BUNDLES)
        self._writer: Optional[threading.Thread] = None

    def describe(self) -> str:
        return (f"flight recorder: up to {self.limit / 1e6:g} MB of recent packets (every interface, tcpdump), "
                f"a bundle per RST into {self.directory}")

    # -- tcpdump and its reader

    def start(self, witness=None) -> None:
        self.witness = witness
        expression = ["tcp"]
        if self.ports:
            expression += ["and", "(" + " or ".join(f"port {p}" for p in self.ports) + ")"]
        self._proc = subprocess.Popen(
            [self.tcpdump, "-i", "any", "-U", "-n", "-s", "0", "--time-stamp-precision", "nano", "-w", "-",
             *expression], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._token = reaper.watch_process(self._proc.pid)
        ready = ""
        for _ in range(5):  # "tcpdump: data link type LINUX_SLL2", then "listening on any, ..."
            ready = self._proc.stderr.readline().decode(errors="replace")
            if not ready or "listening" in ready:
                break
        if "listening" not in ready:
            self.stop()
            raise UserError(f"watch --keep: tcpdump did not start: {ready.strip() or 'no message'}")
        self._thread = threading.Thread(target=self._read, name="tcpteardown-watch-recorder", daemon=True)
        self._thread.start()
        self._writer = threading.Thread(target=self._write_queued, name="tcpteardown-watch-bundles", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        """Write the bundles still queued (tcpdump still running to deliver their RSTs), then stop."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reaper.forget(self._token)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if proc is not None:
            for stream in (proc.stdout, proc.stderr):
                stream.close()

    def _read(self) -> None:
        from ...formats.pcap_links import decode_segment

        stream = self._proc.stdout
        header = stream.read(24)
        if len(header) < 24 or header[:4] not in _PCAP_MAGIC:
            return
        order, scale = _PCAP_MAGIC[header[:4]]
        linktype = struct.unpack(order + "I", header[20:24])[0]
        record = struct.Struct(order + "IIII")
        while True:
            head = stream.read(16)
            if len(head) < 16:
                return
            seconds, fraction, caplen, orig_len = record.unpack(head)
            data = stream.read(caplen)
            if len(data) < caplen:
                return
            time_ns = seconds * 1_000_000_000 + fraction * scale
            segment = decode_segment(1, time_ns, linktype, data)
            if segment is None:
                continue
            self._keep(frozenset((segment.src, segment.dst)), Frame(time_ns, linktype, data, orig_len),
                       segment.is_rst)

    def _keep(self, key: frozenset, frame: Frame, is_rst: bool) -> None:
        with self._cond:
            ring = self._rings.get(key)
            if ring is None:
                ring = self._rings[key] = deque()
            ring.append((frame, is_rst))
            self._rings.move_to_end(key)
            self._bytes += len(frame.data) + PACKET_OVERHEAD
            self.packets += 1
            while self._bytes > self.limit and self._rings:
                oldest_key, oldest = next(iter(self._rings.items()))
                dropped, _ = oldest.popleft()
                self._bytes -= len(dropped.data) + PACKET_OVERHEAD
                self.dropped += 1
                if not oldest:
                    del self._rings[oldest_key]
            if is_rst:
                self._cond.notify_all()

    def note_event(self, event) -> None:
        self._events.append(event)

    # -- bundles

    def bundle_for(self, teardown) -> None:
        """Queue the bundle of this RST's connection for the writer thread (lines are not held up)."""
        try:
            self._queue.put_nowait(teardown)
        except queue.Full:
            self.failures.append(f"{teardown.remote} -> {teardown.local}: {QUEUED_BUNDLES} bundles were "
                                 "already waiting to be written")

    def _write_queued(self) -> None:
        while (teardown := self._queue.get()) is not None:
            self._bundle(teardown)

    def _bundle(self, teardown) -> Optional[Path]:
        """Write the bundle of this RST's connection; its path, or None (said in the summary)."""
        key = frozenset((teardown.local, teardown.remote))
        deadline = time.monotonic() + RST_WAIT_S
        with self._cond:
            while not any(is_rst for _, is_rst in self._rings.get(key, ())):
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    self.failures.append(f"{teardown.remote} -> {teardown.local}: tcpdump did not deliver the RST "
                                         f"within {RST_WAIT_S:g} s")
                    return None
                self._cond.wait(left)
            frames = [frame for frame, _ in self._rings.pop(key)]
            self._bytes -= sum(len(frame.data) + PACKET_OVERHEAD for frame in frames)
        try:
            path = self._write(teardown, frames)
        except Exception as exc:  # a bundle that cannot be written must not end the watch: it is counted
            self.failures.append(f"{teardown.remote} -> {teardown.local}: {exc}")
            return None
        self.bundles.append(path)
        return path

    def _write(self, teardown, frames: list[Frame]) -> Path:
        from ...formats.ftrace import touches_ports
        from ...views.packet_comments import write_annotated_bundle
        from ..backends import Captured, tcp_frames
        from ..session import assemble

        frames_kept, segments = tcp_frames(frames)
        ports = {teardown.local.port, teardown.remote.port}
        recent = tuple(self._events)  # one C-level copy: the main thread appends meanwhile
        events = tuple(e for e in recent if touches_ports(e, ports)
                       and {e.src, e.dst} <= {teardown.local, teardown.remote, None}
                       or e.src is not None and e.src.port == 0 and e.dst == teardown.remote)
        captured = Captured(backend="tcpdump", description="tcpdump -i any (watch --keep flight recorder)",
                            frames=frames_kept, segments=segments, ports=tuple(sorted(ports)),
                            kernel_drops=None)
        first, last = frames_kept[0].time_ns, frames_kept[-1].time_ns
        owner = f"{teardown.receiver_comm}[{teardown.receiver_pid}]" if teardown.receiver_pid else "unknown"
        recording, _ = assemble(captured=captured, calls=(), events=events, witness=self.witness,
                                window=(first, last), started_ns=first,
                                extra=[("watch_kind", teardown.kind), ("watch_owner", owner),
                                       ("ports", ",".join(map(str, sorted(ports))))])
        stamp = dt.datetime.fromtimestamp(teardown.time_ns / 1e9, dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{teardown.kind}-{stamp}-{teardown.remote.port}-{teardown.local.port}.pcapng"
        return write_annotated_bundle(self.directory / name, recording)

    def summary(self) -> str:
        text = (f"flight recorder: {len(self.bundles)} bundles written, {self.packets} packets seen, "
                f"{self.dropped} dropped by the {self.limit / 1e6:g} MB bound")
        if self.failures:
            text += f"; {len(self.failures)} bundles not written (first: {self.failures[0]})"
        return text
