"""Real programs fail for real, and their own log lines link to the right frame (issue 14).

Each test makes one program's socket call fail on loopback (nginx and
HAProxy as reverse proxies, Node.js, Java, curl, redis-cli and redis-py against
redis-server's idle timeout, Python requests), captures it with tcpdump
(`-i lo`, and `-i any` for some: Linux SLL2 framing), feeds the program's
own line to `tcpteardown explain --log --json`, and checks that the link's
frame is the one tshark's display filter finds (and, for curl, the one its
strace log links to). One test runs across a veth pair between the root
namespace and one it creates (Ethernet framing, non-loopback addresses).

Programs that print no timestamp of their own (Node, Java, curl, redis-cli)
are stamped the way a log shipper does, when the line arrives: after the
failure, as in production. nginx stamps its error log itself (whole seconds).
Servers that misbehave on purpose are threads of this process (`Peer`); one
nginx and one redis-server serve the whole module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import tool_or_skip
from ports import closed_port, closed_ports

HERE = Path(__file__).parent / "programs" / "logs"
pytestmark = pytest.mark.needs_capture


# -- misbehaving servers ---------------------------------------------------------

class Peer:
    """A loopback TCP server that treats every connection the same way:
    ``fin`` closes at once, ``read-fin`` reads one request then closes
    (FIN), ``read-rst`` reads one request then aborts (SO_LINGER 0: RST)."""

    def __init__(self, mode: str, host: str = "127.0.0.1") -> None:
        self.mode = mode
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                conn.settimeout(10)
                if self.mode != "fin":
                    with contextlib.suppress(OSError):
                        conn.recv(65536)
                if self.mode == "read-rst":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def peer(mode: str):
    server = Peer(mode)
    try:
        yield server
    finally:
        server.stop()


def wait_listening(port: int, host: str = "127.0.0.1", proc=None, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=1).close()
            return
        time.sleep(0.02)  # wait-ok: polling for the program's listening port
    raise AssertionError(f"nothing listened on {host}:{port} within {seconds} s")


# -- capture, explain, tshark ----------------------------------------------------

@contextlib.contextmanager
def capture(tmp_path: Path, ports, iface=None):
    """tcpdump on `ports` (all TCP when empty), plus a settling connection of
    our own, so that the capture is really running when the test starts."""
    tool_or_skip("tcpdump")
    from tcpteardown.capture.tcpdump import TcpdumpCapture

    pcap = tmp_path / "capture.pcap"
    with socket.create_server(("127.0.0.1", 0)) as settle:
        wanted = [*ports, settle.getsockname()[1]] if ports else None  # no ports: all TCP
        with TcpdumpCapture(pcap, wanted, iface=iface):
            deadline = time.monotonic() + 10
            while pcap.stat().st_size <= 24 and time.monotonic() < deadline:
                with socket.create_connection(settle.getsockname()):
                    settle.accept()[0].close()
                time.sleep(0.01)  # wait-ok: polling the file for the settling connection
            yield pcap


def stamp(line: str) -> str:
    """A line as a log shipper stores it: ISO time of arrival, then the text."""
    return f"{dt.datetime.now(dt.timezone.utc).isoformat()} {line.strip()}"


def explain_log(pcap: Path, log_lines, tmp_path: Path, *extra) -> dict:
    log = tmp_path / "app.log"
    log.write_text("\n".join(log_lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", str(pcap), "--log", str(log),
                           "--tz", "UTC", "--json", *map(str, extra)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def log_link(document: dict) -> dict:
    links = [link for link in document["links"] if link["call"]["source"] == "log"]
    assert len(links) == 1, json.dumps(document, indent=1)
    return links[0]


def tshark_frames(pcap: Path, display_filter: str) -> list[int]:
    tool_or_skip("tshark")
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [int(line) for line in out.split()]


def check(pcap: Path, lines, tmp_path: Path, display_filter: str, *, outcome: str, kind: str,
          runtime: bool = False, first: bool = False) -> dict:
    """The log line links to the frame tshark's filter finds (the last one
    unless `first`), with that outcome and cause kind."""
    link = log_link(explain_log(pcap, lines, tmp_path))
    frames = tshark_frames(pcap, display_filter)
    assert frames, f"tshark found no frame for {display_filter!r}"
    expected = frames[0] if first else frames[-1]
    assert (link["call"]["errno"], link["cause"]["kind"], link["cause"]["frame"]) == (outcome, kind, expected), \
        json.dumps(link, indent=1)
    said = "made this error itself, not the kernel" in link["explanation"]
    assert said == runtime, link["explanation"]
    return link


def run_line(command, *, timeout: float = 60) -> str:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return (proc.stdout + proc.stderr).strip()


# -- nginx as a reverse proxy ------------------------------------------------------

def nginx_proxy_conf(root: Path, port: int, upstreams: dict[str, int]) -> Path:
    """root/nginx.conf: one foreground nginx on 127.0.0.1:port whose /NAME proxies to
    127.0.0.1:upstreams[NAME], every file under root, its error log at info and its
    access log (nginx's own time form) in root/access.log."""
    locations = "".join(f"location /{name} {{ proxy_pass http://127.0.0.1:{upstream}; }}\n"
                        for name, upstream in upstreams.items())
    temp = "".join(f"{name}_temp_path {root}/{name};\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(
        f"daemon off; master_process off; pid {root}/nginx.pid; error_log {root}/error.log info;\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{ access_log {root}/access.log; {temp} server {{ listen 127.0.0.1:{port}; {locations} }} }}\n")
    return conf


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    """One nginx for the module: /eof, /reset, /refused proxy to upstreams
    that close, reset, or do not listen."""
    binary = tool_or_skip("nginx")
    root = tmp_path_factory.mktemp("nginx")
    upstreams = {"eof": Peer("read-fin"), "reset": Peer("read-rst")}
    refused = closed_port()
    port = closed_port()
    nginx_proxy_conf(root, port, {**{name: server.port for name, server in upstreams.items()},
                                  "refused": refused})
    proc = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, proc=proc)
        yield {"port": port, "log": root / "error.log", "access": root / "access.log", "upstreams": upstreams,
               "refused": refused}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()
        for server in upstreams.values():
            server.stop()


