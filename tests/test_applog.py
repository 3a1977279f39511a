"""Application-log importer: timestamps, multi-line records, every runtime's
phrasing; then real programs (Go's log package, Python's logging, curl)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tcpteardown.errors import UserError
from tcpteardown.formats.applog import parse_log, parse_tz, read_log_file
from tcpteardown.model import Endpoint
from conftest import tool_or_skip

PROGRAMS = Path(__file__).parent / "programs" / "teardowns"
MAY1 = 1_714_582_800_000_000_000  # 2024-05-01T17:00:00Z


def ns(minute_second: str, frac: int = 0) -> int:
    minute, second = map(int, minute_second.split(":"))
    return MAY1 + (minute * 60 + second) * 10**9 + frac


def one(line: str, **options):
    result = parse_log([line], path="app.log", **options)
    assert len(result.calls) == 1, (line, result)
    return result.calls[0], result.problems


# (line, time ns, op, outcome, local, remote)
LINES = [
    ("2024/05/01 17:26:02.140166 write tcp 127.0.0.1:50389->127.0.0.1:8080: write: broken pipe",
     ns("26:02", 140_166_000), "write", "EPIPE", "127.0.0.1:50389", "127.0.0.1:8080"),
    ("2024/05/01 17:26:02.140166 read tcp [::1]:50389->[::1]:8080: read: connection reset by peer",
     ns("26:02", 140_166_000), "read", "ECONNRESET", "[::1]:50389", "[::1]:8080"),
    ("2024/05/01 17:26:02 dial tcp 10.0.0.1:8080: connect: connection refused",
     ns("26:02"), "connect", "ECONNREFUSED", None, "10.0.0.1:8080"),
    ("2024/05/01 17:26:02.000001 main.go:42: read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection",
     ns("26:02", 1000), "read", "EBADF", "127.0.0.1:1", "127.0.0.1:2"),
    ("2024/05/01 17:26:02.5 read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout",
     ns("26:02", 500_000_000), "read", "ETIMEDOUT", "127.0.0.1:1", "127.0.0.1:2"),
    ("2024/05/01 17:26:02.140166 EOF", ns("26:02", 140_166_000), "recv", "EOF", None, None),
    ('time="2024-05-01T17:26:02Z" level=error msg="Get \\"http://x/\\": EOF"', ns("26:02"), "recv", "EOF", None, None),
    ("2024-05-01T19:26:02.140166+02:00 ConnectionResetError: [Errno 104] Connection reset by peer",
     ns("26:02", 140_166_000), "recv", "ECONNRESET", None, None),
    ("2024-05-01 17:26:02,140 ERROR BrokenPipeError: [Errno 32] Broken pipe",
     ns("26:02", 140_000_000), "send", "EPIPE", None, None),
    ('{"ts":"2024-05-01T17:26:02.123456789Z","msg":"Error: connect ECONNREFUSED 127.0.0.1:8080"}',
     ns("26:02", 123_456_789), "connect", "ECONNREFUSED", None, "127.0.0.1:8080"),
    ("2024-05-01T17:26:02.000-0000 java.net.SocketTimeoutException: Read timed out",
     ns("26:02"), "read", "ETIMEDOUT", None, None),
    ("2024-05-01T17:26:02Z curl: (56) Recv failure: Connection reset by peer", ns("26:02"), "recv", "ECONNRESET",
     None, None),
    ("2024-05-01 17:26:02 curl: (7) Failed to connect to ::1 port 8080 after 0 ms: Couldn't connect to server",
     ns("26:02"), "connect", "ECONNREFUSED", None, "[::1]:8080"),
    ("2024/05/01 17:26:02 [error] 31#31: *1 recv() failed (104: Connection reset by peer) while reading upstream",
     ns("26:02"), "recv", "ECONNRESET", None, None),
    ("May  1 17:26:02 host app[123]: write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe",
     ns("26:02"), "write", "EPIPE", "127.0.0.1:1", "127.0.0.1:2"),
    ("E0501 17:26:02.140166   12345 proxy.go:88] read tcp 10.1.2.3:4->10.1.2.4:5: read: connection reset by peer",
     ns("26:02", 140_166_000), "read", "ECONNRESET", "10.1.2.3:4", "10.1.2.4:5"),
    ('127.0.0.1 - - [01/May/2024:19:26:02 +0200] "GET / HTTP/1.1" 502 157 curl: (52) Empty reply from server',
     ns("26:02"), "recv", "EOF", None, None),
    ('{"level":"error","ts":1714584362.140166,"msg":"write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe"}',
     ns("26:02", 140_166_000), "write", "EPIPE", "127.0.0.1:1", "127.0.0.1:2"),
]


@pytest.mark.parametrize("line, time_ns, op, outcome, local, remote", LINES)
def test_lines(line, time_ns, op, outcome, local, remote):
    call, _ = one(line, tz="UTC", year=2024)
    assert (call.start_ns, call.end_ns) == (time_ns, time_ns)
    assert (call.op, call.outcome, call.source, call.role, call.text) == (op, outcome, "log", "app", line)
    assert call.local == (Endpoint.parse(local) if local else None)
    assert call.remote == (Endpoint.parse(remote) if remote else None)
    assert call.result == (0 if outcome == "EOF" else -1)
    assert call.errno == (None if outcome == "EOF" else outcome)


@pytest.mark.parametrize("tz, offset_h", [("UTC", 0), ("+02:00", 2), ("-0700", -7), ("Europe/Berlin", 2),
                                          ("America/New_York", -4)])
def test_tz_for_lines_without_a_zone(tz, offset_h):
    call, problems = one("2024/05/01 17:26:02 write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe", tz=tz)
    assert call.start_ns == ns("26:02") - offset_h * 3600 * 10**9
    assert problems == ()


def test_zone_in_the_line_wins_and_missing_tz_is_said():
    call, problems = one("2024-05-01T17:26:02Z Error: read ECONNRESET", tz="+05:00")
    assert call.start_ns == ns("26:02") and problems == ()
    call, problems = one("2024-05-01 17:26:02 Error: read ECONNRESET")
    assert call.start_ns == ns("26:02")
    assert problems == ("app.log: times without a zone were read as UTC (give the zone with --tz, e.g. '+02:00' or 'Europe/Berlin')",)


def test_bad_tz_is_a_user_error():
    with pytest.raises(UserError, match="Mars/Olympus"):
        parse_tz("Mars/Olympus")
    assert parse_tz("Z").utcoffset(None).total_seconds() == 0


def test_syslog_year_from_parameter_mtime_or_now(tmp_path):
    path = tmp_path / "messages"
    path.write_text("Dec 31 23:59:59 host app: Error: read ECONNRESET\nJan  1 00:00:01 host app: Error: write EPIPE\n")
    stamp = 1_609_459_200  # 2021-01-01T00:00:00Z
    os.utime(path, (stamp, stamp))
    result = read_log_file(path, tz="UTC")
    first, second = result.calls
    assert first.start_ns == (stamp - 1) * 10**9  # written before the file's mtime: 2020-12-31
    assert second.start_ns == first.start_ns + 2 * 10**9
    assert any("year of the file's modification time" in problem for problem in result.problems)
    result = parse_log(path.read_text().splitlines(), tz="UTC", year=2020)
    assert result.calls[0].start_ns == (stamp - 1) * 10**9 and result.problems == ()


PYTHON_TRACEBACK = """\
2024-05-01 17:26:02,140 ERROR worker: request failed
Traceback (most recent call last):
  File "client.py", line 12, in <module>
    sock.sendall(b"x")
