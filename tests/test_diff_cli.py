"""`tcpteardown diff A B`: exit codes, table, JSON and figure, on real captures from macOS and Linux."""

from __future__ import annotations

import json
import socket
import time

import pytest

from conftest import tool_or_skip
from tcpteardown.cli import main


def run_cli(capsys, *argv):
    code = main(["diff", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


# -- real macOS captures from the corpus ------------------------------------------------

def test_macos_fin_close_against_macos_rst_close(corpus, capsys):
    code, out, err = run_cli(capsys, corpus / "zeek" / "attr.pcap", corpus / "zeek" / "almost-resp.pcap",
                             "--conn-a", "2", "--conn-b", "2")
    assert code == 1, err
    assert "A closes with FIN, B with RST" in out
    assert "connection 2 of 4: 127.0.0.1:62283 -> 127.0.0.1:6379" in out


def test_a_capture_against_itself_exits_0(corpus, capsys):
    code, out, _ = run_cli(capsys, corpus / "zeek" / "attr.pcap", corpus / "zeek" / "attr.pcap")
    assert code == 0
    assert "The teardowns match" in out


def test_apple_pcapng_with_process_information_blocks_loads_and_diffs(corpus, capsys):
    pib = corpus / "scapy" / "macos_pib_trustd.pcapng"
    code, out, _ = run_cli(capsys, pib, pib, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["matches"] is True
    assert result["a"]["roles_known"] is False  # one FIN,ACK from mid-stream: no SYN
    assert [row["a"]["flags"] for row in result["rows"]] == ["FIN,ACK"]
    code, out, _ = run_cli(capsys, pib, corpus / "zeek" / "attr.pcap", "--conn-b", "2")
    assert code == 1


def test_json_names_every_difference(corpus, capsys):
    code, out, _ = run_cli(capsys, corpus / "zeek" / "attr.pcap", corpus / "zeek" / "almost-resp.pcap",
                           "--conn-a", "2", "--conn-b", "2", "--json")
    assert code == 1
    result = json.loads(out)
    assert result["matches"] is False
    assert {"flags", "only-in", "payload"} <= {d["kind"] for d in result["differences"]}
    assert all(d["text"] and 0 <= d["row"] < len(result["rows"]) for d in result["differences"])
    assert result["a"]["file"].endswith("attr.pcap") and result["b"]["connection"] == 2


def test_figure_is_written_and_reproducible(corpus, capsys, tmp_path):
    args = (corpus / "zeek" / "attr.pcap", corpus / "zeek" / "almost-resp.pcap", "--conn-a", "2", "--conn-b", "2")
    first, second, png = tmp_path / "one.svg", tmp_path / "two.svg", tmp_path / "diff.png"
    assert run_cli(capsys, *args, "-o", first)[0] == 1
    assert run_cli(capsys, *args, "-o", second)[0] == 1
    code, out, _ = run_cli(capsys, *args, "-o", png)
    assert first.read_bytes() == second.read_bytes()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"figure: {png}" in out


# -- errors: exit 2, one line, no traceback ----------------------------------------------

@pytest.mark.parametrize("make_args,message", [
    (lambda c, t: (t / "missing.pcap", c / "zeek" / "attr.pcap"), "no such file"),
    (lambda c, t: (c / "MANIFEST.tsv", c / "zeek" / "attr.pcap"), "not a pcap or pcapng file"),
    (lambda c, t: (c / "zeek" / "attr.pcap", c / "zeek" / "attr.pcap", "--conn-a", "9"), "no connection number 9"),
    (lambda c, t: (c / "zeek" / "attr.pcap", c / "zeek" / "attr.pcap", "--tolerance", "-1"), "--tolerance"),
    (lambda c, t: (c / "zeek" / "attr.pcap", c / "zeek" / "attr.pcap", "-o", t / "fig.gif"), ".png, .svg or .pdf"),
])
def test_errors_exit_2_with_one_line(corpus, capsys, tmp_path, make_args, message):
    code, out, err = run_cli(capsys, *make_args(corpus, tmp_path))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


# -- Linux recordings made here ------------------------------------------------------------

@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from tcpteardown.formats.bundle import write_bundle
    from tcpteardown.scenarios import run_scenario

    folder = tmp_path_factory.mktemp("bundles")
    cache = {}

    def get(name, family="ipv4"):
        if (name, family) not in cache:
            cache[(name, family)] = write_bundle(folder / f"{name}-{family}.pcapng",
                                                 run_scenario(name, family=family).recording)
        return cache[(name, family)]
    return get


@pytest.mark.needs_capture
def test_same_scenario_over_ipv4_and_ipv6_exits_0(bundles, capsys):
    code, out, err = run_cli(capsys, bundles("graceful-close", "ipv4"), bundles("graceful-close", "ipv6"))
    assert code == 0, out + err
    assert "[::1]" in out and "127.0.0.1" in out
    assert "The teardowns match" in out


@pytest.mark.needs_capture
def test_broken_pipe_against_write_after_reset_exits_1_naming_the_errno(bundles, capsys):
    code, out, _ = run_cli(capsys, bundles("broken-pipe"), bundles("write-after-reset"), "--json")
    assert code == 1
    result = json.loads(out)
    texts = [d["text"] for d in result["differences"]]
    assert "client send(): ok in A, ECONNRESET in B" in texts
    assert any(d["kind"] == "flags" and "RST in A" in d["text"] for d in result["differences"])


def _wait_state(sock, state, timeout=5.0):
    from tcpteardown.capture.sockopts import tcp_state

    deadline = time.monotonic() + timeout
    pause = 0.0001
    while tcp_state(sock) != state:
        assert time.monotonic() < deadline, f"never reached {state}"
        time.sleep(pause)  # wait-ok: polling a TCP state with back-off
        pause = min(pause * 2, 0.005)


def _redis_like_exchange(host: str, capture_path) -> None:
    """What attr.pcap's second connection does, on this machine's loopback, captured by tcpdump:
    a 14-byte request, a 34-byte reply, the server closes first, the client reads EOF and closes."""
    from tcpteardown.capture.tcpdump import TcpdumpCapture

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with TcpdumpCapture(capture_path, [port]):
            with socket.create_connection((host, port), timeout=5) as client:
                server, _ = listener.accept()
                with server:
                    server.settimeout(5)
                    client.sendall(b"*1\r\n$4\r\nPING\r\n")
                    assert server.recv(100) == b"*1\r\n$4\r\nPING\r\n"
                    server.sendall(b"+PONG and a few more bytes here.\r\n")
                    assert len(client.recv(100)) == 34
                    server.close()
                    assert client.recv(100) == b""  # the server's FIN
                # Our FIN, then wait for the server's last ACK: LAST_ACK -> CLOSE.
                client.shutdown(socket.SHUT_WR)
                _wait_state(client, "CLOSE")


@pytest.mark.needs_capture
def test_macos_capture_against_a_linux_capture_of_the_same_shape(corpus, capsys, tmp_path):
    tool_or_skip("tcpdump")
    linux = tmp_path / "linux-lo.pcap"
    _redis_like_exchange("127.0.0.1", linux)
    code, out, err = run_cli(capsys, corpus / "zeek" / "attr.pcap", linux, "--conn-a", "2")
    assert code == 1, err
    # lo0's MTU is 16384, Linux lo's 65536: the SYNs say so.
    assert "client -> server SYN: option MSS 16344 in A, 65495 in B" in out
    assert "server -> client SYN,ACK: option MSS 16344 in A, 65495 in B" in out
    assert "option WS 6 in A" in out
    # Both stacks close the same way: FIN from the server first; no flag difference on the closes.
    assert "closes with" not in out
    code, out, _ = run_cli(capsys, corpus / "zeek" / "attr.pcap", linux, "--conn-a", "2", "--json")
    result = json.loads(out)
    fins = [row for row in result["rows"] if row["a"] and "FIN" in row["a"]["flags"]]
    assert fins and all(row["b"] and "FIN" in row["b"]["flags"] for row in fins)


def test_table_marks_rows_like_diff(corpus, capsys):
    code, out, _ = run_cli(capsys, corpus / "zeek" / "attr.pcap", corpus / "zeek" / "almost-resp.pcap",
                           "--conn-a", "2", "--conn-b", "2")
    marks = {line[0] for line in out.splitlines()[5:] if line[:1] in "!<>" and line[2:4].strip().isdigit()}
    assert marks == {"!", "<", ">"}
    assert "differences (timing tolerance 250 ms):" in out
    code, out, _ = run_cli(capsys, corpus / "zeek" / "attr.pcap", corpus / "zeek" / "almost-resp.pcap",
                           "--conn-a", "2", "--conn-b", "2", "--tolerance", "0.001")
    assert "[timing]" in out and "timing tolerance 0.001 ms" in out


def test_a_long_diff_folds_agreeing_rows_in_the_figure(corpus, tmp_path):
    """878 segments, one removed and one option dropped: the figure keeps those two with context."""
    from dataclasses import replace

    from tcpteardown.analysis.diff import diff
    from tcpteardown.formats.bundle import load_recording
    from tcpteardown.views.diff_figure import OMITTED, display_lines, draw_diff
    from tcpteardown.views.style import save_figure

    whole = load_recording(corpus / "zeek" / "timestamp.pcap")
    segments = list(whole.segments)
    removed = segments.pop(400)
    segments[500] = replace(segments[500], options=())
    result = diff(whole, replace(whole, segments=tuple(segments)))
    assert [d.kind for d in result.differences] == ["only-in", "options"]
    assert result.differences[0].step.frame == removed.frame
    lines = display_lines(result.aligned_rows)
    drawn = [number for number, _ in lines if number is not None and number >= 0]
    assert {d.row for d in result.differences} <= set(drawn)
    assert sum(folded for _, folded in lines) == len(result.aligned_rows)
    assert len(lines) < 40 and OMITTED not in [number for number, _ in lines]
    save_figure(draw_diff(result), tmp_path / "long.png")
    assert (tmp_path / "long.png").stat().st_size > 0


def test_a_truncated_capture_still_diffs_and_says_what_was_lost(corpus, capsys, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((corpus / "zeek" / "attr.pcap").read_bytes()[:2000])
    code, out, err = run_cli(capsys, cut, corpus / "zeek" / "attr.pcap")
    assert code == 0, err  # the first connection is whole in both
    assert "Note: A: " in out and "truncated record" in out and "byte offset" in out
