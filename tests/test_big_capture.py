"""explain and plot on a capture of many connections read only the connections that matter.

A real capture (tcpdump on loopback, a few hundred short connections ending
every way, one client read reset by the server and reported in a Go log
line) is explained twice: read selectively through the column reader, and
as the single connection tshark cuts out of it (`-Y tcp.stream==N -w`).
Both must link the same segment; the selective read must hold that
connection and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import subprocess

import pytest

from conftest import tool_or_skip
from many_connections import play_many
from tcpteardown.analysis import tcpstate
from tcpteardown.analysis.connections import connections, select_connection
from tcpteardown.analysis.correlate import correlate, tolerance
from tcpteardown.cli import main
from tcpteardown.formats.bundle import load_recording
from tcpteardown.api import explain
from tcpteardown.formats.evidence import (BIG_CAPTURE_VARIABLE, NEAR_CANDIDATES_READ, NEAR_WINDOW_NS, interest_for,
                                          load_evidence, read_selected)

COUNT, VICTIM = 240, 121


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    tool_or_skip("tcpdump")
    from tcpteardown.capture.tcpdump import TcpdumpCapture

    folder = tmp_path_factory.mktemp("many")
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener, socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        ports = [listener.getsockname()[1], reserved.getsockname()[1]]
        # block mode: immediate mode's ring overflows at this rate of connections
        with TcpdumpCapture(folder / "many.pcap", ports, immediate=False) as capture:
            line = play_many(listener, ports[1], COUNT, VICTIM)
        pcap = capture.stop()
    assert capture.kernel_drops == 0, capture.describe()
    log = folder / "client.log"
    log.write_text(line + "\n")
    return pcap, log


def _tshark(*argv) -> list[str]:
    done = subprocess.run([tool_or_skip("tshark"), *argv], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split()


def _cut(pcap, log, tmp_path):
    """The victim's frame numbers in the big capture and its connection cut out by tshark."""
    victim = load_evidence(pcap, logs=[log]).calls[0]
    ports = f"tcp.port=={victim.local.port} && tcp.port=={victim.remote.port}"
    stream = _tshark("-r", str(pcap), "-Y", ports, "-T", "fields", "-e", "tcp.stream")[0]
    frames = [int(n) for n in _tshark("-r", str(pcap), "-Y", f"tcp.stream=={stream}", "-T", "fields",
                                      "-e", "frame.number")]
    small = tmp_path / "victim.pcap"
    _tshark("-r", str(pcap), "-Y", f"tcp.stream=={stream}", "-w", str(small))
    return frames, small


def _same(a, b) -> tuple:
    return (a.time_ns, a.src, a.dst, a.flags, a.seq, a.ack, a.payload_len)


@pytest.mark.needs_capture
def test_explain_links_the_frame_it_links_on_the_connection_cut_out(many, tmp_path):
    pcap, log = many
    frames, small = _cut(pcap, log, tmp_path)
    selective = load_evidence(pcap, logs=[log], select=interest_for, big_bytes=0)
    alone = load_evidence(small, logs=[log])
    whole = load_evidence(pcap, logs=[log])
    (picked,), (cut,), (old,) = correlate(selective), correlate(alone), correlate(whole)
    assert picked.cause is not None and picked.cause.is_rst
    assert _same(picked.cause, cut.cause) == _same(old.cause, cut.cause)
    assert picked.cause.frame == frames[cut.cause.frame - 1] == old.cause.frame
    # only the victim's connection became Segments
    assert len(tcpstate.connections(selective)) == 1
    assert [s.frame for s in selective.segments] == frames
    assert len(whole.segments) > 20 * len(frames)


