"""`tcpteardown record -- CMD`: real programs under strace, tcpdump and the witness.

Each test runs the CLI as a separate process (as a user would), then reads
the bundle back with `load_recording` and `explain --json`.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, tool_or_skip
from leftovers import processes_mentioning, record_workdir
from tcpteardown.formats.bundle import load_recording
from tcpteardown.formats.socket_ends import LATE_NS, SLACK_NS

TIMEOUT = 120


def tcpteardown(*args, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tcpteardown", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, **options)


def explain_json(bundle: Path) -> list[dict]:
    result = tcpteardown("explain", "--json", str(bundle))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["links"]


def _rst_link(links, errno):
    matching = [link for link in links if link["call"]["errno"] == errno and link["cause"]["kind"] == "rst"]
    assert matching, f"no {errno} linked to an RST in {json.dumps(links, indent=1)}"
    return matching[0]


def _check_kernel_reason(bundle: Path, link: dict, witnessed: bool) -> None:
    """The linked frame is an RST of the bundle, labelled with the kernel's reason."""
    recording = load_recording(bundle)
    frame = link["cause"]["frame"]
    segment = next(s for s in recording.segments if s.frame == frame)
    assert segment.is_rst
    assert str(segment.src) == link["cause"]["src"]
    if witnessed:
        assert segment.reset_reason and link["cause"]["reason"] == segment.reset_reason
        assert recording.metadata.get("witness") == "tracefs"
        assert not [v for k, v in recording.metadata.extra if k == "witness_disagreement"]
    else:
        assert link["cause"]["reason"] is None or link["cause"]["reason"].endswith("(inferred)")


def _witnessed() -> bool:
    from tcpteardown.capture.platform import tracefs_problem

    return tracefs_problem() is None


RESET_PROGRAM = """
import select, socket
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()
client.sendall(b"never read"); select.select([server], [], [], 5); server.close()
try:
    client.recv(10)
except ConnectionResetError as exc:
    print("client:", exc)
raise SystemExit(3)
"""


def _record_python(tmp_path, source: str, *options: str, argv=()):
    """`tcpteardown record -o BUNDLE [options] -- python PROGRAM [argv]` of `source`: (result, bundle)."""
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    program = tmp_path / "program.py"
    program.write_text(source)
    bundle = tmp_path / "program.pcapng"
    return tcpteardown("record", "--calls", "strace", "-o", str(bundle), *options, "--", sys.executable, str(program), *argv), bundle