def nginx_request(nginx: dict, path: str, tmp_path: Path, upstream_port: int) -> tuple[Path, list[str]]:
    """curl through nginx on `path`; the capture and the error-log lines it added."""
    tool_or_skip("curl")
    start = nginx["log"].stat().st_size
    with capture(tmp_path, [nginx["port"], upstream_port]) as pcap:
        status = run_line(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                           f"http://127.0.0.1:{nginx['port']}/{path}"])
        assert status == "502"
    with open(nginx["log"]) as handle:
        handle.seek(start)
        lines = [line for line in handle.read().splitlines() if "[error]" in line]
    return pcap, lines


def test_nginx_access_log_time_form(nginx):
    """The access-log form, `[07/Dec/2026:09:27:32 +0000]`, as nginx itself writes it: read
    with its zone and year (no year guessed), within the request's second."""
    from tcpteardown.formats.applog import parse_log

    tool_or_skip("curl")
    logged = nginx["access"].stat().st_size if nginx["access"].exists() else 0
    before = int(time.time()) * 1_000_000_000 - 1_000_000_000
    assert run_line(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                     f"http://127.0.0.1:{nginx['port']}/reset"]) == "502"
    deadline = time.monotonic() + 10  # nginx logs the request as it frees it, after curl has its answer
    while time.monotonic() < deadline and not nginx["access"].read_bytes()[logged:].endswith(b"\n"):
        time.sleep(0.01)
    after = time.time_ns() + 1_000_000_000
    line = nginx["access"].read_text().splitlines()[-1]
    assert re.search(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] \"GET /reset HTTP/1.1\" 502", line), line
    result = parse_log([line + " client: read failed: [Errno 104] Connection reset by peer"], tz="Asia/Tokyo")
    assert len(result.calls) == 1 and not any("carry no year" in p for p in result.problems), result.problems
    assert before <= result.calls[0].start_ns <= after, (line, result.calls[0].start_ns)  # its +0000, not --tz


def test_nginx_upstream_prematurely_closed(nginx, tmp_path):
    up = nginx["upstreams"]["eof"].port
    pcap, lines = nginx_request(nginx, "eof", tmp_path, up)
    assert any("upstream prematurely closed connection" in line for line in lines), lines
    link = check(pcap, lines, tmp_path, f"tcp.flags.fin==1 && tcp.srcport=={up}", outcome="EOF", kind="fin",
                 runtime=True)
    assert link["call"]["remote"] == f"127.0.0.1:{up}"


