"""The catalogue of real phrasings (messages.py): every row reads its
own example back, with the outcome, op and endpoints it reveals. These are
string fixtures, each naming where the phrasing comes from (the row's
`origin` says it too); the programs installed here print theirs for real in
tests/test_program_logs.py."""

from __future__ import annotations

import pytest

from tcpteardown.messages import BY_STRERROR, CATALOGUE, GATE_WORDS, KERNEL, RUNTIME, read_message
from tcpteardown.model import RECEIVE_OPS

# key -> (outcome, op, remote, by). The example text of each row is in the catalogue.
EXPECTED = {
    "nginx-upstream-prematurely-closed": ("EOF", "recv", "127.0.0.1:28307", RUNTIME),
    "nginx-client-prematurely-closed": ("EOF", "recv", None, RUNTIME),
    "nginx-upstream-timed-out": ("ETIMEDOUT", "recv", "127.0.0.1:28307", RUNTIME),
    "nginx-syscall-failed": ("ECONNRESET", "recv", "127.0.0.1:28307", KERNEL),
    "haproxy-termination-state": ("EOF", "recv", None, KERNEL),
    "haproxy-timeout": ("ETIMEDOUT", "connect", None, RUNTIME),
    "envoy-timeout": ("ETIMEDOUT", "recv", "127.0.0.1:8080", RUNTIME),
    "curl-timeout": ("ETIMEDOUT", "recv", None, RUNTIME),
    "java-timeout": ("ETIMEDOUT", "read", None, RUNTIME),
    "python-timeout": ("ETIMEDOUT", "recv", None, RUNTIME),
    "envoy-response-flags": ("EOF", "recv", "127.0.0.1:8080", KERNEL),
    "curl-exit": ("ECONNRESET", "recv", None, KERNEL),
    "redis-cli-server-closed": ("EOF", "recv", None, RUNTIME),
    "redis-cli-could-not-connect": ("ECONNREFUSED", "connect", "127.0.0.1:6390", KERNEL),
    "redis-py-closed-by-server": ("EOF", "recv", None, RUNTIME),
    "redis-py-error-while-reading": ("ECONNRESET", "recv", "127.0.0.1:6379", KERNEL),
    "redis-py-error-connecting": ("ECONNREFUSED", "connect", "127.0.0.1:6390", KERNEL),
    "libpq-server-closed": ("EOF", "recv", None, RUNTIME),
    "postgres-could-not-receive": ("ECONNRESET", "recv", None, KERNEL),
    "postgres-unexpected-eof": ("EOF", "recv", None, RUNTIME),
    "mysql-aborted-connection": ("EOF", "recv", None, RUNTIME),
    "node-ended-by-other-party": ("EOF", "recv", None, RUNTIME),
    "node-tls-disconnected": ("EOF", "recv", None, RUNTIME),
    "undici-other-side-closed": ("EOF", "recv", None, RUNTIME),
    "node-socket-hang-up": ("EOF", "recv", None, RUNTIME),
    "node-syscall-code": ("ECONNREFUSED", "connect", "127.0.0.1:8080", KERNEL),
    "node-stream-destroyed": ("EBADF", "write", None, RUNTIME),
    "netty-native-io": ("ECONNRESET", "recv", None, KERNEL),
    "java-exception": ("ECONNRESET", "read", None, KERNEL),
    "python-remote-disconnected": ("EOF", "recv", None, RUNTIME),
    "aiohttp-server-disconnected": ("EOF", "recv", None, RUNTIME),
    "python-oserror": ("ECONNRESET", "recv", None, KERNEL),
    "python-errno-bracket": ("ECONNREFUSED", "connect", None, KERNEL),
    "go-net-op-error": ("EPIPE", "write", "127.0.0.1:8080", KERNEL),
    "go-syscall-error": ("ECONNRESET", "read", None, KERNEL),
    "go-use-of-closed": ("EBADF", "read", None, RUNTIME),
    "go-io-timeout": ("ETIMEDOUT", "recv", None, RUNTIME),
    "go-server-closed-idle": ("EOF", "recv", None, RUNTIME),
    "go-transport-broken": ("EOF", "recv", None, RUNTIME),
    "grpc-eof": ("EOF", "recv", None, RUNTIME),
    "go-eof": ("EOF", "recv", None, RUNTIME),
    "strerror-any": ("ECONNREFUSED", "connect", None, KERNEL),
}


def test_every_row_has_an_expectation():
    assert set(EXPECTED) == {row.key for row in CATALOGUE}


@pytest.mark.parametrize("row", CATALOGUE, ids=lambda row: row.key)
def test_each_example_is_read_by_its_own_row(row):
    found = read_message(row.example)
    assert found is not None, row.example
    assert found.phrasing is row, (row.key, found.phrasing.key)
    outcome, op, remote, by = EXPECTED[row.key]
    assert (found.errno, found.op, found.remote, row.by) == (outcome, op, remote, by)
    assert row.origin and row.side
    if row.by == RUNTIME and found.errno == "EOF":
        assert row.decided_by, "a runtime's error made from an EOF names what it saw"


