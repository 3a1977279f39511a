"""`tcpteardown explain`: the JSON contract, the text, bad input, and real
programs: a Python client under strace while tcpdump captures loopback,
every failure linked to the frame tshark finds for it on its own."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import tool_or_skip
from tcpteardown.schemas import validator

CALL_KEYS = {"source", "time", "op", "errno", "pid", "fd", "local", "remote", "text", "process"}
CAUSE_KEYS = {"kind", "frame", "time", "src", "dst", "flags", "reason"}
KINDS = {"rst", "fin", "syn-unanswered", "local-close", "none"}
WAKEUP_KEYS = {"op", "time", "fd", "pid", "events", "where"}
SOURCE_KEYS = {"source", "where", "text", "time", "process"}
WOULD_BLOCK_KEYS = {"source", "op", "errno", "pid", "fd", "local", "remote", "count", "first", "last", "where"}


def explain(*argv) -> tuple[int, str, str]:
    """The real CLI in a child process: stdout, stderr, exit code as a user sees them."""
    proc = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", *map(str, argv)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def check_contract(document: dict) -> None:
    # DESIGN.md's keys, plus the additive ones the published schema declares (nothing else)
    validator("explain").validate(document)
    assert set(document) == {"schema", "links", "os", "unlinked", "would_block"}
    for entry in document["would_block"]:
        assert set(entry) == WOULD_BLOCK_KEYS and entry["count"] >= 1 and entry["first"] <= entry["last"]
        assert entry["errno"] in ("EAGAIN", "EWOULDBLOCK", "EINPROGRESS", "EALREADY")
    assert document["os"]["name"] in ("linux", "darwin", "freebsd", "windows", "unknown")
    assert document["os"]["evidence"] and all(isinstance(e, str) for e in document["os"]["evidence"])
    for entry in document["unlinked"]:
        assert set(entry) == {"where", "source", "text", "why"} and entry["why"]
    for link in document["links"]:
        assert set(link) == {"call", "cause", "wakeup", "sources", "rule", "explanation"}
        assert link["wakeup"] is None or set(link["wakeup"]) == WAKEUP_KEYS
        assert link["sources"] and all(set(source) == SOURCE_KEYS for source in link["sources"])
        first = link["sources"][0]  # the link's own call comes first
        assert (first["source"], first["time"], first["process"]) == \
            (link["call"]["source"], link["call"]["time"], link["call"]["process"])
        assert set(link["call"]) == CALL_KEYS and set(link["cause"]) == CAUSE_KEYS
        call, cause = link["call"], link["cause"]
        assert isinstance(call["time"], float) and call["time"] > 1e9
        assert call["errno"] == "EOF" or call["errno"].isupper() or " " in call["errno"]
        assert cause["kind"] in KINDS
        assert cause["frame"] is None or (isinstance(cause["frame"], int) and cause["frame"] >= 1)
        for key in ("local", "remote"):
            assert call[key] is None or call[key].count(":") == 1 or call[key].startswith("[")
        if cause["frame"] is not None:
            assert isinstance(cause["time"], float) and cause["flags"]
        assert isinstance(link["rule"], str) and isinstance(link["explanation"], str) and link["explanation"]


def tshark_frames(path, display_filter: str) -> list[int]:
    """Frame numbers as Wireshark counts them, computed by tshark alone."""
    tshark = tool_or_skip("tshark")
    out = subprocess.run([tshark, "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [int(line) for line in out.split()]


@contextlib.contextmanager
def settled_tcpdump(pcap):
    """tcpdump on loopback, really capturing: it says "listening" a moment
    before packets reach the file, so send a connection of our own and wait
    until the file holds it (tshark counts those frames too)."""
    import socket
    import time

    from tcpteardown.capture.tcpdump import TcpdumpCapture

    with TcpdumpCapture(pcap) as capture:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            with socket.create_connection(listener.getsockname()):
                listener.accept()[0].close()
        deadline = time.monotonic() + 10
        while pcap.stat().st_size <= 24 and time.monotonic() < deadline:
            time.sleep(0.01)  # wait-ok: polling the file for the first captured packet
        yield capture


# -- bundles of the seed scenarios ------------------------------------------------

SCENARIO_FILTERS = {  # scenario -> (errno, display filter for its cause given the client port, or None)
    "reset-by-peer": ("ECONNRESET", "tcp.flags.reset==1 && tcp.dstport=={port}"),
    "broken-pipe": ("EPIPE", "tcp.flags.reset==1 && tcp.dstport=={port}"),
    "refused": ("ECONNREFUSED", "tcp.flags.reset==1 && tcp.dstport=={port}"),
    "graceful-close": ("EOF", "tcp.flags.fin==1 && tcp.dstport=={port}"),
    "use-after-close": ("EBADF", None),
}


@pytest.mark.needs_capture
@pytest.mark.parametrize("name", sorted(SCENARIO_FILTERS))
def test_bundle_json_frames_match_tshark(name, tmp_path):
    from tcpteardown.formats.bundle import write_bundle
    from tcpteardown.scenarios import run_scenario

    bundle = write_bundle(tmp_path / f"{name}.pcapng", run_scenario(name).recording)
    code, out, err = explain(bundle, "--json")
    assert code == 0, err
    document = json.loads(out)
    check_contract(document)
    errno, display_filter = SCENARIO_FILTERS[name]
    (link,) = [l for l in document["links"] if l["call"]["errno"] == errno]
    if display_filter is None:
        assert link["cause"]["frame"] is None and link["cause"]["kind"] == "local-close"
        return
    port = int(link["call"]["local"].rsplit(":", 1)[1])
    expected = tshark_frames(bundle, display_filter.format(port=port))
    assert link["cause"]["frame"] == expected[0]
    if link["cause"]["kind"] == "rst":
        assert link["cause"]["reason"]


def test_paragraph_text_and_lang():
    from test_correlate import RESET, call
    from tcpteardown.analysis.correlate import correlate
    from tcpteardown.model import Recording
    from tcpteardown.views.contracts.links import links_to_json
    from tcpteardown.views.narrative import narrate

    rec = Recording(segments=tuple(RESET), calls=(call("recv", 30, 31, "ECONNRESET"),))
    text = narrate(correlate(rec), rec, lang="go")
    assert text.startswith("22:13:20.000031 client recv() failed with ECONNRESET (Go: read tcp "
                           "127.0.0.1:50000->127.0.0.1:8080: read: connection reset by peer) because the "
                           "server (127.0.0.1:8080) sent RST (frame 6, 11 us earlier) because the socket "
                           "was closed abortively: with unread data in its receive buffer, or with SO_LINGER 0 "
                           "(the packets alone cannot tell which) (inferred from the packets (nothing else in "
                           "the evidence decides): TCP_ABORT_ON_CLOSE or TCP_STATE).")
    document = links_to_json(correlate(rec), rec)
    check_contract(document)
    assert document["links"][0]["cause"] == {
        "kind": "rst", "frame": 6, "time": 1_700_000_000.00002, "src": "127.0.0.1:8080",
        "dst": "127.0.0.1:50000", "flags": "RST,ACK", "reason": "TCP_ABORT_ON_CLOSE or TCP_STATE (inferred)"}


@pytest.mark.needs_capture
def test_cli_text_on_a_bundle(tmp_path):
    from tcpteardown.formats.bundle import write_bundle
    from tcpteardown.scenarios import run_scenario

    bundle = write_bundle(tmp_path / "war.pcapng", run_scenario("write-after-reset").recording)
    code, out, err = explain(bundle, "--lang", "python", "--tz", "+02:00")
    assert code == 0, err
    paragraphs = out.strip().split("\n\n")
    assert len(paragraphs) == 2
    assert "send() failed with ECONNRESET (Python: ConnectionResetError: [Errno 104]" in paragraphs[0]
    assert "send() failed with EPIPE (Python: BrokenPipeError: [Errno 32] Broken pipe)" in paragraphs[1]
    assert "reported ECONNRESET" in paragraphs[1]


def test_bad_input_exits_2_without_traceback(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture")
    for argv in ([tmp_path / "missing.pcap"], [junk], [junk, "--tz", "Nowhere/Land"]):
        code, out, err = explain(*argv)
        assert code == 2, (argv, out, err)
        assert "Traceback" not in err and err.startswith("tcpteardown explain: error:")


# -- a real program under strace while tcpdump captures ----------------------------

CLIENT = textwrap.dedent("""
    import json, select, socket

    def pair():
        listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
        client = socket.socket(); client.connect(listener.getsockname())
        server, _ = listener.accept(); listener.close()
        return client, server

    def readable(sock):
        assert select.select([sock], [], [], 10)[0], "timed out waiting for the peer"

    def attempt(case, client, fn):
        port = client.getsockname()[1]
        try:
            fn()
        except OSError as exc:
            import errno
            print(json.dumps({"case": case, "port": port, "errno": errno.errorcode[exc.errno]}), flush=True)

    # reset by peer: the server closes with our request unread
    client, server = pair()
    client.send(b"request never read"); readable(server); server.close(); readable(client)
    attempt("reset", client, lambda: client.recv(100)); client.close()

    # broken pipe: the server reads and closes; our write draws RST; the next one fails
    client, server = pair()
    client.send(b"a"); readable(server); server.recv(1); server.close(); readable(client)
    client.send(b"more"); readable(client)
    attempt("pipe", client, lambda: client.send(b"again")); client.close()

    # refused: nothing listens on a bound port
    closed = socket.socket(); closed.bind(("127.0.0.1", 0))
    client = socket.socket(); client.bind(("127.0.0.1", 0))
    attempt("refused", client, lambda: client.connect(closed.getsockname()))
    client.close(); closed.close()
