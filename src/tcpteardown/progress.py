"""One progress line on stderr for long reads: files, packets, rate, ETA from the bytes left.

Drawn in place (carriage return) only when the stream is a terminal, only after the
work has taken DELAY_SECONDS (a quick run prints nothing), at most every REDRAW_SECONDS;
cleared at the end. Never writes to a pipe or a file: logs stay clean.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Optional, TextIO

# TCPTEARDOWN_PROGRESS_DELAY overrides it (the tests draw on a quick run with 0)
DELAY_SECONDS = float(os.environ.get("TCPTEARDOWN_PROGRESS_DELAY", "2.0"))
REDRAW_SECONDS = 0.2


class ProgressLine:
    def __init__(self, total_bytes: int, files: int, *, stream: Optional[TextIO] = None, quiet: bool = False,
                 clock=time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = not quiet and self.stream.isatty()
        self.total = max(total_bytes, 1)
        self.files = files
        self.clock = clock
        self.started = clock()
        self.drawn_at: Optional[float] = None
        self.width = 0

    def update(self, file_index: int, done_bytes: int, packets: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        elapsed = now - self.started
        if elapsed < DELAY_SECONDS or (self.drawn_at is not None and now - self.drawn_at < REDRAW_SECONDS):
            return
        self.drawn_at = now
        rate = packets / elapsed if elapsed > 0 else 0.0
        left = max(self.total - done_bytes, 0)
        eta = left * elapsed / done_bytes if done_bytes else 0.0
        line = (f"file {file_index + 1}/{self.files}, {packets:,} packets, {rate:,.0f} packets/s, "
                f"{done_bytes * 100 // self.total}% of {self.total / 1e6:,.0f} MB, ETA {eta:,.0f} s")
        self.stream.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def close(self) -> None:
        if self.drawn_at is not None:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
