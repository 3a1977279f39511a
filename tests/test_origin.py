"""One time zero, the first SYN, for every view of a recording (issue 20, point 10).

On a real recording: a broken-pipe run on loopback (connect() starts before
its SYN), and on a stored capture that began mid-stream.
"""

from __future__ import annotations

import re

import pytest

from tcpteardown.analysis.origin import time_origin
from tcpteardown.formats.bundle import load_recording


def first_syn(recording):
    return next(s for s in recording.segments if s.is_syn and not s.flags & 0x10).time_ns


@pytest.fixture(scope="module")
def recorded():
    from tcpteardown.scenarios import run_scenario
    from tcpteardown.scenarios.needs import can_run
    from tcpteardown.scenarios import get_scenario

    problem = can_run(get_scenario("broken-pipe"))
    if problem:
        pytest.skip(f"needs_capture: {problem}")
    return run_scenario("broken-pipe")


@pytest.mark.needs_capture
def test_every_view_counts_from_the_first_syn(recorded):
    from tcpteardown.analysis.correlate import correlate
    from tcpteardown.analysis.diff import normalise
    from tcpteardown.views.ladder import _Ladder
    from tcpteardown.analysis.connections import connections, select_connection
    from tcpteardown.views.timeline import timeline_lines

    recording = recorded.recording
    syn = first_syn(recording)
    assert recording.calls[0].start_ns < syn  # connect() began before its SYN left: the zero is not the first event
    assert time_origin(recording.segments, recording.calls) == syn

    lines = timeline_lines(recording, {int(p) for p in recording.metadata.get("ports").split(",")})
    assert re.search(r"^ +\+0\.000  client → server  #1 +SYN ", "\n".join(lines), re.M), lines[:4]
    assert re.match(r"^ +-0\.\d{3}  client +connect\(\)", lines[1]), lines[1]

    (syn_step,) = [s for s in normalise(recording).segments if s.frame == 1]
    assert syn_step.time_ns == 0

    found = connections(recording)
    ladder = _Ladder(recording, select_connection(found), len(found), correlate(recording), None, "compressed")
    assert ladder.axis.origin_ns == syn
    ticks = dict((label, row) for row, label in ladder.axis.ticks(at=[syn, recording.calls[0].start_ns]))
    assert ticks["0"] == ladder.axis.y(syn) and any(label.startswith("-") for label in ticks)


def test_a_capture_that_began_mid_stream_counts_from_its_first_segment(corpus):
    recording = load_recording(corpus / "PcapPlusPlus" / "sll2.pcap")  # no handshake captured
    assert not any(s.is_syn for s in recording.segments)
    assert time_origin(recording.segments) == recording.segments[0].time_ns


def test_without_packets_the_first_call_is_zero():
    from tcpteardown.model import SocketCall

    calls = [SocketCall("client", "close", 50, 60, 0), SocketCall("client", "connect", 10, 40, -1, "EHOSTUNREACH")]
    assert time_origin((), calls) == 10
    assert time_origin((), ()) is None
