"""The kernel witness on real sockets: reasons, error reports, clean-up, clock.

Each teardown case runs on loopback sockets with a tcpdump capture beside the
witness, then checks what the kernel said (tcp_send_reset state and reason,
the errno of inet_sk_error_report) and that witness and capture agree.
Parsing tests at the end run anywhere (trace lines as literals).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tool_or_skip
from tcpteardown.analysis.witness import attach_reset_reasons, check_agreement
from tcpteardown.capture.kernel import (
    ClockMapping,
    KernelWitness,
    format_fields,
    parse_trace,
    parse_trace_line,
    port_filter,
)
from tcpteardown.model import Endpoint

SEND_RESET = "tcp:tcp_send_reset"
ERROR_REPORT = "sock:inet_sk_error_report"
FAMILIES = {"ipv4": (socket.AF_INET, "127.0.0.1"), "ipv6": (socket.AF_INET6, "::1")}
WAIT = 5.0  # seconds: upper bound for anything the kernel does on loopback


def _instances(root: Path) -> set[str]:
    return {p.name for p in (root / "instances").iterdir() if p.name.startswith("tcpteardown-")}


def _endpoint(sock: socket.socket) -> Endpoint:
    host, port = sock.getsockname()[:2]
    return Endpoint(host, port)


def _peer(sock: socket.socket) -> Endpoint:
    host, port = sock.getpeername()[:2]
    return Endpoint(host, port)


# --------------------------------------------------------------------------
# Teardown cases: setup(family, stack) returns (ports, play);
# play(witness) returns the facts to check:
# (RST source, RST destination, state, reason, socket that got the error, errno name)


def _listener(family: str, stack: contextlib.ExitStack) -> socket.socket:
    af, address = FAMILIES[family]
    listener = stack.enter_context(socket.socket(af, socket.SOCK_STREAM))
    listener.bind((address, 0))
    listener.listen(4)
    return listener


def _pair(family: str, listener: socket.socket, stack: contextlib.ExitStack):
    af, address = FAMILIES[family]
    client = stack.enter_context(socket.create_connection((address, listener.getsockname()[1]), timeout=WAIT))
    server, _ = listener.accept()
    stack.enter_context(server)
    server.settimeout(WAIT)
    return client, server


def close_with_unread_data(family, stack):
    listener = _listener(family, stack)

    def play(witness):
        client, server = _pair(family, listener, stack)
        client.sendall(b"never read")
        assert select.select([server], [], [], WAIT)[0], "data never reached the server"
        rst_src, rst_dst = _endpoint(server), _peer(server)
        server.close()
        with pytest.raises(ConnectionResetError):
            client.recv(100)
        return rst_src, rst_dst, "TCP_CLOSE", "TCP_ABORT_ON_CLOSE", _endpoint(client), "ECONNRESET"

    return [listener.getsockname()[1]], play


def data_after_peer_closed(family, stack):
    listener = _listener(family, stack)
    port = listener.getsockname()[1]

    def play(witness):
        client, server = _pair(family, listener, stack)
        server_end, client_end = _endpoint(server), _endpoint(client)
        server.close()
        assert client.recv(100) == b""  # the FIN
        # Wait until the server socket has become a time-wait mini-socket
        # (its full socket goes to TCP_CLOSE once our ACK of its FIN is in).
        assert witness.wait_for(lambda e: e.name == "sock:inet_sock_set_state" and e.src == server_end
                                and e.dst == client_end and e.get("newstate") == "TCP_CLOSE", WAIT)
        client.send(b"after close")
        assert witness.wait_for(lambda e: e.name == "tcp:tcp_receive_reset" and e.src == client_end, WAIT)
        with pytest.raises(BrokenPipeError):
            client.send(b"again")
        return server_end, client_end, "TCP_TIME_WAIT", "TCP_TIMEWAIT_SOCKET", client_end, "EPIPE"

    return [port], play


def linger_zero_close(family, stack):
    listener = _listener(family, stack)

    def play(witness):
        client, server = _pair(family, listener, stack)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rst_src, rst_dst = _endpoint(client), _peer(client)
        client.close()
        with pytest.raises(ConnectionResetError):
            server.recv(100)
        return rst_src, rst_dst, "TCP_CLOSE", "TCP_STATE", _endpoint(server), "ECONNRESET"

    return [listener.getsockname()[1]], play


def connect_to_closed_port(family, stack):
    af, address = FAMILIES[family]
    bound = stack.enter_context(socket.socket(af, socket.SOCK_STREAM))
    bound.bind((address, 0))  # bound, never listening: the port stays ours, nothing answers
    port = bound.getsockname()[1]

    def play(witness):
        client = stack.enter_context(socket.socket(af, socket.SOCK_STREAM))
        client.settimeout(WAIT)
        with pytest.raises(ConnectionRefusedError):
            client.connect((address, port))
        client_end = _endpoint(client)
        return Endpoint(address, port), client_end, "UNKNOWN", "NO_SOCKET", client_end, "ECONNREFUSED"

    return [port], play


CASES = {
    "close-with-unread-data": close_with_unread_data,
    "data-after-peer-closed": data_after_peer_closed,
    "linger-zero-close": linger_zero_close,
    "connect-to-closed-port": connect_to_closed_port,
}


def _read_segments(path: Path):
    try:
        from tcpteardown.formats.pcapread import read_capture
    except ImportError:
        from scapy.utils import RawPcapReader

        from scapy_dissect import segments_from_frames
        from tcpteardown.model import Frame

        with RawPcapReader(str(path)) as reader:
            scale = 1 if reader.nano else 1000
            frames = [Frame((meta.sec * 10**9) + meta.usec * scale, reader.linktype, data, meta.wirelen)
                      for data, meta in reader]
        return segments_from_frames(frames)
    return tuple(read_capture(str(path)).segments)


@pytest.mark.needs_tracefs
@pytest.mark.needs_capture
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_reset_reason_error_and_agreement(case, family, tmp_path):
    tool_or_skip("tcpdump")
    from tcpteardown.capture.tcpdump import TcpdumpCapture

    with contextlib.ExitStack() as stack:
        ports, play = CASES[case](family, stack)
        witness = KernelWitness(ports)
        assert witness.available, witness.reason
        capture = stack.enter_context(TcpdumpCapture(tmp_path / "case.pcap", ports))
        stack.enter_context(witness)
        rst_src, rst_dst, state, reason, error_on, errno_name = play(witness)
        sent = witness.wait_for(lambda e: e.name == SEND_RESET and e.src == rst_src, WAIT)
        reported = witness.wait_for(lambda e: e.name == ERROR_REPORT and e.src == error_on
                                    and e.get("error") == errno_name, WAIT)
        trace = witness.read_trace()
        events = witness.stop()
        pcap = capture.stop()

    assert sent is not None, f"no tcp_send_reset from {rst_src}:\n{trace}"
    assert sent.dst == rst_dst
    assert sent.get("state") == state, trace
    if witness.reasons_known:
        assert sent.get("reason") == reason, trace
    assert reported is not None, f"no inet_sk_error_report {errno_name} on {error_on}:\n{trace}"
    assert all(any(ep is not None and ep.port in ports for ep in (e.src, e.dst)) for e in events)

    segments = _read_segments(pcap)
    resets = [s for s in segments if s.is_rst]
    assert resets, "tcpdump captured no RST"
    labelled = attach_reset_reasons(segments, events)
    for segment in labelled:
        if segment.is_rst and segment.src == rst_src:
            assert segment.reset_reason == (reason if witness.reasons_known else None)
            assert abs(segment.time_ns - sent.time_ns) < 50_000_000  # same moment, two clocks
    assert check_agreement(segments, events) == ()
    assert not _instances(witness._root) & {witness.instance.name}


# --------------------------------------------------------------------------
# Clock mapping


@pytest.mark.needs_tracefs
def test_mapped_marker_time_falls_between_realtime_reads():
    with KernelWitness(()) as witness:
        assert witness.available, witness.reason
        windows = {}
        for number in range(20):
            before = time.clock_gettime_ns(time.CLOCK_REALTIME)
            witness.mark(f"probe-{number}")
            after = time.clock_gettime_ns(time.CLOCK_REALTIME)
            windows[f"probe-{number}"] = (before, after)
        markers = [e for e in witness.events(markers=True) if e.name == "ftrace:marker"]
        precision = witness.precision_ns
    assert witness.trace_clock in ("mono", "boot")
    assert 500 <= precision < 100_000
    assert {m.get("text") for m in markers} == set(windows)
    for marker in markers:
        before, after = windows[marker.get("text")]
        assert before - precision <= marker.time_ns <= after + precision, (marker, before, after, precision)


def test_clock_mapping_combines_start_and_stop():
    start, stop = ClockMapping(1000, 40), ClockMapping(1600, 60)
    both = ClockMapping.combine(start, stop)
    assert both.offset_ns == 1300
    assert both.uncertainty_ns == 60 + 300
    assert both.to_realtime(5) == 1305


# --------------------------------------------------------------------------
# Instances: private, removed, cleaned up after kills


@pytest.mark.needs_tracefs
def test_global_buffer_and_switches_untouched():
    witness = KernelWitness([9])
    root = witness._root
    switches = [root / "tracing_on", root / "trace_clock", root / "buffer_size_kb",
                root / "events/tcp/tcp_send_reset/enable", root / "events/sock/inet_sock_set_state/filter"]
    before = [p.read_text() for p in switches]
    with witness:
        assert witness.instance.parent == root / "instances"
        assert witness.instance.name.startswith(f"tcpteardown-{os.getpid()}-")
        assert (witness.instance / "events/tcp/tcp_send_reset/enable").read_text().strip() == "1"
        assert "dport == 9" in (witness.instance / "events/sock/inet_sock_set_state/filter").read_text()
    assert [p.read_text() for p in switches] == before
    assert not witness.instance.exists()
    assert witness.stop() == ()  # idempotent


CHILD = """
import sys
from tcpteardown.capture.kernel import KernelWitness
witness = KernelWitness([int(sys.argv[1])])
if sys.argv[2] == "with":
    with witness:
        print(witness.instance.name, flush=True)
        sys.stdin.read()
