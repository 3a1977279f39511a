"""strace importer: tables of real strace lines, then real programs under strace.

The line tables are cut from real `strace -f -ttt -T -yy` runs (strace 6.1,
Linux 6.x) of Python, curl and a Go program; the real-program tests run
`tests/programs/teardowns/client.py`, curl against http.server, and the Go
program `tests/programs/teardowns/main.go` under strace and compare the
importer's calls with what the programs themselves reported.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tcpteardown.formats.applog import parse_log
from tcpteardown.formats.strace import parse_strace, read_strace_file, read_strace_files
from tcpteardown.model import Endpoint
from conftest import tool_or_skip

PROGRAMS = Path(__file__).parent / "programs" / "teardowns"
T0 = 1_795_290_055_000_000_000


def calls_of(text: str, **options):
    result = parse_strace(text.strip("\n").splitlines(), path="t.strace", **options)
    return result.calls, result.problems


def ep(text):
    return Endpoint.parse(text)


# -- tables of real-looking lines ---------------------------------------------

def test_refused_blocking_connect_with_ttt_T_yy():
    calls, problems = calls_of("""
5915  1795290055.807569 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3<TCP:[7838]> <0.000022>
5915  1795290055.809476 connect(3<TCP:[7838]>, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused) <0.000104>
5915  1795290055.810400 close(3<TCP:[7838]>) = 0 <0.000035>
""")
    assert problems == ()
    connect, close = calls
    assert (connect.op, connect.errno, connect.result, connect.fd, connect.pid) == ("connect", "ECONNREFUSED", -1, 3, 5915)
    assert connect.remote == ep("127.0.0.1:1") and connect.local is None
    assert connect.start_ns == T0 + 809_476_000 and connect.end_ns == connect.start_ns + 104_000
    assert connect.source == "strace" and connect.role == "pid 5915"
    assert connect.text.startswith("5915  1795290055.809476 connect(")
    assert close.op == "close" and close.remote == ep("127.0.0.1:1")


def test_eof_epipe_and_sigpipe():
    calls, problems = calls_of("""
