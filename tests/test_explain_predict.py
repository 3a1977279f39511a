"""`explain` on plain captures: what each side saw, predicted from the packets, for the OS that captured it.

Linux: a real program's failures (reset by peer, broken pipe, refused) under
tcpdump, with no strace: each prediction must name what the kernel really
returned to the program. Darwin: the real Mac loopback captures of
../shared/corpus/macos: explain names Darwin, uses the XNU rules and
Darwin's errno numbers.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import sys
from pathlib import Path

import pytest

from test_explain_cli import CLIENT, check_contract, explain, settled_tcpdump
from tcpteardown.analysis.predict import PREDICTIONS

OPS = {"reset": "read", "pipe": "write", "refused": "connect"}


def run_captured(tmp_path, source: str) -> tuple:
    """Run a Python program under tcpdump on lo: (the capture, what it printed, one JSON object a line)."""
    program = tmp_path / "program.py"
    program.write_text(source)
    pcap = tmp_path / "lo.pcap"
    with settled_tcpdump(pcap):
        proc = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return pcap, [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.needs_capture
def test_plain_linux_capture_predicts_what_the_program_really_got(tmp_path):
    pcap, failures = run_captured(tmp_path, CLIENT)
    assert [f["errno"] for f in failures] == ["ECONNRESET", "EPIPE", "ECONNREFUSED"]

    code, out, err = explain(pcap, "--json")
    assert code == 0, err
    document = json.loads(out)
    check_contract(document)
    assert document["os"]["name"] == "linux"
    assert all(link["call"]["source"] == "predicted" for link in document["links"])
    for failure in failures:
        mine = [l for l in document["links"] if l["call"]["local"] == f"127.0.0.1:{failure['port']}"
                and l["call"]["op"] == OPS[failure["case"]]]
        assert [l["call"]["errno"] for l in mine] == [failure["errno"]], (failure, document["links"])
        assert mine[0]["cause"]["kind"] == "rst" and mine[0]["cause"]["frame"] >= 1

    code, text, _ = explain(pcap)
    assert text.count("*predicted from the packets* (Linux rules)") == len(document["links"])
    assert "errno 104 on Linux" in text


def test_mac_corpus_capture_names_darwin_and_uses_xnu_rules(corpus):
    capture = corpus / "macos" / "tls-duplicate-hello.pcap"
    code, out, err = explain(capture, "--json")
    assert code == 0, err
    document = json.loads(out)
    check_contract(document)
    assert document["os"]["name"] == "darwin"
    assert any("mss,nop,ws,nop,nop,ts,sok,eol+1" in e for e in document["os"]["evidence"])
    got = {(l["call"]["local"], l["call"]["op"], l["call"]["errno"], l["rule"]) for l in document["links"]}
    assert got == {("127.0.0.1:49952", "connect", "ECONNREFUSED", "refused-connect"),
                   ("127.0.0.1:8443", "read", "ECONNRESET", "darwin-rst-read"),
                   ("127.0.0.1:8443", "write", "EPIPE", "darwin-rst-write")}
    code, text, _ = explain(capture, "--lang", "python")
    assert "(Darwin rules)" in text and "(Linux rules)" not in text
    assert "errno 54 on Darwin" in text and "errno 104" not in text
    assert "(Python: ConnectionResetError: [Errno 54] Connection reset by peer)" in text  # --lang follows the OS
    assert "from source, not yet observed on a Mac" in text
    assert "tcp_disconnect()" in text  # why XNU sent the RST,ACK: closed with unread data


def test_os_override_switches_the_rules(corpus):
    capture = corpus / "macos" / "tls-duplicate-hello.pcap"
    code, out, _ = explain(capture, "--json", "--os", "linux")
    document = json.loads(out)
    assert document["os"]["name"] == "linux" and document["os"]["overridden"]
    writes = [l for l in document["links"] if l["call"]["op"] == "write"]
    assert [l["call"]["errno"] for l in writes] == ["ECONNRESET"]  # Linux's first write after an RST


def test_rule_table_marks_what_no_scenario_exercises():
    unexercised = {row.name for row in PREDICTIONS if not row.exercised}
    assert "linux-rst-fin-wait-read" in unexercised
    assert all(name.startswith("darwin-") or name == "linux-rst-fin-wait-read" for name in unexercised)


def test_a_log_line_covers_its_socket_so_no_prediction_for_it():
    """captures/linux/incident: tcpdump's capture and the real client's log line (no endpoints in it).
    Alone, the capture gets predictions for the client; with the log, real evidence wins."""
    incident = Path(__file__).resolve().parent.parent / "captures" / "linux" / "incident"
    _code, out, _ = explain(incident / "capture.pcap", "--json")
    assert {(l["call"]["op"], l["call"]["errno"]) for l in json.loads(out)["links"]} == {
        ("read", "ECONNRESET"), ("write", "ECONNRESET")}
    _code, out, _ = explain(incident / "capture.pcap", "--log", incident / "client.log", "--json")
    links = json.loads(out)["links"]
    assert [(l["call"]["source"], l["call"]["errno"]) for l in links] == [("log", "ECONNRESET")]


HALF_CLOSED = textwrap.dedent("""
    import json, select, socket, errno

    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
    client = socket.socket(); client.connect(listener.getsockname())
    server, _ = listener.accept(); listener.close()

    def readable(sock):
        assert select.select([sock], [], [], 10)[0], "timed out waiting for the peer"

    # We send a request and shut down writing (FIN); the server closes with it unread (RST).
    client.send(b"request never read"); client.shutdown(socket.SHUT_WR)
    readable(server); server.close(); readable(client)
    try:
        client.recv(100)
        print(json.dumps({"port": client.getsockname()[1], "errno": "EOF"}))
    except OSError as exc:
        print(json.dumps({"port": client.getsockname()[1], "errno": errno.errorcode[exc.errno]}))
    client.close()