# More phrasings of the list, each with where it comes from:
# (text, outcome, op, remote, program)
MORE = [
    # nginx src/os/unix/ngx_recv.c / ngx_event_connect.c / ngx_writev_chain.c
    ('connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: _, '
     'request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:9/", host: "x"', "ECONNREFUSED", "connect",
     "127.0.0.1:9", "nginx"),
    ("writev() failed (32: Broken pipe) while sending to client, client: 127.0.0.1", "EPIPE", "writev", None,
     "nginx"),
    ('upstream timed out (110: Connection timed out) while connecting to upstream, client: 10.0.0.1, '
     'upstream: "http://10.0.0.2:8080/"', "ETIMEDOUT", "connect", "10.0.0.2:8080", "nginx"),
    # HAProxy doc/configuration.txt 8.5: SC refused, sC connect timeout, CD client gone, tcplog's 2 letters
    ('10.0.0.1:51000 [30/Nov/2026:19:49:04.123] fe be/srv1 0/0/-1/-1/1 503 217 - - SC-- 1/1/0/0/3 0/0 "GET / '
     'HTTP/1.1"', "ECONNREFUSED", "connect", None, "HAProxy"),
    ('10.0.0.1:51000 [30/Nov/2026:19:49:04.123] fe be/srv1 0/0/-1/-1/5000 503 217 - - sC-- 1/1/0/0/3 0/0 '
     '"GET / HTTP/1.1"', "ETIMEDOUT", "connect", None, "HAProxy"),
    ("10.0.0.1:51000 [30/Nov/2026:19:49:04.123] fe be/srv1 0/0/120 512 CD 1/1/0/0/0 0/0", "EOF", "recv",
     "10.0.0.1:51000", "HAProxy"),
    # Envoy access log flags and details
    ('[2026-11-30T19:49:04.123Z] "GET / HTTP/1.1" 503 UF upstream_reset_before_response_started'
     '{remote_connection_failure,delayed_connect_error:_111} - "-" 0 91 1 - "-" "curl/8.5.0" "id" "h" '
     '"127.0.0.1:9"', "ECONNREFUSED", "connect", "127.0.0.1:9", "Envoy"),
    ('[2026-11-30T19:49:04.123Z] "GET / HTTP/1.1" 503 UC upstream_reset_before_response_started'
     '{remote_reset} - "-" 0 95 2 - "-" "curl/8.5.0" "id" "h" "127.0.0.1:8080"', "ECONNRESET", "recv",
     "127.0.0.1:8080", "Envoy"),
    ('[2026-11-30T19:49:04.123Z] "GET / HTTP/1.1" 0 DC downstream_remote_disconnect - "-" 0 0 2 - "-" '
     '"curl/8.5.0" "id" "h" "127.0.0.1:8080"', "EOF", "recv", None, "Envoy"),
    ('[2026-11-30T19:49:04.123Z] "GET / HTTP/1.1" 504 UT response_timeout - "-" 0 24 15000 - "-" "curl/8.5.0" '
     '"id" "h" "127.0.0.1:8080"', "ETIMEDOUT", "recv", "127.0.0.1:8080", "Envoy"),
    # Node.js lib/net.js (libuv errno names)
    ("Error: read ECONNRESET", "ECONNRESET", "read", None, "Node"),
    ("Error: write EPIPE", "EPIPE", "write", None, "Node"),
    # Java: OpenJDK texts
    ("java.net.SocketException: Broken pipe", "EPIPE", "write", None, "Java"),
    ("java.net.SocketException: Socket closed", "EBADF", "read", None, "Java"),
    ("java.net.ConnectException: Connection refused", "ECONNREFUSED", "connect", None, "Java"),
    ("java.net.SocketTimeoutException: Read timed out", "ETIMEDOUT", "read", None, "Java"),
    ("java.net.SocketTimeoutException: connect timed out", "ETIMEDOUT", "connect", None, "Java"),
    ("io.netty.channel.unix.Errors$NativeIoException: writevAddresses(..) failed: Broken pipe", "EPIPE", "send",
     None, "Netty"),
    # Python: exceptions and the libraries' wrappings
    ("BrokenPipeError: [Errno 32] Broken pipe", "EPIPE", "send", None, "Python"),
    ("urllib3.exceptions.ProtocolError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by "
     "peer'))", "ECONNRESET", "recv", None, "Python"),
    ("requests.exceptions.ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded "
     "with url: / (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to "
     "establish a new connection: [Errno 111] Connection refused'))", "ECONNREFUSED", "connect", None, "Python"),
    ("psycopg2.OperationalError: server closed the connection unexpectedly\n\tThis probably means the server "
     "terminated abnormally", "EOF", "recv", None, "psycopg"),
    # Go: net/http and gRPC wrappings
    ('Get "http://127.0.0.1:8080/": net/http: HTTP/1.x transport connection broken: write tcp '
     '127.0.0.1:5->127.0.0.1:8080: write: broken pipe', "EPIPE", "write", "127.0.0.1:8080", "Go"),
    ('rpc error: code = Unavailable desc = error reading from server: read tcp 127.0.0.1:5->127.0.0.1:50051: '
     'read: connection reset by peer', "ECONNRESET", "read", "127.0.0.1:50051", "Go"),
    ("unexpected EOF", "EOF", "recv", None, "Go"),
    # curl's exit codes (lib/strerror.c)
    ("curl: (52) Empty reply from server", "EOF", "recv", None, "curl"),
    ("curl: (55) Send failure: Broken pipe", "EPIPE", "send", None, "curl"),
    ("curl: (7) Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server", "ECONNREFUSED",
     "connect", "127.0.0.1:9", "curl"),
    ("curl: (28) Operation timed out after 1001 milliseconds with 0 bytes received", "ETIMEDOUT", "recv", None,
     "curl"),
    # MySQL: wait_timeout
    ("Aborted connection 9 to db: 'a' user: 'b' host: 'h' (Got timeout reading communication packets)",
     "ETIMEDOUT", "recv", None, "MySQL"),
    # PostgreSQL: send side
    ("LOG:  could not send data to client: Broken pipe", "EPIPE", "send", None, "PostgreSQL"),
]