BrokenPipeError: [Errno 32] Broken pipe
2024-05-01 17:26:03,000 INFO worker: retrying
2024-05-01 17:26:04,000 ERROR worker: ConnectionResetError: [Errno 104] Connection reset by peer
Traceback (most recent call last):
  File "client.py", line 15, in <module>
    sock.recv(1)
ConnectionResetError: [Errno 104] Connection reset by peer
"""

JAVA_TRACE = """\
2024-05-01 17:26:05.250 ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet] : failed
org.springframework.web.client.ResourceAccessException: I/O error on GET request
	at org.springframework.web.client.RestTemplate.doExecute(RestTemplate.java:785)
Caused by: java.net.SocketException: Connection reset
	at java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:323)
	... 5 common frames omitted
"""


def test_multiline_records_python_and_java():
    lines = (PYTHON_TRACEBACK + JAVA_TRACE).splitlines()
    result = parse_log(lines, tz="UTC")
    assert result.problems == ()
    epipe, reset, java = result.calls
    assert (epipe.outcome, epipe.start_ns) == ("EPIPE", ns("26:02", 140_000_000))
    assert epipe.text == lines[0] + "\n" + lines[4]
    assert (reset.outcome, reset.start_ns, reset.text) == ("ECONNRESET", ns("26:04"), lines[6])  # told twice, one call
    assert (java.outcome, java.op, java.start_ns) == ("ECONNRESET", "read", ns("26:05", 250_000_000))
    assert java.text.endswith("Caused by: java.net.SocketException: Connection reset")


def test_problems_name_the_line_and_nothing_is_lost():
    lines = [
        "ConnectionRefusedError: [Errno 111] Connection refused",  # no timestamp anywhere before
        "2024-05-01 17:26:02 GET / 200",
        "2024-13-01 17:26:02 read tcp 1.2.3.4:5->6.7.8.9:10: read: connection reset by peer",
        "2024-05-01 17:26:03 read tcp 1.2.3.4:5->6.7.8.9:10: read: too many open files",
        "2024-05-01 17:26:04 write tcp 1.2.3.4:5->6.7.8.9:10: write: broken pipe",
    ]
    result = parse_log(lines, path="svc.log", tz="UTC")
    assert [call.outcome for call in result.calls] == ["EPIPE"]
    assert [problem.split(": ", 1)[0] for problem in result.problems] == ["svc.log:1", "svc.log:3", "svc.log:4"]
    assert "without a timestamp" in result.problems[0]
    assert "unreadable timestamp" in result.problems[1]
    assert "names no errno" in result.problems[2]


def test_quiet_lines_are_skipped_silently():
    lines = ["2024-05-01 17:26:02 GET /index.html 200", "", "   at foo", "2024/05/01 17:26:02.1 step eof",
             "plain text with no time"]
    assert parse_log(lines, tz="UTC") == parse_log([], tz="UTC")


# -- real programs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def go_teardowns(tmp_path_factory) -> Path:
    from test_strace import build_go_teardowns

    return build_go_teardowns(tmp_path_factory)


def test_go_log_package_output(go_teardowns):
    """Go's own log lines (log.LUTC | log.Lmicroseconds) for every failure."""
    done = subprocess.run([str(go_teardowns)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    result = parse_log(lines, path="teardowns.log", tz="UTC")
    assert result.problems == ()
    outcomes = [(call.outcome, call.op) for call in result.calls]
    assert outcomes == [("ECONNREFUSED", "connect"), ("ECONNRESET", "read"), ("EPIPE", "write"),
                        ("EOF", "recv"), ("EBADF", "read"), ("ETIMEDOUT", "read")]
    refused, reset, pipe, _, closed, timeout = result.calls
    assert refused.remote.host == "127.0.0.1" and refused.local is None
    for call in (reset, pipe, closed, timeout):
        assert call.local.host == call.remote.host == "127.0.0.1" and call.local != call.remote
    times = [call.start_ns for call in result.calls]
    assert times == sorted(times) and all(call.role == "teardowns" for call in result.calls)


PY_LOGGING = r"""
import logging, socket, struct
logging.basicConfig(format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
log = logging.getLogger("client")
gone = socket.socket(); gone.bind(("127.0.0.1", 0)); address = gone.getsockname(); gone.close()
try:
    socket.create_connection(address, timeout=5)
except OSError:
    log.exception("connect failed")
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()
client = socket.create_connection(server.getsockname(), timeout=5)
accepted, _ = server.accept()
accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); accepted.close()
try:
    client.recv(1)
except OSError as error:
    log.error("recv failed: %s: %s", type(error).__name__, error)
"""


def test_python_logging_output(tmp_path):
    done = subprocess.run([sys.executable, "-c", PY_LOGGING], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TZ": "UTC"})
    result = parse_log(done.stderr.splitlines(), tz="UTC")
    assert result.problems == ()
    assert [(call.outcome, call.op) for call in result.calls] == [("ECONNREFUSED", "connect"), ("ECONNRESET", "recv")]
    assert result.calls[0].text.splitlines()[-1] == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_curl_stderr_with_a_timestamp_prefix():
    curl = tool_or_skip("curl")
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        port = gone.getsockname()[1]
    done = subprocess.run([curl, "-sS", f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=30)
    (call,) = parse_log([f"May  1 17:26:02 host cron[1]: {done.stderr.strip()}"], tz="UTC", year=2024).calls
    assert (call.outcome, call.op, call.remote, call.start_ns) == ("ECONNREFUSED", "connect",
                                                                   Endpoint("127.0.0.1", port), ns("26:02"))


# -- never raise: parse it or report it ------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.sampled_from([row[0] for row in LINES] + PYTHON_TRACEBACK.splitlines()), st.integers(0, 200),
              st.text(max_size=8)).map(lambda t: t[0][: t[1]] + t[2]),
    st.text(max_size=80)), max_size=12))
