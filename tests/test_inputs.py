"""What a user may pass as an input: a device, a FIFO, a pipe, a UTF-16 log.

Each command runs as a separate process under a time limit and a memory cap
(RLIMIT_AS), as the hostile-input report ran them: the answer must be one
error line or a result, quickly, never a hang or unbounded memory.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from tcpteardown.formats.applog import read_log_file
from tcpteardown.formats.inputs import FIFO_WAIT_SECONDS

STORED = REPO / "captures" / "linux" / "reset-by-peer.pcapng"
MEMORY_CAP = 2 << 30  # bytes of address space: far above what a command needs, far below /dev/zero's appetite


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def tcpteardown(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tcpteardown", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_capped)


@pytest.mark.parametrize("args", [
    ("census", "/dev/zero"), ("explain", "/dev/zero"), ("plot", "/dev/zero", "-o", "{tmp}/x.png"),
    ("diff", "/dev/zero", str(STORED)),
    ("explain", str(STORED), "--strace", "/dev/zero"), ("explain", str(STORED), "--log", "/dev/zero"),
    ("census", "{tmp}"),
])
def test_a_device_or_directory_is_refused_at_once(args, tmp_path):
    result = tcpteardown(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "is a character device, not a file" in result.stderr or "is a directory" in result.stderr


def test_a_fifo_nobody_writes_to_is_an_error_not_a_hang(tmp_path, monkeypatch):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("TCPTEARDOWN_FIFO_WAIT_S", "0.5")  # the default 5 s, shortened as a user may set it
    started = time.monotonic()
    result = tcpteardown("census", str(fifo), timeout=FIFO_WAIT_SECONDS + 30)
    assert result.returncode == 2, result.stderr
    assert "no program wrote to within 0.5 s" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert time.monotonic() - started < FIFO_WAIT_SECONDS  # it waited what it was told, not the default


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf"])
def test_a_fifo_wait_that_is_not_seconds_is_a_user_error(tmp_path, monkeypatch, capsys, value):
    from tcpteardown.cli import main

    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("TCPTEARDOWN_FIFO_WAIT_S", value)
    assert main(["census", str(fifo)]) == 2
    err = capsys.readouterr().err
    assert f"TCPTEARDOWN_FIFO_WAIT_S={value!r}" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["census", "explain"])
def test_a_fifo_is_read_once_and_its_writer_finishes(command, tmp_path):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    outcome = {}

    def write():  # a writer like `tcpdump -w FIFO`: opens, writes everything, closes
        try:
            with open(fifo, "wb") as out:
                out.write(STORED.read_bytes())
            outcome["ok"] = True
        except BrokenPipeError:
            outcome["ok"] = False

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = tcpteardown(command, str(fifo))
    finally:
        if writer.is_alive():  # unblock a writer still waiting for a reader
            with open(fifo, "rb") as drain:
                drain.read()
        writer.join(30)
    assert outcome.get("ok") is True, "the writer lost its reader (SIGPIPE/EPIPE)"
    assert result.returncode == 0, result.stderr
    direct = tcpteardown(command, str(STORED))
    assert result.stdout.replace(str(fifo), "X") == direct.stdout.replace(str(STORED), "X")


def test_a_pipe_of_garbage_stops_at_its_first_bytes(tmp_path):
    zeros = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)
    try:
        result = subprocess.run([sys.executable, "-m", "tcpteardown", "census", "/dev/stdin"], stdin=zeros.stdout,
                                capture_output=True, text=True, timeout=60, preexec_fn=_capped)
    finally:
        zeros.kill()
        zeros.wait()
        zeros.stdout.close()
    assert result.returncode == 2, result.stderr
    assert "not a pcap or pcapng file" in result.stderr


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_a_log_with_a_byte_order_mark_is_read(encoding, tmp_path):
    lines = ["2024/05/01 17:26:02.140166 write tcp 127.0.0.1:50389->127.0.0.1:8080: write: broken pipe",
             "2024/05/01 17:26:03.140166 read tcp [::1]:50389->[::1]:8080: read: connection reset by peer"]
    path = tmp_path / "app.log"
    text = "\r\n".join(lines) + "\r\n"  # as Windows tools write it
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    result = read_log_file(path, tz="UTC")
    assert [(c.op, c.errno) for c in result.calls] == [("write", "EPIPE"), ("read", "ECONNRESET")]