@pytest.mark.parametrize("text, outcome, op, remote, program", MORE)
def test_more_phrasings(text, outcome, op, remote, program):
    found = read_message(text)
    assert found is not None, text
    assert (found.errno, found.op, found.remote, found.lang) == (outcome, op, remote, program)


def test_ambiguous_words_name_their_alternatives():
    assert read_message("Error: socket hang up").alternatives == ("ECONNRESET",)
    assert read_message("Error: read ECONNRESET").alternatives == ()


def test_ops_are_the_models():
    found = read_message("recv() failed (104: Connection reset by peer) while reading upstream")
    assert found.op in RECEIVE_OPS


def test_the_gate_lets_every_phrasing_through():
    """read_message's fast path drops lines without a gate word: every row's
    needle and every strerror text must hold one (else its lines are lost)."""
    texts = [row.needle for row in CATALOGUE if row.needle] + list(BY_STRERROR)
    texts += ["use of closed network connection", "i/o timeout"]  # Go's own
    assert [text for text in texts if not any(word in text for word in GATE_WORDS)] == []
    assert read_message("GET /index.html 200 user=bob: took 12ms [worker 3]") is None


def test_runtime_texts_inside_a_go_net_error_are_the_runtimes():
    found = read_message("read tcp 127.0.0.1:5->127.0.0.1:6: use of closed network connection")
    assert (found.errno, found.op, found.remote, found.phrasing.key) == ("EBADF", "read", "127.0.0.1:6",
                                                                        "go-use-of-closed")
    assert read_message("read tcp 127.0.0.1:5->127.0.0.1:6: i/o timeout").phrasing.by == RUNTIME
    assert read_message("read tcp 127.0.0.1:5->127.0.0.1:6: read: connection reset by peer").phrasing.by == KERNEL


def test_proxies_say_how_long_after_their_timestamp_the_session_ended():
    """HAProxy stamps the accept date and prints Tt; Envoy the start and %DURATION%."""
    haproxy = read_message('127.0.0.1:40522 [30/Nov/2026:19:49:04.123] fe be/srv1 0/0/-1/-1/3005 503 217 - - '
                           'SC-- 1/1/0/0/3 0/0 "GET / HTTP/1.1"')
    assert (haproxy.errno, haproxy.elapsed_ns) == ("ECONNREFUSED", 3_005_999_999)  # ms, truncated
    envoy = read_message('[2026-11-30T19:49:04.123Z] "GET / HTTP/1.1" 504 UT response_timeout - "-" 0 24 15000 - '
                         '"-" "curl/8.5.0" "id" "h" "127.0.0.1:8080"')
    assert (envoy.errno, envoy.elapsed_ns) == ("ETIMEDOUT", 15_000_999_999)


def test_rows_are_picked_by_a_message_shape_digits_aside():
    """read_message picks the rows worth searching once per shape (digits made 0):
    sound only while no gate word, needle or any_of text holds a digit. Two messages
    of one shape still get their own reading (another port, an errno number this
    table does not know)."""
    texts = list(GATE_WORDS) + [row.needle for row in CATALOGUE] + [text for row in CATALOGUE for text in row.any_of]
    assert [text for text in texts if any(ch.isdigit() for ch in text)] == []
    first = read_message("write tcp 127.0.0.1:50389->127.0.0.1:8080: write: broken pipe")
    other = read_message("write tcp 127.0.0.1:50388->127.0.0.1:8080: write: broken pipe")
    assert (first.local, other.local) == ("127.0.0.1:50389", "127.0.0.1:50388")
    assert read_message("ConnectionResetError: [Errno 104] Connection reset by peer").errno == "ECONNRESET"
    assert read_message("OSError: [Errno 999] No such thing") is None
