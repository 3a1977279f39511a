"""The vectorised census equals the per-packet one it replaced (kept, only for this,
in tests/census_reference.py) on every corpus file, and tshark on random packet
sequences with port reuse cut into random batches (where the old one could
disagree with tshark, see test_census.py); the streamed JSON equals
the dict contract; and, on a connection-heavy loopback capture made here with
real sockets and tcpdump (ports reused under TIME_WAIT), it equals tshark's
per-stream view."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import struct

import pytest
import tempfile
from pathlib import Path
from hypothesis import given, settings, strategies as st

import census_reference as reference
import pcapbytes as pb
from conftest import tcpdump_on_loopback, tool_or_skip
from tcpteardown.analysis.census import census, census_batches
from tcpteardown.columns import batch_from_segments
from tcpteardown.formats.pcap_columns import iter_tcp_batches
from tcpteardown.model import Endpoint, Segment, TcpFlags as F
from tcpteardown.views.contracts.census import connection_json, write_census_json
from test_census_corpus import ours, tshark_view, wait_until_written
from test_pcapread_corpus import IDS, ROWS

OLD_FIELDS = [field.name for field in dataclasses.fields(reference.Connection)]


def old_view(connections):
    return [tuple(getattr(c, name) for name in OLD_FIELDS) for c in connections]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_corpus_equals_the_old_census(corpus, row):
    path = str(corpus / row["relpath"])
    try:
        old = reference.census_batches(iter_tcp_batches(path))
    except Exception as exc:  # the reader refuses the file: both must refuse it alike
        with pytest.raises(type(exc)):
            census_batches(iter_tcp_batches(path))
        return
    new = census_batches(iter_tcp_batches(path))
    assert old_view(new.connections) == old_view(old.connections)
    assert new.summary() == old.summary()
    assert (new.packets, new.tcp_packets) == (old.packets, old.tcp_packets)
    # the streamed document is the dict contract, object for object, whether it is
    # formatted in chunks (all connections) or one by one (a selection)
    expected = [connection_json(c) for c in new.connections]
    for indices in (None, list(range(len(new)))):
        out = io.StringIO()
        write_census_json(new, path, [], indices, out)
        document = json.loads(out.getvalue())
        assert document["connections"] == expected
        assert document["summary"] == new.summary() and document["listed"] == len(new)


SERVER = Endpoint("10.0.0.2", 80)
FLAGS = [F.SYN, F.SYN | F.ACK, F.ACK, F.PSH | F.ACK, F.FIN | F.ACK, F.RST, F.RST | F.ACK, F.FIN | F.RST,
         F.SYN | F.FIN]


def random_segments(steps, net: int = 0, first: int = 1):
    """Segments of `steps` between 10.<net>.0.1 (three client ports) and 10.<net>.0.2:80."""
    segments = []
    server = Endpoint(f"10.{net}.0.2", 80)
    for number, (pair, from_client, flags, seq, size) in enumerate(steps, start=first):
        client = Endpoint(f"10.{net}.0.1", 50000 + pair)
        src, dst = (client, server) if from_client else (server, client)
        segments.append(Segment(number, number * 10, src, dst, F(flags), seq, 0, 0, size))
    return segments


STEPS = st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.sampled_from(FLAGS),
                           st.sampled_from([99, 100, 101, 200, 900]), st.integers(0, 3)), max_size=40)


# 40 random sequences an example, each on its own addresses, one after the other in one
# capture: one tshark run checks them all (a tshark run per sequence was 20 s).
@settings(max_examples=4, deadline=None)
@given(sequences=st.lists(STEPS, min_size=40, max_size=40), cuts=st.lists(st.integers(1, 1600), max_size=60))
def test_random_sequences_equal_tshark(sequences, cuts):
    """Port reuse on few 4-tuples (three client ports, ISNs one apart) through every round of
    the vectorised split, cut into random batches, against tshark's tcp.stream on the same packets."""
    tool_or_skip("tshark")
    segments = []
    for net, steps in enumerate(sequences):
        segments += random_segments(steps, net, len(segments) + 1)
    frames = [pb.ethernet(pb.ipv4(s.src.host, s.dst.host, pb.tcp(s.src.port, s.dst.port, seq=s.seq,
                                                                 flags=int(s.flags), payload=b"x" * s.payload_len)))
              for s in segments]
    bounds = sorted({0, len(segments), *[c for c in cuts if c < len(segments)]})
    new = census_batches([batch_from_segments(segments[lo:hi]) for lo, hi in zip(bounds, bounds[1:])])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.pcap"
        path.write_bytes(pb.pcap([(1700000000, n, frame) for n, frame in enumerate(frames)]))
        expected = tshark_view(path) if frames else {}
    view = {c.stream: {"first": c.first_frame, "packets": c.packets, "rst": c.rst_frames, "fin": c.fin_frames,
                       "end": c.end, "ended_by": c.ended_by} for c in new.connections}
    for c in new.connections:  # without a SYN first, roles are a guess (ours and the view's differ)
        if c.handshake == "midstream" and c.stream in expected:
            for key in ("end", "ended_by"):
                view[c.stream][key] = expected[c.stream][key] = None
    assert view == expected


def test_a_syn_flood_on_one_tuple_takes_the_per_syn_path():
    """More reuses of one 4-tuple in one batch than vectorised rounds: still tshark's answer."""
    client = Endpoint("10.0.0.1", 40000)
    segments = [Segment(n, n, client, SERVER, F.SYN, 1000 + n, 0, 0, 0) for n in range(1, 41)]
    segments += [Segment(41, 41, client, SERVER, F.SYN, 1040, 0, 0, 0)]  # a retransmission of the last
    new = census(segments)
    assert old_view(new.connections) == old_view(reference.census(segments).connections)
    assert len(new) == 40 and new.connections[-1].syn_retransmissions == (41,)


