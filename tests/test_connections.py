"""analysis.connections: the one connection tracker's endings and the one selection grammar."""

from __future__ import annotations

import collections
from dataclasses import replace

import pytest

from tcpteardown.analysis.census import census
from tcpteardown.analysis.connections import connections, parse_conn, select_connection
from tcpteardown.analysis.diff import pick_connection
from tcpteardown.errors import UserError
from tcpteardown.formats.bundle import load_recording
from tcpteardown.model import Endpoint, SocketCall
from tcpteardown.views.steps import build_steps


def test_endings_are_the_census_vocabulary_on_every_corpus_capture(corpus):
    compared = 0
    for path in sorted(corpus.glob("*/*.pcap*")):
        try:
            recording = load_recording(path)
        except UserError:
            continue  # a link type the reader refuses (PKTAP): nothing to compare
        mine = collections.Counter(v.ending for v in connections(recording) if v.connection is not None)
        theirs = {end: n for end, n in census(recording.segments).by_end().items() if n}
        assert dict(mine) == theirs, path
        compared += 1
    assert compared >= 30


@pytest.mark.parametrize("text, field, value", [
    ("3", "number", 3), (3, "number", 3), (":6379", "port", 6379),
    ("127.0.0.1:6379", "endpoints", (Endpoint("127.0.0.1", 6379),)),
    ("[::1]:80-[::1]:5000", "endpoints", (Endpoint("::1", 80), Endpoint("::1", 5000))),
])
def test_grammar(text, field, value):
    assert getattr(parse_conn(text), field) == value


@pytest.mark.parametrize("text, message", [
    ("0", "numbered from 1"), ("-1", "numbered from 1"), (":http", "port must be a number"),
    (":70000", "port must be a number"), ("1.1.1.1:1-2.2.2.2:2-3.3.3.3:3", "at most two endpoints"),
    ("nonsense", "expected"),
])
def test_grammar_errors_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_conn(text)


def test_selection_by_number_endpoint_port_and_four_tuple(corpus):
    recording = load_recording(corpus / "zeek" / "attr.pcap")  # 2 refused IPv6 SYNs, 2 redis connections
    found = connections(recording)
    assert select_connection(found, "1") is found[0]
    assert select_connection(found, 4) is found[3]
    third = found[2]
    assert select_connection(found, str(third.client)) is third
    assert select_connection(found, f"{third.server}-{third.client}") is third
    assert select_connection(found, f":{found[1].client.port}") is found[1]
    with pytest.raises(UserError, match="no connection number 5: this recording has 4"):
        select_connection(found, 5)


def test_ladder_steps_and_diff_pick_the_same_default(corpus):
    """The connection of the first failing call, by start, everywhere (they used to disagree)."""
    recording = load_recording(corpus / "zeek" / "attr.pcap")
    found = connections(recording)
    second, fourth = found[1].connection, found[3].connection
    late = SocketCall("client", "recv", fourth.end_ns, fourth.end_ns + 1, result=-1, errno="ECONNRESET",
                      local=fourth.client, remote=fourth.server)
    early = SocketCall("client", "send", second.end_ns, second.end_ns + 1, result=-1, errno="EPIPE",
                       local=second.client, remote=second.server)
    recording = replace(recording, calls=(early, late))
    chosen = select_connection(connections(recording))
    assert chosen.index == 1
    assert pick_connection(recording).index == 1
    frames = [step.frame for step in build_steps(recording) if step.frame is not None]
    assert frames == [s.frame for s in second.segments]
