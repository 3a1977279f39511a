"""One failure, one paragraph (issue 29): a real program that logs its own
error, run under `record`, explained with the same log given again by --log;
the merging rules on small recordings; and each timestamp form read from a
real program that prints it."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import tool_or_skip
from tcpteardown.analysis.correlate import correlate
from tcpteardown.formats.applog import parse_log
from tcpteardown.model import Endpoint, Recording, Segment, SocketCall, TcpFlags

# Its one read fails with ECONNRESET; it logs that in C's ctime form (which
# carries its year) to stderr and to the log file named by argv[1].
CTIME_PROGRAM = """
import select, socket, struct, sys, time
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()
client.sendall(b"never read"); select.select([server], [], [], 5)
server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); server.close()
try:
    client.recv(10)
except OSError as exc:
    line = f"{time.ctime()} client: read failed: {exc}"
    print(line, file=sys.stderr, flush=True)
    with open(sys.argv[1], "a") as log:
        log.write(line + "\\n")
"""


def _cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "tcpteardown", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(bundle, app.log, text of explain --log, its --json), recorded once."""
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    where = tmp_path_factory.mktemp("sources")
    program, bundle, log = where / "program.py", where / "b.pcapng", where / "app.log"
    program.write_text(CTIME_PROGRAM)
    done = _cli("record", "--calls", "strace", "-o", bundle, "--", sys.executable, program, log)
    assert done.returncode == 0, done.stderr
    text = _cli("explain", bundle, "--log", log, "--tz", "UTC")
    data = _cli("explain", bundle, "--log", log, "--tz", "UTC", "--json")
    assert text.returncode == 0 and data.returncode == 0, text.stderr + data.stderr
    return bundle, log, text, json.loads(data.stdout)


@pytest.mark.needs_capture
def test_one_failing_read_is_one_paragraph_citing_every_source(recorded):
    bundle, log, text, _ = recorded
    paragraphs = [p for p in text.stdout.split("\n\n") if "ECONNRESET" in p]
    assert len(paragraphs) == 1, text.stdout
    told = paragraphs[0]
    # the syscall's name and time (strace: microseconds), the process by command and pid
    assert re.match(r"\d\d:\d\d:\d\d\.\d{6} python[\d.]* \(pid \d+\) recvfrom\(\) failed with ECONNRESET", told), told
    assert "Seen by 3 sources" in told
    assert re.search(r"strace, line \d+", told)
    assert "the program's stderr (kept by record), line 1" in told and f"{log}:1" in told
    assert '"client: read failed: [Errno 104] Connection reset by peer"' in told  # the program's own words, once
    assert told.count("client: read failed") == 1
    assert not re.search(r"\b1\d{9}\.\d", text.stdout)  # no raw epoch anywhere
    assert "carry no year" not in text.stderr  # ctime carries its year


@pytest.mark.needs_capture
def test_the_json_has_one_link_per_failure_with_its_sources(recorded):
    _bundle, log, _text, data = recorded
    links = [link for link in data["links"] if link["call"]["errno"] == "ECONNRESET"]
    assert len(links) == 1
    link = links[0]
    assert link["call"]["source"] == "strace" and link["call"]["op"] == "recvfrom"
    assert re.fullmatch(r"python[\d.]* \(pid \d+\)", link["call"]["process"])
    kinds = sorted((s["source"], (s["where"] or "").rpartition(":")[0]) for s in link["sources"])
    assert kinds == [("log", str(log)), ("log", "the program's stderr"), ("strace", "strace")]
    assert all(isinstance(s["time"], float) for s in link["sources"])
    assert not data["unlinked"]


# -- the merging rules, on small recordings --------------------------------------

C, S = Endpoint("127.0.0.1", 50000), Endpoint("127.0.0.1", 8080)
T0 = 1_796_583_961_000_000_000
US = 1000


def _seg(frame, us, src, dst, flags, seq=1, ack=0):
    return Segment(frame, T0 + us * US, src, dst, TcpFlags.parse(flags), seq, ack, 65535, 0)


def _handshake(client, first, start):
    return [_seg(first, start, client, S, "SYN", 1000), _seg(first + 1, start + 1, S, client, "SYN,ACK", 5000, 1001),
            _seg(first + 2, start + 2, client, S, "ACK", 1001, 5001)]


def _strace_read(us, local, fd=3):
    return SocketCall("app", "read", T0 + us * US, T0 + (us + 1) * US, -1, "ECONNRESET", 100, fd, local, S,
                      source="strace", where=f"strace.log:{us}", text="read(...) = -1 ECONNRESET")


