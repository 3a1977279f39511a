"""The catalogue of real phrasings: what production programs print when a
socket call fails, and what each line reveals.

The other direction of `tcpteardown.errnos` (errno name -> how each language
prints it): message -> what it means. Like errnos.py it is pure data and sits
beside the model, so that both the log importer (formats/applog.py) and the
correlation (analysis/correlate.py: who made the error, FIN or RST) read it.

`CATALOGUE` holds one `Phrasing` per way a program words a teardown: the
errno (or ``EOF``) it stands for, whether the kernel reported it (a system
call returned that errno, or returned 0 for end-of-file) or the runtime made
it up from something else (Node's EPIPE after the peer's FIN, Go's "use of
closed network connection", Python's RemoteDisconnected), which socket it
is about (the program as client, as server, or a proxy's upstream or client
side), the endpoints it names, and where the phrasing comes from. Each row
carries an example exactly as the program prints it; the tests read every
example back, and tests/test_program_logs.py makes the real programs print
the ones installed here.

`read_message(text)` is the log importer's side: the first row whose
pattern matches (rows are ordered most specific first), as a `MessageMatch`.
errno numbers and strerror texts are read through `tcpteardown.errnos`' table
(never restated here); ops through the model's RECEIVE_OPS / SEND_OPS.

Pure: no I/O, no system lookups (a Linux log read on a Mac means the same).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Optional

from tcpteardown.errnos import ALIASES, ERRNOS, name_from_number
from tcpteardown.model import RECEIVE_OPS, SEND_OPS, writable_twin

__all__ = ["Phrasing", "MessageMatch", "CATALOGUE", "read_message", "match_message", "phrasing_named",
           "stack_frame_op", "GATE_WORDS", "BY_STRERROR",
           "KERNEL", "RUNTIME"]

KERNEL = "kernel"  # a system call returned this errno (or 0: end-of-file)
RUNTIME = "runtime"  # the program made the error itself, from an EOF, a timer or its own state


def _strerror_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for info in ERRNOS.values():
        for text in (info.linux_text, info.darwin_text):
            if text:
                index.setdefault(text.lower(), info.name)
    return index


# strerror text (Linux or macOS, lowercased) -> errno name: the Rosetta's, not a copy.
BY_STRERROR = _strerror_index()
_STRERROR_RE = "|".join(sorted((re.escape(t) for t in BY_STRERROR), key=len, reverse=True))
# Go lowercases strerror and adds two texts of its own (net.ErrClosed, os.ErrDeadlineExceeded).
_GO_TEXTS = {**BY_STRERROR, "use of closed network connection": "EBADF", "i/o timeout": "ETIMEDOUT"}
_GO_TEXTS_RE = "|".join(sorted((re.escape(t) for t in _GO_TEXTS), key=len, reverse=True))
_ADDR = r"(?:\[[0-9A-Fa-f:.%\w]+\]|[\w.\-]+):\d+"
_IP_PORT = r"(?:\[[0-9A-Fa-f:.%]+\]|\d{1,3}(?:\.\d{1,3}){3}):\d+"


def model_op(word: Optional[str]) -> Optional[str]:
    """A syscall or runtime op word (``recv()``, ``readv``, ``writev``, Go's
    ``dial``, Netty's ``recvAddress``) as the model's op, or None."""
    if not word:
        return None
    word = word.lower().rstrip("(").rstrip()
    if word in RECEIVE_OPS or word in SEND_OPS or word in ("connect", "accept", "close", "shutdown"):
        return word
    if word in ("dial",):
        return "connect"
    if word in ("accept4",):
        return "accept"
    if word.startswith(("recv", "read")):
        return "recv"
    if word.startswith(("send", "write")):
        return "send"
    return None


@dataclass(frozen=True, slots=True)
class MessageMatch:
    """What one log message says: errno name (or ``EOF``), the program that
    printed it (`lang`, for compatibility: Go, Python, Java, Node, curl,
    nginx, HAProxy, Envoy, ...), the model's op, endpoints as printed (or
    None), and the catalogue row that read it."""

    errno: str
    lang: str
    op: str
    local: Optional[str] = None
    remote: Optional[str] = None
    phrasing: Optional["Phrasing"] = None
    # How long after the line's own timestamp the failure came (a proxy stamps
    # its line with the session's start and prints its duration).
    elapsed_ns: int = 0

    @property
    def alternatives(self) -> tuple[str, ...]:
        """Other outcomes the words leave open (``socket hang up``: FIN or RST)."""
        return self.phrasing.also if self.phrasing else ()


@dataclass(frozen=True, slots=True)
class Phrasing:
    """One row of the catalogue.

    `errno`: the outcome it stands for (a name or ``EOF``); None when the
    message names it (a strerror text, an errno number, a Node code), read
    from the pattern's groups ``text``/``num``/``code``. `also`: outcomes the
    words do not rule out (tried by correlate when the first finds no
    segment). `op`: the model's op, or None to read it from the group ``op``
    (else the errno's default). `by`: KERNEL or RUNTIME; for RUNTIME,
    `decided_by` says what the runtime saw instead (``"end-of-file (the
    peer's FIN)"``). Groups ``local``/``remote`` (or ``host`` + ``port``) are
    endpoints. `needle`: lowercase text every match contains (a cheap gate).
    `any_of`: texts one of which every match contains, spelled as the pattern
    does (lowercase for an IGNORECASE pattern, checked in the lowered line);
    `shape`: a test every line it matches passes (a proxy's log line). Both only spare a row's search on lines it cannot read: a row
    whose needle is empty or common would otherwise search most lines.
    """

    key: str  # stable identifier, e.g. "node-ended-by-other-party"
    program: str
    example: str  # exactly as the program prints it
    pattern: re.Pattern
    needle: str
    errno: Optional[str]
    op: Optional[str]
    side: str  # "client", "server", "proxy, upstream side", "proxy, client side"
    by: str
    origin: str  # where the phrasing comes from
    also: tuple[str, ...] = ()
    decided_by: Optional[str] = None
    build: Optional[Callable[[re.Match, str], Optional[dict]]] = None  # row-specific reading of the groups
    any_of: tuple[str, ...] = ()
    shape: Optional[Callable[[str], bool]] = None

    def read(self, m: re.Match, text: str) -> Optional[MessageMatch]:
        groups = m.groupdict()  # a group that did not take part is None: .get() reads it as absent
        if self.build is not None:
            extra = self.build(m, text)
            if extra is None:
                return None
            groups.update(extra)
        errno = groups.get("errno") or self.errno or _errno_from(groups)
        if errno is None:
            return None
        errno = ALIASES.get(errno, errno)
        if errno != "EOF" and errno not in ERRNOS:
            return None
        op = groups.get("model_op") or self.op or model_op(groups.get("op"))
        if op is None:
            op = "recv" if errno == "EOF" else ERRNOS[errno].default_op
        remote = groups.get("remote")
        if remote is None and groups.get("host") and groups.get("port"):
            host = groups["host"]
            remote = f"[{host}]:{groups['port']}" if ":" in host else f"{host}:{groups['port']}"
        # A text inside this row's frame that a runtime makes (Go's net.ErrClosed in
        # "read tcp A->B: use of closed network connection") is told as that row.
        said = groups.get("text")
        runtime_row = _RUNTIME_TEXTS.get(said.lower()) if said else None
        told_as = _BY_KEY[runtime_row] if runtime_row else self
        # Whole milliseconds, truncated: the session ended before the next one.
        elapsed = (int(groups["elapsed_ms"]) + 1) * 1_000_000 - 1 if groups.get("elapsed_ms") else 0
        found = _WritableMatch()  # MessageMatch(errno, self.program, op, local, remote, told_as, elapsed)
        found.errno, found.lang, found.op, found.local, found.remote, found.phrasing, found.elapsed_ns = (
            errno, self.program, op, groups.get("local"), remote, told_as, elapsed)
        found.__class__ = MessageMatch
        return found

    @property
    def reveals(self) -> str:
        """What a line of this kind tells, in a few words (for the docs)."""
        names = [name for name in ("local", "remote", "host", "upstream", "client") if name in self.pattern.groupindex]
        where = ", ".join(names) if names else "no endpoint"
        outcome = self.errno or "the errno it names"
        alternatives = f" (or {', '.join(self.also)})" if self.also else ""
        return f"{outcome}{alternatives} on {self.op or 'the op it names'}; {self.side}; {where}"


# MessageMatch's slots, writable: a log whose messages differ line by line (ports,
# request numbers) builds one a line.
_WritableMatch = writable_twin(MessageMatch)


def _errno_from(groups: dict) -> Optional[str]:
    text = groups.get("text")
    if text:
        found = BY_STRERROR.get(text.lower()) or _GO_TEXTS.get(text.lower())
        if found:
            return found
    code = groups.get("code")
    if code:
        return code.upper()
    num = groups.get("num")
    if num:
        return name_from_number(int(num))
    return None


def _row(key, program, example, pattern, needle, errno, op, side, by, origin, *, also=(), decided_by=None,
         build=None, flags=0, any_of=(), shape=None) -> Phrasing:
    return Phrasing(key, program, example, re.compile(pattern, flags), needle.lower(), errno, op, side, by,
                    origin, tuple(also), decided_by, build, tuple(any_of), shape)


_EOF_RUNTIME = "end-of-file: a recv() returned 0 after the peer's FIN"

# The shape of a proxy's log line: HAProxy's termination state before its
# connection counts, Envoy's status code and response flags. Every line the
# HAProxy and Envoy rows read has it (their patterns hold these parts).
_HAPROXY_SHAPE_RE = re.compile(r" [CSsc][A-Za-z-](?:[A-Za-z-]{2})? \d+/\d+/\d+/\d+/")
_ENVOY_SHAPE_RE = re.compile(r'" \d{1,3} [A-Z]{2,3}[ ,]')


def _haproxy_shaped(text: str) -> bool:
    """Searched only where the four slashes it needs are: most lines are spared it."""
    return text.count("/") >= 4 and _HAPROXY_SHAPE_RE.search(text) is not None


def _envoy_shaped(text: str) -> bool:
    return '" ' in text and _ENVOY_SHAPE_RE.search(text) is not None


# -- row-specific readers ------------------------------------------------------

def _nginx_fields(m: re.Match, text: str) -> dict:
    """nginx's ``upstream: "http://127.0.0.1:28307/..."`` is the upstream
    socket's remote end; ``client: 127.0.0.1`` has no port (no endpoint)."""
    out = {}
    upstream = _NGINX_UPSTREAM_RE.search(text, m.end())
    if upstream and "upstream" in (m.group("while") or "") + m.group(0):
        out["remote"] = upstream.group("remote")
    return out


_NGINX_UPSTREAM_RE = re.compile(r'upstream: "(?:[a-z0-9+]+://)?(?P<remote>' + _IP_PORT + r')')


def _go_net(m: re.Match, text: str) -> dict:
    go_op, a, b = m.group("goop").lower(), m.group("a"), m.group("b")
    if go_op == "dial":
        return {"local": a if b else None, "remote": b or a, "model_op": "connect"}
    if b:
        return {"local": a, "remote": b, "model_op": go_op}
    if go_op == "accept":
        return {"local": a, "model_op": "accept"}
    return {"remote": a, "model_op": go_op}


def _curl(m: re.Match, text: str) -> Optional[dict]:
    code = int(m.group("exit"))
    errno, op = _CURL_EXITS[code]
    msg = m.group("msg")
    named = re.search(_STRERROR_RE, msg, re.IGNORECASE)
    if named and code != 28:
        errno = BY_STRERROR[named.group(0).lower()]
    out = {"errno": errno, "model_op": op}
    connect = _CURL_CONNECT_RE.search(msg)
    if connect:
        out.update(model_op="connect", host=connect.group("host"), port=connect.group("port"))
    return out


# curl exit code -> (errno when the message names none, op). curl's own
# texts: lib/strerror.c curl_easy_strerror; "Couldn't connect to server" is
# 7.84+, older ones print the strerror.
_CURL_EXITS = {
    7: ("ECONNREFUSED", "connect"),
    18: ("EOF", "recv"),  # transfer closed with N bytes remaining to read
    28: ("ETIMEDOUT", "recv"),
    52: ("EOF", "recv"),  # Empty reply from server
    55: ("EPIPE", "send"),  # Send failure: <strerror>
    56: ("ECONNRESET", "recv"),  # Recv failure: <strerror>
}
_CURL_CONNECT_RE = re.compile(r"Failed to connect to (?P<host>\S+) port (?P<port>\d+)")


def _java(m: re.Match, text: str) -> Optional[dict]:
    cls = m.group("cls")
    if cls == "EOFException":
        return {"errno": "EOF", "model_op": "recv"}
    detail = (m.group("detail") or "").lower()
    for needle, name, op in _JAVA_DETAILS:
        if needle in detail:
            return {"errno": name, "model_op": "write" if "(write failed)" in detail else op}
    return None


def _java_details() -> tuple[tuple[str, str, str], ...]:
    """(lowercased detail text, errno, op) from the Rosetta's Java column,
    plus the texts older JDKs print that the table does not (its rows show
    one per op); longest first, so "connection reset by peer" wins over
    "connection reset"."""
    found: dict[str, tuple[str, str]] = {}
    for info in ERRNOS.values():
        for kind, text in info.java.items():
            if not text or ": " not in text:
                continue
            detail = text.split(": ", 1)[1].lower().replace(" (write failed)", "")
            op = kind if kind in ("read", "write", "connect") else (
                "read" if info.default_op in RECEIVE_OPS else "write" if info.default_op in SEND_OPS
                else info.default_op)
            found.setdefault(detail, (info.name, op))
    # OpenJDK before 13 ("Connection timed out" from connect(2)); "Socket is closed" from Socket.java.
    found.setdefault("connection timed out", ("ETIMEDOUT", "connect"))
    found.setdefault("socket is closed", ("EBADF", "read"))
    return tuple((text, name, op) for text, (name, op) in sorted(found.items(), key=lambda kv: -len(kv[0])))


# OpenJDK's texts (NioSocketImpl, Net.c, SocketInputStream.c): first match wins.
_JAVA_DETAILS = _java_details()

# HAProxy's termination state, first two letters (doc: configuration.txt,
# 8.5 "Session state at disconnection"): who ended it, and in which phase.
_HAPROXY_STATES = {
    "SC": ("ECONNREFUSED", (), "connect", "proxy, upstream side", KERNEL),
    "SH": ("EOF", ("ECONNRESET",), "recv", "proxy, upstream side", KERNEL),
    "SD": ("EOF", ("ECONNRESET",), "recv", "proxy, upstream side", KERNEL),
    "SL": ("EOF", ("ECONNRESET",), "recv", "proxy, upstream side", KERNEL),
    "CR": ("EOF", ("ECONNRESET",), "recv", "proxy, client side", KERNEL),
    "CH": ("EOF", ("ECONNRESET",), "recv", "proxy, client side", KERNEL),
    "CD": ("EOF", ("ECONNRESET",), "recv", "proxy, client side", KERNEL),
    "CC": ("EOF", ("ECONNRESET",), "recv", "proxy, client side", KERNEL),
    "CL": ("EOF", ("ECONNRESET",), "recv", "proxy, client side", KERNEL),
    "sC": ("ETIMEDOUT", (), "connect", "proxy, upstream side", RUNTIME),
    "sH": ("ETIMEDOUT", (), "recv", "proxy, upstream side", RUNTIME),
    "sD": ("ETIMEDOUT", (), "recv", "proxy, upstream side", RUNTIME),
    "cR": ("ETIMEDOUT", (), "recv", "proxy, client side", RUNTIME),
    "cD": ("ETIMEDOUT", (), "recv", "proxy, client side", RUNTIME),
}


# The timers field ends with Tt, the session's total time (ms): HAProxy stamps
# the line with the session's *accept* date, so the failure lies up to Tt later.
_HAPROXY_RE = (r"(?P<client>" + _IP_PORT + r") \[[^\]]*\] \S+ \S+/\S+ [-+\d/]*?\+?(?P<elapsed_ms>\d+) "
               r"(?:-?\d+ )?\+?\d+ "
               r"(?:\S+ \S+ )?(?P<state>[A-Za-z-]{2})(?:[A-Za-z-]{2})? \d+/\d+/\d+/\d+/\+?\d+ ")


def _haproxy_states(by: str) -> Callable[[re.Match, str], Optional[dict]]:
    """The reader of the HAProxy row for states reported `by` (a lower-case
    first letter is HAProxy's own timeout: the runtime's)."""
    def read(m: re.Match, text: str) -> Optional[dict]:
        state = _HAPROXY_STATES.get(m.group("state"))
        return _haproxy(state, m) if state is not None and state[4] == by else None
    return read


def _haproxy(state: tuple, m: re.Match) -> dict:
    errno, _also, op, side, _by = state
    out = {"errno": errno, "model_op": op}
    if side.endswith("client side"):
        out["remote"] = m.group("client")  # the log names the client's endpoint, not the server's
    return out


# Envoy response flags (docs: access log, %RESPONSE_FLAGS%) and the
# upstream-reset details (%RESPONSE_CODE_DETAILS%).
_ENVOY_FLAGS = {
    "UC": ("EOF", "recv"),  # upstream connection termination
    "UF": ("ECONNREFUSED", "connect"),  # upstream connection failure
    "URX": ("ECONNREFUSED", "connect"),  # retry limit exceeded (each try failed to connect or reset)
    "DC": ("EOF", "recv"),  # downstream connection termination
    "UT": ("ETIMEDOUT", "recv"),  # upstream request timeout
    "UR": ("ECONNRESET", "recv"),  # upstream remote reset
    "LR": ("ECONNRESET", "recv"),  # connection local reset
}


def _envoy_flags(timer: bool) -> Callable[[re.Match, str], Optional[dict]]:
    """The reader of the Envoy row for its timer's flag (UT) or for the others."""
    def read(m: re.Match, text: str) -> Optional[dict]:
        flags = m.group("flags").split(",")
        flag = next((f for f in flags if f in _ENVOY_FLAGS), None)
        return None if flag is None or (flag == "UT") != timer else _envoy(flag, m)
    return read


def _envoy(flag: str, m: re.Match) -> dict:
    errno, op = _ENVOY_FLAGS[flag]
    details = m.group("details") or ""
    if "remote_reset" in details or "connection_reset" in details:
        errno = "ECONNRESET"
    if "connection_refused" in details.lower() or "delayed_connect_error:_111" in details:
        errno, op = "ECONNREFUSED", "connect"
    out = {"errno": errno, "model_op": op}
    host = m.group("upstream")
    if host and flag != "DC":
        out["remote"] = host
    return out


# %DURATION% (ms) follows the details in the default format: Envoy stamps the
# line with the request's *start*, so the failure lies up to that much later.
_ENVOY_RE = (r'" \d{1,3} (?P<flags>[A-Z]{2,3}(?:,[A-Z]{2,4})*) (?P<details>\S+)'
             r'(?: \S+ "[^"]*" \d+ \d+ (?P<elapsed_ms>\d+))?(?:.*"(?P<upstream>' + _IP_PORT + r')"\s*$)?')


def _node_code(m: re.Match, text: str) -> dict:
    return {"model_op": {"recv": "read", "send": "write"}.get(m.group("op"), m.group("op"))}


# -- the catalogue: most specific first ---------------------------------------------

CATALOGUE: tuple[Phrasing, ...] = (
    # nginx error log (src/http/ngx_http_upstream.c, src/os/unix/ngx_recv.c ...): "(N: strerror)"
    _row("nginx-upstream-prematurely-closed", "nginx",
         '2026/11/30 19:49:04 [error] 7#7: *1 upstream prematurely closed connection while reading response '
         'header from upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: '
         '"http://127.0.0.1:28307/", host: "127.0.0.1:8080"',
         r"upstream prematurely closed connection(?P<while> while [a-z ]+)?", "upstream prematurely",
         "EOF", "recv", "proxy, upstream side", RUNTIME,
         "ngx_http_upstream.c: recv() on the upstream returned 0 before the response was complete (a 502)",
         also=("ECONNRESET",), decided_by=_EOF_RUNTIME, build=_nginx_fields),
    _row("nginx-client-prematurely-closed", "nginx",
         "2026/11/30 19:49:04 [info] 7#7: *3 client prematurely closed connection while reading client request "
         "body, client: 127.0.0.1",
         r"client prematurely closed connection", "client prematurely", "EOF", "recv", "proxy, client side",
         RUNTIME, "ngx_http_request_body.c / ngx_http_upstream.c: recv() on the client socket returned 0",
         decided_by=_EOF_RUNTIME),
    _row("nginx-upstream-timed-out", "nginx",
         "2026/11/30 19:49:04 [error] 7#7: *1 upstream timed out (110: Connection timed out) while reading "
         'response header from upstream, client: 127.0.0.1, upstream: "http://127.0.0.1:28307/"',
         r"upstream timed out \((?P<num>\d+): [^)]*\)(?P<while> while (?P<phase>[a-z ]+))?", "upstream timed out",
         "ETIMEDOUT", None, "proxy, upstream side", RUNTIME,
         "ngx_http_upstream.c: nginx's own timer (proxy_read_timeout, proxy_connect_timeout) fired; it prints "
         "NGX_ETIMEDOUT's text, no system call returned it",
         decided_by="nginx's proxy_*_timeout timer",
         build=lambda m, t: {**_nginx_fields(m, t),
                             "model_op": "connect" if "connecting" in (m.group("phase") or "") else "recv"}),
    _row("nginx-syscall-failed", "nginx",
         '2026/11/30 19:49:04 [error] 7#7: *1 recv() failed (104: Connection reset by peer) while reading '
         'response header from upstream, client: 127.0.0.1, upstream: "http://127.0.0.1:28307/"',
         r"(?P<op>recv|readv|read|send|writev|write|sendfile|connect|SSL_read|SSL_write)\(\) failed "
         r"\((?P<num>\d+): (?P<text>[^)]*)\)(?P<while> while [a-z ]+)?", ") failed (",
         None, None, "proxy (upstream or client side, by its 'while' words)", KERNEL,
         "src/os/unix/ngx_recv.c, ngx_writev_chain.c, ngx_event_connect.c: ngx_log_error(..., ngx_socket_errno, "
         "\"recv() failed\"): the errno the system call returned, as 'N: strerror'",
         build=_nginx_fields),
    # HAProxy log line, http or tcp format (doc/configuration.txt 8.2.3/8.2.2, 8.5 termination states)
    _row("haproxy-termination-state", "HAProxy",
         "127.0.0.1:40522 [30/Nov/2026:19:49:04.123] fe be/srv1 0/0/0/-1/2 502 209 - - SH-- 1/1/0/0/0 0/0 "
         '"GET / HTTP/1.1"',
         _HAPROXY_RE, "", None, None, "proxy (first letter: C client, S server)", KERNEL,
         "doc/configuration.txt 8.5: termination state SC (server refused), SH/SD (server closed or reset "
         "before/while answering), CH/CD (client closed or reset)",
         also=("ECONNRESET",), build=_haproxy_states(KERNEL),
         shape=_haproxy_shaped),
    _row("haproxy-timeout", "HAProxy",
         "127.0.0.1:40522 [30/Nov/2026:19:49:04.123] fe be/srv1 0/0/-1/-1/5001 503 217 - - sC-- 1/1/0/0/0 0/0 "
         '"GET / HTTP/1.1"',
         _HAPROXY_RE, "", None, None, "proxy (s: server side, c: client side)", RUNTIME,
         "doc/configuration.txt 8.5: sC/sH/sD (timeout connect/server), cR/cD (timeout client): HAProxy's timers",
         decided_by="HAProxy's own timeout (timeout connect, server or client)", build=_haproxy_states(RUNTIME),
         shape=_haproxy_shaped),
    # Envoy access log (default format): [time] "REQ" CODE FLAGS DETAILS ... "UPSTREAM_HOST"
    _row("envoy-response-flags", "Envoy",
         '[2026-11-30T19:49:04.123Z] "GET / HTTP/1.1" 503 UC upstream_reset_before_response_started'
         '{connection_termination} - "-" 0 95 2 - "-" "curl/8.5.0" "a1b2" "127.0.0.1:10000" "127.0.0.1:8080"',
         _ENVOY_RE, "", None, None, "proxy (U: upstream side, D: downstream/client side)", KERNEL,
         "envoy access log %RESPONSE_FLAGS% (UC upstream connection termination, UF connection failure, URX "
         "retries exceeded, DC downstream termination) and %RESPONSE_CODE_DETAILS%",
         also=("ECONNRESET",), build=_envoy_flags(timer=False), shape=_envoy_shaped),
    _row("envoy-timeout", "Envoy",
         '[2026-11-30T19:49:04.123Z] "GET / HTTP/1.1" 504 UT response_timeout - "-" 0 24 15000 - "-" "curl/8.5.0" '
         '"a1b2" "127.0.0.1:10000" "127.0.0.1:8080"',
         _ENVOY_RE, "", None, None, "proxy, upstream side", RUNTIME,
         "envoy access log %RESPONSE_FLAGS% UT: the route's timeout fired (Envoy's timer, no system call)",
         decided_by="Envoy's route timeout", build=_envoy_flags(timer=True), shape=_envoy_shaped),
    # curl (lib/strerror.c; src/tool_operate.c prints "curl: (N) message")
    _row("curl-timeout", "curl", "curl: (28) Operation timed out after 1001 milliseconds with 0 bytes received",
         r"\bcurl: \((?P<exit>28)\) (?P<msg>[^\n]*)", "curl: (", None, None, "client", RUNTIME,
         "curl exit code 28: its own --max-time / --connect-timeout timer fired (lib/multi.c)",
         decided_by="curl's own timer (--max-time, --connect-timeout)", build=_curl),
    _row("curl-exit", "curl", "curl: (56) Recv failure: Connection reset by peer",
         r"\bcurl: \((?P<exit>7|18|28|52|55|56)\) (?P<msg>[^\n]*)", "curl: (", None, None, "client", KERNEL,
         "curl exit codes 7 (couldn't connect), 18 (partial file), 28 (timeout), 52 (empty reply: EOF), "
         "55 (send failure: strerror), 56 (recv failure: strerror)",
         build=_curl),
    # redis-cli (hiredis: read() returned 0 -> "Server closed the connection")
    _row("redis-cli-server-closed", "redis-cli", "Error: Server closed the connection",
         r"\bError: Server closed the connection\b", "server closed the connection", "EOF", "recv", "client",
         RUNTIME, "hiredis net.c redisBufferRead: read() returned 0", decided_by=_EOF_RUNTIME),
    _row("redis-cli-could-not-connect", "redis-cli",
         "Could not connect to Redis at 127.0.0.1:6390: Connection refused",
         r"Could not connect to Redis at (?P<remote>" + _ADDR + r"): (?P<text>[^\n]+?)\s*$", "could not connect to redis",
         None, "connect", "client", KERNEL, "redis-cli.c cliConnect: hiredis' errstr, the connect() strerror"),
    # redis-py (redis/connection.py, redis/_parsers)
    _row("redis-py-closed-by-server", "redis-py", "redis.exceptions.ConnectionError: Connection closed by server.",
         r"Connection closed by server\.", "connection closed by server", "EOF", "recv", "client", RUNTIME,
         "redis/_parsers/socket.py: SERVER_CLOSED_CONNECTION_ERROR, raised when recv() returned b''",
         also=("ECONNRESET",), decided_by=_EOF_RUNTIME),
    _row("redis-py-error-while-reading", "redis-py",
         "redis.exceptions.ConnectionError: Error while reading from 127.0.0.1:6379 : (104, 'Connection reset by peer')",
         r"Error while reading from (?P<remote>" + _ADDR + r") ?: \((?P<num>\d+), '(?P<text>[^']*)'\)",
         "error while reading from", None, "recv", "client", KERNEL,
         "redis/_parsers/socket.py: the OSError of recv(), as (errno, strerror)"),
    _row("redis-py-error-connecting", "redis-py",
         "redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused.",
         r"Error (?P<num>\d+) connecting to (?P<remote>" + _ADDR + r")\. (?P<text>[^.]*)\.", "connecting to",
         None, "connect", "client", KERNEL, "redis/connection.py _error_message: the connect() OSError"),
    # psycopg / libpq (fe-misc.c pqReadData: recv 0 and ECONNRESET both end in definitelyEOF)
    _row("libpq-server-closed", "psycopg",
         "psycopg.OperationalError: consuming input failed: server closed the connection unexpectedly",
         r"server closed the connection unexpectedly", "server closed the connection unexpectedly", "EOF", "recv",
         "client", RUNTIME, "libpq fe-misc.c pqReadData: recv() returned 0 (or ECONNRESET, worded the same)",
         also=("ECONNRESET",), decided_by=_EOF_RUNTIME),
    # PostgreSQL and MySQL server logs
    _row("postgres-could-not-receive", "PostgreSQL",
         "2026-11-30 19:49:04.123 UTC [42] LOG:  could not receive data from client: Connection reset by peer",
         r"could not (?P<op>receive|send) data (?:from|to) client: (?P<text>[^\n]+?)\s*$", "could not",
         None, None, "server", KERNEL, "src/backend/libpq/be-secure.c / pqcomm.c: the recv()/send() strerror",
         build=lambda m, t: {"model_op": "recv" if m.group("op") == "receive" else "send"}),
    _row("postgres-unexpected-eof", "PostgreSQL",
         "2026-11-30 19:49:04.123 UTC [42] LOG:  unexpected EOF on client connection with an open transaction",
         r"unexpected EOF on client connection", "unexpected eof on client", "EOF", "recv", "server", RUNTIME,
         "src/backend/tcop/postgres.c SocketBackend: recv() returned 0", decided_by=_EOF_RUNTIME),
    _row("mysql-aborted-connection", "MySQL",
         "2026-11-30T19:49:04.123456Z 12 [Note] Aborted connection 12 to db: 'app' user: 'app' host: 'localhost' "
         "(Got an error reading communication packets)",
         r"Aborted connection \d+ to db:.*\((?P<why>Got an error reading communication packets|Got timeout reading "
         r"communication packets|Got an error writing communication packets)\)", "aborted connection",
         None, None, "server", RUNTIME,
         "sql/sql_connect.cc / net_serv.cc: the client went away (read EOF or reset) or wait_timeout fired",
         also=("ECONNRESET",), decided_by="a read on the client socket that failed or returned 0",
         build=lambda m, t: {"errno": "ETIMEDOUT" if "timeout" in m.group("why") else "EOF",
                             "model_op": "send" if "writing" in m.group("why") else "recv"}),
    # Node.js (lib/net.js, lib/_http_client.js, undici)
    _row("node-ended-by-other-party", "Node",
         "Error: This socket has been ended by the other party",
         r"This socket has been ended by the other party", "ended by the other party", "EOF", "recv", "client",
         RUNTIME, "lib/net.js writeAfterFIN: Node read end-of-file, ended its side, and refused the next write "
                  "with code EPIPE itself; no write() system call returned EPIPE",
         decided_by=_EOF_RUNTIME),
    _row("node-tls-disconnected", "Node",
         "Error: Client network socket disconnected before secure TLS connection was established",
         r"Client network socket disconnected before secure TLS connection was established",
         "disconnected before secure tls", "EOF", "recv", "client", RUNTIME,
         "lib/_tls_wrap.js onConnectEnd: the socket ended (FIN or RST) during the handshake; code ECONNRESET",
         also=("ECONNRESET",), decided_by=_EOF_RUNTIME),
    _row("undici-other-side-closed", "Node", "TypeError: fetch failed [cause]: SocketError: other side closed",
         r"\bother side closed\b", "other side closed", "EOF", "recv", "client", RUNTIME,
         "undici lib/dispatcher/client-h1.js onHttpSocketEnd: SocketError('other side closed'), "
         "code UND_ERR_SOCKET", decided_by=_EOF_RUNTIME),
    _row("node-socket-hang-up", "Node", "Error: socket hang up",
         r"\bsocket hang up\b", "socket hang up", "EOF", "recv", "client", RUNTIME,
         "lib/_http_client.js socketOnEnd/socketCloseListener: the socket closed before a response; code "
         "ECONNRESET although the cause is usually a FIN", also=("ECONNRESET",), decided_by=_EOF_RUNTIME),
    _row("node-syscall-code", "Node", "Error: connect ECONNREFUSED 127.0.0.1:8080",
         r"\bError: (?P<op>read|write|connect|accept|recv|send) (?P<code>E[A-Z]+)(?: (?P<remote>[\w.:\[\]%\-]+:\d+))?",
         "error: ", None, None, "client or server", KERNEL,
         "lib/internal/errors.js UVExceptionWithHostPort: '<syscall> <code> [address:port]' from libuv's errno",
         build=_node_code),
    _row("node-stream-destroyed", "Node",
         "Error [ERR_STREAM_DESTROYED]: Cannot call write after a stream was destroyed",
         r"\bERR_STREAM_DESTROYED\b|\bERR_SOCKET_CLOSED\b", "err_", "EBADF", "write", "client or server", RUNTIME,
         "lib/internal/streams: this program destroyed or closed the socket first", decided_by="its own destroy()"),
    # Java (OpenJDK sun/nio/ch/NioSocketImpl.java, Net.c) and Netty (transport-native-unix-common Errors.java)
    _row("netty-native-io", "Netty",
         "io.netty.channel.unix.Errors$NativeIoException: recvAddress(..) failed: Connection reset by peer",
         r"NativeIoException: (?:syscall:)?(?P<op>\w+)\(\.\.\) failed(?: with error\(-?\d+\))?: (?P<text>[^\n]+?)\s*$",
         "nativeioexception", None, None, "client or server", KERNEL,
         "netty Errors.newIOException: '<native call>(..) failed: strerror'"),
    _row("java-timeout", "Java", "java.net.SocketTimeoutException: Read timed out",
         r"\bjava\.net\.(?P<cls>SocketTimeoutException)\b(?::\s*(?P<detail>[^\n]*))?", "java.", None, None,
         "client or server", RUNTIME,
         "OpenJDK NioSocketImpl.timedRead/timedFinishConnect: the SO_TIMEOUT / connect timeout the program "
         "set ran out (the JDK's poll, no system call returned ETIMEDOUT)",
         decided_by="the JDK's own timer (Socket.setSoTimeout, connect timeout)", build=_java),
    _row("java-exception", "Java", "java.net.SocketException: Connection reset",
         r"\bjava\.(?:net|io)\.(?P<cls>SocketException|ConnectException|SocketTimeoutException|"
         r"NoRouteToHostException|EOFException|IOException)\b(?::\s*(?P<detail>[^\n]*))?", "java.",
         None, None, "client or server", KERNEL,
         "OpenJDK NioSocketImpl/Net.c: 'Connection reset' (read got ECONNRESET), 'Connection reset by peer' / "
         "'Broken pipe' (write), ConnectException (connect); SocketTimeoutException is the JDK's own timer",
         build=_java),
    # Python: requests/urllib3 wrap http.client; aiohttp; the OSError subclasses
    _row("python-remote-disconnected", "Python",
         "requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed "
         "connection without response'))",
         r"\bRemoteDisconnected\b|\bIncompleteReadError\b|Remote end closed connection without response",
         "remote", "EOF", "recv", "client", RUNTIME,
         "http.client HTTPResponse._read_status: the status line read returned b'' (urllib3/requests wrap it; "
         "urllib3 may have retried first)", decided_by=_EOF_RUNTIME,
         any_of=("RemoteDisconnected", "IncompleteReadError", "Remote end closed connection without response")),
    _row("aiohttp-server-disconnected", "Python", "aiohttp.client_exceptions.ServerDisconnectedError: Server disconnected",
         r"\bServerDisconnectedError\b", "serverdisconnectederror", "EOF", "recv", "client", RUNTIME,
         "aiohttp client_proto.py connection_lost: the connection closed before a response",
         also=("ECONNRESET",), decided_by=_EOF_RUNTIME),
    _row("python-timeout", "Python", "TimeoutError: timed out",
         r"\b(?:socket\.timeout|TimeoutError):\s*timed out\b", "timed out", "ETIMEDOUT", None, "client or server",
         RUNTIME, "Modules/socketmodule.c sock_call_ex: the socket's settimeout() ran out in poll(); 'timed out' "
         "(socket.timeout before 3.10)", decided_by="socket.settimeout()'s own timer"),
    _row("python-oserror", "Python", "ConnectionResetError: [Errno 104] Connection reset by peer",
         r"\b(?P<cls>BrokenPipeError|ConnectionResetError|ConnectionRefusedError|ConnectionAbortedError|TimeoutError|"
         r"BlockingIOError|OSError|socket\.error|socket\.timeout|ConnectionError|InterruptedError)"
         r"(?::\s*\[Errno (?P<num>\d+)\]\s*(?P<text>[^'\"\]\n]*)|\((?P<num2>\d+),\s*['\"](?P<text2>[^'\"]*)['\"]\)"
         r"|:\s*(?P<timeout>timed out))", "", None, None, "client or server", KERNEL,
         "Python's OSError subclasses (Objects/exceptions.c): '[Errno N] strerror'; urllib3/requests print the "
         "repr '(N, strerror)'; 'timed out' is socket.settimeout's own timer",
         build=lambda m, t: _python(m), any_of=("Error", "socket.error", "socket.timeout")),
    _row("python-errno-bracket", "Python",
         "Failed to establish a new connection: [Errno 111] Connection refused",
         r"\[Errno (?P<num>\d+)\]\s*(?P<text>[^'\"\]\n]*)", "[errno", None, None, "client or server", KERNEL,
         "an OSError's str() inside a library's message (urllib3 NewConnectionError, asyncio, ...)"),
    # Go (net/net.go OpError, net/http transport.go, grpc-go)
    _row("go-net-op-error", "Go", "write tcp 127.0.0.1:50389->127.0.0.1:8080: write: broken pipe",
         r"\b(?P<goop>read|write|dial|accept|close|set|get)\s+tcp[46]?\s+(?P<a>" + _ADDR + r")(?:->(?P<b>" + _ADDR
         + r"))?:\s+(?:(?P<op>[a-z0-9]+):\s+)?(?P<text>" + _GO_TEXTS_RE + r")", " tcp", None, None,
         "client or server", KERNEL,
         "net.OpError.Error(): 'op net local->remote: syscall: strerror' (a deadline: 'i/o timeout', the "
         "runtime's; net.ErrClosed: 'use of closed network connection', the runtime's)",
         build=_go_net, flags=re.IGNORECASE, any_of=tuple(_GO_TEXTS)),
    _row("go-syscall-error", "Go", "read: connection reset by peer",
         r"\b(?P<op>read|write|connect|accept4?|sendto|recvfrom|sendfile|writev|readv):\s+(?P<text>"
         + _GO_TEXTS_RE + r")\b", "", None, None, "client or server", KERNEL,
         "os.SyscallError.Error(): 'syscall: strerror' without the net.OpError around it", any_of=tuple(_GO_TEXTS)),
    _row("go-use-of-closed", "Go", "use of closed network connection",
         r"use of closed network connection", "use of closed", "EBADF", "read", "client or server", RUNTIME,
         "net.ErrClosed (internal/poll): this program closed the connection; no system call ran",
         decided_by="its own Close()"),
    _row("go-io-timeout", "Go", "i/o timeout",
         r"\bi/o timeout\b", "timeout", "ETIMEDOUT", "recv", "client or server", RUNTIME,
         "os.ErrDeadlineExceeded: a deadline set by SetDeadline/SetReadDeadline passed; no system call "
         "returned ETIMEDOUT", decided_by="its own deadline"),
    _row("go-server-closed-idle", "Go", 'Get "http://127.0.0.1:8080/": http: server closed idle connection',
         r"http: server closed idle connection", "server closed idle", "EOF", "recv", "client", RUNTIME,
         "net/http transport.go errServerClosedIdle: the server's FIN reached a pooled connection before a "
         "request was written on it", decided_by=_EOF_RUNTIME),
    _row("go-transport-broken", "Go", "net/http: HTTP/1.x transport connection broken: unexpected EOF",
         r"transport connection broken", "transport connection broken", "EOF", "recv", "client", RUNTIME,
         "net/http transport.go: the persistent connection failed mid-exchange; the wrapped error says why",
         also=("ECONNRESET",), decided_by=_EOF_RUNTIME),
    _row("grpc-eof", "gRPC", 'rpc error: code = Unavailable desc = error reading from server: EOF',
         r"code = Unavailable desc = [^\n]*\bEOF\b", "code = unavailable", "EOF", "recv", "client", RUNTIME,
         "grpc-go http2_client.go reader: the HTTP/2 framer read io.EOF", decided_by=_EOF_RUNTIME),
    _row("go-eof", "Go", 'Post "http://x/": EOF',
         r"(?:^|[\s:\"'=])(?P<unexpected>unexpected )?EOF[\"']?\s*$", "eof", "EOF", "recv", "client or server",
         RUNTIME, "io.EOF / io.ErrUnexpectedEOF: a read returned 0 (unexpected: in the middle of a message)",
         decided_by=_EOF_RUNTIME),
    # Any "(N: strerror)" or bare strerror text: the last resort
    _row("strerror-any", "unknown", "upstream said: Connection refused",
         r"\b(?P<text>" + _STRERROR_RE + r")\b", "", None, None, "unknown", KERNEL,
         "a strerror text of the errno table, in any program's words", flags=re.IGNORECASE,
         any_of=tuple(BY_STRERROR)),
)


def _python(m: re.Match) -> Optional[dict]:
    cls = m.group("cls")
    detail = (m.group("text") or m.group("text2") or "").strip().lower()
    name = BY_STRERROR.get(detail)
    if name is None and m.group("timeout"):
        name = "ETIMEDOUT"
    if name is None:
        num = m.group("num") or m.group("num2")
        name = name_from_number(int(num)) if num else _PY_CLASS_ERRNO.get(cls)
    if name is None:
        return None
    return {"errno": name}


def _python_classes() -> dict[str, str]:
    """Exception class -> errno, for the classes the Rosetta's Python column
    names for exactly one errno (not OSError, BlockingIOError)."""
    names: dict[str, list[str]] = {}
    for info in ERRNOS.values():
        if info.python:
            names.setdefault(info.python, []).append(info.name)
    classes = {cls: found[0] for cls, found in names.items() if len(found) == 1}
    classes["socket.timeout"] = classes.get("TimeoutError", "ETIMEDOUT")  # its name before Python 3.10
    return classes


# The OSError subclasses that name one errno (Python's Objects/exceptions.c).
_PY_CLASS_ERRNO = _python_classes()

# A line holding none of these words (lowercased), and not the shape of a
# proxy's log line, reports nothing: every row's needle and every strerror
# text holds one of them (tests/test_messages.py checks it). Few and short,
# so that the many lines that report nothing cost one quick pass. Rows with
# an empty needle are matched by a strerror text (Go, Python, the last
# resort) or by a proxy shape (HAProxy, Envoy).
GATE_WORDS = ("eof", " tcp", "err", "java.", "remote", "curl: (", "timed out", "timeout", "failed", "pipe",
              "closed", "route", "abort", "refused", "unavailable", "bad file", "not connected", "disconnect",
              "reset", "connecting to", "hang up", "unreachable", "in progress", "prematurely", "ended by",
              "broken", "could not", "nativeio")

_BY_KEY = {row.key: row for row in CATALOGUE}
# What read_message checks of each row, in catalogue order (folds: the row's pattern ignores case).
_SCAN = tuple((row, row.needle, row.any_of, bool(row.pattern.flags & re.IGNORECASE), row.shape)
              for row in CATALOGUE)


def _row_gate_words(row: Phrasing) -> Optional[frozenset]:
    """The gate words one of which every line this row reads holds (in its
    needle, or in each of its any_of texts), or None when that is not known
    (a proxy row: its shape decides)."""
    texts = (row.needle,) if row.needle else tuple(text.lower() for text in row.any_of)
    found = [frozenset(word for word in GATE_WORDS if word in text) for text in texts]
    return frozenset().union(*found) if found and all(found) else None


_ROW_GATE_WORDS = tuple(_row_gate_words(row) for row in CATALOGUE)
# The gate words a line holds -> the rows worth trying on it (filled as lines come).
_ROWS_FOR_WORDS: dict[tuple, tuple] = {}


def _rows_for(words: tuple) -> tuple:
    rows = _ROWS_FOR_WORDS.get(words)
    if rows is None:
        held = frozenset(words)
        rows = tuple(entry for entry, gate in zip(_SCAN, _ROW_GATE_WORDS) if gate is None or gate & held)
        if len(_ROWS_FOR_WORDS) < 4096:
            _ROWS_FOR_WORDS[words] = rows
    return rows
# Texts the Go runtime makes, inside a net.OpError or os.SyscallError frame -> their own row.
_RUNTIME_TEXTS = {"use of closed network connection": "go-use-of-closed", "i/o timeout": "go-io-timeout"}


def phrasing_named(key: str) -> Phrasing:
    return _BY_KEY[key]


# The innermost JDK frame under a Java exception names its op (OpenJDK 13+
# NioSocketImpl; older SocketInputStream/SocketOutputStream; Net.connect0).
_JAVA_FRAME_RE = re.compile(
    r"^\s*at (?:[\w.]+/)?(?:sun\.nio\.ch\.NioSocketImpl\.(?P<nio>implRead|timedRead|implWrite|connect)"
    r"|java\.net\.Socket(?P<stream>Input|Output)Stream\.socket(?:Read|Write)0?"
    r"|sun\.nio\.ch\.Net\.(?P<net>connect0|pollConnect|poll)"
    r"|sun\.nio\.ch\.SocketChannelImpl\.(?P<channel>read|write|connect|finishConnect))\b")


def stack_frame_op(line: str) -> Optional[str]:
    """The model op a Java stack-frame line names (``at
    sun.nio.ch.NioSocketImpl.implRead(...)`` -> ``read``), or None."""
    m = _JAVA_FRAME_RE.match(line)
    if m is None:
        return None
    word = m.group("nio") or m.group("net") or m.group("channel") or ""
    if m.group("stream"):
        return "read" if m.group("stream") == "Input" else "write"
    if word in ("implRead", "timedRead", "read"):
        return "read"
    if word in ("implWrite", "write"):
        return "write"
    return "connect" if word != "poll" else None


# A message's shape: its ASCII digits made "0". Every test that picks the rows worth
# searching gives the same answer on a message and on its shape: the gate words, the
# rows' needles and any_of texts hold no digit (tests/test_messages.py checks it), and
# the proxy shapes test digits only as \d. So the rows are picked once per shape:
# production lines differ line by line in their ports, counts and ids, not in shape.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_ROWS_BY_SHAPE: dict[bytes, tuple] = {}
_SHAPES_KEPT = 1 << 16  # then new shapes are picked for each message, not kept


def _rows_worth_searching(text: str) -> tuple:
    """The catalogue rows whose gate word, needle, any_of text and proxy shape
    `text` holds, in catalogue order: the only ones whose pattern can read it."""
    lowered = text.lower()
    # `in` word by word: several times faster than one regular expression of the words.
    words = tuple([word for word in GATE_WORDS if word in lowered])
    if not words and not _envoy_shaped(text) and not _haproxy_shaped(text):
        return ()  # the fast path for the many lines that report nothing
    # Lowering an ASCII line keeps what case-folding matches: the rows' gate words hold.
    ascii = lowered.isascii()
    shaped: dict = {}
    rows = []
    for row, needle, any_of, folds, shape in _rows_for(words) if ascii else _SCAN:
        if needle and needle not in lowered:
            continue
        if any_of and (folds and ascii or not folds):
            within = lowered if folds else text
            for word in any_of:
                if word in within:
                    break
            else:
                continue
        if shape is not None:
            if shape not in shaped:
                shaped[shape] = shape(text)
            if not shaped[shape]:
                continue
        rows.append(row)
    return tuple(rows)


@functools.lru_cache(maxsize=8192)
def read_message(text: str) -> Optional[MessageMatch]:
    """Everything a log message says about a failed socket call, or None:
    the first catalogue row that reads it. Cached: production logs repeat the
    same few messages (MessageMatch is immutable)."""
    if not text:
        return None
    if text.isascii():
        shape = text.encode().translate(_DIGITS_AS_ZERO)
        rows = _ROWS_BY_SHAPE.get(shape)
        if rows is None:
            rows = _rows_worth_searching(text)
            if len(_ROWS_BY_SHAPE) < _SHAPES_KEPT:
                _ROWS_BY_SHAPE[shape] = rows
    else:
        rows = _rows_worth_searching(text)
    for row in rows:
        m = row.pattern.search(text)
        if m is not None:
            found = row.read(m, text)
            if found is not None:
                return found
    return None


def match_message(text: str) -> Optional[tuple[str, str]]:
    """``(errno_name, lang)`` for a log message, or None."""
    found = read_message(text)
    return None if found is None else (found.errno, found.lang)