else:
    witness.start()
    print(witness.instance.name, flush=True)
    sys.stdin.read()
"""


def _child_with_witness(mode: str) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, "9", mode], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([child.stdout], [], [], 30)
    if not ready:
        child.kill()
        child.communicate()
        pytest.fail("child never reported its witness instance")
    return child, child.stdout.readline().strip()


@pytest.mark.needs_tracefs
@pytest.mark.parametrize("mode, signum", [("with", signal.SIGINT), ("start", signal.SIGINT),
                                           ("start", signal.SIGTERM)])
def test_instance_removed_when_child_is_interrupted(mode, signum):
    root = KernelWitness(())._root
    child, name = _child_with_witness(mode)
    try:
        assert name.startswith(f"tcpteardown-{child.pid}-")
        assert (root / "instances" / name).is_dir()
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0
    assert not (root / "instances" / name).exists(), stderr


@pytest.mark.needs_tracefs
def test_stale_instance_of_killed_process_removed_on_next_start():
    root = KernelWitness(())._root
    child, name = _child_with_witness("with")
    child.kill()  # SIGKILL: no clean-up can run
    child.communicate(timeout=30)
    assert (root / "instances" / name).is_dir()
    with KernelWitness([9]) as witness:
        assert name in witness.removed_stale
        assert not (root / "instances" / name).exists()
        mine = witness.instance.name
    assert mine not in _instances(root)


def test_unavailable_witness_records_nothing(tmp_path):
    witness = KernelWitness([80], root=tmp_path)
    assert not witness.available
    assert "tracefs" in witness.reason
    with witness:
        assert not witness.running
        assert witness.events() == ()
        assert witness.wait_for(lambda e: True, timeout=0.01) is None
    assert witness.stop() == ()


# --------------------------------------------------------------------------
# Parsing trace text (runs anywhere)

MAPPING = ClockMapping(offset_ns=1_700_000_000_000_000_000, uncertainty_ns=100)


def test_parse_send_reset_since_6_10():
    line = ("         python3-6698    [000] .....  2303.135683: tcp_send_reset: skbaddr=0000000000000000 "
            "skaddr=0000000055c55039 src=127.0.0.1:45677 dest=127.0.0.1:49690 state=TCP_CLOSE "
            "reason=TCP_ABORT_ON_CLOSE")
    event = parse_trace_line(line, MAPPING)
    assert event.name == "tcp:tcp_send_reset"
    assert event.time_ns == 2303_135683_000 + MAPPING.offset_ns
    assert (event.src, event.dst) == (Endpoint("127.0.0.1", 45677), Endpoint("127.0.0.1", 49690))
    assert event.get("state") == "TCP_CLOSE"
    assert event.get("reason") == "TCP_ABORT_ON_CLOSE"
    assert event.get("skaddr") == "0000000055c55039"
    assert (event.get("pid"), event.get("comm"), event.get("cpu")) == ("6698", "python3", "0")


def test_parse_send_reset_ipv6_and_mapped():
    line = ("  curl worker-12 [001] ..s1.  10.000001: tcp_send_reset: skbaddr=1 skaddr=0 "
            "src=[::1]:45678 dest=[::ffff:127.0.0.1]:57106 state=UNKNOWN reason=NO_SOCKET")
    event = parse_trace_line(line, MAPPING)
    assert event.src == Endpoint("::1", 45678)
    assert event.dst == Endpoint("127.0.0.1", 57106)
    assert event.get("comm") == "curl worker"


def test_parse_send_reset_before_6_10_has_no_reason():
    line = ("          <idle>-0       [001] ..s.  512.250000: tcp_send_reset: family=AF_INET6 sport=8080 "
            "dport=41000 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::1 daddrv6=::1 state=TCP_ESTABLISHED")
    event = parse_trace_line(line, MAPPING)
    assert event.src == Endpoint("::1", 8080) and event.dst == Endpoint("::1", 41000)
    assert event.get("reason") is None
    assert event.get("state") == "TCP_ESTABLISHED"


def test_parse_error_report_gives_errno_names():
    base = ("  python3-1 [000] ..s2.  2303.135681: inet_sk_error_report: family=AF_INET protocol=IPPROTO_TCP "
            "sport=49690 dport=45677 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 "
            "daddrv6=::ffff:127.0.0.1 error=")
    assert parse_trace_line(base + "104", MAPPING).get("error") == "ECONNRESET"
    assert parse_trace_line(base + "32", MAPPING).get("error") == "EPIPE"
    assert parse_trace_line(base + "111", MAPPING).get("error") == "ECONNREFUSED"
    assert parse_trace_line(base + "0", MAPPING).get("error") == "none"
    # The trace is Linux's wherever it is parsed: 61 is ENODATA there, never macOS's ECONNREFUSED.
    assert parse_trace_line(base + "61", MAPPING).get("error") in ("ENODATA", "errno 61 (Linux)")
    event = parse_trace_line(base + "104", MAPPING)
    assert event.src == Endpoint("127.0.0.1", 49690)
    assert dict(event.fields)["protocol"] == "IPPROTO_TCP"
    assert "saddr" not in dict(event.fields)


def test_parse_trace_filters_ports_and_skips_the_rest():
    text = "\n".join([
        "# tracer: nop",
        "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
        "  a-1 [000] .....  1.000002: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=0 "
        "dport=80 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::1 daddrv6=::1 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT",
        "  a-1 [001] .....  1.000001: tcp_send_reset: skbaddr=0 skaddr=0 src=127.0.0.1:443 dest=127.0.0.1:5 "
        "state=UNKNOWN reason=NO_SOCKET",
        "  a-1 (    1) [001] .....  1.000003: tracing_mark_write: hello world",
        "  a-1 [001] .....  1.000004: sched_switch: prev_comm=a",
        "garbage",
    ])
    events = parse_trace(text, MAPPING, [80])
    assert [e.name for e in events] == ["sock:inet_sock_set_state"]
    everything = parse_trace(text, MAPPING, (), markers=True)
    assert [e.name for e in everything] == ["tcp:tcp_send_reset", "sock:inet_sock_set_state", "ftrace:marker"]
    assert everything[-1].get("text") == "hello world"


def test_filters_from_format_fields():
    set_state = format_fields("field:int oldstate;\toffset:16;\nfield:__u16 sport;\nfield:__u16 dport;\n"
                              "field:__u16 protocol;\nfield:__u8 saddr[4];\nfield:int common_pid;")
    assert set_state == ("oldstate", "sport", "dport", "protocol", "saddr")
    assert port_filter(set_state, [80, 8080]) == \
        "protocol == 6 && (sport == 80 || dport == 80 || sport == 8080 || dport == 8080)"
    send_reset = format_fields("field:const void * skbaddr;\nfield:__u8 saddr[28];\nfield:enum sk_rst_reason reason;")
    assert send_reset == ("skbaddr", "saddr", "reason")
    assert port_filter(send_reset, [80]) is None  # filtered after parsing instead
    assert port_filter(("sport", "dport"), []) is None


# --------------------------------------------------------------------------
# Every scenario of the library, through the runner (which starts the witness)

# The reasons this machine's kernel (6.18) gives, per scenario, in RST order:
# each scenario lists every sequence the kernel was seen to produce.
SCENARIO_REASONS = {
    "graceful-close": {()},
    "reset-by-peer": {("TCP_ABORT_ON_CLOSE",)},
    # The closed server socket answers the data either as a full socket still
    # in FIN_WAIT2 (close() held the socket lock when the ACK of its FIN came
    # back) or as the time-wait socket it became: both are the kernel's truth.
    "broken-pipe": {("TCP_ABORT_ON_DATA",), ("TCP_TIMEWAIT_SOCKET",)},
    "write-after-reset": {("TCP_ABORT_ON_CLOSE",)},
    "refused": {("NO_SOCKET",)},
    "use-after-close": {()},
    "linger-abort": {("TCP_STATE",)},
}


def _scenario_names():
    from tcpteardown.scenarios import all_scenarios

    return sorted(scenario.name for scenario in all_scenarios())


@pytest.mark.needs_tracefs
@pytest.mark.needs_capture
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("name", _scenario_names())
def test_every_scenario_rst_carries_its_kernel_reason_and_agrees(name, family):
    from tcpteardown.scenarios import run_scenario

    root = KernelWitness(())._root
    run = run_scenario(name, family=family)
    recording = run.recording
    mine = {n for n in _instances(root) if n.startswith(f"tcpteardown-{os.getpid()}-")}
    assert not mine, "the run left a tracefs instance behind"  # (other processes may be running their own)
    sent = [e for e in recording.kernel_events if e.name == SEND_RESET]
    resets = [s for s in recording.segments if s.is_rst]
    assert check_agreement(recording.segments, recording.kernel_events) == ()
    assert len(sent) == len(resets)
    if any(e.get("reason") is None for e in sent):  # kernel before 6.10: nothing to attach
        assert all(s.reset_reason is None for s in resets)
        return
    reasons = tuple(s.reset_reason for s in resets)
    if name in SCENARIO_REASONS:
        assert reasons in SCENARIO_REASONS[name]
    else:
        assert all(reasons), f"{name}: RSTs without a kernel reason: {resets}"


NOT_ROOT_CHILD = """
from tcpteardown.capture.kernel import KernelWitness
witness = KernelWitness([80])
with witness:
    pass