5915  1795290055.819628 recvfrom(5<TCP:[127.0.0.1:47450->127.0.0.1:43771]>, "hi", 10, 0, NULL, NULL) = 2 <0.000027>
5915  1795290055.820284 recvfrom(5<TCP:[127.0.0.1:47450->127.0.0.1:43771]>, "", 10, 0, NULL, NULL) = 0 <0.000011>
5915  1795290055.820399 sendto(5<TCP:[127.0.0.1:47450->127.0.0.1:43771]>, "x", 1, 0, NULL, 0) = 1 <0.000024>
5915  1795290055.871256 sendto(5<TCP:[127.0.0.1:47450->127.0.0.1:43771]>, "y", 1, 0, NULL, 0) = -1 EPIPE (Broken pipe) <0.000364>
5915  1795290055.871745 --- SIGPIPE {si_signo=SIGPIPE, si_code=SI_USER, si_pid=5915, si_uid=0} ---
5915  1795290055.883738 +++ exited with 0 +++
""")
    assert problems == ()
    assert [(c.op, c.result, c.errno, c.outcome) for c in calls] == [
        ("recvfrom", 2, None, "ok"), ("recvfrom", 0, None, "EOF"),
        ("sendto", 1, None, "ok"), ("sendto", -1, "EPIPE", "EPIPE")]
    assert all(c.local == ep("127.0.0.1:47450") and c.remote == ep("127.0.0.1:43771") for c in calls)


GO_REFUSED = """
6413  1795290055.731031 execve("/tmp/x/teardowns", ["/tmp/x/teardowns"], 0x7ffd /* 20 vars */) = 0 <0.000300>
6413  1795290055.735305 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_IP <unfinished ...>
6414  1795290055.735306 nanosleep({tv_sec=0, tv_nsec=20000},  <unfinished ...>
6413  1795290055.735320 <... socket resumed>) = 3<TCP:[8730]> <0.000019>
6413  1795290055.735949 connect(3<TCP:[8730]>, {sa_family=AF_INET, sin_port=htons(35837), sin_addr=inet_addr("127.0.0.1")}, 16 <unfinished ...>
6414  1795290055.736000 <... nanosleep resumed>NULL) = 0 <0.000094>
6413  1795290055.736017 <... connect resumed>) = -1 EINPROGRESS (Operation now in progress) <0.000068>
6413  1795290055.736529 epoll_ctl(5<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 3<TCP:[8730]>, {events=EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, data={u32=2374442744, u64=140619603713784}}) = 0 <0.000020>
6416  1795290055.737093 getsockopt(3<TCP:[8730]>, SOL_SOCKET, SO_ERROR,  <unfinished ...>
6413  1795290055.737100 futex(0xc00003c948, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
6416  1795290055.737577 <... getsockopt resumed>[ECONNREFUSED], [4]) = 0 <0.000023>
6416  1795290055.738154 close(3<TCP:[8730]> <unfinished ...>
6413  1795290055.738160 <... futex resumed>) = 0 <0.000020>
6416  1795290055.738200 <... close resumed>) = 0 <0.000041>
"""


def test_go_nonblocking_connect_resolved_by_so_error_across_pids():
    calls, problems = calls_of(GO_REFUSED)
    assert problems == ()
    connect, outcome, close = calls
    # the connect stays as the kernel said it: would block, not a failure
    assert (connect.op, connect.errno, connect.would_block, connect.failed) == ("connect", "EINPROGRESS", True, False)
    assert (connect.start_ns, connect.end_ns) == (T0 + 735_949_000, T0 + 735_949_000 + 68_000)
    # its outcome is the getsockopt(SO_ERROR) that read it, in another thread
    assert (outcome.op, outcome.errno, outcome.result, outcome.pid, outcome.failed) == (
        "getsockopt", "ECONNREFUSED", 0, 6416, True)
    assert outcome.remote == connect.remote == ep("127.0.0.1:35837")  # the fd never showed a 4-tuple
    assert outcome.end_ns == T0 + 737_093_000 + 23_000 and outcome.start_ns == T0 + 737_093_000
    assert "[ECONNREFUSED]" in outcome.text and "connect(" in connect.text
    assert connect.role == outcome.role == "teardowns"  # execve names the process, threads inherit it
    assert (close.op, close.pid, close.remote) == ("close", 6416, ep("127.0.0.1:35837"))
    assert close.end_ns == close.start_ns + 41_000


def test_so_error_zero_is_a_successful_connect_and_numeric_so_error():
    calls, _ = calls_of("""
