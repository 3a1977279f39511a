"""prefetch.prefetched: order kept, errors raised where they happened, and the
reader thread never outlives its consumer (break, error, a slow consumer)."""

import threading

import pytest

from tcpteardown.prefetch import prefetched


def _readers() -> list:
    return [t for t in threading.enumerate() if t.name == "tcpteardown-reader"]


def test_items_come_in_order_and_the_thread_ends():
    assert list(prefetched(range(1000), depth=2)) == list(range(1000))
    assert _readers() == []


def test_an_error_in_the_reader_is_raised_in_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("damaged at byte 42")

    seen = []
    with pytest.raises(ValueError, match="byte 42"):
        for item in prefetched(items()):
            seen.append(item)
    assert seen == [1, 2]
    assert _readers() == []


def test_stopping_early_closes_the_source_and_joins_the_reader():
    closed = threading.Event()

    def items():
        try:
            for n in range(10**9):  # would never end on its own
                yield n
        finally:
            closed.set()

    stream = prefetched(items(), depth=1)
    assert next(stream) == 0
    stream.close()  # what a break or an exception in the consumer does
    assert closed.is_set()
    assert _readers() == []


def test_census_of_a_capture_is_the_same_with_and_without_the_reader_thread():
    from pathlib import Path

    from tcpteardown.analysis.census import census_batches
    from tcpteardown.formats.pcap_columns import iter_tcp_batches

    capture = str(Path(__file__).resolve().parents[1] / "captures" / "linux" / "accept-overflow.pcapng")
    # small windows: many batches cross the thread
    plain = census_batches(iter_tcp_batches(capture, window_bytes=512))
    threaded = census_batches(prefetched(iter_tcp_batches(capture, window_bytes=512)))
    assert len(plain) > 1
    assert list(plain.iter_connections()) == list(threaded.iter_connections())
