"""`record --calls strace` and `record --calls ebpf` give the same links.

One real Python program plays seven teardowns (refused, a non-blocking
connect refused through SO_ERROR, reset by peer, broken pipe, EOF, a reset
an epoll loop is told of, an EOF poll() is told of); it is
recorded once with each call tracer (module fixture), and each bundle is
explained. The links must agree one for one (the same call, errno, cause,
rule, kernel reason and event-loop wake-up, in the same order), each cause must be a packet of
that very connection, and the eBPF calls must carry both ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import tool_or_skip
from tcpteardown.formats.bundle import load_recording

PROGRAM = r"""
import errno, select, selectors, socket, struct
def pair():
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
    client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()
    listener.close()
    return client, server
def said(what, exc):
    print(what, errno.errorcode[exc.errno], flush=True)

closed = socket.socket(); closed.bind(("127.0.0.1", 0))  # bound, never listening
with socket.socket() as s:  # 1. refused
    try:
        s.connect(closed.getsockname())
    except ConnectionRefusedError as exc:
        said("refused", exc)
with socket.socket() as s:  # 2. refused, told through SO_ERROR (as Go and asyncio do)
    s.setblocking(False)
    assert s.connect_ex(closed.getsockname()) == errno.EINPROGRESS
    select.select([], [s], [], 5)
    print("so_error", errno.errorcode[s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)], flush=True)
client, server = pair()  # 3. reset by peer: closed with unread data
client.sendall(b"never read"); select.select([server], [], [], 5); server.close()
try:
    client.recv(10)
except ConnectionResetError as exc:
    said("reset", exc)
client.close()
client, server = pair()  # 4. broken pipe: the peer aborts (SO_LINGER 0), we write on
server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); server.close()
for _ in range(2):
    try:
        client.send(b"x")
    except OSError as exc:
        said("write", exc)
client.close()
client, server = pair()  # 5. EOF
server.close()
print("eof", client.recv(10), flush=True)
client.close()
client, server = pair()  # 6. an event loop (epoll) told of the peer's reset, then the read fails
client.setblocking(False)
loop = selectors.DefaultSelector(); loop.register(client, selectors.EVENT_READ)
server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); server.close()
loop.select(5)
try:
    client.recv(10)
except ConnectionResetError as exc:
    said("loop reset", exc)
loop.close(); client.close()
client, server = pair()  # 7. poll() told of the peer's FIN, then the read is EOF
waiter = select.poll(); waiter.register(client, select.POLLIN)
server.close()
waiter.poll(5000)
print("poll eof", client.recv(10), flush=True)
client.close()
"""

EXPECTED = ["refused ECONNREFUSED", "so_error ECONNREFUSED", "reset ECONNRESET", "write ECONNRESET",
            "write EPIPE", "eof b''", "loop reset ECONNRESET", "poll eof b''"]


def _start(tmp_path, tracer: str):
    program = tmp_path / "teardowns.py"
    program.write_text(PROGRAM)
    bundle = tmp_path / f"{tracer}.pcapng"
    return bundle, subprocess.Popen([sys.executable, "-m", "tcpteardown", "record", "--calls", tracer, "-o",
                                     str(bundle), "--", sys.executable, str(program)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(bundle, record: subprocess.Popen):
    stdout, stderr = record.communicate(timeout=180)
    assert record.returncode == 0, stderr
    assert stdout.split("\n")[:len(EXPECTED)] == EXPECTED, stdout
    explained = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", "--json", str(bundle)],
                               capture_output=True, text=True, timeout=120)
    assert explained.returncode == 0, explained.stderr
    return load_recording(bundle), json.loads(explained.stdout), stderr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Both tracers' records of PROGRAM, and a third (eBPF) record of a program that
    hangs until Ctrl-C, all started at once (each on its own ephemeral ports, kept
    apart by record itself): the module pays for one bpftrace start-up, not three
    runs in a row."""
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    from test_lifecycle import _start_record
    from tcpteardown.capture.ebpf_calls import unavailable

    why_not = unavailable()
    if why_not:
        pytest.skip(f"record --calls ebpf: {why_not}")
    started = {tracer: _start(tmp_path_factory.mktemp(tracer), tracer) for tracer in ("strace", "ebpf")}
    hanging = None
    try:
        hanging = _start_record(tmp_path_factory.mktemp("hang"), "--calls", "ebpf")
        yield {tracer: _finish(*started[tracer]) for tracer in started}, hanging
    finally:
        records = [record for _, record in started.values()] + ([hanging[0]] if hanging else [])
        for record in records:  # a failure, or the Ctrl-C test not run: stopped as Ctrl-C would
            if record.poll() is None:
                record.terminate()
                record.communicate(timeout=60)


