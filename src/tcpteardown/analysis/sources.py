"""One failure, one link: the sources that saw the same failing call, merged.

A program's one failing read reaches the tool several ways: the strace call,
the line the program wrote to stderr (which `record` kept), the same line in
the application's log file given with ``--log``, a second ``--strace`` file.
`merge_sources(links)` makes each failure one Link whose `call` is the most
precise source (our recorder's or strace's syscall; among log lines alone,
the finest timestamp) and whose `seen_by` holds the others, so that every
view tells it once and cites every source.

When two links are the same failure:
- a log line and a syscall (strace, scenario): the same outcome and the same
  cause (the same frame, or the same own close), or, when neither found a
  cause, the same kind of call within the log's lag of the syscall and no
  endpoint that disagrees;
- two log lines of different files: as above, or the same words (timestamps
  aside) within `SAME_LINE_NS` of each other: one line kept twice.
A syscall absorbs at most one line of each file (the nearest in time): two
lines of one file are two reports, and two syscalls are always two failures,
however close together.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Optional

from ..formats.stamps import message_words, stamp_precision_ns
from ..model import Link, Recording, SocketCall
from .rules import op_family

__all__ = ["merge_sources", "told_once", "LOG_LAG_NS", "SAME_LINE_NS"]

# A log line is written after the call returned, stamped to the second at worst.
LOG_LAG_NS = (1_000_000_000, 5_000_000_000)  # (before the call's end, after it)
SAME_LINE_NS = 2_000_000_000


def _file(call: SocketCall) -> str:
    return (call.where or call.source).rpartition(":")[0] or call.source


def _cause_key(link: Link) -> Optional[tuple]:
    if link.cause is not None:
        return ("frame", link.cause.frame)
    if link.local_call is not None:
        own = link.local_call
        return ("own", own.source, own.pid, own.fd, own.op, own.end_ns)
    return None


def _endpoints_agree(a: SocketCall, b: SocketCall) -> bool:
    return all(x is None or y is None or x == y for x, y in ((a.local, b.local), (a.remote, b.remote)))


def _near(log: SocketCall, other: SocketCall, window: tuple[int, int]) -> bool:
    before, after = window
    return other.end_ns - before <= log.start_ns <= other.end_ns + after


class _Failure:
    """One failure and the links (sources) that told it."""

    def __init__(self, link: Link, index: int) -> None:
        self.links = [link]
        self.index = index  # where the first of them stood among the links

    @property
    def anchored(self) -> bool:
        return self.links[0].call.source != "log"

    def files(self) -> set[str]:
        return {_file(link.call) for link in self.links if link.call.source == "log"}

    def takes(self, log: Link) -> bool:
        """`log` (a log line's link) tells this same failure."""
        if _file(log.call) in self.files():
            return False
        for link in self.links:
            call = link.call
            if call.outcome != log.call.outcome:
                continue
            key = _cause_key(link)
            if key is not None and key == _cause_key(log):
                return True
            if call.source == "log" and _near(log.call, call, (SAME_LINE_NS, SAME_LINE_NS)) \
                    and message_words(call.text) == message_words(log.call.text):
                return True
            if key is None and _cause_key(log) is None and call.source != "log" \
                    and op_family(call.op) == op_family(log.call.op) and _endpoints_agree(call, log.call) \
                    and _near(log.call, call, LOG_LAG_NS):
                return True
        return False

    def distance(self, log: Link) -> int:
        return min(abs(link.call.end_ns - log.call.start_ns) for link in self.links)

    def link(self) -> Link:
        """The most precise source tells it; the others are cited."""
        first = min(self.links, key=_precision_rank)
        others = tuple(sorted((link.call for link in self.links if link is not first),
                              key=lambda call: (call.end_ns, call.where or "")))
        return replace(first, seen_by=first.seen_by + others) if others else first


def _precision_rank(link: Link) -> tuple:
    call = link.call
    if call.source != "log":
        return (0, 0, call.end_ns)
    return (1, stamp_precision_ns(call.text), call.end_ns)


def merge_sources(links: Iterable[Link]) -> tuple[Link, ...]:
    """`links` with each failure told once: see the module's rules. Each log line
    is compared with the failures filed under its outcome and cause, or near its
    time (`_Index`), so a log of 10^5 errors stays near linear."""
    links = list(links)
    index = _Index()
    failures: list[_Failure] = []
    for position, link in enumerate(links):
        if link.call.source != "log":
            failures.append(_Failure(link, position))
            index.add(failures[-1], link)
    logs = sorted(((i, link) for i, link in enumerate(links) if link.call.source == "log"),
                  key=lambda pair: pair[1].call.start_ns)
    for position, link in logs:
        fits = [f for f in index.near(link) if f.takes(link)]
        if fits:  # a syscall before another log line; then the nearest in time
            chosen = min(fits, key=lambda f: (not f.anchored, f.distance(link), f.index))
            chosen.links.append(link)
        else:
            chosen = _Failure(link, position)
            failures.append(chosen)
        index.add(chosen, link)
    failures.sort(key=lambda f: f.index)
    return tuple(f.link() for f in failures)


def told_once(recording: Recording, links: Iterable[Link]) -> Recording:
    """`recording` without the calls another source already tells: each link's `seen_by`
    (the log line beside strace's call) is cited by its link, not drawn as a second
    failure on the ladder, the steps or a diagram. Calls no link merged stay."""
    repeats = {id(call) for link in links for call in link.seen_by}
    repeats -= {id(link.call) for link in links}
    if not repeats:
        return recording
    return replace(recording, calls=tuple(call for call in recording.calls if id(call) not in repeats))


class _Index:
    """Failures filed by (outcome, cause) and by (outcome, time slot); a lookup
    returns every syscall's failure and the latest `RECENT` log-only ones of each."""

    SLOT_NS = LOG_LAG_NS[1]
    RECENT = 64

    def __init__(self) -> None:
        self.by_key: dict[tuple, tuple[list, list]] = {}

    def _keys(self, link: Link, *, looking: bool) -> list[tuple]:
        call = link.call
        keys = []
        cause = _cause_key(link)
        if cause is not None:
            keys.append((call.outcome, cause))
        slot = call.end_ns // self.SLOT_NS if not looking else call.start_ns // self.SLOT_NS
        slots = (slot - 1, slot, slot + 1) if looking else (slot,)
        keys.extend((call.outcome, "slot", s) for s in slots)
        return keys

    def add(self, failure: _Failure, link: Link) -> None:
        for key in self._keys(link, looking=False):
            anchored, logged = self.by_key.setdefault(key, ([], []))
            bucket = anchored if failure.anchored else logged
            if not bucket or bucket[-1] is not failure:
                bucket.append(failure)

    def near(self, link: Link) -> list[_Failure]:
        found: dict[int, _Failure] = {}
        for key in self._keys(link, looking=True):
            anchored, logged = self.by_key.get(key, ((), ()))
            for failure in (*anchored, *logged[-self.RECENT:]):
                found[id(failure)] = failure
        return list(found.values())
