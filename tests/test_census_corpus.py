"""Census against tshark on real captures: the corpus, and captures made here
with tcpdump on loopback with real sockets. tshark's view is derived in this
file from `tshark -T fields` (tcp.stream, addresses, flags), independently of
tcpteardown's reader and census."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import tcpdump_on_loopback, tool_or_skip
from tcpteardown.commands.census import census_file
from test_pcapread_corpus import IDS, ROWS

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


def tshark_view(path) -> dict:
    """{stream: {"frames", "rst", "fin", "end", "ended_by"}} from tshark's own dissection."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-e", "tcp.stream", "-e", "frame.number",
         "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "tcp.flags"],
        capture_output=True, text=True, check=True).stdout
    packets = {}
    for line in out.splitlines():
        stream, frame, src4, src6, port, flags = line.split("\t")
        if flags:
            packets.setdefault(int(stream), []).append((int(frame), (src4 or src6, port), int(flags, 16)))
    view = {}
    for stream, rows in packets.items():
        syn = next((src for _, src, flags in rows if flags & (SYN | ACK) == SYN), None)
        synack = next((src for _, src, flags in rows if flags & (SYN | ACK) == SYN | ACK), None)
        ends = [(frame, src, flags) for frame, src, flags in rows if flags & (FIN | RST)]
        client = syn
        if client is None and synack is not None:
            client = next(src for _, src, _ in rows if src != synack) if any(s != synack for _, s, _ in rows) else None
        end, ended_by = "open", None
        if ends:
            frame, src, flags = ends[0]
            if client is not None:
                ended_by = "client" if src == client else "server"
            if any(f & RST for _, _, f in ends):
                server_answered = any(f & (SYN | ACK) == SYN | ACK and s != syn for _, s, f in rows)
                refused = flags & RST and syn is not None and src != syn and not server_answered
                end = "refused" if refused else "rst"
            else:
                end = "fin"
        view[stream] = {
            "first": rows[0][0],
            "packets": len(rows),
            "rst": tuple(f for f, _, flags in rows if flags & RST),
            "fin": tuple(f for f, _, flags in rows if flags & FIN),
            "end": end,
            "ended_by": ended_by,
        }
    return view


def ours(path) -> dict:
    result = census_file(str(path))
    view = {}
    for c in result.connections:
        view[c.stream] = {"first": c.first_frame, "packets": c.packets, "rst": c.rst_frames, "fin": c.fin_frames,
                          "end": c.end, "ended_by": c.ended_by if c.handshake != "midstream" else None}
    return view


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_corpus_census_matches_tshark(corpus, row):
    tool_or_skip("tshark")
    path = corpus / row["relpath"]
    assert ours(path) == tshark_view(path)
    result = census_file(str(path))
    assert len(result.connections) == int(row["tcp_streams"])
    assert result.summary()["rst_segments"] == int(row["rst_segments"])
    assert result.summary()["fin_segments"] == int(row["fin_segments"])


# -- a capture made here --------------------------------------------------------------

def _serve(listener, stop):
    """One connection at a time; the request word says how the server ends it."""
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        with conn:
            conn.settimeout(5)
            try:
                request = conn.recv(100)
                if request == b"server-resets":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif request == b"server-closes":
                    conn.sendall(b"bye")
                else:  # the client ends it: answer, then wait for its FIN or RST
                    conn.sendall(b"ok")
                    conn.recv(100)
            except OSError:
                pass


def _talk(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request)
        try:
            client.recv(100)
            if request == b"client-resets":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif request == b"server-closes":
                assert client.recv(100) == b""  # the server's FIN
        except ConnectionResetError:
            assert request == b"server-resets"


def wait_until_written(capture, connections: int, *, seconds: float) -> None:
    """Poll (bounded) until tcpdump wrote `connections` connections, none still open; no fixed sleep."""
    deadline = time.monotonic() + seconds
    while True:
        seen = None
        if capture.exists() and capture.stat().st_size > 24:
            seen = census_file(str(capture), on_problem=lambda problem: None)  # the last record may be half written
            if len(seen) >= connections and seen.by_end()["open"] == 0:
                return
        assert time.monotonic() < deadline, \
            f"tcpdump wrote {len(seen) if seen else 0} of {connections} connections in {seconds} s"
        time.sleep(0.05)


@pytest.mark.needs_capture
def test_loopback_capture_with_real_sockets(tmp_path):
    capture = tmp_path / "lo.pcap"
    with tcpdump_on_loopback(capture, backlog=8) as lo:
        stop = threading.Event()
        server = threading.Thread(target=_serve, args=(lo.listener, stop))
        try:
            server.start()
            for request in (b"client-closes", b"server-closes", b"server-resets", b"client-resets"):
                _talk(lo.port, request)
            with socket.socket() as refused:
                with pytest.raises(ConnectionRefusedError):
                    refused.connect(("127.0.0.1", lo.refused_port))
            wait_until_written(capture, 5, seconds=20)
        finally:
            stop.set()
            if server.is_alive():
                server.join(5)
    result = census_file(str(capture))
    ends = [(c.end, c.ended_by) for c in result.connections]
    assert ends == [("fin", "client"), ("fin", "server"), ("rst", "server"), ("rst", "client"),
                    ("refused", "server")]
    assert all(str(c.client).startswith("127.0.0.1:") for c in result.connections)
    tool_or_skip("tshark")
    assert ours(capture) == tshark_view(capture)
