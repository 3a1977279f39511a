"""`tcpteardown watch` against real sockets and a real redis-server.

One watch (module scope, ``--json``, filtered on this module's own ports:
other helpers' traffic shares loopback) sees: a connect to a closed port
(IPv4 and IPv6),
an abortive close (SO_LINGER 0) by a server in another process, a clean
close by that server, and redis-server's idle timeout (its FIN, then the
RST its kernel answers our next write with). Each line's process, reason,
state and predicted errno are checked against what the test itself did and
what the calls it then makes really return. Separate tests: ending on
SIGTERM, SIGKILL (the next run cleans up), a closed stdout, and the
unprivileged refusal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tcpteardown.capture import platform as host
from tcpteardown.capture.watch.lines import SCHEMA, prediction_text
from tcpteardown.capture.watch.owners import parse_proc_net_tcp
from tcpteardown.schemas import validator
from tcpteardown.capture.watch.stream import in_process_context
from tcpteardown.capture.watch.teardowns import Teardown
from tcpteardown.model import Endpoint
from tcpteardown.units import clock_text

from conftest import tool_or_skip
from ports import closed_port, closed_ports

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.needs_tracefs

# A server in its own process (so its pid differs from ours): per connection, in order, read a
# 4-byte word: "rst\n" -> abortive close (SO_LINGER 0), "fin\n" -> close, "unrd" -> close with the
# client's further bytes unread (its kernel answers with an RST); reset by the client -> close.
SERVER = r"""
import socket, struct, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    try:
        word = conn.recv(4)
    except ConnectionResetError:
        word = b""
    if word == b"rst\n":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"""


def wait_listening(port: int, proc, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited before listening on {port}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.02)  # wait-ok: polling for the program's listening port
    raise AssertionError(f"nothing listened on 127.0.0.1:{port}")


def start_watch(*args: str, stdout=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """A watch subprocess, once it is really watching (its start line); that line."""
    proc = subprocess.Popen([sys.executable, "-m", "tcpteardown", "watch", *args], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    first = proc.stderr.readline()
    assert "watching TCP teardowns" in first, first + proc.stderr.read()
    return proc, first


def instance_of(start_line: str) -> Path:
    name = start_line.split("tracefs instance ")[1].split(",")[0]
    return host.tracefs_root() / "instances" / name


def wait_gone(path: Path, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(0.02)  # wait-ok: polling for the reaper to remove the instance
    return False


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """Run every case under one watch; the JSON lines, the summary and the ground truth."""
    redis = tool_or_skip("redis-server")
    refused_port = closed_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    server_port = int(server.stdout.readline())
    redis_port = closed_port()
    workdir = tmp_path_factory.mktemp("redis")
    redis_proc = subprocess.Popen([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--timeout", "1",
                                   "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    truth = {"server_pid": server.pid, "server_comm": Path(f"/proc/{server.pid}/comm").read_text().strip(),
             "redis_pid": redis_proc.pid, "refused_port": refused_port,
             "server_port": server_port, "redis_port": redis_port}
    watch = None
    try:
        wait_listening(redis_port, redis_proc)
        ports = f"{refused_port},{server_port},{redis_port}"
        # Accepted by the server before watch starts (its first /proc read names their owner):
        # the client resets it in softirq on our CPU, so the CPU's task is us, never its owner.
        truth["accepted"] = socket.create_connection(("127.0.0.1", server_port))
        keep = tmp_path_factory.mktemp("kept")
        truth["keep"] = keep
        watch, _ = start_watch("--json", "--keep", str(keep), "--keep-mb", "1", "--port", ports, "--only", "rst", "--only", "refused",
                               "--only", "fin", "--count", "8", "--duration", "60", stdout=subprocess.PIPE)
        truth.update(play(truth))
        out, err = watch.communicate(timeout=60)
        truth["returncode"] = watch.returncode
    finally:
        for proc in (server, redis_proc, watch):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        server.stdout.close()
    lines = [json.loads(line) for line in out.splitlines()]
    check = validator("watch")  # the published shape (src/tcpteardown/schemas/watch-1.json)
    for line in lines:
        check.validate(line)
    return lines, err, truth


def play(truth: dict) -> dict:
    """The cases, and what the calls really returned (the ground truth of the predictions)."""
    seen = {}
    with truth.pop("accepted") as c:  # 0. we reset the server's accepted connection
        seen["accepted_local"] = c.getsockname()[1]
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with socket.socket() as s:  # 1. connect to a closed port
        seen["refused_local"] = None
        try:
            s.connect(("127.0.0.1", truth["refused_port"]))
        except OSError as exc:
            seen["refused_errno"] = exc.errno
    with socket.socket(socket.AF_INET6) as s:  # 1b. the same over IPv6
        try:
            s.connect(("::1", truth["refused_port"]))
        except OSError as exc:
            seen["refused6_errno"] = exc.errno
    with socket.create_connection(("127.0.0.1", truth["server_port"])) as c:  # 2. abortive close
        seen["rst_local"] = c.getsockname()[1]
        c.sendall(b"rst\n")
        try:
            c.recv(10)
        except OSError as exc:
            seen["rst_errno"] = exc.errno
    with socket.create_connection(("127.0.0.1", truth["server_port"])) as c:  # 2b. close with unread data
        seen["unread_local"] = c.getsockname()[1]
        c.sendall(b"unrd" + b"x" * 100)
        try:
            c.recv(10)
        except OSError as exc:
            seen["unread_errno"] = exc.errno
    with socket.create_connection(("127.0.0.1", truth["server_port"])) as c:  # 3. clean close
        seen["fin_local"] = c.getsockname()[1]
        c.sendall(b"fin\n")
        seen["fin_read"] = c.recv(10)
    with socket.create_connection(("127.0.0.1", truth["redis_port"])) as c:  # 4. redis's idle timeout
        seen["redis_local"] = c.getsockname()[1]
        c.sendall(b"PING\r\n")
        assert c.recv(100) == b"+PONG\r\n"
        assert c.recv(100) == b""  # its FIN, after --timeout 1
        c.sendall(b"PING\r\n")  # its kernel answers with an RST: we are in CLOSE_WAIT
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c.sendall(b"PING\r\n")
            except OSError as exc:
                seen["redis_errno"] = exc.errno
                break
            time.sleep(0.01)  # wait-ok: writing until the RST has arrived and the write fails
    return seen


def line_for(lines, kind: str, local_port: int) -> dict:
    found = [line for line in lines if line["kind"] == kind and line["dst"].endswith(f":{local_port}")]
    assert len(found) == 1, (kind, local_port, lines)
    return found[0]


def test_every_line_is_one_json_object_of_the_schema(watched):
    lines, err, truth = watched
    assert truth["returncode"] == 0, err
    assert len(lines) == 8, lines
    assert {line["schema"] for line in lines} == {SCHEMA}
    for line in lines:  # the clock time every view prints, with its zone (UTC by default), and the epoch
        epoch_ns = round(line["time"] * 1e9)  # a float of epoch seconds is good to a microsecond
        assert line["clock"] in {clock_text(epoch_ns + step) for step in (-1000, 0, 1000)}, line
        assert line["clock"].endswith(" UTC")


def test_refused_connect_names_us_and_predicts_econnrefused(watched):
    lines, _, truth = watched
    found = [line for line in lines if line["kind"] == "refused" and line["src"].startswith("127.")]
    assert len(found) == 1, lines
    line = found[0]
    assert line["src"] == f"127.0.0.1:{truth['refused_port']}"
    assert line["reason"] == "NO_SOCKET"
    assert line["sender"]["pid"] is None and "no socket" in line["sender"]["note"]
    assert line["receiver"] | {} == line["receiver"]
    assert (line["receiver"]["pid"], line["receiver"]["state"]) == (os.getpid(), "SYN_SENT")
    assert line["predicted"] == [{"op": "connect", "errno": "ECONNREFUSED", "rule": "refused-connect"}]
    assert line["receiver"]["errno"] == "ECONNREFUSED"
    assert truth["refused_errno"] == 111  # what connect() really returned: ECONNREFUSED


def test_ipv6_refused_connect_too(watched):
    lines, _, truth = watched
    found = [line for line in lines if line["src"] == f"[::1]:{truth['refused_port']}"]
    assert len(found) == 1, lines
    assert (found[0]["kind"], found[0]["receiver"]["pid"]) == ("refused", os.getpid())
    assert found[0]["predicted"][0]["errno"] == "ECONNREFUSED" and truth["refused6_errno"] == 111


def test_abortive_close_names_both_processes_and_the_reason(watched):
    lines, _, truth = watched
    line = line_for(lines, "rst", truth["rst_local"])
    assert line["sender"]["pid"] == truth["server_pid"]  # from close()'s own context, not the softirq's task
    assert line["sender"]["comm"].startswith("python")
    assert line["receiver"]["pid"] == os.getpid()
    assert line["reason"] == "TCP_STATE"  # SO_LINGER 0
    assert line["receiver"]["state"] == "ESTABLISHED"
    assert {row["op"]: row["errno"] for row in line["predicted"]} == {"read": "ECONNRESET", "write": "ECONNRESET"}
    assert "write() after it -> EPIPE" in line["prediction"]
    assert truth["rst_errno"] == 104  # our recv() really got ECONNRESET


def test_an_accepted_connection_reset_by_its_client_names_the_server_not_the_cpu_task(watched):
    lines, _, truth = watched
    found = [line for line in lines if line["kind"] == "rst" and line["src"].endswith(f":{truth['accepted_local']}")]
    assert len(found) == 1, lines
    line = found[0]
    assert line["dst"] == f"127.0.0.1:{truth['server_port']}"
    # received in softirq while our close() ran: the CPU's task was us; the owner is the server
    assert (line["receiver"]["pid"], line["receiver"]["comm"]) == (truth["server_pid"], truth["server_comm"]), line
    assert line["sender"]["pid"] == os.getpid() and line["reason"] == "TCP_STATE"
    assert line["receiver"]["state"] == "ESTABLISHED" and line["receiver"]["errno"] == "ECONNRESET"


def test_a_server_closing_with_unread_data_is_named_as_the_sender(watched):
    lines, _, truth = watched
    line = line_for(lines, "rst", truth["unread_local"])
    assert line["reason"] == "TCP_ABORT_ON_CLOSE"
    assert (line["sender"]["pid"], line["sender"]["comm"]) == (truth["server_pid"], truth["server_comm"]), line
    assert "closed the socket with unread data" in line["sender"]["note"]
    assert line["receiver"]["pid"] == os.getpid()
    assert truth["unread_errno"] == 104  # our recv() really got ECONNRESET


def test_clean_close_is_a_fin_predicting_eof(watched):
    lines, _, truth = watched
    line = line_for(lines, "fin", truth["fin_local"])
    assert (line["sender"]["pid"], line["receiver"]["pid"]) == (truth["server_pid"], os.getpid())
    assert line["predicted"] == [{"op": "read", "errno": "EOF", "rule": "linux-fin-read"}]
    assert truth["fin_read"] == b""


def test_redis_idle_timeout_fin_then_rst_in_close_wait(watched):
    lines, _, truth = watched
    fin = line_for(lines, "fin", truth["redis_local"])
    assert (fin["sender"]["pid"], fin["sender"]["comm"]) == (truth["redis_pid"], "redis-server")
    rst = line_for(lines, "rst", truth["redis_local"])
    assert rst["receiver"]["pid"] == os.getpid()
    assert rst["receiver"]["state"] == "CLOSE_WAIT"
    # redis had closed it: its kernel answered our write for a socket redis no longer holds
    assert (rst["reason"], rst["sender"]["pid"]) == ("TCP_ABORT_ON_DATA", truth["redis_pid"])
    assert "had closed the socket" in rst["sender"]["note"]
    assert {row["op"]: row["errno"] for row in rst["predicted"]} == {"read": "EOF", "write": "EPIPE"}
    assert truth["redis_errno"] == 32  # our write really got EPIPE


def test_summary_counts_and_says_what_was_missed(watched):
    _, err, _ = watched
    summary = err.strip().splitlines()[-1]
    assert "done after" in summary and "8 lines" in summary, err
    assert "missed 0 events" in summary, err
    # the two refused connects (IPv4, IPv6) to one port share a bundle when they fall in one second
    assert re.search(r"flight recorder: \d bundles written holding 6 RSTs", summary), err
    assert "0 packets and 0 kernel events dropped by the 1 MB bound" in summary, err


def test_each_rst_left_a_bundle_from_syn_to_rst_that_explain_reads(watched):
    from tcpteardown.formats.bundle import load_recording

    _, _, truth = watched
    kept = sorted(truth["keep"].iterdir())
    assert {path.suffix for path in kept} == {".pcapng"} and 3 <= len(kept) <= 6, kept  # no .part left behind
    # RSTs of one kind on one (lower) port within a second share a bundle: find the one holding ours
    name = next(path for path in kept if path.name.startswith("rst-") and any(
        truth["rst_local"] in (s.src.port, s.dst.port) for s in load_recording(path).segments))
    recording = load_recording(name)
    segments = [s for s in recording.segments if truth["rst_local"] in (s.src.port, s.dst.port)]
    assert segments[0].flags.render() == "SYN" and segments[-1].is_rst
    assert segments[-1].reset_reason == "TCP_STATE"  # the witness's reason, in the bundle
    out = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", "--json", str(name)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    rules = {link["rule"] for link in json.loads(out.stdout)["links"]}
    assert {"linux-rst-read", "linux-rst-write"} <= rules, out.stdout + out.stderr


def test_refused_connects_to_one_port_share_a_bundle_that_explain_and_plot_open(watched, tmp_path):
    from tcpteardown.formats.bundle import load_recording

    _, _, truth = watched
    refused = [path for path in truth["keep"].iterdir() if path.name.startswith("refused-")]
    recording = load_recording(max(refused, key=lambda path: path.stat().st_size))
    rsts = [segment for segment in recording.segments if segment.is_rst]
    assert len(rsts) == int(recording.metadata.get("watch_rsts")) and len(refused) == 3 - len(rsts)
    assert all(segment.src.port == truth["refused_port"] for segment in rsts)
    assert {segment.reset_reason for segment in rsts} == {"NO_SOCKET"}  # the witness's reason, from the kernel
    assert recording.metadata.get("ports") == str(truth["refused_port"])
    assert any(event.name == "tcp:tcp_send_reset" for event in recording.kernel_events)
    path = recording.metadata.source_file
    out = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", "--json", path],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    plotted = subprocess.run([sys.executable, "-m", "tcpteardown", "plot", path, "-o", str(tmp_path / "ladder.svg")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert plotted.returncode == 0 and (tmp_path / "ladder.svg").stat().st_size > 0, plotted.stderr


def test_pid_comm_and_host_filters_keep_only_what_they_name():
    port = closed_port()
    comm = Path("/proc/self/comm").read_text().strip()
    proc, _ = start_watch("--json", "--port", str(port), "--pid", str(os.getpid()), "--comm", comm,
                          "--host", "::1", "--count", "1", "--duration", "30", stdout=subprocess.PIPE)
    connect = "import socket, sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])))\nexcept OSError: pass"
    subprocess.run([sys.executable, "-c", connect, "::1", str(port)], check=True)  # another pid: filtered out
    for host in ("127.0.0.1", "::1"):  # ours, but IPv4 first: filtered out by --host
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s, contextlib.suppress(OSError):
            s.connect((host, port))
    out, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1 and lines[0]["src"] == f"[::1]:{port}", (lines, err)
    assert lines[0]["receiver"]["pid"] == os.getpid()


def test_sigterm_ends_cleanly_and_removes_the_instance():
    proc, first = start_watch("--port", str(closed_port()))
    instance = instance_of(first)
    assert instance.exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM after" in err and "missed 0 events" in err, err
    assert not instance.exists()


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.02)  # wait-ok: polling for the reaper to kill what a SIGKILLed watch left
    return False


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_flight_recorder_leaves_no_process_and_no_half_bundle(how, tmp_path):
    tool_or_skip("tcpdump")
    proc, first = start_watch("--port", str(closed_port()), "--keep", str(tmp_path))
    try:
        while "flight recorder" not in (said := proc.stderr.readline()):  # (a stale instance may be said first)
            assert said, "watch ended before its flight recorder started"
        helpers = _children(proc.pid)  # running: tcpdump and its worker started
        names = {Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].rsplit(b"/", 1)[-1] for pid in helpers}
        assert b"tcpdump" in names and len(helpers) >= 3, names  # tcpdump, the worker, the reaper's watchdog
    finally:
        proc.send_signal(getattr(signal, how))
        _, err = proc.communicate(timeout=30)
    if how == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM and "flight recorder: 0 bundles written" in err, err
    assert _gone(helpers), [pid for pid in helpers if Path(f"/proc/{pid}").exists()]
    assert wait_gone(instance_of(first))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_keep_max_keeps_the_newest_bundles_of_the_run(tmp_path):
    tool_or_skip("tcpdump")
    first_port, second_port = closed_ports(2)
    proc, _ = start_watch("--port", f"{first_port},{second_port}", "--keep", str(tmp_path), "--keep-max", "1",
                          "--count", "2", "--duration", "30")
    for port in (first_port, second_port):  # two ports: two bundles, the first removed
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
    _, err = proc.communicate(timeout=30)
    assert "1 older bundles of this run removed (--keep-max 1)" in err, err
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("refused-") and f"-{second_port}-" in kept[0].name, kept


def test_sigkill_leaves_nothing_the_next_run_keeps():
    proc, first = start_watch("--port", str(closed_port()))
    instance = instance_of(first)
    proc.kill()
    proc.wait(timeout=10)
    again, first_again = start_watch("--port", str(closed_port()), "--duration", "0.1")
    proc.stderr.close()
    again.communicate(timeout=20)
    assert wait_gone(instance), f"{instance} outlived a SIGKILLed watch and the next one"
    assert not instance_of(first_again).exists()


def test_closed_stdout_ends_it_quietly():
    port = closed_port()
    reader, writer = os.pipe()
    proc, first = start_watch("--port", str(port), stdout=writer)
    os.close(writer)
    with os.fdopen(reader) as lines:
        for _ in range(2):
            with socket.socket() as s, contextlib.suppress(OSError):
                s.connect(("127.0.0.1", port))
        words = lines.readline().split()
        assert words[1:3] == ["UTC", "REFUSED"], words  # the clock time with its zone, then the kind
    # the reader is gone: the next line fails to print and watch ends by itself
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
        time.sleep(0.05)  # wait-ok: one refused connect per round until watch notices its closed stdout
    assert proc.wait(timeout=10) == 0
    assert "stdout closed" in proc.stderr.read()
    assert not instance_of(first).exists()
    proc.stderr.close()


def test_unprivileged_gets_one_line_and_exit_2(tmp_path):
    setpriv = shutil.which("setpriv")
    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if os.geteuid() != 0 or setpriv is None or not system_python.exists():
        pytest.skip(f"needs root, setpriv and {system_python} to run as the user nobody")
    site = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": f"{REPO / 'src'}:{site}", "PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ["PATH"],
           "HOME": str(tmp_path)}
    result = subprocess.run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(system_python),
                             "-m", "tcpteardown", "watch"], capture_output=True, text=True, timeout=60, env=env,
                            cwd=tmp_path)
    if "Permission denied" in result.stderr and "tcpteardown" not in result.stderr:
        pytest.skip(f"the user nobody cannot read {REPO}/src on this checkout")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "watch needs root" in result.stderr


# -- the pure parts, on text the kernel printed --------------------------------------

def test_irq_flags_decide_whether_the_task_is_the_owner():
    assert in_process_context("   python3-9690    [000] ..... 31668.667573: inet_sock_set_state: x")
    assert not in_process_context("   python3-9690    [000] ..s1. 31668.667617: tcp_send_reset: x")
    assert not in_process_context("   <idle>-0    [001] d.h2. 31668.667617: tcp_receive_reset: x")


def test_proc_net_tcp_rows_become_four_tuples():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1\n"
            "   1: 0100007F:1F90 0100007F:D3A4 01 00000000:00000000 00:00000000 00000000     0        0 2222 1\n")
    assert parse_proc_net_tcp(text) == {2222: (Endpoint("127.0.0.1", 8080), Endpoint("127.0.0.1", 54180))}


def test_a_state_with_no_rule_says_why_no_call_fails():
    teardown = Teardown(0, "rst", Endpoint("127.0.0.1", 1), Endpoint("127.0.0.1", 2), True, True, "LAST_ACK")
    assert prediction_text(teardown).startswith("no call fails")


# Real tracefs text (Linux 6.18, loopback): a refused connect, then a server's abortive close
# (SO_LINGER 0) whose send_reset the kernel logs after the receiver's side. One edit: the
# closing task's pid is 9691 here (both ends were one process) to tell the two apart.
KERNEL_TEXT = """\
 python3-9690 [000] ..... 31668.667573: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=0 dport=1 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT
 python3-9690 [000] ..s1. 31668.667617: tcp_send_reset: skbaddr=00000000dd474c83 skaddr=0000000000000000 src=127.0.0.1:1 dest=127.0.0.1:39264 state=UNKNOWN reason=NO_SOCKET
 python3-9690 [000] ..... 31668.667636: tcp_receive_reset: family=AF_INET sport=39264 dport=1 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 sock_cookie=b441
 python3-9690 [000] ..... 31668.667644: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=39264 dport=1 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_SYN_SENT newstate=TCP_CLOSE
 python3-9690 [000] ..... 31668.667647: inet_sk_error_report: family=AF_INET protocol=IPPROTO_TCP sport=39264 dport=1 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 error=111
 python3-9690 [000] ..s2. 31668.670910: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=35157 dport=55052 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_SYN_RECV newstate=TCP_ESTABLISHED
 python3-9691 [000] ..... 31668.671020: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=35157 dport=55052 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_ESTABLISHED newstate=TCP_CLOSE
 python3-9691 [000] ..s2. 31668.671032: tcp_receive_reset: family=AF_INET sport=55052 dport=35157 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 sock_cookie=b442
 python3-9691 [000] ..s2. 31668.671037: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=55052 dport=35157 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_ESTABLISHED newstate=TCP_CLOSE
 python3-9691 [000] ..s2. 31668.671040: inet_sk_error_report: family=AF_INET protocol=IPPROTO_TCP sport=55052 dport=35157 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 error=104
 python3-9691 [000] ..... 31668.671042: tcp_send_reset: skbaddr=0000000000000000 skaddr=00000000e4c88c14 src=127.0.0.1:35157 dest=127.0.0.1:55052 state=TCP_CLOSE reason=TCP_STATE