@pytest.mark.needs_capture
def test_cli_explain_and_plot_read_selectively_and_link_the_same_frame(many, tmp_path, capsys, monkeypatch):
    pcap, log = many
    frames, small = _cut(pcap, log, tmp_path)
    assert main(["explain", str(small), "--log", str(log), "--json"]) == 0
    cut = json.loads(capsys.readouterr().out)["links"][0]["cause"]["frame"]
    monkeypatch.setenv(BIG_CAPTURE_VARIABLE, "0")
    assert main(["explain", str(pcap), "--log", str(log), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["links"][0]["cause"]["frame"] == frames[cut - 1]
    assert f"read {len(frames)} of " in err
    figure = tmp_path / "victim.svg"
    assert main(["plot", str(pcap), "--log", str(log), "-o", str(figure)]) == 0
    drawn = sorted(int(n) for n in re.findall(r'id="segment-(\d+)"', figure.read_text()))
    assert drawn == frames
    assert not (tmp_path / "victim-overview.svg").exists()  # the overview needs every connection


@pytest.mark.needs_capture
@pytest.mark.parametrize("choice", ["7", "client of 7", ":port of 7", "4-tuple of 7"])
def test_conn_reads_the_connection_it_names_and_only_it(many, choice):
    pcap, _log = many
    whole = load_recording(pcap)
    seventh = select_connection(connections(whole), 7)
    text = {"7": "7", "client of 7": str(seventh.client), ":port of 7": f":{seventh.client.port}",
            "4-tuple of 7": f"{seventh.server}-{seventh.client}"}[choice]
    from tcpteardown.analysis.connections import parse_conn

    selector = parse_conn(text)
    read = read_selected(pcap, interest_for((), number=selector.number, endpoints=selector.endpoints,
                                            port=selector.port))
    assert [s.frame for s in read.segments] == [s.frame for s in seventh.segments]


@pytest.mark.needs_capture
def test_since_and_until_clip_packets_and_calls(many, capsys, monkeypatch):
    pcap, log = many
    victim = load_evidence(pcap, logs=[log]).calls[0]
    monkeypatch.setenv(BIG_CAPTURE_VARIABLE, "0")
    before = f"{(victim.end_ns - 50_000_000) / 1e9:.6f}"
    assert main(["explain", str(pcap), "--log", str(log), "--until", before, "--json"]) == 2
    assert "read between --since and --until" in capsys.readouterr().err  # the failing call is after --until
    since = f"{(victim.end_ns - 2_000_000_000) / 1e9:.6f}"
    assert main(["explain", str(pcap), "--log", str(log), "--since", since, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["links"][0]["cause"]["flags"] == "RST,ACK"


@pytest.mark.needs_capture
def test_a_log_line_without_a_four_tuple_reads_the_connections_just_before_it(many, tmp_path):
    """A Python traceback names no address: the connections with packets in the
    window before the line are read, and the link is the one the whole capture gives."""
    pcap, log = many
    victim = load_evidence(pcap, logs=[log]).calls[0]
    stamp = victim.end_ns
    when = f"{dt.datetime.fromtimestamp(stamp / 1e9, dt.timezone.utc):%Y-%m-%dT%H:%M:%S.%f}Z"
    python_log = tmp_path / "python.log"
    python_log.write_text(f"{when} ERROR client: request failed: ConnectionResetError: "
                          "[Errno 104] Connection reset by peer\n")
    (call,) = load_evidence(pcap, logs=[python_log]).calls
    assert call.local is None and call.remote is None
    whole = load_evidence(pcap, logs=[python_log])
    narrow = load_evidence(pcap, logs=[python_log], big_bytes=0,
                           select=lambda calls: interest_for(calls, window_ns=3_000_000,
                                                             late_ns=lambda call: tolerance(call)[0]))
    (old,), (new,) = correlate(whole), correlate(narrow)
    assert new.cause is not None and new.cause.frame == old.cause.frame
    read = len(tcpstate.connections(narrow))
    assert 1 <= read < len(tcpstate.connections(whole)) // 4  # a 3 ms window of a capture of 240
    # the default 1 s window holds most of the capture: only the connections whose RST lies nearest
    # the line are read, the link says how many showed one, and none of them is predicted
    wide = load_evidence(pcap, logs=[python_log], big_bytes=0,
                         select=lambda calls: interest_for(calls, late_ns=lambda call: tolerance(call)[0]))
    t0, t1 = call.start_ns - NEAR_WINDOW_NS, call.end_ns + tolerance(call)[0]
    shown = {s.connection_key for s in whole.segments if s.is_rst and t0 <= s.time_ns <= t1}
    assert len(shown) > NEAR_CANDIDATES_READ
    assert len({s.connection_key for s in wide.segments}) == NEAR_CANDIDATES_READ
    explanation = explain(wide)
    (link,) = explanation.links
    assert link.cause.frame == old.cause.frame
    assert (f"{len(shown)} connections show an RST or FIN in the window before the call (--window); only the "
            f"{NEAR_CANDIDATES_READ} whose is nearest the call were read") in "; ".join(link.caveats)
    document = explanation.document()
    assert document["predictions_limited"].startswith("predictions only for the connections the calls name")
    assert "predictions_limited" not in explain(whole).document()  # read whole: every connection predicted


@pytest.mark.needs_capture
def test_a_connection_that_began_before_the_window_is_read_whole(many):
    """The window holds only the victim's RST: a second pass reads its start
    (a connect that retried for minutes before the log line looks like this)."""
    from tcpteardown.formats.evidence import Interest

    pcap, log = many
    whole = load_evidence(pcap, logs=[log])
    (link,) = correlate(whole)
    rst = link.cause
    frames = [s.frame for c in tcpstate.connections(whole) if rst in c.segments for s in c.segments]
    read = read_selected(pcap, Interest(near=((None, rst.time_ns, rst.time_ns),), lookback_ns=0))
    assert [s.frame for s in read.segments] == frames
    assert "2 passes" in read.metadata.get("selected")


@pytest.mark.needs_capture
def test_clean_closes_are_summarised_the_rest_told_and_json_holds_every_eof(many, capsys):
    """Explain on the plain capture (read whole: it is small): each FIN-ended connection's EOF is
    predicted (JSON, one link each), the text folds them into one paragraph whose count is census's,
    every abnormal link keeps its paragraph, and --conn tells a clean connection in full."""
    from tcpteardown.analysis.census import census

    pcap, _log = many
    ended = [c for c in census(load_recording(pcap).segments).connections if c.end == "fin"]
    assert main(["explain", str(pcap), "--json"]) == 0
    links = json.loads(capsys.readouterr().out)["links"]
    eofs = [l for l in links if l["rule"] == "linux-fin-read"]
    assert eofs and all(l["call"]["source"] == "predicted" and l["call"]["op"] == "read"
                        and l["call"]["errno"] == "EOF" and l["cause"]["kind"] == "fin" for l in eofs)
    assert len({frozenset((l["call"]["local"], l["call"]["remote"])) for l in eofs}) <= len(ended)
    assert main(["explain", str(pcap)]) == 0
    text = capsys.readouterr().out
    (summary,) = [p for p in text.split("\n\n") if "closed cleanly" in p]
    assert summary.startswith(f"{len(ended):,} connections closed cleanly (FIN, no RST)")
    assert f"({len(eofs):,} read() predictions from the packets, Linux rules linux-fin-read" in summary
    assert text.count("*predicted from the packets*") == len(links) - len(eofs)  # the abnormal ones, each
    number = re.search(r"connections (\d+)", summary.split("--conn N")[1]).group(1)
    assert main(["explain", str(pcap), "--conn", number]) == 0
    alone = capsys.readouterr().out
    assert "closed cleanly" not in alone
    assert "will have seen its next read() return" in alone and "sent FIN (frame " in alone