# -- a connection-heavy capture made here --------------------------------------------------

def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _many_short_connections(count: int, refused_port: int, port: int, listener) -> None:
    """Clients that end every way, one after another. Those ending in an RST
    (which leaves no TIME_WAIT) reuse a few client ports: the same 4-tuple
    again and again with new ISNs, which tshark numbers as new streams."""
    pool = _free_ports(5)
    for number in range(count):
        kind = number % 4
        with socket.socket() as client:
            client.settimeout(5)
            if kind:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                client.bind(("127.0.0.1", pool[number % len(pool)]))
            if kind == 3:
                with pytest.raises(ConnectionRefusedError):
                    client.connect(("127.0.0.1", refused_port))
                continue
            client.connect(("127.0.0.1", port))
            server, _ = listener.accept()
            server.settimeout(5)
            with server:
                client.sendall(b"x")
                server.recv(10)
                if kind == 1:  # the client resets
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                    try:  # wait for the RST to arrive before the server's socket closes
                        server.recv(10)
                    except ConnectionResetError:
                        pass
                elif kind == 2:  # the server resets
                    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    server.close()
                    try:
                        client.recv(10)
                    except ConnectionResetError:
                        pass
                else:  # FIN both ways, the server first (its side keeps the TIME_WAIT)
                    server.shutdown(socket.SHUT_WR)
                    assert client.recv(10) == b""


@pytest.mark.needs_capture
def test_connection_heavy_capture_equals_tshark(tmp_path, monkeypatch):
    tool_or_skip("tshark")
    capture = tmp_path / "many.pcap"
    with tcpdump_on_loopback(capture, backlog=64, buffer_kib=65536) as lo:
        _many_short_connections(2000, lo.refused_port, lo.port, lo.listener)
        wait_until_written(capture, 2000, seconds=30)
    assert "\n0 packets dropped by kernel" in lo.stderr, lo.stderr
    result = census_batches(iter_tcp_batches(str(capture), window_bytes=64 << 10))  # many batches
    assert len(result) == 2000
    assert result.by_end() == {"fin": 500, "rst": 1000, "refused": 500, "open": 0}
    assert result.by_side()["rst"] == {"client": 500, "server": 500}
    assert ours(capture) == tshark_view(capture)
    tuples = {(str(c.client), str(c.server)) for c in result.connections}
    assert len(tuples) < 600  # the 1,500 RST and refused connections share 10 4-tuples
    states = {}
    for c in result.connections:
        states.setdefault((c.end, c.ended_by), set()).add(c.conn_state)
    assert states == {("fin", "server"): {"SF"}, ("rst", "client"): {"RSTO"}, ("rst", "server"): {"RSTR"},
                      ("refused", "server"): {"REJ"}}
    # Hash collisions, within a batch and across batches, change nothing: with a hash of
    # seven values the engine must notice them and group and look tuples up exactly.
    import numpy as np
    from tcpteardown.analysis import census as engine

    monkeypatch.setattr(engine, "_mix", lambda columns: (columns[2] % np.uint64(7)).astype(np.uint64))
    monkeypatch.setenv("TCPTEARDOWN_PURE_PYTHON", "1")  # the numpy grouping, by that hash
    weak = census_batches(iter_tcp_batches(str(capture), window_bytes=64 << 10))
    assert weak.connections == result.connections and weak.summary() == result.summary()
    monkeypatch.delenv("TCPTEARDOWN_PURE_PYTHON")
    from tcpteardown import speedups

    if speedups.compiled() is not None:
        # The compiled grouping is exact by itself; its hashes, made weak, go to the table of tuples.
        compiled = engine._Grouped._group_compiled

        def weak_hashes(self, batch):
            if not compiled(self, batch):
                return False
            self.hashes = self.hashes % np.uint64(7)
            self.collided = len(np.unique(self.hashes)) != len(self.hashes)
            return True

        monkeypatch.setattr(engine._Grouped, "_group_compiled", weak_hashes)
        weak = census_batches(iter_tcp_batches(str(capture), window_bytes=64 << 10))
        assert weak.connections == result.connections and weak.summary() == result.summary()


def test_history_words_pack_short_histories_and_keep_long_or_odd_ones_exact():
    """Census.table gives each connection's Zeek history as an index into its distinct
    histories; up to 12 letters they are packed into integers, longer ones (and any letter
    outside Zeek's alphabet) are compared as text. Every row must get back its own text."""
    import numpy as np
    from tcpteardown.analysis.census import _history_words

    histories = ["ShADadFf", "ShADadFf", "", "S", "ShADadFfRrRrRrRr", "ShADadFfRrRrRrRq", "ShADadFfRrRrRr",
                 "ShAD?", "ShAD!", "ShADadFfRrRr", "ShADadFfRrRrR"]
    flipped = np.array([False, True, False, True, False, False, True, False, False, False, False])
    letters = np.frombuffer("".join(histories).encode(), dtype=np.uint8)
    at = np.concatenate(([0], np.cumsum([len(h) for h in histories])))
    index, texts = _history_words(letters, at[:-1], at[1:], flipped)
    assert [texts[i] for i in index] == [("^" if f else "") + h for h, f in zip(histories, flipped)]
    assert len(texts) == len(set(texts)) == len(set(zip(histories, flipped)))
