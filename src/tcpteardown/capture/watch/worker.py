"""The flight recorder's worker process: the ring, tcpdump's packets and the bundles, off watch's interpreter.

    python -m tcpteardown.capture.watch.worker CONFIG_JSON   (started by recorder.FlightRecorder)

Why a process: watch's own loop (reading trace_pipe, pairing events, printing
lines) must keep up with the kernel, and in one interpreter every packet
decoded and every bundle written takes the same lock it needs (at 2,000 RSTs
a second that made the kernel's buffer overrun). Here, on its own core:

- a thread reads tcpdump's pcap stream (the file descriptor watch hands
  over) and keeps each packet raw in the Ring (keyed by a header peek);
- the main thread reads watch's messages on stdin (messages.py framing):
  raw trace_pipe bytes (kept raw in the Ring, keyed by their ports), the RST
  lines to bundle, and the kernel's lost-event count; end of file is the end;
- the bundle thread gives each RST a place in its group's sample (bundles.py;
  beyond it the connection is let go, counted), claims the connection once
  its RST packet is in the Ring (waiting at most RST_WAIT_S; decoded then)
  and writes the due groups.

At the end it writes every bundle still to come, then one JSON object of
counters on stdout (the parent words the summary) and exits. SIGTERM
(watch interrupted a second time) abandons the groups not yet written,
counted, after the file in hand is complete: never half a bundle.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...formats.ftrace import ClockMapping
from ...model import Endpoint, Frame
from . import bundles
from .messages import read_messages
from .ring import Ring, key_of

__all__ = ["Keeper", "WitnessFacts", "main"]

RST_WAIT_S = 2.0  # how long an RST's bundle waits for tcpdump to deliver the RST itself
QUEUED_RSTS = 20_000  # RSTs waiting for their connection to be claimed; beyond, counted as not bundled
TICK_S = 0.05
GROUP_SHARE = 4  # a bundle in waiting holds at most a quarter of the bound: the ring keeps the rest
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
               b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}


@dataclass
class WitnessFacts:
    """What capture.session.assemble reads of the witness, as watch's witness told us."""

    precision_ns: Optional[int]
    lost_events: int = 0
    available: bool = True
    reason: Optional[str] = None


@dataclass(frozen=True, slots=True)
class RstLine:
    """The parts of a watch line (teardowns.Teardown) a bundle needs."""

    time_ns: int
    kind: str
    local: Endpoint
    remote: Endpoint
    receiver_pid: Optional[int]
    receiver_comm: Optional[str]