"""


def test_the_pieces_of_one_rst_pair_into_one_teardown():
    from tcpteardown.capture.watch.teardowns import Task, Tracker
    from tcpteardown.formats.ftrace import ClockMapping, parse_trace_line

    tracker = Tracker()
    for line in KERNEL_TEXT.splitlines():
        tracker.feed(parse_trace_line(line, ClockMapping(0, 0)), in_process_context(line))
    refused, reset = tracker.flush(None)
    assert (refused.kind, refused.state, refused.reason, refused.error) == ("refused", "SYN_SENT", "NO_SOCKET",
                                                                           "ECONNREFUSED")
    assert refused.receiver_task == Task(9690, "python3")  # its connect()'s task, before the port was chosen
    assert refused.sender_task is None and "no socket" in refused.sender_note  # softirq: nobody's task
    assert (reset.kind, reset.state, reset.sender_state, reset.reason) == ("rst", "ESTABLISHED", "ESTABLISHED",
                                                                           "TCP_STATE")
    assert reset.sender_task == Task(9691, "python3")  # the close() that aborted it, in process context
    assert reset.receiver_task is None  # the receive ran in softirq: /proc must say who holds it


def _sll2_tcp(sport: int, dport: int, flags: int) -> bytes:
    """A LINUX_SLL2 frame (what tcpdump -i any writes) holding IPv4 and a 20-byte TCP header."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, socket.inet_aton("127.0.0.1"),
                     socket.inet_aton("127.0.0.1"))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65495, 0, 0)
    return struct.pack("!HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, b"\0" * 8) + ip + tcp


def test_the_ring_holds_its_bound_and_claims_a_connection_from_its_syn():
    from tcpteardown.capture.watch.ring import Ring
    from tcpteardown.capture.watch.worker import RstLine
    from tcpteardown.model import Frame

    ring = Ring(20_000)
    for port in range(40_000, 40_200):  # 200 connections, SYN and RST each: far beyond 20 kB
        for step, flags in enumerate((0x02, 0x14)):
            data = _sll2_tcp(port, 80, flags)
            ring.keep_packet(Frame(port * 1000 + step, 276, data, len(data)))
        assert ring.bytes <= ring.limit
    assert ring.dropped_packets > 0 and ring.packets == 400
    line = RstLine(40_199_001, "refused", Endpoint("127.0.0.1", 40_199), Endpoint("127.0.0.1", 80), None, None)
    claim = ring.claim(line)
    assert claim.rst_captured and claim.from_syn
    assert [segment.flags.render() for _, segment in claim.packets] == ["SYN", "RST,ACK"]
    ring.release(claim)
    assert ring.bytes <= ring.limit


def test_a_burst_keeps_a_sample_per_port_and_second_and_counts_the_rest():
    from tcpteardown.capture.watch.bundles import Groups
    from tcpteardown.capture.watch.worker import RstLine

    groups = Groups(sample=2)
    lines = [RstLine(5_000_000_000 + n, "refused", Endpoint("127.0.0.1", 50_000 + n), Endpoint("127.0.0.1", 80),
                     None, None) for n in range(5)]
    slots = [groups.slot(line) for line in lines]
    assert slots[2:] == [None, None, None] and slots[0] is slots[1] and groups.skipped == 3
    assert groups.due(6_400_000_000) == []  # its claims are still to come
