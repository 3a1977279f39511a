"""Read ahead on a second core: `prefetched(items)` runs an iterator in a
thread and hands out its items in order.

Why: decoding a capture window (numpy, which releases the GIL in its array
work) and counting the previous one overlap, so a 2-core machine reads a
connection-heavy capture in about two thirds of the time. At most `depth`
items wait in between, so memory stays flat.

The thread never outlives the consumer: an exception in the reader is
raised in the consumer at the point it happened; when the consumer stops
early (break, an error, Ctrl-C) the reader is told to stop, its iterator
is closed, and the thread is joined before `prefetched` returns.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_POLL_S = 0.1  # how often a blocked reader looks whether the consumer has gone


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


_END = object()


def prefetched(items: Iterable[T], depth: int = 2, name: str = "tcpteardown-reader") -> Iterator[T]:
    """The items of `items`, produced in a thread up to `depth` ahead."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failed(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator's finally (unmapping the file) runs in this thread

    reader = threading.Thread(target=read, name=name, daemon=True)
    reader.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join()