""")


@pytest.mark.needs_capture
def test_strace_and_tcpdump_of_a_real_program(tmp_path):
    strace = tool_or_skip("strace")
    tool_or_skip("tcpdump")
    program = tmp_path / "client.py"
    program.write_text(CLIENT)
    pcap, log = tmp_path / "lo.pcap", tmp_path / "strace.log"
    with settled_tcpdump(pcap):
        proc = subprocess.run([strace, "-f", "-ttt", "-T", "-yy", "-o", str(log), sys.executable, str(program)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    failures = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [f["errno"] for f in failures] == ["ECONNRESET", "EPIPE", "ECONNREFUSED"]

    code, out, err = explain(pcap, "--strace", log, "--json")
    assert code == 0, err
    document = json.loads(out)
    check_contract(document)
    for failure in failures:
        mine = [l for l in document["links"] if l["call"]["errno"] == failure["errno"]
                and l["call"]["source"] == "strace"
                and (l["call"]["local"] or "").endswith(f":{failure['port']}")]
        assert len(mine) == 1, (failure, document)
        link = mine[0]
        expected = tshark_frames(pcap, f"tcp.flags.reset==1 && tcp.dstport=={failure['port']}")
        assert link["cause"]["kind"] == "rst"
        assert link["cause"]["frame"] == expected[-1], (failure, link)
        assert link["cause"]["reason"].endswith("(inferred)")


# -- the Go program of tests/programs/teardowns: strace, its own log, tcpdump ---------

@pytest.fixture(scope="module")
def go_teardowns(tmp_path_factory):
    import os
    from pathlib import Path

    go = tool_or_skip("go")
    out = tmp_path_factory.mktemp("go") / "teardowns"
    source = Path(__file__).parent / "programs" / "teardowns"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    result = subprocess.run([go, "build", "-o", str(out), "."], cwd=source, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return out


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@pytest.mark.needs_capture
def test_go_program_strace_and_log_link_to_tshark_frames(go_teardowns, tmp_path):
    strace = tool_or_skip("strace")
    tool_or_skip("tcpdump")

    pcap, trace, log = tmp_path / "lo.pcap", tmp_path / "strace.log", tmp_path / "go.log"
    with settled_tcpdump(pcap):
        proc = subprocess.run([strace, "-f", "-ttt", "-T", "-yy", "-o", str(trace), str(go_teardowns)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    log.write_text(proc.stderr)
    code, out, err = explain(pcap, "--strace", trace, "--log", log, "--json", "--tz", "UTC")
    assert code == 0, err
    document = json.loads(out)
    check_contract(document)
    links = document["links"]

    def only(source, errno):
        found = [l for l in links if l["call"]["source"] == source and l["call"]["errno"] == errno]
        assert len(found) == 1, (source, errno, [l["call"] for l in links])
        return found[0]

    # Each failure is one link: the strace call, citing Go's own log line of it (issue 29).
    for errno in ("ECONNRESET", "EPIPE", "ECONNREFUSED"):
        assert not [l for l in links if l["call"]["source"] == "log" and l["call"]["errno"] == errno]
        told = only("strace", errno)
        logged = [s for s in told["sources"] if s["source"] == "log"]
        assert len(logged) == 1 and logged[0]["where"].startswith(f"{log}:"), told["sources"]
    for errno in ("ECONNRESET", "EPIPE"):
        link = only("strace", errno)
        port = _port(link["call"]["local"])
        assert link["cause"]["frame"] == tshark_frames(pcap, f"tcp.flags.reset==1 && tcp.dstport=={port}")[-1]
    refused = only("strace", "ECONNREFUSED")
    server = _port(refused["call"]["remote"])
    assert refused["cause"]["frame"] == tshark_frames(
        pcap, f"tcp.flags.reset==1 && tcp.flags.ack==1 && tcp.srcport=={server}")[0]
    eof = only("strace", "EOF")
    assert eof["cause"]["frame"] == tshark_frames(
        pcap, f"tcp.flags.fin==1 && tcp.dstport=={_port(eof['call']['local'])}")[0]
    closed = only("log", "EBADF")
    assert closed["cause"]["kind"] == "local-close" and closed["cause"]["frame"] is None
    timeout = only("log", "ETIMEDOUT")
    assert timeout["cause"]["kind"] == "none"


# -- curl aborting a large download from Python's http.server -------------------------

ONE_REQUEST_SERVER = ("import functools, http.server as h, sys\n"
                      "s = h.HTTPServer(('127.0.0.1', 0), functools.partial(h.SimpleHTTPRequestHandler, "
                      "directory=sys.argv[1]))\n"
                      "print(s.server_port, flush=True)\n"
                      "s.handle_request()\n")


@pytest.mark.needs_capture
def test_curl_abort_links_the_servers_failed_write_to_curls_rst(tmp_path):
    strace, curl = tool_or_skip("strace"), tool_or_skip("curl")
    tool_or_skip("tcpdump")

    (tmp_path / "big.bin").write_bytes(b"\0" * (32 << 20))
    pcap, trace = tmp_path / "lo.pcap", tmp_path / "server.strace"
    with settled_tcpdump(pcap):
        server = subprocess.Popen([strace, "-f", "-ttt", "-T", "-yy", "-o", str(trace), sys.executable, "-c",
                                   ONE_REQUEST_SERVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())  # printed once it listens
            aborted = subprocess.run([curl, "-s", "-o", "/dev/null", "--limit-rate", "100k", "--max-time", "0.5",
                                      f"http://127.0.0.1:{port}/big.bin"], timeout=60)
            assert aborted.returncode == 28  # curl: operation timed out, mid-body
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            server.stdout.close()
    code, out, err = explain(pcap, "--strace", trace, "--json")
    assert code == 0, err
    document = json.loads(out)
    check_contract(document)
    failed = [l for l in document["links"] if l["call"]["errno"] in ("ECONNRESET", "EPIPE")
              and l["call"]["local"] == f"127.0.0.1:{port}"]
    assert failed, document
    link = failed[0]
    resets = tshark_frames(pcap, f"tcp.flags.reset==1 && tcp.dstport=={port} && "
                                 f"frame.time_epoch <= {link['call']['time'] + 0.001:.6f}")
    assert link["cause"]["kind"] == "rst" and link["cause"]["frame"] == resets[-1]
    assert _port(link["cause"]["src"]) == _port(link["call"]["remote"])


def one_connection_capture(tmp_path):
    """A plain pcap of one graceful loopback connection (no socket calls)."""
    tool_or_skip("tcpdump")
    import socket

    pcap = tmp_path / "lo.pcap"
    with settled_tcpdump(pcap):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            with socket.create_connection(listener.getsockname()):
                listener.accept()[0].close()
            ours = f"127.0.0.1:{listener.getsockname()[1]}"
    return pcap, ours


@pytest.mark.needs_capture
def test_plain_pcap_without_calls_says_what_to_add(tmp_path):
    pcap, ours = one_connection_capture(tmp_path)
    code, out, err = explain(pcap, "--json")
    document = json.loads(out)
    # A graceful close: the server closed first, so its FIN reached the client, whose next read is EOF;
    # the server gets nothing (it had closed). tcpdump sees all of lo: other tests' traffic may be there.
    mine = [l for l in document["links"] if ours in (l["call"]["local"], l["call"]["remote"])]
    assert code == 0 and [(l["call"]["remote"], l["call"]["op"], l["call"]["errno"], l["rule"], l["cause"]["kind"])
                          for l in mine] == [(ours, "read", "EOF", "linux-fin-read", "fin")]
    assert document["os"]["name"] == "linux" and document["os"]["capturing_host"] == "linux"
    assert document["unlinked"] == []
    assert "--strace FILE or --log FILE" in err and "predicted from the packets (Linux rules)" in err


def test_kernel_witness_words_in_the_paragraph():
    """With the witness: the kernel's reason (not inferred) and the error report bridging RST and errno."""
    from dataclasses import replace

    from test_correlate import RESET, S, C, T0, US, call
    from tcpteardown.analysis.correlate import correlate
    from tcpteardown.model import KernelEvent, Recording
    from tcpteardown.views.contracts.links import links_to_json
    from tcpteardown.views.narrative import paragraph

    segments = tuple(RESET[:-1]) + (replace(RESET[-1], reset_reason="TCP_ABORT_ON_CLOSE"),)
    report = KernelEvent(T0 + 20 * US, "sock:inet_sk_error_report", C, S, (("error", "104"),))
    rec = Recording(segments=segments, calls=(call("recv", 30, 31, "ECONNRESET"),), kernel_events=(report,))
    (link,) = correlate(rec)
    text = paragraph(link, rec)
    assert "its kernel said TCP_ABORT_ON_CLOSE: the socket was closed with unread data" in text
    assert "The kernel saw the RST set ECONNRESET on the client socket (sock:inet_sk_error_report); " \
           "this recv() returned it." in text
    assert "inferred" not in text
    assert links_to_json((link,), rec)["links"][0]["cause"]["reason"] == "TCP_ABORT_ON_CLOSE"


