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


@pytest.mark.needs_capture
def test_a_log_line_naming_the_connection_is_drawn_once_with_its_syscall(recorded, tmp_path):
    """Go's form names both ends, so the log line belongs to the connection the ladder
    draws: the ladder, the steps, Mermaid and the HTML page still show one failure."""
    import tcpteardown as tt
    from tcpteardown.views.html_ladder import html_ladder
    from tcpteardown.views.mermaid import mermaid_text
    from tcpteardown.views.steps import build_steps

    bundle = recorded[0]
    read = next(c for c in tt.load(bundle).calls if c.source == "strace" and c.errno == "ECONNRESET")
    stamp = dt.datetime.fromtimestamp(read.end_ns / 1e9, dt.timezone.utc).strftime("%Y/%m/%d %H:%M:%S.%f")
    go_log = tmp_path / "go.log"
    go_log.write_text(f"{stamp} read tcp {read.local}->{read.remote}: read: connection reset by peer\n")
    recording = tt.load(bundle, logs=[go_log], tz="UTC")
    links = correlate(recording)
    failing = [link for link in links if link.call.errno == "ECONNRESET"]
    assert len(failing) == 1 and any(c.where == f"{go_log}:1" for c in failing[0].seen_by)
    assert any(c.source == "log" and c.local == read.local for c in recording.calls)  # on the connection
    figure = tt.ladder(recording, links)
    assert sum("ECONNRESET" in t.get_text() for ax in figure.axes for t in ax.texts if "->" not in t.get_text()) == 1
    assert [s.what for s in build_steps(recording, links) if "ECONNRESET" in s.what] == \
        [f"{read.role}: recvfrom() ECONNRESET"]
    assert sum("ECONNRESET" in line for line in mermaid_text(recording, links).splitlines()) == 1
    page = html_ladder(recording, links)
    assert "recvfrom()" in page and "read() → ECONNRESET" not in page and "read() ECONNRESET" not in page


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


# journald's forms, printed by journalctl itself: a journald of the test's own, in a
# private mount namespace (tmpfs over /run and the journal directory, so the host's
# journal and sockets are never touched), fed one line by systemd-cat.
JOURNALD = r"""
set -eu
mount -t tmpfs tcpteardown-test /run
if [ -d /var/log/journal ]; then mount -t tmpfs tcpteardown-test /var/log/journal; fi
"$1" & journald=$!
trap 'kill $journald; wait $journald 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done  # until it listens
echo "$2" | systemd-cat -t tcpteardown-probe
for _ in $(seq 200); do journalctl -q -t tcpteardown-probe | grep -q . && break; sleep 0.05; done  # until stored
for form in short-iso short-precise short-iso-precise short; do journalctl -q -t tcpteardown-probe -o $form; done
"""


@pytest.fixture(scope="module")
def journal_lines():
    """{form: the line journalctl printed in it}, and the ns window of the run."""
    if os.geteuid() != 0:
        pytest.skip("needs root: runs its own systemd-journald in a private mount namespace (unshare -m)")
    journald = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                     if os.path.exists(p)), None)
    if journald is None:
        pytest.skip("needs systemd-journald (apt-get install systemd)")
    tool_or_skip("journalctl"), tool_or_skip("unshare")
    before = int(dt.datetime.now(dt.timezone.utc).timestamp()) * 1_000_000_000 - 1_000_000_000
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", JOURNALD, "sh", journald,
                          ERROR.strip()], capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": "UTC"})
    after = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1e9) + 1_000_000_000
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 4, (out.returncode, out.stdout, out.stderr)
    return dict(zip(("short-iso", "short-precise", "short-iso-precise", "short"), lines)), before, after


@pytest.mark.parametrize("form", ["short-iso", "short-iso-precise", "short-precise", "short"])
def test_journald_forms_from_journalctl(journal_lines, form):
    lines, low, high = journal_lines
    line = lines[form]
    assert "tcpteardown-probe[" in line and "Connection reset by peer" in line, line
    year = dt.datetime.now(dt.timezone.utc).year
    result = parse_log([line], path="<journal>", tz="UTC", year=year)
    assert len(result.calls) == 1 and result.calls[0].errno == "ECONNRESET", (line, result.problems)
    assert low <= result.calls[0].start_ns <= high, (line, result.calls[0].start_ns, low, high)
    yearless = form in ("short-precise", "short")  # "Dec 07 09:27:32.460738": syslog's form, no year
    assert yearless == any("carry no year" in p for p in parse_log([line], tz="UTC").problems), line
    if form.endswith("precise"):  # microseconds kept
        assert result.calls[0].start_ns % 1_000_000_000 != 0 or ".000000" in line
