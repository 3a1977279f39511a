"""What a picture of a long connection leaves out (`analysis.elide`).

On real captures: a stored capture of one long connection (zeek's
timestamp.pcap, 878 packets, graceful close), a short one that must stay
whole, and a live 2,000-segment transfer between two real loopback sockets
captured by tcpdump and ended by an RST.
"""

from __future__ import annotations

import re
import socket
import struct

import pytest

from conftest import tool_or_skip
from tcpteardown.analysis.elide import MIN_BAND, elide
from tcpteardown.formats.bundle import load_recording
from tcpteardown.model import SocketCall
from tcpteardown.units import format_bytes


def one_connection(corpus, name):
    from tcpteardown.analysis.connections import connections

    recording = load_recording(corpus / name)
    (only,) = [c for c in connections(recording) if len(c.segments) > 2]
    return recording, only.segments


def check_accounting(segments, elision):
    """Every segment is drawn or counted in exactly one band, with its bytes and times."""
    by_frame = {s.frame: s for s in segments}
    kept = {s.frame for s in elision.kept}
    hidden = set()
    for band in elision.bands:
        run = [s for s in segments if band.first_frame <= s.frame <= band.last_frame]
        assert not kept & {s.frame for s in run}
        assert band.segments == len(run) >= MIN_BAND
        assert band.payload_bytes == sum(s.payload_len for s in run)
        assert band.data_segments == sum(1 for s in run if s.payload_len and not s.is_rst)
        assert band.resets == sum(1 for s in run if s.is_rst)
        assert (band.start_ns, band.end_ns) == (run[0].time_ns, run[-1].time_ns)
        assert elision.kept[band.after_index].frame == band.first_frame - 1 or \
            by_frame[elision.kept[band.after_index].frame].time_ns <= band.start_ns
        hidden |= {s.frame for s in run}
    assert kept | hidden == set(by_frame) and not kept & hidden
    assert list(elision.kept) == [s for s in segments if s.frame in kept]  # order kept


def test_a_long_real_transfer_keeps_its_handshake_and_teardown(corpus):
    _, segments = one_connection(corpus, "zeek/timestamp.pcap")
    elision = elide(segments)
    check_accounting(segments, elision)
    assert len(elision.kept) < 40 < len(segments)
    assert list(elision.kept[:3]) == list(segments[:3])
    first_end = next(i for i, s in enumerate(segments) if s.is_fin or s.is_rst)
    assert set(segments[first_end - 4:]) <= set(elision.kept)  # the last ones before the FIN, and all after
    (band,) = elision.bands
    assert re.fullmatch(r"… [\d,]+ data segments, [\d,]+ ACKs, [\d.]+ [kM]?B, [\d.]+ m?s …", band.label), band.label
    assert format_bytes(band.payload_bytes) in band.label
    assert elide(segments, full=True).kept == tuple(segments)


def test_an_rst_storm_is_drawn_as_its_start_a_band_and_its_end(corpus):
    """zeek's llc.pcap: 1,333 RSTs of one connection over a day, nothing else. Every one
    used to be drawn; the ladder keeps the first and last few and counts the rest."""
    _, segments = one_connection(corpus, "zeek/llc.pcap")
    assert len(segments) > 1000 and all(s.is_rst for s in segments)
    elision = elide(segments)
    check_accounting(segments, elision)
    (band,) = elision.bands
    assert len(elision.kept) < 20 and band.resets == band.segments == len(segments) - len(elision.kept)
    assert elision.kept[0] == segments[0] and elision.kept[-1] == segments[-1]
    assert re.fullmatch(r"… [\d,]+ RSTs, (\d+ h )?(\d+ min )?[\d.]+ s …", band.label), band.label
    assert elide(segments, full=True).kept == tuple(segments)


def test_a_short_connection_is_never_cut(corpus):
    _, segments = one_connection(corpus, "PcapPlusPlus/one_tcp_stream_fin_rst_close_packet.pcap")
    elision = elide(segments)
    assert elision.kept == tuple(segments) and not elision.bands