class Keeper:
    def __init__(self, directory: Path, limit: int, ports: tuple[int, ...], witness: WitnessFacts,
                 mapping: ClockMapping, keep_max: int = 1_000):
        self.directory = directory
        self.keep_max = keep_max  # this run's bundles kept on disk: beyond, its oldest are removed
        self._written: deque = deque()
        self.ports = ports
        self.ring = Ring(limit, mapping)
        self.witness = witness
        self.counts = {"bundles": 0, "bundled": 0, "without_rst": 0, "not_bundled": 0, "skipped": 0,
                       "removed": 0}
        self.first_failure: Optional[str] = None
        self._incoming: deque = deque()  # (RstLine, monotonic time queued)
        self._stopping = threading.Event()
        self.abandon = False
        self.lag_ns = 0  # the longest an RST waited, from the kernel's RST to its claim here

    # -- tcpdump's packets

    def read_pcap(self, stream) -> None:
        header = stream.read(24)
        if len(header) < 24 or header[:4] not in _PCAP_MAGIC:
            return
        order, scale = _PCAP_MAGIC[header[:4]]
        linktype = struct.unpack(order + "I", header[20:24])[0]
        record = struct.Struct(order + "IIII")
        keep = self.ring.keep_packet
        while True:
            head = stream.read(16)
            if len(head) < 16:
                return
            seconds, fraction, caplen, orig_len = record.unpack(head)
            data = stream.read(caplen)
            if len(data) < caplen:
                return
            keep(Frame(seconds * 1_000_000_000 + fraction * scale, linktype, data, orig_len))

    # -- watch's messages

    def read_messages(self, stream) -> None:
        rest = b""
        for kind, payload in read_messages(stream):
            if kind == b"E":
                lines = (rest + payload).split(b"\n")
                rest = lines.pop()
                self.ring.keep_lines(lines)
            elif kind == b"T":
                self.bundle_for(_rst_line(json.loads(payload)))
            elif kind == b"L":
                self.witness.lost_events = int(payload)

    def bundle_for(self, line: RstLine) -> None:
        if len(self._incoming) >= QUEUED_RSTS:
            self._fail(f"{line.remote} -> {line.local}: {QUEUED_RSTS} RSTs were already waiting for their "
                       "bundles")
            return
        self._incoming.append((line, time.monotonic()))

    def _fail(self, why: str, count: int = 1) -> None:
        self.counts["not_bundled"] += count
        if self.first_failure is None:
            self.first_failure = why

    # -- bundles

    def write_loop(self) -> None:
        waiting: dict[frozenset, list] = {}  # connection -> [(RstLine, group)] whose RST is not in the ring yet
        order: deque = deque()  # (queued at, key, line), oldest first: who has waited too long
        groups = bundles.Groups()

        def try_claim(line, group, force: bool) -> bool:
            claim = self.ring.claim(line, force=force)
            if claim is not None:
                groups.add(group, claim)
                self.lag_ns = max(self.lag_ns, time.time_ns() - line.time_ns)
            return claim is not None

        while True:
            stopping = self._stopping.is_set()
            self._stopping.wait(TICK_S)  # the pace of claims and writes; a stop ends the pause at once
            for key in self.ring.take_rst_keys() & waiting.keys():
                left = [(line, group) for line, group in waiting[key] if not try_claim(line, group, False)]
                if left:
                    waiting[key] = left
                else:
                    del waiting[key]
            while self._incoming:
                line, since = self._incoming.popleft()
                group = groups.slot(line)
                if group is None:  # beyond its bundle's sample: counted there, its packets let go
                    self.ring.discard(line)
                    continue
                key = key_of(line)
                if key in waiting or not try_claim(line, group, False):
                    waiting.setdefault(key, []).append((line, group))
                    order.append((since, key, line))
            too_old = time.monotonic() - RST_WAIT_S
            while order and (order[0][0] <= too_old or not _waits(waiting, *order[0][1:])):
                _, key, line = order.popleft()
                for entry in [entry for entry in waiting.get(key, ()) if entry[0] is line]:
                    waiting[key].remove(entry)
                    if not waiting[key]:
                        del waiting[key]
                    try_claim(line, entry[1], True)
            for group in groups.due(time.time_ns(), everything=stopping and not waiting):
                self.counts["skipped"] += group.skipped
                if not group.claims:
                    continue
                if self.abandon:
                    self._release(group)
                    self._fail(f"{group.name}: watch was interrupted again while writing its last bundles",
                               len(group.claims))
                else:
                    self._write(group)
            if stopping and not waiting and not groups and not self._incoming:
                return

    def _write(self, group) -> None:
        try:
            path = bundles.write(self.directory, group, witness=self.witness, ports=self.ports)
        except Exception as exc:  # a bundle that cannot be written must not end the recorder: it is counted
            self._fail(f"{group.name}: {exc}", len(group.claims))
        else:
            self._written.append(path)
            while len(self._written) > self.keep_max:  # a flight recorder keeps the recent ones
                with contextlib.suppress(OSError):
                    self._written.popleft().unlink()
                    self.counts["removed"] += 1
            self.counts["bundles"] += 1
            self.counts["bundled"] += len(group.claims)
            self.counts["without_rst"] += sum(not claim.rst_captured for claim in group.claims)
        finally:
            self._release(group)

    def _release(self, group) -> None:
        for claim in group.claims:
            self.ring.release(claim)

    def finish(self) -> None:
        self._stopping.set()

    def summary(self) -> dict:
        ring, usage = self.ring, resource.getrusage(resource.RUSAGE_SELF)
        return {**self.counts, "first_failure": self.first_failure, "packets": ring.packets,
                "dropped_packets": ring.dropped_packets, "dropped_events": ring.dropped_events, "peak": ring.peak,
                "lag_s": self.lag_ns / 1e9, "cpu_s": usage.ru_utime + usage.ru_stime}


def _waits(waiting: dict, key, line) -> bool:
    return any(entry[0] is line for entry in waiting.get(key, ()))


def _rst_line(data: dict) -> RstLine:
    return RstLine(data["time_ns"], data["kind"], Endpoint.parse(data["local"]), Endpoint.parse(data["remote"]),
                   data.get("receiver_pid"), data.get("receiver_comm"))


def rst_message(teardown) -> bytes:
    """What the parent sends for one RST line (the worker's `_rst_line` reads it)."""
    return json.dumps({"time_ns": teardown.time_ns, "kind": teardown.kind, "local": str(teardown.local),
                       "remote": str(teardown.remote), "receiver_pid": teardown.receiver_pid,
                       "receiver_comm": teardown.receiver_comm}).encode()


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    witness = WitnessFacts(config["precision_ns"])
    keeper = Keeper(Path(config["directory"]), config["limit"], tuple(config["ports"]), witness,
                    ClockMapping(config["offset_ns"], config["uncertainty_ns"]), config["keep_max"])

    def abandon(*_):
        keeper.abandon = True

    signal.signal(signal.SIGTERM, abandon)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    pcap = os.fdopen(config["pcap_fd"], "rb")
    threading.Thread(target=keeper.read_pcap, args=(pcap,), name="pcap", daemon=True).start()
    writer = threading.Thread(target=keeper.write_loop, name="bundles")
    writer.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        keeper.read_messages(sys.stdin.buffer)
    finally:
        keeper.finish()
        writer.join()
        sys.stdout.write(json.dumps(keeper.summary()) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
