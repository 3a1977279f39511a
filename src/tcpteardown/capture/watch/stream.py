"""Read a running KernelWitness's ``trace_pipe`` as it fills: the I/O edge of watch.

`TracePipe` yields batches of `(KernelEvent, process_context)` (an empty
batch every `tick` seconds when nothing came, so the caller can flush and
check its deadline). `process_context` is False when the trace line's flags
say softirq or hardirq ("s", "h", "H" in ``..s2.``): then the CPU's current
task is not the socket's owner.
"""

from __future__ import annotations

import os
import re
import select
from typing import Iterator

from ...formats.ftrace import parse_trace_line
from ...model import KernelEvent

__all__ = ["TracePipe", "in_process_context"]

_FLAGS = re.compile(r"\]\s+(\S{4,6})\s+\d+\.\d+:")
READ_SIZE = 1 << 16


def in_process_context(line: str) -> bool:
    """The trace line's flags column (``..s2.``): its third letter is '.' in process context,
    's' in softirq, 'h'/'H' in hardirq, 'z'/'Z' in NMI."""
    match = _FLAGS.search(line)
    if match is None:
        return False  # no flags: do not trust the task column
    return match.group(1)[2] == "."


class TracePipe:
    def __init__(self, witness, tick: float = 0.05, tee=None):
        self.witness = witness
        self.tick = tick
        self.tee = tee  # called with each raw chunk read (the flight recorder keeps the events)
        self._fd = os.open(witness.instance / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        self._rest = b""
        self.unparsed = 0  # lines of our events that did not parse (said in the summary)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TracePipe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def batches(self) -> Iterator[list[tuple[KernelEvent, bool]]]:
        mapping = self.witness.clock_mapping
        while self._fd >= 0:
            ready, _, _ = select.select([self._fd], [], [], self.tick)
            if not ready:
                yield []
                continue
            try:
                chunk = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                yield []
                continue
            if not chunk:
                yield []
                continue
            if self.tee is not None:
                self.tee(chunk)
            data = self._rest + chunk
            lines = data.split(b"\n")
            self._rest = lines.pop()
            batch = []
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                event = parse_trace_line(line, mapping)
                if event is None:
                    if line and not line.startswith("#") and ("_reset:" in line or "inet_s" in line):
                        self.unparsed += 1
                    continue
                batch.append((event, in_process_context(line)))
            yield batch
