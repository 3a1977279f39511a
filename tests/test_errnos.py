"""The Rosetta: numbers per OS, phrases per language, and reading messages back."""

from __future__ import annotations

import errno as host_errno
import os
import platform
import socket

import pytest

from tcpteardown import errnos
from tcpteardown.errnos import name_from_number, number, phrase, strerror
from tcpteardown.messages import match_message, read_message

# (name, Linux number, macOS number, Linux strerror, macOS strerror)
NUMBERS = [
    ("EPIPE", 32, 32, "Broken pipe", "Broken pipe"),
    ("ECONNRESET", 104, 54, "Connection reset by peer", "Connection reset by peer"),
    ("ECONNREFUSED", 111, 61, "Connection refused", "Connection refused"),
    ("ETIMEDOUT", 110, 60, "Connection timed out", "Operation timed out"),
    ("EHOSTUNREACH", 113, 65, "No route to host", "No route to host"),
    ("ENETUNREACH", 101, 51, "Network is unreachable", "Network is unreachable"),
    ("ECONNABORTED", 103, 53, "Software caused connection abort", "Software caused connection abort"),
    ("EBADF", 9, 9, "Bad file descriptor", "Bad file descriptor"),
    ("EAGAIN", 11, 35, "Resource temporarily unavailable", "Resource temporarily unavailable"),
    ("EINPROGRESS", 115, 36, "Operation now in progress", "Operation now in progress"),
    ("ENOTCONN", 107, 57, "Transport endpoint is not connected", "Socket is not connected"),
]


@pytest.mark.parametrize("name, linux, darwin, linux_text, darwin_text", NUMBERS)
def test_numbers_and_texts_per_os(name, linux, darwin, linux_text, darwin_text):
    assert number(name, "Linux") == linux
    assert number(name, "Darwin") == darwin
    assert strerror(name, "Linux") == linux_text
    assert strerror(name, "Darwin") == darwin_text
    assert name_from_number(linux, "Linux") == name
    assert name_from_number(darwin, os="Darwin") == name


@pytest.mark.parametrize("name", [row[0] for row in NUMBERS])
def test_table_agrees_with_this_host(name):
    """The host's own errno module is an independent source for its OS."""
    system = platform.system()
    if system not in ("Linux", "Darwin"):
        pytest.skip(f"no table for {system}")
    value = getattr(host_errno, name)
    assert number(name, system) == value
    assert strerror(name, system) == os.strerror(value)  # glibc on Linux, libc on macOS


def test_eof_and_aliases():
    assert number("EOF") is None and strerror("EOF", "Darwin") is None
    assert number("EWOULDBLOCK", "Darwin") == 35
    assert name_from_number(12345) is None
    with pytest.raises(ValueError, match="unknown errno"):
        number("ENOPE")
    with pytest.raises(ValueError, match="unknown OS"):
        number("EPIPE", "Windows")
    with pytest.raises(ValueError, match="unknown language"):
        phrase("EPIPE", "Cobol")


L, R = "127.0.0.1:50389", "127.0.0.1:8080"

# (name, lang, op, expected message) -- as each runtime prints it.
PHRASES = [
    ("EPIPE", "Go", "write", f"write tcp {L}->{R}: write: broken pipe"),
    ("EPIPE", "Go", "sendto", f"write tcp {L}->{R}: write: broken pipe"),
    ("ECONNRESET", "Go", "read", f"read tcp {L}->{R}: read: connection reset by peer"),
    ("ECONNRESET", "Go", "recv", f"read tcp {L}->{R}: read: connection reset by peer"),
    ("ECONNREFUSED", "Go", "connect", f"dial tcp {R}: connect: connection refused"),
    ("EBADF", "Go", "read", f"read tcp {L}->{R}: use of closed network connection"),
    ("ETIMEDOUT", "Go", "read", f"read tcp {L}->{R}: i/o timeout"),
    ("EOF", "Go", "read", "EOF"),
    ("EPIPE", "Python", "send", "BrokenPipeError: [Errno 32] Broken pipe"),
    ("ECONNRESET", "Python", "recv", "ConnectionResetError: [Errno 104] Connection reset by peer"),
    ("ECONNREFUSED", "Python", "connect", "ConnectionRefusedError: [Errno 111] Connection refused"),
    ("ECONNRESET", "Java", "read", "java.net.SocketException: Connection reset"),
    ("EPIPE", "Java", "write", "java.net.SocketException: Broken pipe (Write failed)"),
    ("ECONNREFUSED", "Java", "connect", "java.net.ConnectException: Connection refused"),
    ("ETIMEDOUT", "Java", "read", "java.net.SocketTimeoutException: Read timed out"),
    ("ECONNRESET", "Node", "read", "Error: read ECONNRESET"),
    ("EPIPE", "Node", "write", "Error: write EPIPE"),
    ("ECONNREFUSED", "Node", "connect", f"Error: connect ECONNREFUSED {R}"),
    ("ECONNRESET", "curl", "recv", "curl: (56) Recv failure: Connection reset by peer"),
    ("EPIPE", "curl", "send", "curl: (55) Send failure: Broken pipe"),
    ("EOF", "curl", "recv", "curl: (52) Empty reply from server"),
    ("ETIMEDOUT", "curl", "recv", "curl: (28) Operation timed out after 1000 milliseconds with 0 bytes received"),
]


@pytest.mark.parametrize("name, lang, op, expected", PHRASES)
def test_phrase(name, lang, op, expected):
    assert phrase(name, lang, op=op, local=L, remote=R) == expected