# -- hostile and unlucky input (issue 19): one line, exit 2, never a traceback ------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _pcapng_with_tsresol(source, target, exponent: int) -> None:
    """A real capture's packets with the interface's if_tsresol changed and the
    tcpteardown block dropped: what one flipped byte does to a pcapng."""
    import struct

    data = source.read_bytes()
    out, offset = bytearray(), 0
    while offset < len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        block = bytearray(data[offset:offset + length])
        offset += length
        if kind in (0x00000BAD, 0x40000BAD):
            continue
        if kind == 1:  # IDB: options start after linktype, reserved, snaplen
            option = 16
            while option < length - 4:
                code, size = struct.unpack_from("<HH", block, option)
                if code == 0:
                    break
                if code == 9:
                    block[option + 4] = exponent
                option += 4 + ((size + 3) & ~3)
        out += block
    target.write_bytes(bytes(out))


def test_timestamps_outside_the_calendar_are_no_traceback(tmp_path):
    """if_tsresol 10^-3 on nanosecond stamps: packets in the year 56 million."""
    damaged = tmp_path / "year.pcapng"
    _pcapng_with_tsresol(REPO / "captures" / "linux" / "broken-pipe.pcapng", damaged, 3)
    code, out, err = explain(damaged, "--markdown")
    assert code == 0 and "Traceback" not in err, err
    proc = subprocess.run([sys.executable, "-m", "tcpteardown", "plot", str(damaged), "-o", str(tmp_path / "y.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "y.png").exists()


def test_an_impossible_utc_offset_is_a_user_error():
    code, out, err = explain(REPO / "captures" / "linux" / "incident" / "capture.pcap", "--log",
                             REPO / "captures" / "linux" / "incident" / "client.log", "--tz", "+99:00")
    assert code == 2 and err == "tcpteardown explain: error: time zone '+99:00': an offset lies between -23:59 and +23:59\n"


def test_nothing_readable_exits_2_like_census_plot_and_diff(tmp_path, corpus):
    header_only = tmp_path / "header-only.pcap"
    header_only.write_bytes((corpus / "tcpdump" / "tcp-handshake-nano.pcap").read_bytes()[:24])
    code, out, err = explain(header_only)
    assert code == 2 and out == "" and err.count("\n") == 1 and "nothing to explain" in err, (out, err)


def test_warnings_name_cli_options_not_python_arguments():
    code, out, err = explain(REPO / "captures" / "linux" / "incident" / "capture.pcap", "--log",
                             REPO / "captures" / "linux" / "incident" / "client.log")
    assert code == 0
    assert "tz=" not in err and "year=" not in err
    code, out, err = explain(REPO / "captures" / "linux" / "incident" / "capture.pcap", "--conn", "-1")
    assert code == 2 and "numbered from 1" in err


@pytest.mark.needs_capture
def test_log_passed_but_unreadable_is_not_told_to_pass_a_log(tmp_path):
    """issue 19: the note asked for --log FILE although one was passed."""
    bundle, _ = one_connection_capture(tmp_path)
    log = tmp_path / "app.log"
    log.write_text("no time here: Error: read ECONNRESET\nsomething: connection troubles (errno 999)\n")
    code, out, err = explain(bundle, "--log", log, "--json")
    assert code == 0, err
    assert "--strace FILE or --log FILE" not in err
    assert "gave no socket call" in err
    document = json.loads(out)
    assert [entry["where"] for entry in document["unlinked"]] == [f"{log}:1"]
    assert "without a timestamp" in document["unlinked"][0]["why"]
    assert f"unlinked: {log}:1:" in err