def _log_line(path, line, us, words="read failed: [Errno 104] Connection reset by peer"):
    stamp = dt.datetime.fromtimestamp((T0 + us * US) / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return parse_log([f"{stamp} {words}"], path=path, tz="UTC").calls[0]


def test_the_same_line_kept_and_given_again_counts_once_without_strace():
    segs = _handshake(C, 1, 0) + [_seg(4, 10, S, C, "RST", 5001)]
    kept, given = _log_line("the program's stderr", 1, 40), _log_line("app.log", 7, 41)
    links = correlate(Recording(segments=tuple(segs), calls=(kept, given)))
    assert len(links) == 1 and {c.where for c in links[0].sources} == {"the program's stderr:1", "app.log:1"}


def test_two_different_failures_close_together_stay_two():
    C2 = Endpoint("127.0.0.1", 50001)
    segs = sorted(_handshake(C, 1, 0) + _handshake(C2, 4, 1) + [_seg(7, 10, S, C, "RST", 5001),
                                                              _seg(8, 11, S, C2, "RST", 5001)],
                  key=lambda s: s.time_ns)
    calls = (_strace_read(20, C), _strace_read(21, C2, fd=4))
    links = correlate(Recording(segments=tuple(segs), calls=calls))
    assert len(links) == 2 and [l.cause.frame for l in links] == [7, 8] and not any(l.seen_by for l in links)


def test_two_lines_of_one_file_are_two_reports():
    segs = _handshake(C, 1, 0) + [_seg(4, 10, S, C, "RST", 5001)]
    calls = (_strace_read(20, C), _log_line("app.log", 1, 30), _log_line("app.log", 2, 31))
    links = correlate(Recording(segments=tuple(segs), calls=calls))
    assert len(links) == 2 and len(links[0].seen_by) == 1  # the nearer line joins the syscall; the other stays


# -- timestamp forms, each printed by a real program ------------------------------

ERROR = " client: read failed: [Errno 104] Connection reset by peer"


def _printed(argv) -> tuple[str, int, int]:
    """What `argv` printed (its first line), and the ns window around its run."""
    before = dt.datetime.now(dt.timezone.utc).timestamp()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    after = dt.datetime.now(dt.timezone.utc).timestamp()
    line = (out.stdout or out.stderr).splitlines()[0]
    return line, int(before) * 1_000_000_000 - 1_000_000_000, int(after * 1e9) + 1_000_000_000


PY = sys.executable
FORMS = {
    "ctime": [PY, "-c", "import time; print(time.ctime())"],
    "asctime": [PY, "-c", "import time; print(time.asctime())"],
    "python-logging": [PY, "-c", "import logging; logging.basicConfig(format='%(asctime)s %(message)s'); "
                                 "logging.warning('x')"],
    "date": ["date"],
    "date-utc": ["date", "-u"],
    "rfc2822": ["date", "-R"],
    "rfc3339-ns": ["date", "--rfc-3339=ns"],
    "iso8601-seconds": ["date", "-Iseconds"],
    "iso8601-no-zone": ["date", "+%Y-%m-%dT%H:%M:%S"],
    "epoch-fraction": ["date", "+%s.%N"],
    "epoch-millis": ["date", "+%s%3N"],
    "node-iso": ["node", "-e", "console.log(new Date().toISOString())"],
    "node-utc": ["node", "-e", "console.log(new Date().toUTCString())"],
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_timestamp_form_from_a_real_program(form, monkeypatch):
    argv = FORMS[form]
    if argv[0] != PY:
        tool_or_skip(argv[0])
    monkeypatch.setenv("TZ", "UTC")
    line, low, high = _printed(argv)
    result = parse_log([line + ERROR], path="<log>", tz="UTC")
    assert len(result.calls) == 1, (line, result.problems)
    assert low <= result.calls[0].start_ns <= high, (line, result.calls[0].start_ns, low, high)
    assert not any("carry no year" in p for p in result.problems), (line, result.problems)


def test_go_log_default_form(tmp_path):
    go = tool_or_skip("go")
    (tmp_path / "main.go").write_text('package main\nimport "log"\nfunc main() { log.Print("x") }\n')
    (tmp_path / "go.mod").write_text("module stamp\ngo 1.19\n")
    built = subprocess.run([go, "build", "-o", str(tmp_path / "stamp"), "."], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "CGO_ENABLED": "0",
                                                         "TZ": "UTC"})
    assert built.returncode == 0, built.stderr
    line, low, high = _printed([str(tmp_path / "stamp")])
    assert re.match(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d x", line)
    result = parse_log([line + ERROR], tz="UTC")
    assert len(result.calls) == 1 and low <= result.calls[0].start_ns <= high


def test_java_util_logging_default_form(tmp_path):
    java = tool_or_skip("java")
    source = tmp_path / "Stamp.java"
    source.write_text("public class Stamp { public static void main(String[] a) {"
                      " java.util.logging.Logger.getLogger(\"t\").warning(\"x\"); } }\n")
    line, low, high = _printed([java, "-Duser.timezone=UTC", "-Duser.language=en", str(source)])
    assert re.match(r"[A-Z][a-z]{2} \d\d, \d{4} \d\d?:\d\d:\d\d [AP]M", line), line
    result = parse_log([line + ERROR], tz="UTC")
    assert len(result.calls) == 1 and low <= result.calls[0].start_ns <= high


def test_syslog_alone_warrants_the_year_warning():
    line = "Dec  7 04:05:13 host app[1]:" + ERROR  # journald's short form, syslog's: no year
    result = parse_log([line], path="<log>", tz="UTC", year=None)
    assert len(result.calls) == 1 and any("carry no year" in p for p in result.problems)