@pytest.mark.needs_capture
def test_python_program_reset_exit_status_and_reason(tmp_path):
    result, bundle = _record_python(tmp_path, RESET_PROGRAM)
    assert result.returncode == 3, result.stderr  # the program's own status
    assert "client: [Errno 104]" in result.stdout  # the program kept our stdout
    assert f"wrote {bundle}" in result.stderr
    link = _rst_link(explain_json(bundle), "ECONNRESET")
    assert link["call"]["source"] == "strace"
    # each call says which line of record's strace log it came from, not the
    # temporary file's path (gone once the bundle is written)
    from tcpteardown.formats.bundle import load_recording
    calls = load_recording(bundle).calls
    assert calls and all(re.fullmatch(r"strace:\d+", call.where) for call in calls if call.source == "strace")
    _check_kernel_reason(bundle, link, _witnessed())
    if _witnessed():
        assert link["cause"]["reason"] == "TCP_ABORT_ON_CLOSE"
        assert "sock:inet_sk_error_report" in link["explanation"]
    figure = tmp_path / "reset.png"
    plotted = tcpteardown("plot", str(bundle), "-o", str(figure))  # plot reads it like a scenario bundle
    assert plotted.returncode == 0, plotted.stderr
    assert figure.read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def go_teardowns(tmp_path_factory) -> Path:
    go = tool_or_skip("go")
    out = tmp_path_factory.mktemp("go") / "teardowns"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    result = subprocess.run([go, "build", "-o", str(out), "."], cwd=REPO / "tests/programs/teardowns",
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.needs_capture
def test_go_program_broken_pipe_linked_to_rst_with_kernel_reason(go_teardowns, tmp_path):
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    bundle = tmp_path / "go.pcapng"
    result = tcpteardown("record", "--calls", "strace", "-o", str(bundle), "--", str(go_teardowns))
    assert result.returncode == 0, result.stderr
    assert "step broken-pipe" in result.stderr  # Go's log lines went to our stderr
    links = explain_json(bundle)
    _check_kernel_reason(bundle, _rst_link(links, "EPIPE"), _witnessed())
    _check_kernel_reason(bundle, _rst_link(links, "ECONNRESET"), _witnessed())
    refused = [link for link in links if link["call"]["errno"] == "ECONNREFUSED"]
    assert refused and refused[0]["cause"]["kind"] == "rst"
    if _witnessed():
        assert refused[0]["cause"]["reason"] == "NO_SOCKET"


CURL_SCRIPT = """
set -u
cd "$1"
python3 -m http.server --bind 127.0.0.1 "$2" >server.log 2>&1 &
server=$!
tries=0
until curl -s -o /dev/null "http://127.0.0.1:$2/"; do   # bounded wait for the listener
    tries=$((tries + 1)); [ $tries -gt 200 ] && break; sleep 0.05
done
curl -s -o /dev/null --limit-rate 200k --max-time 0.5 "http://127.0.0.1:$2/big.bin"  # aborts mid-body
status=$?
tries=0
until grep -q "Error" server.log; do   # bounded wait for the server to meet the RST and log it
    tries=$((tries + 1)); [ $tries -gt 200 ] && break; sleep 0.05
done
kill $server; wait $server
exit $status
"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.needs_capture
def test_curl_aborting_a_download_from_http_server(tmp_path):
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    tool_or_skip("curl")
    served = tmp_path / "www"
    served.mkdir()
    (served / "big.bin").write_bytes(os.urandom(1024) * 32 * 1024)  # 32 MiB: still sending when curl gives up
    script = tmp_path / "abort.sh"
    script.write_text(CURL_SCRIPT)
    port = _free_port()
    bundle = tmp_path / "curl.pcapng"
    result = tcpteardown("record", "--calls", "strace", "-o", str(bundle), "--", "sh", str(script), str(served), str(port))
    assert result.returncode == 28, result.stderr  # curl: operation timed out (it gave up the download)
    links = explain_json(bundle)
    server_errors = [link for link in links if link["cause"]["kind"] == "rst"
                     and link["call"]["errno"] in ("ECONNRESET", "EPIPE")
                     and link["call"]["local"] == f"127.0.0.1:{port}"]
    assert server_errors, json.dumps(links, indent=1)
    link = server_errors[0]
    _check_kernel_reason(bundle, link, _witnessed())
    if _witnessed():
        assert link["cause"]["reason"] == "TCP_ABORT_ON_CLOSE"  # curl closed with data unread


HANGING_PROGRAM = """
import os, socket
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()
print(os.getpid(), flush=True)
client.recv(10)  # nothing ever comes: only Ctrl-C ends this
"""


@pytest.mark.needs_capture
def test_ctrl_c_stops_everything_and_keeps_the_recording(tmp_path):
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    program = tmp_path / "hang.py"
    program.write_text(HANGING_PROGRAM)
    bundle = tmp_path / "hang.pcapng"
    record = subprocess.Popen([sys.executable, "-m", "tcpteardown", "record", "--calls", "strace", "-o", str(bundle), "--",
                               sys.executable, str(program)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([record.stdout], [], [], 60)
        assert ready, "the recorded program never started"
        program_pid = int(record.stdout.readline())
        workdir = record_workdir(record.pid)
        assert workdir is not None, "no tcpdump or strace of the record run found"
        record.send_signal(signal.SIGINT)  # as Ctrl-C would (the terminal signals the group; we only us)
        _, stderr = record.communicate(timeout=TIMEOUT)
    finally:
        if record.poll() is None:
            record.kill()
            record.communicate()
    assert record.returncode == 130, stderr
    assert not Path(f"/proc/{program_pid}").exists() or \
        Path(f"/proc/{program_pid}/stat").read_text().split()[2] == "Z"
    assert not processes_mentioning(str(workdir)), "strace or tcpdump left running"
    assert not processes_mentioning(str(program))
    tracing = Path("/sys/kernel/tracing/instances")
    if tracing.is_dir():
        assert not [p for p in tracing.iterdir() if p.name.startswith(f"tcpteardown-{record.pid}-")]
    recording = load_recording(bundle)
    assert any(s.is_syn for s in recording.segments)
    assert {"connect", "accept"} <= {call.op for call in recording.calls}


def test_missing_strace_is_a_clear_error(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("tcpdump", "true"):
        path = shutil.which(tool)
        if path:
            (bin_dir / tool).symlink_to(path)
    result = tcpteardown("record", "--calls", "strace", "--", "true", env={**os.environ, "PATH": str(bin_dir)})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert "strace, which is not installed" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--"], "no program to record"),
    (["--ports", "80,http", "--", "true"], "'http' is not a TCP port"),
    (["--", "no-such-program-tcpteardown"], "no such program"),
])
def test_usage_errors(args, message):
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    result = tcpteardown("record", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_ports_and_connection_filtering_are_pure():
    from tcpteardown.capture.session import keep_segments
    from tcpteardown.commands.record import parse_ports, program_argv, service_ports
    from tcpteardown.model import Endpoint, Frame, Segment, SocketCall, TcpFlags

    assert parse_ports(["80, 8080", "443"]) == (80, 443, 8080)
    assert program_argv(["--", "curl", "--", "x"]) == ["curl", "--", "x"]
    server, client = Endpoint("127.0.0.1", 8080), Endpoint("127.0.0.1", 40000)
    calls = (SocketCall("curl", "connect", 1, 2, remote=server, local=client),
             SocketCall("srv", "accept", 1, 2, local=Endpoint("127.0.0.1", 9000), remote=client),
             SocketCall("curl", "read", 3, 4, local=client, remote=server))
    assert service_ports(calls) == {8080, 9000}
    other = Endpoint("127.0.0.1", 5432)
    segments = (Segment(1, 0, client, server, TcpFlags.SYN, 0, 0, 0, 0),
                Segment(3, 0, client, other, TcpFlags.SYN, 0, 0, 0, 0),
                Segment(4, 0, server, client, TcpFlags.RST, 0, 0, 0, 0))
    frames = tuple(Frame(n, 1, bytes([n]), 1) for n in range(1, 5))
    kept_frames, kept = keep_segments(frames, segments, lambda s: 8080 in (s.src.port, s.dst.port))
    assert [s.frame for s in kept] == [1, 2]
    assert [f.data for f in kept_frames] == [b"\x01", b"\x04"]


@pytest.mark.needs_capture
def test_ports_option_limits_capture_and_witness(tmp_path):
    result, bundle = _record_python(tmp_path, RESET_PROGRAM, "--ports", "9")
    assert result.returncode == 3, result.stderr
    recording = load_recording(bundle)
    assert recording.segments == () and recording.kernel_events == ()  # the program never used port 9
    assert any(call.errno == "ECONNRESET" for call in recording.calls)  # strace still saw every call
    assert recording.metadata.get("ports") == "9"


UNCAUGHT_RESET = """
import select, socket, sys
listener = socket.socket(); listener.bind((sys.argv[1], 0)); listener.listen()
client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()
client.sendall(b"never read"); select.select([server], [], [], 5); server.close()
client.recv(10)  # the traceback on stderr is the program's own error message
"""


def _links_by_source(bundle: Path) -> dict:
    found = {}
    for link in explain_json(bundle):
        if link["call"]["errno"] == "ECONNRESET":
            found.setdefault(link["call"]["source"], link)
    return found


@pytest.mark.needs_capture
def test_the_programs_own_error_message_is_log_evidence_linked_like_strace(tmp_path):
    result, bundle = _record_python(tmp_path, UNCAUGHT_RESET, argv=("127.0.0.1",))
    assert result.returncode == 1, result.stderr
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in result.stderr  # still shown to the user
    assert "error message kept as log evidence" in result.stderr
    links = _links_by_source(bundle)
    assert set(links) == {"strace"}, links  # one failure: the syscall's link, citing the stderr line (issue 29)
    told = links["strace"]
    assert told["cause"]["kind"] == "rst"
    logged = [s for s in told["sources"] if s["source"] == "log"]
    assert len(logged) == 1 and "ConnectionResetError" in logged[0]["text"]
    assert logged[0]["where"].startswith("the program's stderr:")
    assert logged[0]["process"] == told["call"]["process"].split(" (pid")[0]  # named as strace names it


@pytest.mark.needs_capture
@pytest.mark.needs_netns
def test_record_beyond_loopback_across_a_veth_pair(tmp_path):
    """The program talks to a server in another namespace over a veth: `record`
    captures on every interface, so the RST is in the bundle, and both strace
    and the program's own message link to it."""
    from test_program_logs import SERVER_IN_NAMESPACE, veth_namespace

    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    client = tmp_path / "client.py"
    client.write_text("import socket, sys\n"
                      "s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
                      "s.sendall(b'hello')\n"
                      "s.recv(10)  # the server aborts (SO_LINGER 0): ECONNRESET\n")
    bundle = tmp_path / "veth.pcapng"
    with veth_namespace() as (name, here, there, iface):
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER_IN_NAMESPACE, there],
                                  stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            result = tcpteardown("record", "--calls", "strace", "-o", str(bundle), "--", sys.executable, str(client), there, str(port))
        finally:
            server.kill()
            server.wait(timeout=10)
            server.stdout.close()
    assert result.returncode == 1, result.stderr
    recording = load_recording(bundle)
    rsts = [s for s in recording.segments if s.is_rst and str(s.src) == f"{there}:{port}"]
    assert rsts, [str(s.src) for s in recording.segments]
    links = _links_by_source(bundle)
    assert set(links) == {"strace"}, links  # the stderr line is a source of the same one failure
    assert links["strace"]["cause"]["frame"] == rsts[-1].frame, links
    assert links["strace"]["cause"]["src"] == f"{there}:{port}"
    assert {s["source"] for s in links["strace"]["sources"]} == {"strace", "log"}