100 1795290055.000001 connect(4<TCP:[9]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("10.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress) <0.000010>
100 1795290055.000100 getsockopt(4<TCP:[10.0.0.2:5000->10.0.0.1:80]>, SOL_SOCKET, SO_ERROR, [0], [4]) = 0 <0.000005>
100 1795290055.000200 connect(5<TCP:[11]>, {sa_family=AF_INET, sin_port=htons(81), sin_addr=inet_addr("10.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress) <0.000010>
100 1795290055.000300 getsockopt(5<TCP:[11]>, SOL_SOCKET, SO_ERROR, [111], [4]) = 0 <0.000005>
100 1795290055.000400 connect(6<TCP:[12]>, {sa_family=AF_INET, sin_port=htons(82), sin_addr=inet_addr("10.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress) <0.000010>
""")
    outcomes = [c for c in calls if c.op == "getsockopt"]
    assert all(c.would_block for c in calls if c.op == "connect")
    ok, refused = outcomes
    assert (ok.errno, ok.result, ok.local, ok.remote) == (None, 0, ep("10.0.0.2:5000"), ep("10.0.0.1:80"))
    assert (refused.errno, refused.remote) == ("ECONNREFUSED", ep("10.0.0.1:81"))  # 111, by name
    pending = calls[-1]
    assert (pending.op, pending.errno) == ("connect", "EINPROGRESS")  # never resolved in the log: kept as the kernel said


@pytest.mark.parametrize("sockaddr", [
    '{sa_family=AF_INET6, sin6_port=htons(8080), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}',
    '{sa_family=AF_INET6, sin6_port=htons(8080), sin6_flowinfo=htonl(0), sin6_addr=inet_pton(AF_INET6, "::1"), sin6_scope_id=0}',
])
def test_ipv6_sockaddrs_and_annotations(sockaddr):
    calls, problems = calls_of(f"""
7 1795290055.000001 connect(3<TCPv6:[7839]>, {sockaddr}, 28) = -1 ECONNREFUSED (Connection refused) <0.000064>
7 1795290055.000002 write(4<TCPv6:[[::1]:5->[::1]:6]>, "x", 1) = -1 ECONNRESET (Connection reset by peer) <0.000010>
7 1795290055.000003 read(5<TCPv6:[[::ffff:127.0.0.1]:5->[::ffff:127.0.0.1]:6]>, "", 1) = 0 <0.000010>
""")
    assert problems == ()
    assert calls[0].remote == Endpoint("::1", 8080)
    assert (calls[1].local, calls[1].remote, calls[1].errno) == (Endpoint("::1", 5), Endpoint("::1", 6), "ECONNRESET")
    assert calls[2].local == Endpoint("127.0.0.1", 5)  # mapped addresses as the capture shows them


def test_accept_gives_the_new_fd_and_both_endpoints():
    calls, _ = calls_of("""
1 1795290055.000001 accept4(3<TCP:[127.0.0.1:43771]>, {sa_family=AF_INET, sin_port=htons(47450), sin_addr=inet_addr("127.0.0.1")}, [16], SOCK_CLOEXEC) = 6<TCP:[127.0.0.1:43771->127.0.0.1:47450]> <0.000023>
1 1795290055.000002 accept4(3<TCP:[127.0.0.1:43771]>, 0xc0000a1d10, [112], SOCK_CLOEXEC|SOCK_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable) <0.000010>
""")
    accepted, again = calls
    assert (accepted.op, accepted.fd, accepted.result) == ("accept", 6, 6)
    assert (accepted.local, accepted.remote) == (ep("127.0.0.1:43771"), ep("127.0.0.1:47450"))
    assert (again.fd, again.errno, again.local) == (3, "EAGAIN", ep("127.0.0.1:43771"))


@pytest.mark.parametrize("line, op", [
    ('writev(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, [{iov_base="a", iov_len=1}], 1) = -1 EPIPE (Broken pipe)', "writev"),
    ('readv(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, [{iov_base="", iov_len=1}], 1) = 0', "readv"),
    ("sendfile(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, 5</srv/big.bin>, [0], 65536) = -1 ECONNRESET (Connection reset by peer)", "sendfile"),
    ("sendfile64(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, 5</srv/big.bin>, NULL, 65536) = 65536", "sendfile"),
    ('recvmsg(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="", iov_len=9}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 0', "recvmsg"),
    ('sendmsg(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="a) = 1", iov_len=6}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, MSG_NOSIGNAL) = -1 EPIPE (Broken pipe)', "sendmsg"),
    ("shutdown(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, SHUT_WR) = 0", "shutdown"),
])
def test_more_syscalls(line, op):
    calls, problems = calls_of(f"99 1795290055.000001 {line} <0.000010>")
    assert problems == ()
    (call,) = calls
    assert call.op == op and call.local == ep("1.2.3.4:5") and call.remote == ep("6.7.8.9:10")
    errno = line.rsplit(" = ", 1)[1].split()[1] if " = -1 " in line else None
    assert call.errno == errno


def test_other_fds_are_ignored():
    calls, problems = calls_of("""
1 1795290055.000001 connect(3<UNIX-STREAM:[80234]>, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory) <0.000013>
1 1795290055.000002 read(3</etc/hosts>, "127.0.0.1 localhost\\n", 4096) = 20 <0.000010>
1 1795290055.000003 write(1</dev/pts/0<char 136:0>>, "hi\\n", 3) = 3 <0.000010>
1 1795290055.000004 sendto(4<UDP:[127.0.0.1:5353->127.0.0.53:53]>, "x", 1, MSG_NOSIGNAL, NULL, 0) = 1 <0.000010>
1 1795290055.000005 epoll_wait(5<anon_inode:[eventpoll]>, [], 128, 0) = 0 <0.000010>
""")
    assert calls == () and problems == ()


def test_plain_strace_without_yy_tracks_fds_from_socket_and_connect():
    calls, problems = calls_of("""
socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3
openat(AT_FDCWD, "/etc/hosts", O_RDONLY) = 4
connect(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
read(4, "x", 1) = 1
write(3, "GET /", 5) = 5
read(3, "", 4096) = 0
close(3) = 0
read(3, "x", 1) = 1
""", pid=4242)
    assert [(c.op, c.fd, c.result) for c in calls] == [("connect", 3, 0), ("write", 3, 5), ("read", 3, 0), ("close", 3, 0)]
    assert all(c.remote == ep("127.0.0.1:8080") and c.pid == 4242 for c in calls)
    assert problems == ("t.strace: no timestamps in this log; all calls are placed at time 0 (run strace with -ttt -T)",)


def test_pid_brackets_tt_clock_date_and_no_T():
    text = """
[pid  6416] 23:59:59.999000 read(4<TCP:[127.0.0.1:1->127.0.0.1:2]>,  <unfinished ...>
[pid  6413] 23:59:59.999500 write(1</dev/null>, "x", 1) = 1
[pid  6416] 00:00:00.000250 <... read resumed>"", 16) = 0
"""
    calls, problems = calls_of(text, date="2024-05-01")
    (read,) = calls
    midnight = 1_714_608_000_000_000_000  # 2024-05-02T00:00:00Z
    assert read.pid == 6416 and read.result == 0
    assert read.start_ns == midnight - 1_000_000 and read.end_ns == midnight + 250_000  # no -T: the resumed time
    assert read.text.count("\n") == 1  # both lines
    assert problems == ()
    calls, problems = calls_of(text)
    assert calls[0].start_ns < 86_400 * 10**9
    assert any("no date" in problem for problem in problems)


def test_relative_times_add_up_over_every_line():
    calls, problems = calls_of("""
     0.000000 execve("/usr/bin/curl", ["curl"], 0x7ffd /* 20 vars */) = 0
     0.000500 openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 4
     0.000250 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3
     0.000250 connect(3, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused)
""")
    (connect,) = calls
    assert (connect.start_ns, connect.role, connect.errno) == (1_000_000, "curl", "ECONNREFUSED")
    assert "strace -r" in problems[0]


def test_unreadable_lines_are_reported_and_skipped():
    calls, problems = calls_of("""
1 1795290055.000001 read(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, "", 1) = 0 <0.000010>
this is not strace output
1 1795290055.000003 <... read resumed>) = 0 <0.000010>
1 1795290055.000004 write(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, "x", 1) = -1 EPIPE (Broken pipe) <0.000010>
1 1795290055.000005 write(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, "abc
""")
    assert [c.outcome for c in calls] == ["EOF", "EPIPE"]
    assert problems[0].startswith("t.strace:2: expected an strace line")
    assert problems[1].startswith("t.strace:3: 'read resumed' without its '<unfinished ...>'")
    assert problems[2].startswith("t.strace:5: expected 'write(...) = RESULT'")
    assert len(problems) == 3


def test_restarted_calls_are_dropped_and_killed_calls_kept():
    calls, problems = calls_of("""
1 1795290055.000001 read(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, 0x7f, 16) = ? ERESTARTSYS (To be restarted if SA_RESTART is set) <0.5>
1 1795290055.000002 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=2, si_uid=0, si_status=0} ---
1 1795290055.000003 read(4<TCP:[1.2.3.4:5->6.7.8.9:10]>,  <unfinished ...>
1 1795290055.000009 +++ killed by SIGKILL +++
""")
    assert problems == ()
    (killed,) = calls
    assert killed.result is None and killed.errno is None


def test_per_pid_files_take_the_pid_from_the_name(tmp_path):
    path = tmp_path / "trace.4321"
    path.write_text('1795290055.000001 read(4<TCP:[1.2.3.4:5->6.7.8.9:10]>, "", 1) = 0 <0.000010>\n')
    (call,) = read_strace_file(path).calls
    assert call.pid == 4321 and call.role == "pid 4321"


# -- real programs under strace -------------------------------------------------

def run_traced(tmp_path: Path, argv: list[str], name: str = "trace.txt", follow: str = "-f",
               **popen) -> tuple[Path, subprocess.CompletedProcess]:
    strace = tool_or_skip("strace")
    trace = tmp_path / name
    done = subprocess.run([strace, follow, "-ttt", "-T", "-yy", "-o", str(trace), *argv],
                          capture_output=True, text=True, timeout=60, **popen)
    if "ptrace" in done.stderr and "Operation not permitted" in done.stderr:
        pytest.skip(f"strace may not trace here: {done.stderr.strip()}")
    return trace, done


def family_hosts():
    hosts = ["127.0.0.1"]
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        hosts.append("::1")
    except OSError:
        pass
    return hosts


@pytest.mark.parametrize("host", family_hosts())
def test_python_client_under_strace(tmp_path, host):
    trace, done = run_traced(tmp_path, [sys.executable, str(PROGRAMS / "client.py"), host])
    assert done.returncode == 0, done.stderr
    steps = {entry["step"]: entry for entry in map(json.loads, done.stdout.splitlines())}
    result = read_strace_file(trace)
    assert result.problems == ()
    failed = [c for c in result.calls if c.failed or c.is_eof]
    by_outcome = {c.outcome: c for c in failed}
    assert set(by_outcome) == {"ECONNREFUSED", "EOF", "EPIPE", "ECONNRESET"}, [c.text for c in failed]
    assert by_outcome["ECONNREFUSED"].op == "connect"
    assert str(by_outcome["ECONNREFUSED"].remote) == steps["refused"]["remote"]
    for step, outcome, ops in (("eof", "EOF", {"recvfrom", "recv", "read"}),
                               ("broken-pipe", "EPIPE", {"sendto", "send", "write"}),
                               ("reset", "ECONNRESET", {"recvfrom", "recv", "read"})):
        call = by_outcome[outcome]
        assert steps[step]["errno"] == outcome
        assert call.op in ops
        assert (str(call.local), str(call.remote)) == (steps[step]["local"], steps[step]["remote"])
        assert call.role == Path(sys.executable).name and call.end_ns >= call.start_ns


PLAIN_FORMS = {
    "-f -tt (no -T, no -yy)": ["-f", "-tt"],
    "-tt -T to stderr (no -f)": ["-tt", "-T"],
    "-f -ttt -y (socket:[inode])": ["-f", "-ttt", "-y"],
    "-ff -ttt -T -yy per-pid files": ["-ff", "-ttt", "-T", "-yy"],
}


@pytest.mark.parametrize("form", list(PLAIN_FORMS))
def test_plainer_forms_of_real_strace(tmp_path, form):
    strace = tool_or_skip("strace")
    options = PLAIN_FORMS[form]
    before = datetime.datetime.now(datetime.timezone.utc)
    argv = [strace, *options]
    if "-ff" in options or "-f" in options:
        argv += ["-o", str(tmp_path / "trace")]
    done = subprocess.run([*argv, sys.executable, str(PROGRAMS / "client.py")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "TZ": "UTC"})
    after = datetime.datetime.now(datetime.timezone.utc)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = {entry["step"]: entry for entry in map(json.loads, done.stdout.splitlines())}
    if "-ff" in options:
        result = read_strace_files(sorted(tmp_path.glob("trace.*")))
    elif "-f" in options:
        result = read_strace_file(tmp_path / "trace", date=before.date())
    else:
        result = parse_strace(done.stderr.splitlines(), path="stderr", date=before.date())
    assert result.problems == ()
    failed = {call.outcome: call for call in result.calls if call.failed or call.is_eof}
    assert set(failed) == {"ECONNREFUSED", "EOF", "EPIPE", "ECONNRESET"}
    assert str(failed["ECONNREFUSED"].remote) == steps["refused"]["remote"]
    for step, outcome in (("eof", "EOF"), ("broken-pipe", "EPIPE"), ("reset", "ECONNRESET")):
        assert (str(failed[outcome].local), str(failed[outcome].remote)) == (steps[step]["local"], steps[step]["remote"])
    for call in failed.values():
        assert before.timestamp() * 1e9 - 1e6 <= call.start_ns <= call.end_ns <= after.timestamp() * 1e9 + 1e6


def test_curl_refused_under_strace(tmp_path):
    curl = tool_or_skip("curl")
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        port = gone.getsockname()[1]
    trace, done = run_traced(tmp_path, [curl, "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/"])
    assert done.returncode == 7, done.stderr
    result = read_strace_file(trace)
    (connect,) = [c for c in result.calls if c.failed]
    assert (connect.errno, connect.remote, connect.role) == ("ECONNREFUSED", Endpoint("127.0.0.1", port), "curl")
    assert connect.op == "getsockopt" and "SO_ERROR" in connect.text  # curl connects non-blocking, asks SO_ERROR
    logged = parse_log([f"2026-01-01T00:00:00Z {done.stderr.strip()}"]).calls
    assert [(c.errno, c.op, c.remote) for c in logged] == [("ECONNREFUSED", "connect", Endpoint("127.0.0.1", port))]


SERVE_ONE = """
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.HTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.handle_request()
server.server_close()
"""


def test_http_server_write_fails_when_curl_aborts_a_download(tmp_path):
    """curl gives up after the headers (--max-filesize); the server's next
    writes meet curl's RST: ECONNRESET (then EPIPE) on the server's socket."""
    curl = tool_or_skip("curl")
    strace = tool_or_skip("strace")
    (tmp_path / "big.bin").write_bytes(os.urandom(1 << 16) * 512)  # 32 MiB
    trace = tmp_path / "server.strace"
    server = subprocess.Popen([strace, "-f", "-ttt", "-T", "-yy", "-o", str(trace), sys.executable, "-c",
                               SERVE_ONE, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        fetched = subprocess.run([curl, "-sS", "-o", os.devnull, "--max-filesize", "1000", "--max-time", "10",
                                  f"http://127.0.0.1:{port}/big.bin"], capture_output=True, text=True, timeout=30)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
        server.stdout.close()
        server.stderr.close()
    assert fetched.returncode == 63, fetched.stderr  # Maximum file size exceeded
    result = read_strace_file(trace)
    assert result.problems == ()
    sends = [c for c in result.calls if c.op in ("sendto", "send", "write", "sendfile") and c.failed]
    assert sends, "the server never saw its write fail"
    assert sends[0].errno in ("ECONNRESET", "EPIPE")
    assert sends[0].local == Endpoint("127.0.0.1", port)
    accepted = [c for c in result.calls if c.op == "accept" and not c.failed]
    assert accepted and accepted[0].remote == sends[0].remote


# -- the Go program ---------------------------------------------------------------

def build_go_teardowns(tmp_path_factory) -> Path:
    """tests/programs/teardowns built once per test session (offline, local toolchain)."""
    go = tool_or_skip("go")
    work = tmp_path_factory.getbasetemp() / "teardowns-go"
    binary = work / "teardowns"
    if binary.exists():
        return binary
    work.mkdir(exist_ok=True)
    # Go's own build cache (content-addressed, safe to share): a private one rebuilt the
    # standard library every session, 30 s of a quiet CI run
    env = {**os.environ, "GOPATH": str(work / "gopath"),
           "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}
    built = subprocess.run([go, "build", "-o", str(binary), "."], cwd=PROGRAMS, env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture(scope="module")
def go_teardowns(tmp_path_factory) -> Path:
    return build_go_teardowns(tmp_path_factory)


GO_STEPS = {  # step -> (errno name or EOF, op in the log)
    "refused": ("ECONNREFUSED", "connect"),
    "reset": ("ECONNRESET", "read"),
    "broken-pipe": ("EPIPE", "write"),
    "eof": ("EOF", "recv"),
    "closed": ("EBADF", "read"),
    "timeout": ("ETIMEDOUT", "read"),
}


def log_steps(log_lines):
    """step name -> the log call that followed the "step NAME" marker."""
    result = parse_log(log_lines, tz="UTC", role="teardowns")
    assert result.problems == ()
    steps, current = {}, None
    calls = iter(result.calls)
    for line in log_lines:
        if " step " in line and ":" not in line.split(" step ", 1)[1]:
            current = line.split(" step ", 1)[1].strip()
        elif current is not None:
            steps[current] = next(calls)
            current = None
    return steps


@pytest.mark.parametrize("host, follow", [(host, "-f") for host in family_hosts()] + [("127.0.0.1", "-ff")])
def test_go_program_under_strace(tmp_path, go_teardowns, host, follow):
    trace, done = run_traced(tmp_path, [str(go_teardowns), "-host", host], follow=follow)
    assert done.returncode == 0, done.stderr
    log = done.stderr.splitlines()
    steps = log_steps(log)
    assert {name: (c.outcome, c.op) for name, c in steps.items()} == GO_STEPS
    if follow == "-ff":  # one file per thread: the connect and its SO_ERROR may sit in different files
        result = read_strace_files(sorted(tmp_path.glob(trace.name + ".*")))
    else:
        result = read_strace_file(trace)
    assert result.problems == ()
    calls = result.calls

    def on(connection_of, predicate):
        return [c for c in calls if predicate(c) and {c.local, c.remote} == connection_of]

    refused = steps["refused"]
    (connect,) = [c for c in calls if c.op == "getsockopt" and c.errno == "ECONNREFUSED"]  # Go reads SO_ERROR
    assert connect.remote == refused.remote and "SO_ERROR" in connect.text
    assert connect.end_ns <= refused.start_ns + 1000  # Go logs after the syscall (µs precision)

    for step, outcome in (("reset", "ECONNRESET"), ("broken-pipe", "EPIPE")):
        logged = steps[step]
        (syscall,) = on({logged.local, logged.remote}, lambda c: c.outcome == outcome)
        assert syscall.op == logged.op and syscall.local == logged.local
        assert syscall.end_ns <= logged.start_ns + 1000

    eofs = [c for c in calls if c.is_eof]
    assert len(eofs) == 1 and eofs[0].end_ns <= steps["eof"].start_ns + 1000

    closed = steps["closed"]  # Go answers from user space: the evidence is our own close()
    closes = on({closed.local, closed.remote}, lambda c: c.op == "close" and c.local == closed.local)
    assert closes and closes[0].end_ns <= closed.start_ns + 1000
    assert not on({closed.local, closed.remote}, lambda c: c.op == "read" and c.local == closed.local)

    timeout = steps["timeout"]  # the poller saw EAGAIN, then the deadline passed
    waits = on({timeout.local, timeout.remote}, lambda c: c.errno == "EAGAIN" and c.local == timeout.local)
    assert waits and waits[-1].end_ns <= timeout.start_ns


# -- never raise: parse it or report it ------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

REAL_LINES = (GO_REFUSED.strip().splitlines() + [
    '5915  1795290055.871256 sendto(5<TCP:[127.0.0.1:47450->127.0.0.1:43771]>, "y", 1, 0, NULL, 0) = -1 EPIPE (Broken pipe) <0.000364>',
    '7 1795290055.000002 write(4<TCPv6:[[::1]:5->[::1]:6]>, "x", 1) = -1 ECONNRESET (Connection reset by peer) <0.000010>',
    '1 1795290055.000001 accept4(3<TCP:[127.0.0.1:43771]>, {sa_family=AF_INET, sin_port=htons(47450), sin_addr=inet_addr("127.0.0.1")}, [16], SOCK_CLOEXEC) = 6<TCP:[127.0.0.1:43771->127.0.0.1:47450]> <0.000023>',
    "[pid  6416] 23:59:59.999000 read(4<TCP:[127.0.0.1:1->127.0.0.1:2]>,  <unfinished ...>",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.sampled_from(REAL_LINES), st.integers(0, 400), st.text(max_size=8)).map(
        lambda t: t[0][: t[1]] + t[2]),
    st.text(max_size=80)), max_size=12))
def test_any_lines_are_parsed_or_reported_never_raised(lines):
    result = parse_strace(lines, path="fuzz")
    assert all(problem.startswith("fuzz") for problem in result.problems)
    assert all(call.source == "strace" and call.end_ns >= call.start_ns for call in result.calls)
