"""Never lose a recording, never leave anything behind: signals, SIGKILL, big recordings.

Every test runs the real CLI as a separate process, as a user (or systemd,
or the OOM killer) would, and then looks at /proc, tracefs and the disk.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tool_or_skip
from tcpteardown.formats.bundle import load_recording
from leftovers import processes_mentioning, record_workdir
from test_record import HANGING_PROGRAM

TIMEOUT = 120
TRACING = Path("/sys/kernel/tracing/instances")


def _start_record(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, int, Path]:
    """`tcpteardown record` of the hanging program, once the program runs: (process, program pid, bundle)."""
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    program = tmp_path / "hang.py"
    program.write_text(HANGING_PROGRAM)
    bundle = tmp_path / "hang.pcapng"
    record = subprocess.Popen([sys.executable, "-m", "tcpteardown", "record", "--calls", "strace", *extra, "-o", str(bundle), "--",
                               sys.executable, str(program)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([record.stdout], [], [], 60)
    if not ready:
        record.kill()
        pytest.fail(f"the recorded program never started: {record.communicate()[1]}")
    return record, int(record.stdout.readline()), bundle


def _stop_with(process: subprocess.Popen, signum: int) -> str:
    """Send `signum`, wait for the process to finish by itself; its stderr. Never leaves it running."""
    try:
        process.send_signal(signum)
        return process.communicate(timeout=TIMEOUT)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _gone_within(seconds: float, *checks) -> list[str]:
    """Poll until every check returns nothing (the event), or the deadline; what is left."""
    deadline = time.monotonic() + seconds
    while True:
        left = [leftover for check in checks for leftover in check()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)  # polling /proc for the reaper's work to finish (bounded by the deadline)


def _alive(pid: int) -> list[str]:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return []
    return [] if state == "Z" else [f"process {pid} ({state})"]


def _instances_of(pid: int):
    def check() -> list[str]:
        if not TRACING.is_dir():
            return []
        return [p.name for p in TRACING.iterdir() if p.name.startswith(f"tcpteardown-{pid}-")]
    return check


def _workdir_of(record_pid: int) -> Path:
    """This record's temporary folder (not another worker's record)."""
    workdir = record_workdir(record_pid)
    if workdir is None:
        pytest.fail("no tcpdump or strace of the record run found")
    return workdir


@pytest.mark.needs_capture
def test_sigterm_keeps_the_recording_like_ctrl_c(tmp_path):
    record, program_pid, bundle = _start_record(tmp_path)
    workdir = _workdir_of(record.pid)
    stderr = _stop_with(record, signal.SIGTERM)  # as systemd, kill or timeout would
    assert record.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted: SIGTERM" in stderr
    assert not _alive(program_pid)
    assert not processes_mentioning(str(workdir)), "strace or tcpdump left running"
    assert not _instances_of(record.pid)()
    recording = load_recording(bundle)
    assert any(s.is_syn for s in recording.segments)
    assert {"connect", "accept"} <= {call.op for call in recording.calls}


@pytest.mark.needs_capture
def test_sigkill_leaves_no_tcpdump_strace_program_instance_or_folder(tmp_path):
    record, program_pid, _ = _start_record(tmp_path)
    try:
        workdir = _workdir_of(record.pid)
        assert workdir.is_dir()
        if TRACING.is_dir() and os.geteuid() == 0:
            assert _instances_of(record.pid)(), "the witness should be running before the kill"
        record.kill()  # SIGKILL: no code of ours runs
        record.communicate(timeout=TIMEOUT)
        # a second on a quiet machine; the bound allows for a loaded one (two test workers)
        left = _gone_within(3.0, lambda: processes_mentioning(str(workdir)), lambda: _alive(program_pid),
                            _instances_of(record.pid), lambda: [str(workdir)] if workdir.exists() else [])
    finally:
        if record.poll() is None:
            record.kill()
            record.communicate()
    assert not left, f"outlived the SIGKILLed record by more than 3 s: {left}"


MANY_REFUSED = """
import socket, sys
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); port = listener.getsockname()[1]
listener.close()  # nobody listens: every connect is refused by an RST
refused = 0
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        refused += 1
    s.close()