@pytest.fixture(scope="module")
def both(recorded):
    return recorded[0]


def _story(found: dict) -> list[tuple]:
    """The links without what differs between two runs (ports, frame numbers, times, texts);
    with the event loop's wake-up (which wait told of the cause) where there was one."""
    return [(link["call"]["op"], link["call"]["errno"], link["cause"]["kind"], link["cause"]["flags"],
             link["rule"], link["cause"]["reason"], (link["wakeup"] or {}).get("op")) for link in found["links"]]


def test_both_tracers_give_the_same_links(both):
    strace, ebpf = _story(both["strace"][1]), _story(both["ebpf"][1])
    assert strace == ebpf, (both["strace"][2], both["ebpf"][2])  # what each record said
    errnos = [errno for _, errno, *_ in strace]
    for expected in ("ECONNREFUSED", "ECONNRESET", "EPIPE", "EOF"):
        assert expected in errnos, strace
    assert errnos.count("ECONNREFUSED") == 2  # the blocking connect and the SO_ERROR one
    # the event loops' wake-ups: select told of the refusal, epoll of the reset, poll of the FIN
    assert [wakeup for *_, wakeup in strace if wakeup] == ["select", "epoll_wait", "poll"], strace
    for tracer in both:
        assert not both[tracer][1]["unlinked"], both[tracer][1]["unlinked"]


@pytest.mark.parametrize("tracer", ["strace", "ebpf"])
def test_each_cause_is_a_packet_of_the_calls_own_connection(both, tracer):
    recording, found, _ = both[tracer]
    frames = {s.frame: s for s in recording.segments}
    for link in found["links"]:
        call, cause = link["call"], link["cause"]
        assert call["source"] == tracer
        if cause["kind"] in ("rst", "fin"):
            segment = frames[cause["frame"]]
            assert {str(segment.src), str(segment.dst)} == {call["local"], call["remote"]}, link


def test_ebpf_calls_carry_both_ends_names_and_cost(both):
    recording, _, said = both["ebpf"]
    strace_recording = both["strace"][0]
    calls = [c for c in recording.calls if c.source == "ebpf"]
    assert calls and all(c.where.startswith("bpftrace:") for c in calls)
    assert all(c.local is not None and c.remote is not None for c in calls if c.op != "close" or c.fd != 3)
    assert {c.role for c in calls} == {c.role for c in strace_recording.calls if c.source == "strace"}
    assert all(c.errno is None or c.errno.isupper() for c in calls)  # names, never numbers
    linger = [c for c in calls if c.op == "setsockopt"]
    assert len(linger) == 2 and all("l_onoff=1, l_linger=0" in call.text for call in linger)
    extra = dict(recording.metadata.extra)
    assert extra["time_stopped"].startswith("none")
    waits = [c for c in calls if c.is_readiness]
    assert {c.op for c in waits} == {"select", "epoll_wait", "poll"} and all(c.local and c.events for c in waits)
    assert int(extra["traced_syscalls"]) == len(calls) - len(waits) and extra["calls_lost_events"] == "0"
    assert "cost: traced syscalls" in said
    assert float(extra["calls_attach_seconds"]) > 0 and float(extra["calls_stop_seconds"]) >= 0
    # the calls' clock, proved against the packets: every connect's SYN inside its connect()
    assert extra["calls_clock_check"].startswith("checked against "), extra["calls_clock_check"]
    assert "no single clock shift" not in extra["calls_clock_check"]
    assert "calls' clock: checked against" in said
    # the ebpf and the strace run saw the same failing calls, op for op
    failing = lambda rec, source: [(c.op, c.errno) for c in rec.calls if c.source == source and c.failed]  # noqa: E731
    assert failing(recording, "ebpf") == failing(strace_recording, "strace")