def test_a_failing_call_in_the_bulk_keeps_its_neighbourhood(corpus):
    _, segments = one_connection(corpus, "zeek/timestamp.pcap")
    middle = segments[len(segments) // 2]
    failing = SocketCall("client", "recv", middle.time_ns - 10, middle.time_ns + 10, -1, "ECONNRESET")
    quiet = SocketCall("client", "send", segments[100].time_ns, segments[100].time_ns + 1, 10)
    elision = elide(segments, [failing, quiet])
    check_accounting(segments, elision)
    assert middle in elision.kept and len(elision.bands) == 2
    assert elision.calls == (failing,)  # the quiet send sat inside a band: counted there
    assert sum(b.calls for b in elision.bands) == 1 and "1 socket call" in elision.bands[0].label
    eof = SocketCall("client", "recv", segments[300].time_ns, segments[300].time_ns + 10, 0)
    assert eof.is_eof and eof in elide(segments, [eof]).calls  # an end-of-file is never folded away
    anchored = elide(segments, anchors=[segments[300].time_ns])
    assert segments[300] in anchored.kept and len(anchored.bands) == 2


def capture_live(tmp_path, play):
    """`play(client, server)` on a real loopback pair, captured by tcpdump; the one connection."""
    tool_or_skip("tcpdump")
    from tcpteardown.capture.tcpdump import TcpdumpCapture
    from tcpteardown.analysis.connections import connections

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        # Block mode: immediate mode's ring overflows at this rate on a busy 2-core machine.
        with TcpdumpCapture(tmp_path / "long.pcap", [port], immediate=False) as capture:
            with socket.create_connection(("127.0.0.1", port)) as client:
                server, _ = listener.accept()
                with server:
                    for sock in (client, server):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    play(client, server)
        pcap = capture.stop()
    assert capture.kernel_drops == 0, capture.describe()
    recording = load_recording(pcap)
    (conn,) = connections(recording)
    return recording, conn


@pytest.mark.needs_capture
def test_a_live_two_thousand_segment_transfer(tmp_path):
    """Real sockets, real tcpdump: 1,000 request/response turns, then an abortive close."""
    from tcpteardown.views.ladder import draw_ladder

    def play(client, server):
        for _ in range(1000):  # each side waits for the other: one data segment per send
            client.sendall(b"q" * 100)
            assert server.recv(100) == b"q" * 100
            server.sendall(b"a" * 200)
            assert client.recv(200) == b"a" * 200
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # the server's linger-0 close (leaving its with block) sends RST

    recording, conn = capture_live(tmp_path, play)
    assert len(conn.segments) >= 2000
    elision = elide(conn.segments)
    check_accounting(conn.segments, elision)
    assert len(elision.kept) < 40
    assert conn.segments[-1].is_rst and conn.segments[-1] in elision.kept
    (band,) = elision.bands
    assert band.payload_bytes > 250_000
    height = draw_ladder(recording).get_size_inches()[1]
    assert height < 16, f"{len(conn.segments)} segments drawn {height:.1f} in tall"


@pytest.mark.needs_capture
def test_a_long_transfer_after_a_half_close_is_folded_too(tmp_path):
    """The client shuts down writing first (FIN); the server goes on answering 600 times."""

    def play(client, server):
        client.shutdown(socket.SHUT_WR)
        assert server.recv(10) == b""  # the client's FIN
        for _ in range(600):
            server.sendall(b"a" * 200)
            assert client.recv(200) == b"a" * 200
        server.shutdown(socket.SHUT_WR)
        assert client.recv(10) == b""

    _, conn = capture_live(tmp_path, play)
    segments = conn.segments
    elision = elide(segments)
    check_accounting(segments, elision)
    fins = [s for s in segments if s.is_fin]
    assert len(fins) == 2 and set(fins) <= set(elision.kept)
    (band,) = elision.bands
    assert fins[0].time_ns < band.start_ns and band.end_ns < fins[1].time_ns
    assert len(elision.kept) < 40 < len(segments)


def test_plot_full_draws_every_segment(corpus, tmp_path, capsys):
    from tcpteardown.cli import main

    # a Mac's loopback bulk transfer: 32 segments, folded to 18 (zeek/timestamp.pcap's 878
    # drawn in full took 6-12 s, all of it matplotlib laying out text)
    capture = "macos/bulk-loading.pcap"
    _, segments = one_connection(corpus, capture)
    drawn = {}
    for name, extra in (("folded", []), ("full", ["--full"])):
        out = tmp_path / f"{name}.svg"
        assert main(["plot", str(corpus / capture), "-o", str(out), *extra]) == 0
        drawn[name] = set(re.findall(r'id="segment-(\d+)"', out.read_text()))
    assert len(drawn["full"]) == len(segments)
    assert len(drawn["folded"]) == len(elide(segments).kept) < len(segments)