def test_any_lines_are_parsed_or_reported_never_raised(lines):
    result = parse_log(lines, path="fuzz", tz="UTC", year=2024)
    assert all(problem.startswith("fuzz") for problem in result.problems)
    assert all(call.source == "log" and call.start_ns <= call.end_ns for call in result.calls)


def test_a_proxy_line_spans_its_session():
    """HAProxy's raw log line (doc/configuration.txt 8.2.3) stamps the accept date in its
    access-log form; its Tt (here 3005 ms, truncated) says when the session ended."""
    (call,) = parse_log(['127.0.0.1:40522 [01/May/2024:17:26:02.140] fe be/srv1 0/0/-1/-1/3005 503 217 - - SC-- '
                         '1/1/0/0/3 0/0 "GET / HTTP/1.1"'], tz="UTC").calls
    assert (call.start_ns, call.end_ns) == (ns("26:02", 140_000_000), ns("26:05", 145_999_999))
    assert call.outcome == "ECONNREFUSED"


def test_java_stack_frame_names_the_op():
    """'Connection reset by peer' alone reads as a write (OpenJDK's write path);
    the innermost JDK frame under it (NioSocketImpl.implRead) says it was a read.
    Frames as OpenJDK 17 prints them (tests/programs/logs/Fail.java prints real ones)."""
    lines = ["2024-05-01T17:26:02.000Z ERROR java.net.SocketException: Connection reset by peer",
             "\tat java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:330)",
             "\tat java.base/sun.nio.ch.NioSocketImpl.read(NioSocketImpl.java:355)"]
    (call,) = parse_log(lines).calls
    assert (call.errno, call.op) == ("ECONNRESET", "read")
    (alone,) = parse_log(lines[:1]).calls
    assert alone.op == "write"