""")


@pytest.mark.needs_capture
def test_rst_after_our_own_fin_fails_the_next_read_on_a_live_socket(tmp_path):
    """The row no scenario exercises (linux-rst-fin-wait-read), checked against the real kernel."""
    pcap, (got,) = run_captured(tmp_path, HALF_CLOSED)
    code, out, err = explain(pcap, "--json")
    assert code == 0, err
    mine = [l for l in json.loads(out)["links"] if l["call"]["local"] == f"127.0.0.1:{got['port']}"]
    assert [(l["rule"], l["call"]["op"], l["call"]["errno"]) for l in mine] == [
        ("linux-rst-fin-wait-read", "read", got["errno"])]


LAST_WORDS = textwrap.dedent("""
    import json, select, socket

    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
    client = socket.socket(); client.connect(listener.getsockname())
    server, _ = listener.accept(); listener.close()
    # Corked, the last words and the FIN leave in one segment: still in flight when the FIN comes.
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    server.send(b"last words"); server.close()
    reads = []
    while True:
        assert select.select([client], [], [], 10)[0], "timed out waiting for the peer"
        reads.append(len(client.recv(100)))
        if reads[-1] == 0:
            break
    print(json.dumps({"port": client.getsockname()[1], "reads": reads}))
    client.close()
""")


@pytest.mark.needs_capture
def test_a_clean_close_predicts_eof_after_the_bytes_in_flight_with_the_fin(tmp_path):
    """A plain capture of a clean close: the client (the FIN's receiver) reads the 10 bytes that came
    with the FIN, then EOF, as the real program did; the server, which closed first, gets nothing."""
    pcap, (got,) = run_captured(tmp_path, LAST_WORDS)
    assert got["reads"] == [10, 0]
    code, out, err = explain(pcap, "--json")
    assert code == 0, err
    document = json.loads(out)
    check_contract(document)
    ours = f"127.0.0.1:{got['port']}"
    mine = [l for l in document["links"] if ours in (l["call"]["local"], l["call"]["remote"])]
    assert [(l["call"]["local"], l["call"]["source"], l["call"]["op"], l["call"]["errno"], l["cause"]["kind"],
             l["rule"]) for l in mine] == [(ours, "predicted", "read", "EOF", "fin", "linux-fin-read")]
    frame = mine[0]["cause"]["frame"]
    assert f"return the 10 bytes still in flight with the FIN (frame {frame}), then end-of-file (0 bytes)" \
        in mine[0]["explanation"]
    code, text, _ = explain(pcap, "--conn", ours)
    assert "will have seen its next read() return the 10 bytes still in flight" in text
