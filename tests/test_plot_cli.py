"""`tcpteardown plot` and `tcpteardown explain --markdown`, through the real CLI entry point.

Inputs are real: bundles recorded by the scenario runner, a tcpdump capture
of real sockets, and the shared corpus of public captures.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tcpteardown.cli import main
from tcpteardown.formats.bundle import write_bundle

from conftest import tool_or_skip
from test_ladder import loopback_listener, play_three_teardowns

MAGIC = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}


@pytest.fixture(scope="module")
def recorded():
    """One real broken-pipe run (needs a live capture: tests using it carry needs_capture)."""
    from tcpteardown.capture import platform as host
    from tcpteardown.scenarios import run_scenario

    if host.capture_problem():
        pytest.skip(host.capture_problem())
    return run_scenario("broken-pipe").recording


@pytest.fixture
def bundle(recorded, tmp_path) -> Path:
    return write_bundle(tmp_path / "broken-pipe.pcapng", recorded)


@pytest.fixture
def three(tmp_path) -> Path:
    """A tcpdump capture of three real teardowns: fin, rst, refused."""
    tool_or_skip("tcpdump")
    import socket

    from tcpteardown.capture.tcpdump import TcpdumpCapture

    with loopback_listener() as listener, socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        ports = [listener.getsockname()[1], reserved.getsockname()[1]]
        with TcpdumpCapture(tmp_path / "three.pcap", ports) as capture:
            play_three_teardowns(listener, ports[1])
        return capture.stop()



@pytest.mark.needs_capture
def test_default_output_is_a_png_next_to_the_capture(bundle, capsys):
    assert main(["plot", str(bundle)]) == 0
    out = bundle.with_suffix(".png")
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes().startswith(MAGIC[".png"])


@pytest.mark.needs_capture
@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_output_format_follows_the_suffix(bundle, tmp_path, suffix, capsys):
    out = tmp_path / f"ladder{suffix}"
    assert main(["plot", str(bundle), "-o", str(out), "--lang", "go", "--time", "real"]) == 0
    assert out.read_bytes().startswith(MAGIC[suffix])


@pytest.mark.needs_capture
def test_same_capture_same_svg(bundle, tmp_path):
    for name in ("a.svg", "b.svg"):
        assert main(["plot", str(bundle), "-o", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


@pytest.mark.needs_capture
def test_many_connections_get_an_overview_beside_the_ladder(three, tmp_path, capsys):
    assert main(["plot", str(three), "-o", str(tmp_path / "three.svg")]) == 0
    written = capsys.readouterr().out.split()
    assert written == [str(tmp_path / "three.svg"), str(tmp_path / "three-overview.svg")]
    assert main(["plot", str(three), "--overview", "-o", str(tmp_path / "only.png")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "only.png")]
    for conn in ("1", "2", "3"):
        assert main(["plot", str(three), "--conn", conn, "-o", str(tmp_path / f"conn{conn}.png")]) == 0


@pytest.mark.needs_capture
def test_conn_by_four_tuple(three, tmp_path, capsys):
    from tcpteardown.formats.bundle import load_recording
    from tcpteardown.analysis.connections import connections

    second = connections(load_recording(three))[1]
    reversed_tuple = f"{second.server}-{second.client}"
    assert main(["plot", str(three), "--conn", reversed_tuple, "-o", str(tmp_path / "rst.svg")]) == 0
    svg = (tmp_path / "rst.svg").read_text()
    for segment in second.segments:
        assert f'id="segment-{segment.frame}"' in svg  # artists keep their gid as the SVG id
    assert 'id="segment-1"' not in svg  # frame 1 is the first connection's SYN


@pytest.mark.needs_capture
def test_a_single_connection_gets_no_overview(bundle, capsys):
    assert main(["plot", str(bundle)]) == 0
    assert len(capsys.readouterr().out.split()) == 1


def plot_one(job: tuple[str, str]) -> tuple[int, str, bytes]:
    """`plot CAPTURE -o OUT` in this (worker) process: (exit code, stderr, the file's first bytes)."""
    capture, out = job
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["plot", capture, "-o", out])
    written = Path(out).read_bytes()[:8] if Path(out).exists() else b""
    return code, err.getvalue(), written