REFUSED_LOOP = """
import socket, sys
closed = socket.socket(); closed.bind(("127.0.0.1", 0))  # bound, never listening: every connect is refused
for _ in range(int(sys.argv[1])):
    with socket.socket() as s:
        try:
            s.connect(closed.getsockname())
        except ConnectionRefusedError:
            pass
print(closed.getsockname()[1])
"""


@pytest.mark.needs_capture
def test_refused_connects_in_a_tight_loop_each_get_their_own_syn_and_rst(tmp_path):
    """strace -y names no 4-tuple: each connect's local port comes from its
    own SYN (formats/socket_ends.py), so each refusal links to its own RST."""
    count = 200
    result, bundle = _record_python(tmp_path, REFUSED_LOOP, argv=(str(count),))
    assert result.returncode == 0, result.stderr
    port = int(result.stdout.split()[-1])
    recording = load_recording(bundle)
    syns = {s.src: s for s in recording.segments if s.is_syn and s.dst.port == port}
    connects = [c for c in recording.calls if c.op == "connect" and c.remote.port == port]
    assert len(connects) == len(syns) == count
    assert {c.local for c in connects} == set(syns)  # every SYN claimed by exactly one call
    for call in connects:
        assert call.errno == "ECONNREFUSED"
        # strace's stamps may end before the kernel's SYN under load (socket_ends.LATE_NS)
        assert call.start_ns - SLACK_NS <= syns[call.local].time_ns <= call.end_ns + LATE_NS
    claimed = [syns[call.local].time_ns for call in sorted(connects, key=lambda c: c.start_ns)]
    assert claimed == sorted(claimed)  # the n-th connect got the n-th SYN
    links = [link for link in explain_json(bundle) if link["call"]["errno"] == "ECONNREFUSED"]
    assert len(links) == count
    frames = {link["cause"]["frame"] for link in links}
    assert len(frames) == count and all(link["cause"]["kind"] == "rst" for link in links)
    assert all(link["call"]["local"] == f"127.0.0.1:{link['cause']['dst'].split(':')[1]}" for link in links)