@pytest.mark.needs_capture
def test_ctrl_c_under_ebpf_keeps_the_recording_and_leaves_no_bpftrace(recorded):
    from leftovers import processes_mentioning
    from test_lifecycle import _alive, _instances_of, _stop_with, _workdir_of

    record, program_pid, bundle = recorded[1]
    workdir = _workdir_of(record.pid)
    stderr = _stop_with(record, signal.SIGINT)
    assert record.returncode == 130, stderr
    assert not _alive(program_pid)
    # bpftrace's command line holds its script's path in record's temporary folder
    assert not processes_mentioning(str(workdir)), "bpftrace or tcpdump left running"
    assert not _instances_of(record.pid)()
    recording = load_recording(bundle)
    assert {"connect", "accept"} <= {call.op for call in recording.calls if call.source == "ebpf"}
    assert any(s.is_syn for s in recording.segments)


def test_a_bad_bpftrace_line_is_a_problem_naming_its_line_never_an_exception():
    from tcpteardown.formats.bpftrace_calls import parse_bpftrace

    good = "C 7 7 100 200 recvfrom 4 -104 ECONNRESET 99 127.0.0.1 5000 127.0.0.1 80 -"
    found = parse_bpftrace(["ready 1", "C 7 7 cut short", good, "garbage", "Lost 3 events", "clock 1000 5"])
    assert [(c.op, c.errno, c.start_ns, str(c.local), str(c.remote)) for c in found.calls] == \
        [("recvfrom", "ECONNRESET", 1100, "127.0.0.1:5000", "127.0.0.1:80")]
    assert any(p.startswith("bpftrace:2: expected 15 fields") for p in found.problems), found.problems
    assert any(p.startswith("bpftrace:4: expected a line") for p in found.problems), found.problems
    assert any("lost 3 events" in p for p in found.problems), found.problems


def _connect(start: int, end: int, port: int):
    from tcpteardown.model import Endpoint, SocketCall

    return SocketCall(role="p", op="connect", start_ns=start, end_ns=end, local=Endpoint("127.0.0.1", port),
                      remote=Endpoint("127.0.0.1", 80), source="ebpf")


def _syn(time_ns: int, port: int):
    from tcpteardown.model import Endpoint, Segment, TcpFlags

    return Segment(frame=1, time_ns=time_ns, src=Endpoint("127.0.0.1", port), dst=Endpoint("127.0.0.1", 80),
                   flags=TcpFlags.SYN, seq=0, ack=0, window=0, payload_len=0)


def test_the_calls_clock_is_checked_against_each_connects_syn_and_shifted_only_when_one_shift_fits_all():
    from tcpteardown.formats.bpftrace_calls import check_clock

    calls = [_connect(1_000, 2_000, 5001), _connect(10_000, 10_500, 5002)]
    assert check_clock(calls, [_syn(1_500, 5001), _syn(10_200, 5002)])[0] == 0
    # every SYN 300 ns after its call ended: the calls' clock is behind by 300..(the tightest) ns
    shift, said = check_clock(calls, [_syn(2_300, 5001), _syn(10_800, 5002)])
    assert shift == 300 and "behind" in said and "shifted" in said
    # no shift fits both: said, nothing moved
    shift, said = check_clock(calls, [_syn(2_300, 5001), _syn(9_000, 5002)])
    assert shift == 0 and "no single clock shift fits" in said
    assert check_clock(calls, []) == (0, None)


def test_btf_offsets_are_this_kernels():
    from tcpteardown.capture import btf
    from tcpteardown.capture.ebpf_calls import FIELDS

    if not btf.VMLINUX.exists():
        pytest.skip("the kernel has no BTF (/sys/kernel/btf/vmlinux)")
    found = btf.kernel_offsets(FIELDS)
    assert found is not None
    # struct sock_common opens with the address pair, then the port pair (include/net/sock.h)
    assert (found["sock.__sk_common.skc_daddr"], found["sock.__sk_common.skc_rcv_saddr"]) == (0, 4)
    assert (found["sock.__sk_common.skc_dport"], found["sock.__sk_common.skc_num"]) == (12, 14)
    offsets = btf.Offsets(btf.VMLINUX.read_bytes())
    with pytest.raises(KeyError):
        offsets.offset("sock", "no_such_field")
    assert btf.kernel_offsets((("sock", "sk_protocol", "uint64"),)) is None  # not the size the script reads