@pytest.mark.slow
def test_every_corpus_capture_plots_or_says_why(corpus, tmp_path):
    """Public captures: mid-stream, many streams, odd link types. Each one gives a
    picture (exit 0) or a one-line reason (exit 2), never a traceback (two at a time)."""
    from parallel import map_in_processes

    captures = sorted(p for p in corpus.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    assert captures
    jobs = [(str(capture), str(tmp_path / f"{index}-{capture.stem}.png")) for index, capture in enumerate(captures)]
    for capture, (code, err, written) in zip(captures, map_in_processes(plot_one, jobs)):
        assert code in (0, 2), (capture, err)
        if code == 0:
            assert written.startswith(MAGIC[".png"]), capture
        else:
            assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.needs_capture
@pytest.mark.parametrize("argv, message", [
    (["plot", "{missing}"], "no such file"),
    (["plot", "{bundle}", "-o", "{tmp}/ladder.jpg"], ".png, .svg, .pdf, .mmd, .puml or .html"),
    (["plot", "{bundle}", "--conn", "9"], "no connection number 9"),
    (["plot", "{bundle}", "--conn", "10.1.1.1:1-10.1.1.2:2"], "no connection matches"),
    (["plot", "{bundle}", "--conn", "-1"], "connections are numbered from 1"),
    (["plot", "{bundle}", "--conn", "0"], "connections are numbered from 1"),
    (["plot", "{bundle}", "--conn", ":http"], "the port must be a number"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, bundle, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "missing.pcap", bundle=bundle, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.needs_capture
def test_bad_choices_are_usage_errors(bundle, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["plot", str(bundle), "--time", "log"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        main(["plot", str(bundle), "--lang", "cobol"])


@pytest.mark.needs_capture
def test_explain_markdown_image_writes_the_figure_and_prints_the_snippet(bundle, recorded, capsys):
    assert main(["explain", str(bundle), "--markdown", "--image", "--lang", "go"]) == 0
    out = capsys.readouterr().out
    image = bundle.with_suffix(".png")
    assert image.read_bytes().startswith(MAGIC[".png"])
    title, context, link, heading, paragraph = out.strip().split("\n\n")
    client, server = recorded.segments[0].src, recorded.segments[0].dst
    assert title == "## broken-pipe: client send() → EPIPE"
    assert link.startswith(f"![broken-pipe: client send() → EPIPE (ladder of {client} → {server})](")
    assert link.endswith(f"({image.as_posix()})")
    assert heading.startswith("### client send() → EPIPE ← frame ")
    assert "EPIPE" in paragraph and "RST" in paragraph and "broken pipe" in paragraph


@pytest.mark.needs_capture
def test_plot_a_recorded_scenario_bundle(tmp_path, capsys):
    from tcpteardown.scenarios import run_scenario

    capture = write_bundle(tmp_path / "write-after-reset.pcapng", run_scenario("write-after-reset").recording)
    assert main(["plot", str(capture), "--lang", "node", "-o", str(tmp_path / "war.pdf")]) == 0
    assert (tmp_path / "war.pdf").read_bytes().startswith(MAGIC[".pdf"])


RESET_PROGRAM = """
import select, socket, sys
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
client.send(b"request the server never reads")
select.select([server], [], [], 10)  # the request sits unread in the server's buffer
server.close()  # unread data: RST
for attempt in (client.recv, lambda n: client.send(b"more")):
    try:
        attempt(100)
    except OSError as exc:
        print(exc)
client.close()
listener.close()
"""


@pytest.mark.needs_capture
def test_plot_with_socket_calls_from_strace(tmp_path, capsys):
    """A real program under strace, its packets under tcpdump: the calls land on the lifelines."""
    import socket
    import subprocess
    import sys

    from tcpteardown.analysis.correlate import correlate
    from tcpteardown.capture.tcpdump import TcpdumpCapture
    from tcpteardown.formats.evidence import load_evidence
    from tcpteardown.views.ladder import draw_ladder
    from test_ladder import connectors, failure_marks

    tool_or_skip("tcpdump")
    strace = tool_or_skip("strace")
    with socket.socket() as probe:  # a free port, so the capture sees only this program
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "reset.strace"
    with TcpdumpCapture(tmp_path / "reset.pcap", [port]) as capture:
        done = subprocess.run([strace, "-f", "-ttt", "-T", "-yy", "-o", str(log), sys.executable, "-c",
                               RESET_PROGRAM, str(port)], capture_output=True, text=True, timeout=60)
    pcap = capture.stop()
    assert "Connection reset by peer" in done.stdout, done.stderr
    out = tmp_path / "reset.png"
    assert main(["plot", str(pcap), "--strace", str(log), "--lang", "python", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(MAGIC[".png"])

    recording = load_evidence(pcap, strace=[log])
    figure = draw_ladder(recording, correlate(recording))
    assert len(failure_marks(figure)) == 2  # recv ECONNRESET, then send EPIPE
    assert len(connectors(figure)) == 2