def test_nginx_recv_failed_connection_reset(nginx, tmp_path):
    up = nginx["upstreams"]["reset"].port
    pcap, lines = nginx_request(nginx, "reset", tmp_path, up)
    assert any("recv() failed (104: Connection reset by peer)" in line for line in lines), lines
    link = check(pcap, lines, tmp_path, f"tcp.flags.reset==1 && tcp.srcport=={up}", outcome="ECONNRESET",
                 kind="rst")
    # The upstream read the whole request and closed with SO_LINGER 0; from packets
    # alone that looks like "closed with unread data" too: both are named (issue 14).
    assert link["cause"]["reason"] == "TCP_ABORT_ON_CLOSE or TCP_STATE (inferred)"


def test_nginx_connect_failed_refused(nginx, tmp_path):
    pcap, lines = nginx_request(nginx, "refused", tmp_path, nginx["refused"])
    assert any("connect() failed (111: Connection refused)" in line for line in lines), lines
    check(pcap, lines, tmp_path, f"tcp.flags.reset==1 && tcp.srcport=={nginx['refused']}",
          outcome="ECONNREFUSED", kind="rst")


# -- HAProxy: termination state SC (the server refused) -------------------------------

HAPROXY_CONFIG = """
global
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option dontlognull
  retries 0
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server srv1 127.0.0.1:{backend}
"""


