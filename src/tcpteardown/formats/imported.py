"""What an evidence importer (strace log, application log) hands back, and
the two things both importers share: opening an evidence file (through
formats.inputs, with a note when it is not UTF-8), and reporting unreadable
lines without flooding the terminal.

Importers never raise for a line they cannot read: they skip it and say so in
`problems` (``"path:LINE: what was expected"``), keeping everything else.
Many lines with the same problem become one summary (the count and the first
line numbers). `open_evidence` is the only function here that does I/O.
`cycles_unchecked` pauses Python's cycle collector while an importer fills
its list of calls.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from typing import Iterable, Optional, TextIO, Union

from tcpteardown.model import SocketCall

__all__ = ["ImportResult", "Problems", "open_evidence", "cycles_unchecked"]

# Lines of one kind listed one by one before they are summarised.
SHOWN_PER_KIND = 3
# Line numbers a summary names.
NUMBERS_IN_SUMMARY = 5
# Kinds of problems listed before "and N more problems".
KINDS_SHOWN = 20


@contextlib.contextmanager
def cycles_unchecked():
    """Python's cycle collector paused (and restored as it was): an importer
    keeps a million calls alive, none in a cycle, and each full collection
    walks them all again (a fifth of a 1M-line log's import time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Socket calls read from one evidence file, time-sorted, and the
    problems met on the way (one line of text each, naming file and line)."""

    calls: tuple[SocketCall, ...] = ()
    problems: tuple[str, ...] = ()
    # Lines that look like a network error but became no call, each
    # {"where": "file:line", "source", "text", "why"} (explain's "unlinked").
    unread: tuple[dict, ...] = ()

    def failed_calls(self) -> tuple[SocketCall, ...]:
        """The calls that ended in an errno or end-of-file."""
        return tuple(call for call in self.calls if call.failed or call.is_eof)

    @staticmethod
    def merge(results: Iterable["ImportResult"]) -> "ImportResult":
        """One result from several (per-pid strace files, several logs)."""
        results = tuple(results)
        calls = sorted((call for result in results for call in result.calls),
                       key=lambda call: (call.start_ns, call.end_ns))
        problems = tuple(problem for result in results for problem in result.problems)
        unread = tuple(line for result in results for line in result.unread)
        return ImportResult(tuple(calls), problems, unread)


class Problems:
    """Collects an importer's problems; `lines()` gives them as text.

    A problem about one line is ``add(path, line_no, text)``; the same `text`
    met more than SHOWN_PER_KIND times in a file is told once with its count
    and first line numbers (a garbage file gives one summary, not 9,000
    warnings). A problem about the whole file is ``note(key, text)``, told once.
    """

    def __init__(self) -> None:
        self._kinds: dict[tuple[str, str], list[int]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._notes: dict[str, str] = {}
        self._order: list[tuple] = []

    def add(self, path: str, line_no: int, text: str) -> None:
        key = (path, text)
        numbers = self._kinds.get(key)
        if numbers is None:
            numbers = self._kinds[key] = []
            self._counts[key] = 0
            self._order.append(("line", key))
        self._counts[key] += 1
        if len(numbers) < NUMBERS_IN_SUMMARY:
            numbers.append(line_no)

    def note(self, key: str, text: str) -> None:
        if key not in self._notes:
            self._notes[key] = text
            self._order.append(("note", key))

    def noted(self, key: str) -> bool:
        return key in self._notes

    def lines(self) -> tuple[str, ...]:
        out = []
        for kind, key in self._order:
            if kind == "note":
                out.append(self._notes[key])
                continue
            path, text = key
            numbers, count = self._kinds[key], self._counts[key]
            if count <= SHOWN_PER_KIND:
                out.extend(f"{path}:{n}: {text}" for n in numbers)
            else:
                first = ", ".join(str(n) for n in numbers)
                out.append(f"{path}: {count} lines: {text} (lines {first}, ...)")
        if len(out) > KINDS_SHOWN:
            rest = len(out) - KINDS_SHOWN
            out = out[:KINDS_SHOWN] + [f"... and {rest} more problems of other kinds"]
        return tuple(out)


def open_evidence(path: Union[str, "os.PathLike[str]"]) -> tuple[TextIO, Optional[str]]:
    """A log or strace file opened for its lines (formats.inputs.open_text:
    a file, pipe or FIFO, in the encoding its first bytes show), and a note
    naming that encoding when it is not UTF-8 (None otherwise). The caller
    closes the file."""
    from .inputs import open_text

    handle = open_text(path)
    encoding = handle.encoding.lower()
    if encoding in ("utf-8", "utf-8-sig"):
        return handle, None
    return handle, f"read as {encoding.upper()} (its first bytes say so)"
