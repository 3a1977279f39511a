"""The flight recorder of `watch --keep DIR`: recent packets per connection, bundles of RSTs.

watch's side of it. tcpdump (``-i any -U -w -``, every interface) writes
pcap into a pipe that the worker process (worker.py) reads: the worker keeps
each connection's recent packets and kernel events in a bounded ring and
writes the bundles, on its own interpreter, so that watch's loop keeps up
with the kernel (in one interpreter it did not, at 2,000 RSTs a second).
watch only forwards, never blocking (messages.Sender): each raw chunk of
trace_pipe (`note_chunk`), each RST line to bundle (`bundle_for`) and now
and then the kernel's lost-event count (`note_lost`).

RSTs of one kind on one service port within one second share a bundle (at
most bundles.GROUP_RSTS each): a burst of 2,000 refused connects a second
is a bundle a second, not 2,000 files. A single RST is a bundle of its own.
The summary says everything: RSTs bundled, bundles written, RSTs with no
bundle and why, bundles lacking their RST packet, packets and events the
memory bound dropped, what the worker could not be sent, tcpdump's drops.

Never: leave tcpdump or the worker running (both stopped in `stop()`, both
registered with the reaper should watch be SIGKILLed), hold more than the
bound in packets and events, or leave a half-written bundle (bundles are
written as ``.part`` and renamed; a second Ctrl-C while the last ones are
written abandons the rest, counted, after the file in hand is complete; a
SIGKILL may leave a ``.part``, which the next `--keep` run on the folder
removes and says so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

from ... import reaper
from ...errors import MissingTool, UserError
from .bundles import SAMPLE_RSTS
from .messages import Sender, grow_pipe
from .worker import RST_WAIT_S, rst_message

__all__ = ["FlightRecorder", "DEFAULT_MB", "DEFAULT_KEEP_MAX"]

DEFAULT_MB = 8.0
DEFAULT_KEEP_MAX = 1_000  # bundles of one run kept in DIR: beyond, the run's oldest are removed
STALE_PART_S = 60.0  # a .part this old in DIR is a SIGKILLed run's: no live writer takes that long
START_TIMEOUT_S = 60.0
LOST_EVERY_S = 1.0
_TCPDUMP_DROPS = re.compile(r"(\d+) packets? dropped by kernel")


class FlightRecorder:
    def __init__(self, directory: "str | os.PathLike", *, megabytes: Optional[float] = None,
                 ports: Iterable[int] = (), keep_max: int = DEFAULT_KEEP_MAX):
        self.directory = Path(directory)
        if keep_max < 1:
            raise UserError(f"--keep-max {keep_max}: expected a number of bundles of 1 or more")
        self.keep_max = keep_max
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
        self.removed_parts = self._remove_stale_parts()
        self.witness = None
        self.queued = 0  # RST lines handed to the worker
        self.result: Optional[dict] = None  # the worker's counters at the end
        self.worker_problem: Optional[str] = None
        self.tcpdump_drops: Optional[int] = None
        self._tcpdump: Optional[subprocess.Popen] = None
        self._worker: Optional[subprocess.Popen] = None
        self._tokens: list = []
        self._sender: Optional[Sender] = None
        self._lost_sent_at = 0.0

    def describe(self) -> str:
        text = (f"flight recorder: up to {self.limit / 1e6:g} MB of recent packets and kernel events "
                f"(every interface, tcpdump), bundles of RSTs into {self.directory} (one per RST; RSTs to one "
                f"port within one second share one; this run keeps its newest {self.keep_max})")
        if self.removed_parts:
            text += (f"; removed {len(self.removed_parts)} half-written bundle(s) a killed run left: "
                     f"{', '.join(self.removed_parts[:3])}" + (" ..." if len(self.removed_parts) > 3 else ""))
        return text

    def _remove_stale_parts(self) -> list[str]:
        removed = []
        for part in self.directory.glob("*.pcapng.part"):
            try:
                if time.time() - part.stat().st_mtime >= STALE_PART_S:
                    part.unlink()
                    removed.append(part.name)
            except OSError:
                continue
        return removed

    # -- starting and stopping

    def start(self, witness) -> None:
        self.witness = witness
        try:
            self._start_tcpdump()
            self._start_worker(witness)
        except BaseException:
            self.stop()
            raise

    def _start_tcpdump(self) -> None:
        expression = ["tcp"]
        if self.ports:
            expression += ["and", "(" + " or ".join(f"port {p}" for p in self.ports) + ")"]
        self._tcpdump = subprocess.Popen(
            [self.tcpdump, "-i", "any", "-U", "-n", "-s", "0", "-B", "8192", "--time-stamp-precision", "nano",
             "-w", "-", *expression], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._tokens.append(reaper.watch_process(self._tcpdump.pid))
        grow_pipe(self._tcpdump.stdout.fileno())
        ready = ""
        for _ in range(5):  # "tcpdump: data link type LINUX_SLL2", then "listening on any, ..."
            ready = self._tcpdump.stderr.readline().decode(errors="replace")
            if not ready or "listening" in ready:
                break
        if "listening" not in ready:
            raise UserError(f"watch --keep: tcpdump did not start: {ready.strip() or 'no message'}")

    def _start_worker(self, witness) -> None:
        pcap_fd = self._tcpdump.stdout.fileno()
        mapping = witness.clock_mapping
        config = {"directory": str(self.directory), "limit": self.limit, "ports": list(self.ports),
                  "keep_max": self.keep_max,
                  "pcap_fd": pcap_fd, "precision_ns": witness.precision_ns,
                  "offset_ns": mapping.offset_ns, "uncertainty_ns": mapping.uncertainty_ns}
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "tcpteardown.capture.watch.worker", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(pcap_fd,),
            start_new_session=True)  # Ctrl-C is ours to pass on: it must finish its bundles first
        self._tokens.append(reaper.watch_process(self._worker.pid))
        self._tcpdump.stdout.close()  # the worker holds it now
        ready = self._worker.stdout.readline()
        if ready != b"ready\n":
            raise UserError("watch --keep: the flight recorder's worker did not start"
                            + (f": {ready.decode(errors='replace').strip()}" if ready else ""))
        self._sender = Sender(os.dup(self._worker.stdin.fileno()))
        self._worker.stdin.close()

    def stop(self) -> None:
        """Let the worker write what is still to come (tcpdump still running to deliver the last
        RSTs), then stop tcpdump. A second Ctrl-C meanwhile makes the worker abandon the rest
        (counted) once the file in hand is complete."""
        worker, self._worker = self._worker, None
        if self._sender is not None:
            self._sender.close()
        if worker is not None:
            self.result = self._wait_worker(worker)
        tcpdump, self._tcpdump = self._tcpdump, None
        if tcpdump is not None:
            if tcpdump.poll() is None:
                tcpdump.terminate()
            try:
                tcpdump.wait(timeout=10)
            except subprocess.TimeoutExpired:
                tcpdump.kill()
                tcpdump.wait()
            found = _TCPDUMP_DROPS.search(tcpdump.stderr.read().decode(errors="replace"))
            self.tcpdump_drops = int(found.group(1)) if found else None
            for stream in (tcpdump.stdout, tcpdump.stderr):
                stream.close()
        for token in self._tokens:
            reaper.forget(token)
        self._tokens = []

    def _wait_worker(self, worker: subprocess.Popen) -> Optional[dict]:
        try:
            try:
                out = worker.stdout.read()
            except KeyboardInterrupt:
                worker.terminate()  # SIGTERM: abandon what is not written yet, finish the file in hand
                out = worker.stdout.read()
            worker.wait()
        finally:
            worker.stdout.close()
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.worker_problem = f"its worker ended without its counts (exit status {worker.returncode})"
            return None

    # -- what watch hands over

    def note_chunk(self, chunk: bytes) -> None:
        """Raw trace_pipe bytes, for the kernel events in the bundles."""
        if self._sender is not None:
            self._sender.send(b"E", chunk)

    def bundle_for(self, teardown) -> None:
        """Queue this RST's bundle (the worker does the rest)."""
        if self._sender is not None and self._sender.send(b"T", rst_message(teardown)):
            self.queued += 1
        self.note_lost()

    def note_lost(self, force: bool = False) -> None:
        """Now and then, the kernel's lost-event count, for the bundles' metadata."""
        now = time.monotonic()
        if self._sender is not None and self.witness is not None and (force or now - self._lost_sent_at
                                                                       >= LOST_EVERY_S):
            self._lost_sent_at = now
            self._sender.send(b"L", str(self.witness.overruns()).encode())

    def pump(self) -> None:
        if self._sender is not None:
            self._sender.pump()

    # -- the summary

    def summary(self) -> str:
        result = self.result
        if result is None:
            return f"flight recorder: {self.worker_problem or 'its worker did not report'}"
        text = (f"flight recorder: {result['bundles']} bundles written holding {result['bundled']} RSTs, "
                f"{result['packets']} packets seen, {result['dropped_packets']} packets and "
                f"{result['dropped_events']} kernel events dropped by the {self.limit / 1e6:g} MB bound "
                f"(peak {result['peak'] / 1e6:.1f} MB); RSTs reached it up to {result['lag_s']:.1f} s late; "
                f"its worker used {result['cpu_s']:.1f} s of CPU")
        if result["skipped"]:
            text += (f"; {result['skipped']} more RSTs of bursts printed but not kept (a bundle keeps "
                     f"{SAMPLE_RSTS} RSTs of one kind on one port per second)")
        if result["removed"]:
            text += f"; {result['removed']} older bundles of this run removed (--keep-max {self.keep_max})"
        if result["without_rst"]:
            text += (f"; {result['without_rst']} bundled RSTs without their own packet (tcpdump had not "
                     f"delivered it within {RST_WAIT_S:g} s, or the bound had dropped it)")
        if result["not_bundled"]:
            text += f"; {result['not_bundled']} RSTs not bundled (first: {result['first_failure']})"
        dropped = self._sender.dropped if self._sender is not None else {}
        if dropped.get("T"):
            text += f"; {dropped['T']} RSTs not bundled (the worker fell behind: watch's queue to it was full)"
        if dropped.get("E"):
            text += f"; {dropped['E']} chunks of kernel events not kept for bundles (the worker fell behind)"
        if self._sender is not None and self._sender.broken:
            text += "; the worker went away before the end"
        if self.tcpdump_drops:
            text += f"; tcpdump's kernel buffer dropped {self.tcpdump_drops} packets"
        return text