def test_haproxy_sc_server_refused(tmp_path):
    import select

    binary = tool_or_skip("haproxy")
    curl = tool_or_skip("curl")
    port, backend = closed_ports(2)
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port, backend=backend))
    # Its log times are local time: UTC here, as explain --tz UTC reads them.
    proc = subprocess.Popen([binary, "-f", str(config), "-db"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TZ": "UTC"})
    try:
        wait_listening(port, proc=proc)
        with capture(tmp_path, [port, backend]) as pcap:
            status = run_line([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/"])
            assert status == "503"
            ready, _, _ = select.select([proc.stdout], [], [], 20)  # its log line, at the session's end
            assert ready, "HAProxy logged nothing"
            line = proc.stdout.readline().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert " SC-- " in line, line
    check(pcap, [line], tmp_path, f"tcp.flags.reset==1 && tcp.srcport=={backend}", outcome="ECONNREFUSED",
          kind="rst")


# -- Go: its own log package, every classic failure (tests/programs/teardowns) --------------

def test_go_teardowns_link_by_their_4tuples(tmp_path_factory, tmp_path):
    """Go's net errors name both endpoints: each line links to the frame whose
    ports tshark matches (the whole of lo is captured; other traffic may be there)."""
    from test_strace import build_go_teardowns

    binary = build_go_teardowns(tmp_path_factory)
    with capture(tmp_path, []) as pcap:
        done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    document = explain_log(pcap, done.stderr.splitlines(), tmp_path)
    links = {link["call"]["errno"]: link for link in document["links"] if link["call"]["source"] == "log"}
    assert set(links) == {"ECONNREFUSED", "ECONNRESET", "EPIPE", "EOF", "EBADF", "ETIMEDOUT"}, links.keys()
    assert links["EOF"]["cause"]["kind"] == "fin"  # Go's bare "EOF" names no endpoint: matched by time
    for errno, flag, first in (("ECONNREFUSED", "reset", False), ("ECONNRESET", "reset", False),
                               ("EPIPE", "reset", False)):
        call = links[errno]["call"]
        remote = call["remote"].rpartition(":")[2]
        toward = f" && tcp.dstport=={call['local'].rpartition(':')[2]}" if call["local"] else ""
        frames = tshark_frames(pcap, f"tcp.flags.{flag}==1 && tcp.srcport=={remote}{toward}")
        assert frames and links[errno]["cause"]["frame"] == (frames[0] if first else frames[-1]), links[errno]
    assert links["EBADF"]["cause"]["kind"] == "local-close" and links["EBADF"]["rule"] == "closed-descriptor"
    assert "made this error itself" in links["EBADF"]["explanation"]  # net.ErrClosed: no system call ran
    assert links["ETIMEDOUT"]["rule"] == "recv-timeout"


# -- Node.js -----------------------------------------------------------------------

NODE_CASES = {  # mode -> (server mode or None for a closed port, the line's words, outcome, kind, filter, runtime)
    "read-reset": ("read-rst", "Error: read ECONNRESET", "ECONNRESET", "rst", "tcp.flags.reset==1 && tcp.srcport=={port}", False),
    "write-epipe": ("fin", "Error: write EPIPE", "EPIPE", "rst", "tcp.flags.reset==1 && tcp.srcport=={port}", False),
    "ended": ("fin", "Error: This socket has been ended by the other party", "EOF", "fin",
              "tcp.flags.fin==1 && tcp.srcport=={port}", True),
    "refused": (None, "Error: connect ECONNREFUSED 127.0.0.1:", "ECONNREFUSED", "rst",
                "tcp.flags.reset==1 && tcp.srcport=={port}", False),
    "hang-up": ("read-fin", "Error: socket hang up", "EOF", "fin", "tcp.flags.fin==1 && tcp.srcport=={port}", True),
    # The server reads the ClientHello before closing: closing first would race it into an RST.
    "tls": ("read-fin", "Client network socket disconnected before secure TLS connection was established", "EOF", "fin",
            "tcp.flags.fin==1 && tcp.srcport=={port}", True),
    "fetch": ("read-fin", "SocketError: other side closed", "EOF", "fin", "tcp.flags.fin==1 && tcp.srcport=={port}",
              True),
}


@pytest.mark.parametrize("mode", sorted(NODE_CASES))
def test_nodejs(mode, tmp_path):
    node = tool_or_skip("node")
    server_mode, words, outcome, kind, display_filter, runtime = NODE_CASES[mode]
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(peer(server_mode)).port if server_mode else closed_port()
        with capture(tmp_path, [port]) as pcap:
            line = run_line([node, str(HERE / "fail.js"), mode, str(port)])
    assert words in line, line  # Node's own words, printed with its own timestamp
    check(pcap, [line], tmp_path, display_filter.format(port=port), outcome=outcome, kind=kind, runtime=runtime)


# -- Java ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    javac = tool_or_skip("javac")
    out = tmp_path_factory.mktemp("java")
    subprocess.run([javac, "-d", str(out), str(HERE / "Fail.java")], check=True, timeout=300)
    return out


JAVA_CASES = {  # mode -> (server mode, words, outcome, cause kind, the op its stack trace names)
    "reset": ("read-rst", "java.net.SocketException: Connection reset", "ECONNRESET", "rst", "read"),
    "broken-pipe": ("fin", "java.net.SocketException: Broken pipe", "EPIPE", "rst", "write"),
    "refused": (None, "java.net.ConnectException: Connection refused", "ECONNREFUSED", "rst", "connect"),
}


@pytest.mark.parametrize("mode", sorted(JAVA_CASES))
def test_java(mode, java_classes, tmp_path):
    java = tool_or_skip("java")
    server_mode, words, outcome, kind, op = JAVA_CASES[mode]
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(peer(server_mode)).port if server_mode else closed_port()
        with capture(tmp_path, [port]) as pcap:
            record = run_line([java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", str(java_classes), "Fail",
                               mode, str(port)])
    assert words in record.splitlines()[0], record
    link = check(pcap, record.splitlines(), tmp_path, f"tcp.flags.reset==1 && tcp.srcport=={port}",
                 outcome=outcome, kind=kind)
    assert link["call"]["op"] == op, record  # from the stack frame under the exception


# -- curl (exit codes 52, 56, 7), with strace as a second witness -------------------------

CURL_CASES = {
    52: ("read-fin", "curl: (52) Empty reply from server", "EOF", "fin", "tcp.flags.fin==1 && tcp.srcport=={port}"),
    56: ("read-rst", "curl: (56) Recv failure: Connection reset by peer", "ECONNRESET", "rst",
         "tcp.flags.reset==1 && tcp.srcport=={port}"),
    7: (None, "curl: (7) Failed to connect to 127.0.0.1 port", "ECONNREFUSED", "rst",
        "tcp.flags.reset==1 && tcp.srcport=={port}"),
}


@pytest.mark.parametrize("code", sorted(CURL_CASES))
def test_curl(code, tmp_path):
    curl = tool_or_skip("curl")
    strace = tool_or_skip("strace")
    server_mode, words, outcome, kind, display_filter = CURL_CASES[code]
    trace = tmp_path / "curl.strace"
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(peer(server_mode)).port if server_mode else closed_port()
        with capture(tmp_path, [port]) as pcap:
            proc = subprocess.run([strace, "-f", "-ttt", "-T", "-yy", "-e", "trace=network,read,write,close",
                                   "-o", str(trace), curl, "-sS", f"http://127.0.0.1:{port}/"],
                                  capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    line = stamp(proc.stderr.strip().splitlines()[-1])
    assert words in line, line
    link = check(pcap, [line], tmp_path, display_filter.format(port=port), outcome=outcome, kind=kind)
    # strace saw the failing call itself: its link names the same frame.
    document = explain_log(pcap, [line], tmp_path, "--strace", trace)
    traced = [other for other in document["links"] if other["call"]["source"] == "strace"
              and other["call"]["errno"] == outcome]
    assert traced and traced[-1]["cause"]["frame"] == link["cause"]["frame"], json.dumps(document, indent=1)


# -- redis: the server's idle timeout, seen by redis-cli and redis-py ------------------------

@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    binary = tool_or_skip("redis-server")
    port = closed_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--timeout", "1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc=proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_close_wait(port: int) -> None:
    """Until a client socket toward `port` is in CLOSE_WAIT: the server's FIN arrived."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Htn", "state", "close-wait", "dport", f"= :{port}"],
                             capture_output=True, text=True, timeout=10).stdout
        if out.strip():
            return
        time.sleep(0.02)  # wait-ok: polling the socket table for the idle timeout's FIN
    raise AssertionError("the server never closed the idle connection")


def test_redis_cli_server_closed_the_connection(redis_port, tmp_path):
    cli = tool_or_skip("redis-cli")
    tool_or_skip("ss")
    with capture(tmp_path, [redis_port]) as pcap:
        proc = subprocess.Popen([cli, "-p", str(redis_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            proc.stdin.write("PING\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "PONG"
            wait_close_wait(redis_port)
            out, _ = proc.communicate("PING\n", timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    line = stamp(out.strip().splitlines()[0])
    assert "Error: Server closed the connection" in line, out
    check(pcap, [line], tmp_path, f"tcp.flags.fin==1 && tcp.srcport=={redis_port}", outcome="EOF", kind="fin",
          runtime=True)


def test_redis_cli_could_not_connect(tmp_path):
    cli = tool_or_skip("redis-cli")
    port = closed_port()
    with capture(tmp_path, [port]) as pcap:
        line = stamp(run_line([cli, "-p", str(port), "PING"]))
    assert f"Could not connect to Redis at 127.0.0.1:{port}: Connection refused" in line, line
    link = check(pcap, [line], tmp_path, f"tcp.flags.reset==1 && tcp.srcport=={port}", outcome="ECONNREFUSED",
                 kind="rst")
    assert link["call"]["remote"] == f"127.0.0.1:{port}"


def test_redis_py_connection_closed_by_server(redis_port, tmp_path):
    redis = pytest.importorskip("redis", reason="needs the redis Python package (pip install redis)")
    import select

    with capture(tmp_path, [redis_port]) as pcap:
        connection = redis.Connection(host="127.0.0.1", port=redis_port)
        try:
            connection.connect()
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG", True)
            readable, _, _ = select.select([connection._sock], [], [], 20)  # the idle timeout's FIN
            assert readable
            with pytest.raises(redis.exceptions.ConnectionError) as caught:
                connection.read_response()
        finally:
            connection.disconnect()
    line = stamp(f"{type(caught.value).__module__}.{type(caught.value).__name__}: {caught.value}")
    assert "Connection closed by server." in line
    check(pcap, [line], tmp_path, f"tcp.flags.fin==1 && tcp.srcport=={redis_port}", outcome="EOF", kind="fin",
          runtime=True)


# -- Python requests, on lo and on -i any ------------------------------------------------------

@pytest.mark.parametrize("iface", ["lo", "any"])
def test_python_requests_remote_disconnected(iface, tmp_path):
    requests = pytest.importorskip("requests", reason="needs the requests Python package (pip install requests)")
    import logging

    record = tmp_path / "requests.log"
    logger = logging.getLogger(f"tcpteardown-test-{iface}")
    handler = logging.FileHandler(record)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    formatter.converter = time.gmtime  # the log is in UTC, as explain --tz UTC reads it
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    try:
        with peer("read-fin") as server, capture(tmp_path, [server.port], iface=iface) as pcap:
            with pytest.raises(requests.exceptions.ConnectionError) as caught:
                requests.get(f"http://127.0.0.1:{server.port}/", timeout=20)
            logger.error("%s: %s", type(caught.value).__name__, caught.value)
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = record.read_text().splitlines()
    assert "RemoteDisconnected('Remote end closed connection without response')" in lines[0]
    check(pcap, lines, tmp_path, f"tcp.flags.fin==1 && tcp.srcport=={server.port}", outcome="EOF", kind="fin",
          runtime=True)


# -- across a veth pair: Ethernet framing, non-loopback addresses ------------------------------

@contextlib.contextmanager
def veth_namespace():
    """A namespace joined to the root one by a veth pair: (namespace, our
    address, its address, our interface). Removed always."""
    ip = tool_or_skip("ip")
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and a veth pair")
    tag = f"{os.getpid() % 100000}"
    name, ours, theirs = f"ttlogs{tag}", f"ttl{tag}a", f"ttl{tag}b"
    subnet = 10 + os.getpid() % 200
    here, there = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    def run(*args):
        subprocess.run([ip, *args], check=True, capture_output=True, timeout=30)

    try:
        run("netns", "add", name)
        run("link", "add", ours, "type", "veth", "peer", "name", theirs)
        run("link", "set", theirs, "netns", name)
        run("addr", "add", f"{here}/30", "dev", ours)
        run("link", "set", ours, "up")
        run("-n", name, "addr", "add", f"{there}/30", "dev", theirs)
        run("-n", name, "link", "set", theirs, "up")
        run("-n", name, "link", "set", "lo", "up")
        yield name, here, there, ours
    finally:
        subprocess.run([ip, "link", "del", ours], capture_output=True, timeout=30)
        subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=30)


SERVER_IN_NAMESPACE = """
import socket, struct, sys
listener = socket.create_server((sys.argv[1], 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.recv(65536)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
"""


def test_curl_across_a_veth_pair_with_ethernet_framing(tmp_path):
    curl = tool_or_skip("curl")
    tcpdump = tool_or_skip("tcpdump")
    with veth_namespace() as (name, here, there, iface):
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER_IN_NAMESPACE, there],
                                  stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            pcap = tmp_path / "veth.pcap"
            # On the veth itself (Ethernet): tcpdump's stop marker cannot cross it, so the
            # test waits for the frames it needs (the RST) in the file before stopping it.
            dump = subprocess.Popen([tcpdump, "-i", iface, "-U", "-n", "-w", str(pcap), f"tcp port {port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                ready = b""
                while b"listening on" not in ready:
                    chunk = dump.stderr.readline()
                    assert chunk, "tcpdump exited before listening"
                    ready += chunk
                proc = subprocess.run([curl, "-sS", f"http://{there}:{port}/"], capture_output=True, text=True,
                                      timeout=60)
                deadline = time.monotonic() + 10
                while not tshark_frames(pcap, "tcp.flags.reset==1") and time.monotonic() < deadline:
                    time.sleep(0.05)  # wait-ok: polling the file for the RST tcpdump must write
            finally:
                dump.terminate()
                dump.wait(timeout=10)
                dump.stderr.close()
        finally:
            server.kill()
            server.wait(timeout=10)
            server.stdout.close()
    assert proc.returncode == 56, proc.stderr
    encapsulation = subprocess.run(["tshark", "-r", str(pcap), "-c", "1", "-T", "fields", "-e", "frame.protocols"],
                                   capture_output=True, text=True, timeout=60).stdout
    assert encapsulation.startswith("eth:"), encapsulation
    line = stamp(proc.stderr.strip().splitlines()[-1])
    link = check(pcap, [line], tmp_path, f"tcp.flags.reset==1 && ip.src=={there}", outcome="ECONNRESET", kind="rst")
    assert link["cause"]["src"] == f"{there}:{port}"