print(refused, port)
"""


PILED_UP = """
import socket, sys
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()
client.shutdown(socket.SHUT_WR)  # our FIN; every send after it fails at once, with no packet
server.recv(1)  # the FIN has arrived (0 bytes): nothing more travels until the close below
failed = 0
for _ in range(int(sys.argv[1])):
    try:
        client.send(b"x")
    except BrokenPipeError:
        failed += 1
print(failed)
"""


@pytest.mark.needs_capture
@pytest.mark.slow
def test_failing_calls_piled_on_one_packet_outgrow_one_pcapng_option(tmp_path):
    """600 sends fail with EPIPE between two packets: their comments sit on the next
    packet, more than 65,535 bytes (what one pcapng option can hold), as several
    comment options (formats.pcapng_write), none dropped; tshark reads the bundle
    cleanly. (It replaced 3,000 refused connects, 170 s under strace -yy: issue 30.)"""
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    tshark = tool_or_skip("tshark")
    program = tmp_path / "piled.py"
    program.write_text(PILED_UP)
    bundle = tmp_path / "piled.pcapng"
    result = subprocess.run([sys.executable, "-m", "tcpteardown", "record", "--calls", "strace", "-o", str(bundle), "--",
                             sys.executable, str(program), "600"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "600"
    recording = load_recording(bundle)
    assert sum(1 for c in recording.calls if c.op in ("send", "sendto") and c.errno == "EPIPE") == 600
    read = subprocess.run([tshark, "-r", str(bundle), "-Y", "frame.comment", "-T", "fields",
                           "-E", "occurrence=a", "-E", "aggregator=\x01", "-e", "frame.number", "-e", "frame.comment"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    noise = [line for line in read.stderr.splitlines() if "Running as user" not in line and line.strip()]
    assert read.returncode == 0 and not noise, read.stderr
    piled = max(read.stdout.splitlines(), key=len)
    frame, comments = piled.split("\t", 1)
    assert len(comments.encode()) > 65_535, f"frame {frame}: {len(comments)} bytes of comments"
    assert comments.count("\x01") >= 1  # more than one comment option on that packet
    assert read.stdout.count("-> EPIPE") == 600  # every call's comment, none lost in the split


@pytest.mark.needs_capture
def test_an_unwritable_output_keeps_the_raw_recording(tmp_path):
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output's folder should be")
    program = tmp_path / "one.py"
    program.write_text(MANY_REFUSED)
    output = blocker / "out.pcapng"
    result = subprocess.run([sys.executable, "-m", "tcpteardown", "record", "--calls", "strace", "-o", str(output), "--",
                             sys.executable, str(program), "3"], capture_output=True, text=True,
                            timeout=TIMEOUT, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write {output}" in result.stderr
    kept = Path(result.stderr.split("what was recorded is kept in ")[1].split(":")[0])
    try:
        assert (kept / "strace.log").read_text().count("ECONNREFUSED") == 3
        port = int(result.stdout.split()[1])
        recording = load_recording(kept / "capture.pcap")  # all of lo: other programs' traffic too
        assert sum(1 for s in recording.segments if s.is_rst and s.src.port == port) == 3
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


@pytest.mark.needs_capture
@pytest.mark.needs_tracefs
def test_sigterm_during_a_run_removes_the_tracefs_instance(tmp_path):
    """connect-timeout waits ~1.2 s for its SYNs: SIGTERM it while the witness records."""
    run = subprocess.Popen([sys.executable, "-m", "tcpteardown", "run", "connect-timeout"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = _gone_within(60, lambda: [] if _instances_of(run.pid)() or run.poll() is not None
                               else ["waiting"])
        assert not started and run.poll() is None, "the run never started its witness"
    finally:
        stderr = _stop_with(run, signal.SIGTERM)
    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted (SIGTERM)" in stderr
    assert not _instances_of(run.pid)()