def test_phrase_per_os_and_without_endpoints():
    assert phrase("ECONNRESET", "Python", os="Darwin") == "ConnectionResetError: [Errno 54] Connection reset by peer"
    assert phrase("ENOTCONN", "Go", op="write", os="Darwin") == "write: socket is not connected"
    assert phrase("EPIPE", "Go", op="write") == "write: broken pipe"
    assert phrase("EAGAIN", "Go", op="read") is None  # Go's poller never shows it


@pytest.mark.parametrize("name", list(errnos.ERRNOS))
@pytest.mark.parametrize("lang", errnos.LANGUAGES)
@pytest.mark.parametrize("op", ["read", "write", "connect"])
def test_every_phrase_reads_back_as_its_errno(name, lang, op):
    """phrase() and match_message() are two views of one table: a round trip."""
    text = phrase(name, lang, op=op, local=L, remote=R)
    if text is None or text == "recv() returned b''":
        return  # not reported, or (Python EOF) a return value rather than a message
    found = match_message(text)
    assert found is not None, text
    assert found[0] == name, text


# Real-looking log messages -> (errno, lang, op, local, remote)
MESSAGES = [
    ("write tcp 127.0.0.1:50389->127.0.0.1:8080: write: broken pipe", "EPIPE", "Go", "write", L, R),
    ("read tcp [::1]:5->[::1]:6: read: connection reset by peer", "ECONNRESET", "Go", "read", "[::1]:5", "[::1]:6"),
    ('Get "http://10.0.0.1:8080/": dial tcp 10.0.0.1:8080: connect: connection refused', "ECONNREFUSED", "Go",
     "connect", None, "10.0.0.1:8080"),
    ("dial tcp 10.0.0.1:8080: i/o timeout", "ETIMEDOUT", "Go", "connect", None, "10.0.0.1:8080"),
    ("dial tcp 10.0.0.1:8080: connect: connection timed out", "ETIMEDOUT", "Go", "connect", None, "10.0.0.1:8080"),
    ("write tcp 10.0.0.2:5->10.0.0.1:80: write: operation timed out", "ETIMEDOUT", "Go", "write", "10.0.0.2:5",
     "10.0.0.1:80"),
    ("accept tcp [::]:8080: use of closed network connection", "EBADF", "Go", "accept", "[::]:8080", None),
    ('Post "http://x/": EOF', "EOF", "Go", "recv", None, None),
    ("unexpected EOF", "EOF", "Go", "recv", None, None),
    ("ConnectionResetError: [Errno 54] Connection reset by peer", "ECONNRESET", "Python", "recv", None, None),
    ("requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, "
     "'Connection reset by peer'))", "ECONNRESET", "Python", "recv", None, None),
    ("socket.timeout: timed out", "ETIMEDOUT", "Python", "recv", None, None),
    ("http.client.RemoteDisconnected: Remote end closed connection without response", "EOF", "Python", "recv",
     None, None),
    ("Caused by: java.net.SocketException: Connection reset by peer (Write failed)", "ECONNRESET", "Java",
     "write", None, None),
    ("java.net.ConnectException: Connection refused (Connection refused)", "ECONNREFUSED", "Java", "connect",
     None, None),
    ("java.io.IOException: Broken pipe", "EPIPE", "Java", "write", None, None),
    ("java.net.SocketTimeoutException: connect timed out", "ETIMEDOUT", "Java", "connect", None, None),
    ("Error: connect ECONNREFUSED ::1:8080", "ECONNREFUSED", "Node", "connect", None, "::1:8080"),
    ("Error: write EPIPE", "EPIPE", "Node", "write", None, None),
    ("Error: socket hang up", "EOF", "Node", "recv", None, None),
    ("curl: (7) Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server", "ECONNREFUSED",
     "curl", "connect", None, "127.0.0.1:1"),
    ("curl: (7) Failed to connect to ::1 port 8080: Connection refused", "ECONNREFUSED", "curl", "connect", None,
     "[::1]:8080"),
    ("curl: (28) Failed to connect to 10.0.0.1 port 80 after 1001 ms: Connection timed out", "ETIMEDOUT", "curl",
     "connect", None, "10.0.0.1:80"),
    ("curl: (18) transfer closed with 1000 bytes remaining to read", "EOF", "curl", "recv", None, None),
    ("*3 readv() failed (104: Connection reset by peer) while reading upstream", "ECONNRESET", "nginx", "readv",
     None, None),
    ("upstream said: Connection refused", "ECONNREFUSED", "unknown", "connect", None, None),
]


@pytest.mark.parametrize("text, name, lang, op, local, remote", MESSAGES)
def test_read_message(text, name, lang, op, local, remote):
    found = read_message(text)
    assert found is not None
    assert (found.errno, found.lang, found.op) == (name, lang, op)
    assert (found.local, found.remote) == (local, remote)


@pytest.mark.parametrize("text", [
    "", "GET /index.html 200", "step eof", "reading EOF marker ok? no: Eofs", "connection established",
    "curl: (6) Could not resolve host: nope", "error: file not found",
])
def test_lines_without_teardown_errors(text):
    assert match_message(text) is None


def test_python_prints_what_the_table_says():
    """Python itself is a real program: its exception text must match phrase()."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    client = socket.socket()
    try:
        with pytest.raises(ConnectionRefusedError) as caught:
            client.connect(("127.0.0.1", port))
    finally:
        client.close()
    text = f"{type(caught.value).__name__}: {caught.value}"
    assert text == phrase("ECONNREFUSED", "Python", op="connect", os=platform.system())
    assert match_message(text) == ("ECONNREFUSED", "Python")