def test_the_fast_paths_build_what_the_slow_ones_build():
    """A line opening with the stamp form of the line before is read by that form
    alone, each second once (formats.stamps.LEADING): the same ns as the line read on
    its own. A log's call and a message's match are built through a writable twin of
    their slots (model.writable_twin): equal to, and as frozen as, the dataclass's."""
    from dataclasses import FrozenInstanceError, asdict, replace

    from tcpteardown.formats.applog import _log_call
    from tcpteardown.messages import MessageMatch, read_message
    from tcpteardown.model import SocketCall

    error = "read tcp 127.0.0.1:50389->127.0.0.1:8080: read: connection reset by peer"
    stamps = ["2024/05/01 17:26:02.140166", "2024/05/01 17:26:02.1", "2024/05/01T17:26:03", "2024/05/01 17:26:02.1234567891",
              "2024-05-01T17:26:02.140Z", "2024-05-01T17:26:02,5+02:00", "2024-05-01 17:26:02.140166 +0200",
              "2024-05-01T17:26:02.000000001-07:00", "2024-05-01T17:26:02Z", "2024-05-01T17:26:02.77", "2024-05-01 17:26:59",
              "2024-05-01T17:26:02+02:001", "2024/13/01 17:26:02.5", "2024-02-30T17:26:02Z", "2024/05/01 17:26:02.25"]
    lines = [f"{stamp} {error}" for stamp in stamps]
    together = parse_log(lines, tz="UTC")
    alone = [parse_log([line], tz="UTC") for line in lines]
    assert [call.start_ns for call in together.calls] == sorted(
        call.start_ns for result in alone for call in result.calls)
    assert len(together.calls) == len(lines) - 2  # month 13 and February 30th: reported, skipped
    assert [problem for problem in together.problems if "unreadable" in problem] == [
        "<log>:13: unreadable timestamp (month must be in 1..12); line skipped",
        "<log>:14: unreadable timestamp (day is out of range for month); line skipped"]

    local, remote = Endpoint("127.0.0.1", 50389), Endpoint("127.0.0.1", 8080)
    fast = _log_call("app", "recv", 1, 2, -1, "ECONNRESET", local, remote, error, "app.log:1")
    slow = SocketCall(role="app", op="recv", start_ns=1, end_ns=2, result=-1, errno="ECONNRESET", local=local,
                      remote=remote, source="log", text=error, where="app.log:1")
    assert type(fast) is SocketCall and fast == slow and hash(fast) == hash(slow) and asdict(fast) == asdict(slow)
    assert replace(fast, op="read") == replace(slow, op="read")
    with pytest.raises(FrozenInstanceError):
        fast.op = "send"
    found = read_message(error)
    built = MessageMatch(found.errno, found.lang, found.op, found.local, found.remote, found.phrasing,
                         found.elapsed_ns)
    assert type(found) is MessageMatch and found == built and (found.local, found.remote) == (
        "127.0.0.1:50389", "127.0.0.1:8080")
    with pytest.raises(FrozenInstanceError):
        found.op = "send"