print(witness.available, witness.stop(), witness.reason, sep="|")
"""


def _run_as_nobody(code: str) -> subprocess.CompletedProcess:
    """Run `code` as user nobody, with an interpreter nobody may execute."""
    source = str(Path(__file__).resolve().parents[1] / "src")
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                                  user=65534, group=65534, extra_groups=[], cwd="/",
                                  env={"PYTHONPATH": source, "PATH": "/usr/bin:/bin"})
        except (PermissionError, FileNotFoundError):
            continue
    pytest.skip("no Python interpreter that user nobody may execute")


def test_without_root_the_witness_says_why_and_records_nothing(is_root):
    if is_root:  # drop to nobody to see what a student's laptop sees
        result = _run_as_nobody(NOT_ROOT_CHILD)
    else:
        result = subprocess.run([sys.executable, "-c", NOT_ROOT_CHILD], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    available, events, reason = result.stdout.strip().split("|")
    assert (available, events) == ("False", "()")
    assert "root" in reason or "Linux" in reason


AS_MACOS_CHILD = """
import sys
sys.platform = "darwin"  # before tcpteardown looks: as on a Mac, nothing Linux-only may run
from tcpteardown.capture.kernel import KernelWitness
from tcpteardown.analysis.witness import attach_reset_reasons
witness = KernelWitness([80])
with witness:
    pass
