"""What an evidence importer (strace log, application log) hands back.

Importers never raise for a line they cannot read: they skip it and say so in
`problems` (``"path:LINE: what was expected"``), keeping everything else.
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from tcpteardown.model import SocketCall

__all__ = ["ImportResult"]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Socket calls read from one evidence file, time-sorted, and the
    problems met on the way (one line of text each, naming file and line)."""

    calls: tuple[SocketCall, ...] = ()
    problems: tuple[str, ...] = ()

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
        return ImportResult(tuple(calls), problems)