def test_an_ipv6_end_read_at_a_btf_offset_reads_back_as_its_address():
    import socket
    import struct

    from tcpteardown.formats.bpftrace_calls import parse_bpftrace

    def words(address: str) -> str:
        return "%016x%016x" % struct.unpack("<QQ", socket.inet_pton(socket.AF_INET6, address))

    line = f"C 7 7 100 200 recvfrom 4 -104 ECONNRESET 99 {words('::1')} 5000 {words('::ffff:10.0.0.1')} 80 -"
    call, = parse_bpftrace([line, "clock 0 0"]).calls
    # a mapped IPv4 peer is the IPv4 end its packets carry (formats/strace._endpoint, as for strace)
    assert (str(call.local), str(call.remote)) == ("[::1]:5000", "10.0.0.1:80")


def test_a_script_bpftrace_refuses_is_said_and_the_program_never_runs_untraced(tmp_path, monkeypatch):
    from tcpteardown.capture import ebpf_calls
    from tcpteardown.errors import UserError

    if ebpf_calls.unavailable():
        pytest.skip(f"record --calls ebpf: {ebpf_calls.unavailable()}")
    monkeypatch.setattr(ebpf_calls, "script", lambda *args, **kwargs: "BEGIN { printf(\"ready\\n\") \n")
    ran = tmp_path / "ran"
    with pytest.raises(UserError, match=r"bpftrace did not start \(.*ERROR.*\); try --calls strace"):
        ebpf_calls.run_traced(tmp_path / "bpftrace.log", ["touch", str(ran)])
    assert not ran.exists()


def test_events_bpftrace_loses_are_counted_from_its_own_lost_lines(tmp_path):
    """A real bpftrace with a one-page ring buffer, flooded: its "Lost N events"
    lines are what the parser and record's cost count (never a silent gap)."""
    from tcpteardown.capture.ebpf_calls import unavailable
    from tcpteardown.commands.record import tracing_cost
    from tcpteardown.formats.bpftrace_calls import read_bpftrace_file

    if unavailable():
        pytest.skip(f"record --calls ebpf: {unavailable()}")
    script = tmp_path / "flood.bt"
    script.write_text('BEGIN { printf("ready 1\\n"); }\n'
                      'tracepoint:raw_syscalls:sys_exit /pid == $1/ { printf("F %d %d\\n", tid, tid); }\n')
    log = tmp_path / "bpftrace.log"
    flood = subprocess.Popen(["sh", "-c", "read go; exec dd if=/dev/zero of=/dev/null bs=1 count=60000"],
                             stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with open(log, "wb") as out:
        tracer = subprocess.Popen(["bpftrace", "-B", "line", str(script), str(flood.pid)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env={**os.environ, "BPFTRACE_PERF_RB_PAGES": "1"})
        try:
            for line in tracer.stdout:  # attached: its ready line
                out.write(line)
                if line.startswith(b"ready"):
                    break
            flood.communicate(b"go\n", timeout=60)
            while tracer.poll() is None:  # bpftrace can miss one SIGINT (capture/ebpf_calls._stop)
                tracer.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    tracer.wait(timeout=0.25)
            out.write(tracer.stdout.read())
        finally:
            for process in (flood, tracer):
                if process.poll() is None:
                    process.kill()
                    process.wait()
            tracer.stdout.close()
    said = [line for line in log.read_text().splitlines() if line.startswith("Lost ")]
    if not said:  # seen on a quiet CI machine: bpftrace drained the page as fast as dd filled it
        pytest.skip("bpftrace kept up with dd through a one-page buffer: no lost events to count this run")
    lost = sum(int(line.split()[1]) for line in said)
    assert any(f"bpftrace lost {lost} events" in problem for problem in read_bpftrace_file(log).problems)
    assert dict(tracing_cost(log, None, "ebpf"))["calls_lost_events"] == str(lost)


@pytest.mark.parametrize("raw_enter, offsets", [(True, True), (True, False), (False, True), (False, False)])
def test_every_form_of_the_script_clears_only_maps_it_fills(raw_enter, offsets):
    """bpftrace refuses a script that names a map it never assigns (the per-syscall
    fallback once cleared the wake-up maps only the raw enter probe fills)."""
    import re

    from tcpteardown.capture.ebpf_calls import SYSCALLS, script

    text = script(set(SYSCALLS), raw_enter=raw_enter, offsets=offsets)
    filled = set(re.findall(r"@(\w+)\[[^\]]*\] = ", text))
    cleared = set(re.findall(r"clear\(@(\w+)\)", text))
    assert cleared and cleared <= filled, cleared - filled
    assert set(re.findall(r"@(\w+)\[", text)) <= filled  # every map read is one the script fills