print(witness.available, witness.stop(), witness.reason, sep="|")
"""


def test_imports_and_degrades_where_there_is_no_tracefs():
    result = subprocess.run([sys.executable, "-c", AS_MACOS_CHILD], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    available, events, reason = result.stdout.strip().split("|")
    assert (available, events) == ("False", "()")
    assert "only on Linux" in reason


MOUNT_CHILD = """
from tcpteardown.capture import platform as host
print(host.tracefs_problem() is not None)  # unmounted in this mount namespace
from tcpteardown.capture.kernel import KernelWitness
with KernelWitness([9]) as witness:
    print(witness.available, witness.running, sep="|")
"""


@pytest.mark.needs_tracefs
def test_witness_mounts_tracefs_when_missing():
    unshare = tool_or_skip("unshare")
    # A private mount namespace: unmounting tracefs there leaves everyone else's alone.
    script = f"umount /sys/kernel/tracing && exec {sys.executable} -c '{MOUNT_CHILD}'"
    result = subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "umount" in result.stderr:
        pytest.skip(f"cannot unmount tracefs in a private mount namespace: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    unmounted, witnessed = result.stdout.split()
    if unmounted != "True":
        pytest.skip("tracefs stays reachable here (through debugfs): nothing to mount")
    assert witnessed == "True|True"


FORK_CHILD = """
import os, sys
from tcpteardown.capture.kernel import KernelWitness
with KernelWitness([9]) as witness:
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # leaves the with block and runs atexit, in the child
    os.waitpid(pid, 0)
    print(witness.instance.is_dir(), witness.running, sep="|")
print(witness.instance.exists())
"""


@pytest.mark.needs_tracefs
def test_forked_child_exiting_leaves_the_parent_instance_alone():
    result = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True|True", "False"]
