"""The Rosetta: each errno of a TCP teardown story, per OS and per language.

One table, `ERRNOS`, holds for every errno that a teardown can leave (plus
``EOF``, end-of-file, which is no errno but a read returning 0): its number
and strerror text on Linux and on macOS, and how Go, Python, Java, Node.js and
curl phrase it. Everything else in this module reads that table:

- `number`, `strerror`, `name_from_number`: the OS view;
- `phrase(name, lang, op=..., local=..., remote=...)`: the message as that
  language prints it for that call (the narrative quotes it next to the RST);
- the reverse, which errno a log line reports, reads this table from
  `tcpteardown.messages` (the catalogue of real phrasings).

House rules: errno *names* cross every boundary, never numbers (ECONNRESET is
104 on Linux and 54 on macOS); numbers appear only here, each with the OS it
belongs to. This module never touches the system (no `errno`/`os` lookups of
the running host): a Linux log read on a Mac must mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from tcpteardown.model import RECEIVE_OPS, SEND_OPS

__all__ = [
    "ErrnoInfo",
    "ERRNOS",
    "LANGUAGES",
    "OSES",
    "name_from_number",
    "number",
    "strerror",
    "phrase",
]

OSES = ("Linux", "Darwin")
LANGUAGES = ("Go", "Python", "Java", "Node", "curl")
# The same as the CLI's --lang accepts them.
LANG_CHOICES = tuple(name.lower() for name in LANGUAGES)


@dataclass(frozen=True, slots=True)
class ErrnoInfo:
    """One row of the Rosetta.

    Per-op phrase tables are keyed by op kind: ``connect``, ``read``,
    ``write`` and ``*`` (any other op, or the op is unknown). A missing entry
    (None) means the language never reports this errno to its user.
    """

    name: str
    linux: Optional[int]  # number on Linux (asm-generic/errno*.h)
    linux_text: Optional[str]  # strerror() on Linux (glibc)
    darwin: Optional[int]  # number on macOS (xnu bsd/sys/errno.h)
    darwin_text: Optional[str]  # strerror() on macOS (libc)
    meaning: str  # what it says about the connection, in a few words
    default_op: str  # op to assume when a message does not name one
    go: Optional[str]  # Go's error text (syscall.Errno.Error(), or the net/io sentinel)
    python: Optional[str]  # Python exception class raised for it
    java: Mapping[str, Optional[str]]  # op kind -> Java exception text
    node: Mapping[str, Optional[str]]  # op kind -> Node.js message template
    curl: Mapping[str, Optional[str]]  # op kind -> curl's "(N) text" message


def _ops(**kinds: Optional[str]) -> Mapping[str, Optional[str]]:
    return {("*" if key == "any" else key): value for key, value in kinds.items()}


# The table. Numbers: Linux from include/uapi/asm-generic/errno-base.h and
# errno.h; macOS from xnu bsd/sys/errno.h. Texts: glibc strerror on Linux,
# macOS libc strerror. Go texts are its syscall error tables (zerrors_*.go),
# lowercase as Go prints them; Java texts are OpenJDK's (8-12 in parentheses
# style, 13+ plain, both matched); curl texts are 7.x/8.x.
ERRNOS: dict[str, ErrnoInfo] = {
    info.name: info
    for info in (
        ErrnoInfo(
            name="EPIPE",
            linux=32, linux_text="Broken pipe",  # Linux
            darwin=32, darwin_text="Broken pipe",  # macOS
            meaning="the connection was already torn down when we wrote",
            default_op="send",
            go="broken pipe",
            python="BrokenPipeError",
            java=_ops(write="java.net.SocketException: Broken pipe (Write failed)",
                      any="java.net.SocketException: Broken pipe"),
            node=_ops(any="Error: write EPIPE"),
            curl=_ops(any="(55) Send failure: Broken pipe"),
        ),
        ErrnoInfo(
            name="ECONNRESET",
            linux=104, linux_text="Connection reset by peer",  # Linux
            darwin=54, darwin_text="Connection reset by peer",  # macOS
            meaning="the peer reset the connection (RST)",
            default_op="recv",
            go="connection reset by peer",
            python="ConnectionResetError",
            java=_ops(read="java.net.SocketException: Connection reset",
                      write="java.net.SocketException: Connection reset by peer (Write failed)",
                      any="java.net.SocketException: Connection reset"),
            node=_ops(any="Error: {op} ECONNRESET"),
            curl=_ops(write="(55) Send failure: Connection reset by peer",
                      any="(56) Recv failure: Connection reset by peer"),
        ),
        ErrnoInfo(
            name="ECONNREFUSED",
            linux=111, linux_text="Connection refused",  # Linux
            darwin=61, darwin_text="Connection refused",  # macOS
            meaning="nothing listened there: the SYN was answered with RST",
            default_op="connect",
            go="connection refused",
            python="ConnectionRefusedError",
            java=_ops(any="java.net.ConnectException: Connection refused"),
            node=_ops(any="Error: connect ECONNREFUSED {remote}"),
            # curl >= 7.84 says "Couldn't connect to server"; older ones the strerror.
            curl=_ops(any="(7) Failed to connect to {remote_host} port {remote_port} after 0 ms: Couldn't connect to server"),
        ),
        ErrnoInfo(
            name="ETIMEDOUT",
            linux=110, linux_text="Connection timed out",  # Linux
            darwin=60, darwin_text="Operation timed out",  # macOS
            meaning="nothing came back in time (unanswered SYN, or a deadline)",
            default_op="recv",
            go="i/o timeout",  # net deadline (os.ErrDeadlineExceeded); the kernel's is "connection timed out"
            python="TimeoutError",
            java=_ops(connect="java.net.SocketTimeoutException: connect timed out",
                      any="java.net.SocketTimeoutException: Read timed out"),
            node=_ops(connect="Error: connect ETIMEDOUT {remote}", any="Error: {op} ETIMEDOUT"),
            curl=_ops(connect="(28) Failed to connect to {remote_host} port {remote_port} after 1000 ms: Timeout was reached",
                      any="(28) Operation timed out after 1000 milliseconds with 0 bytes received"),
        ),
        ErrnoInfo(
            name="EHOSTUNREACH",
            linux=113, linux_text="No route to host",  # Linux
            darwin=65, darwin_text="No route to host",  # macOS
            meaning="an ICMP host-unreachable (or no ARP answer) stopped the SYN",
            default_op="connect",
            go="no route to host",
            python="OSError",
            java=_ops(any="java.net.NoRouteToHostException: No route to host"),
            node=_ops(any="Error: connect EHOSTUNREACH {remote}"),
            curl=_ops(any="(7) Failed to connect to {remote_host} port {remote_port} after 0 ms: No route to host"),
        ),
        ErrnoInfo(
            name="ENETUNREACH",
            linux=101, linux_text="Network is unreachable",  # Linux
            darwin=51, darwin_text="Network is unreachable",  # macOS
            meaning="no route to that network: the SYN was never sent",
            default_op="connect",
            go="network is unreachable",
            python="OSError",
            java=_ops(any="java.net.SocketException: Network is unreachable"),
            node=_ops(any="Error: connect ENETUNREACH {remote}"),
            curl=_ops(any="(7) Failed to connect to {remote_host} port {remote_port} after 0 ms: Network is unreachable"),
        ),
        ErrnoInfo(
            name="ECONNABORTED",
            linux=103, linux_text="Software caused connection abort",  # Linux
            darwin=53, darwin_text="Software caused connection abort",  # macOS
            meaning="the connection was aborted locally (e.g. reset while still in the accept queue)",
            default_op="accept",
            go="software caused connection abort",
            python="ConnectionAbortedError",
            java=_ops(any="java.net.SocketException: Software caused connection abort"),
            node=_ops(any="Error: {op} ECONNABORTED"),
            curl=_ops(any="(56) Recv failure: Software caused connection abort"),
        ),
        ErrnoInfo(
            name="EBADF",
            linux=9, linux_text="Bad file descriptor",  # Linux
            darwin=9, darwin_text="Bad file descriptor",  # macOS
            meaning="the socket was already closed by this program",
            default_op="recv",
            go="use of closed network connection",  # net.ErrClosed; Go never passes the fd down
            python="OSError",
            java=_ops(any="java.net.SocketException: Socket closed"),
            node=_ops(any="Error [ERR_STREAM_DESTROYED]: Cannot call write after a stream was destroyed"),
            curl=_ops(),
        ),
        ErrnoInfo(
            name="EAGAIN",  # == EWOULDBLOCK on both Linux and macOS
            linux=11, linux_text="Resource temporarily unavailable",  # Linux
            darwin=35, darwin_text="Resource temporarily unavailable",  # macOS
            meaning="nothing to read (or no buffer space) on a non-blocking socket",
            default_op="recv",
            go=None,  # the runtime poller waits instead
            python="BlockingIOError",
            java=_ops(),
            node=_ops(any="Error: {op} EAGAIN"),
            curl=_ops(),
        ),
        ErrnoInfo(
            name="EINPROGRESS",
            linux=115, linux_text="Operation now in progress",  # Linux
            darwin=36, darwin_text="Operation now in progress",  # macOS
            meaning="a non-blocking connect started; its result comes later (SO_ERROR)",
            default_op="connect",
            go=None,  # the runtime waits and reads SO_ERROR
            python="BlockingIOError",
            java=_ops(),
            node=_ops(),
            curl=_ops(),
        ),
        ErrnoInfo(
            name="ENOTCONN",
            linux=107, linux_text="Transport endpoint is not connected",  # Linux
            darwin=57, darwin_text="Socket is not connected",  # macOS
            meaning="the socket is not (or no longer) connected",
            default_op="send",
            go="transport endpoint is not connected",
            python="OSError",
            java=_ops(any="java.net.SocketException: Socket is not connected"),
            node=_ops(any="Error: {op} ENOTCONN"),
            curl=_ops(),
        ),
        ErrnoInfo(
            name="EOF",  # no errno: read/recv returned 0 because the peer sent FIN
            linux=None, linux_text=None,
            darwin=None, darwin_text=None,
            meaning="the peer closed its side (FIN): read returned 0",
            default_op="recv",
            go="EOF",  # io.EOF
            python=None,  # recv() returns b''; libraries raise their own (see phrase())
            java=_ops(any="java.io.EOFException"),
            # Node's "socket hang up" carries code ECONNRESET, but the socket saw a FIN.
            node=_ops(any="Error: socket hang up"),
            curl=_ops(any="(52) Empty reply from server"),
        ),
    )
}

# EWOULDBLOCK is the same number as EAGAIN on Linux and macOS: one name here.
ALIASES = {"EWOULDBLOCK": "EAGAIN"}


def _info(name: str) -> ErrnoInfo:
    key = ALIASES.get(name.upper(), name.upper())
    try:
        return ERRNOS[key]
    except KeyError:
        raise ValueError(f"unknown errno name {name!r} (known: {', '.join(ERRNOS)})") from None


def _os_key(os: str) -> str:
    lowered = os.lower()
    if lowered in ("linux",):
        return "Linux"
    if lowered in ("darwin", "macos", "mac", "osx"):
        return "Darwin"
    raise ValueError(f"unknown OS {os!r} (expected 'Linux' or 'Darwin')")


def number(name: str, os: str = "Linux") -> Optional[int]:
    """The errno number of `name` on `os` ("Linux" or "Darwin"); None for EOF."""
    info = _info(name)
    return info.linux if _os_key(os) == "Linux" else info.darwin


def strerror(name: str, os: str = "Linux") -> Optional[str]:
    """strerror() text of `name` on `os`; None for EOF."""
    info = _info(name)
    return info.linux_text if _os_key(os) == "Linux" else info.darwin_text


_BY_NUMBER = {
    "Linux": {info.linux: info.name for info in ERRNOS.values() if info.linux is not None},
    "Darwin": {info.darwin: info.name for info in ERRNOS.values() if info.darwin is not None},
}


def name_from_number(n: int, os: str = "Linux") -> Optional[str]:
    """The errno name for number `n` on `os`, or None when not in the table."""
    return _BY_NUMBER[_os_key(os)].get(int(n))


# ---------------------------------------------------------------------------
# name -> message

def _go_op(op: Optional[str]) -> Optional[str]:
    """The word Go's net.OpError uses for a model op (``read``, ``write``,
    ``dial``, ``accept``, ``close``); None for an op it has no word for.
    Read from the model's RECEIVE_OPS/SEND_OPS, not restated."""
    if op in RECEIVE_OPS:
        return "read"
    if op in SEND_OPS:
        return "write"
    return {"connect": "dial", "accept": "accept", "close": "close", "shutdown": "close"}.get(op or "")


def _op_kind(op: Optional[str]) -> str:
    go_op = _go_op(op) or ""
    return {"read": "read", "write": "write", "dial": "connect"}.get(go_op, "*")


def _pick(table: Mapping[str, Optional[str]], op: Optional[str]) -> Optional[str]:
    kind = _op_kind(op)
    return table.get(kind) if kind in table else table.get("*")


def _phrase_go(info: ErrnoInfo, op: Optional[str], local, remote, os: str) -> Optional[str]:
    if info.go is None:
        return None
    if info.name == "EOF":
        return "EOF"
    text = info.go
    syscall = ""  # deadline and closed-connection errors carry no syscall name
    go_op = _go_op(op) or op or _go_op(info.default_op) or "read"
    if info.name not in ("ETIMEDOUT", "EBADF"):
        if _os_key(os) == "Darwin" and info.darwin_text:
            text = info.darwin_text[0].lower() + info.darwin_text[1:]
        syscall = {"dial": "connect", "accept": "accept4"}.get(go_op, go_op) + ": "
    if go_op == "dial":
        where = f" {remote}" if remote else ""
    elif local and remote:
        where = f" {local}->{remote}"
    else:
        where = f" {remote or local}" if (remote or local) else ""
    if not where:
        return f"{syscall}{text}"
    return f"{go_op} tcp{where}: {syscall}{text}"


def _phrase_python(info: ErrnoInfo, op, local, remote, os: str) -> Optional[str]:
    if info.name == "EOF":
        return "recv() returned b''"
    if info.name == "ETIMEDOUT":
        return "TimeoutError: timed out"  # socket.settimeout(); "socket.timeout" before 3.10
    return f"{info.python}: [Errno {number(info.name, os)}] {strerror(info.name, os)}"


def _endpoint_parts(remote) -> tuple[str, str]:
    text = str(remote) if remote else "127.0.0.1:0"
    host, _, port = text.rpartition(":")
    return host.strip("[]"), port


def _fill(template: Optional[str], op, local, remote) -> Optional[str]:
    if template is None:
        return None
    host, port = _endpoint_parts(remote)
    go_op = _go_op(op)
    node_op = "connect" if go_op == "dial" else go_op or op or "read"
    text = template.format(op=node_op, remote=str(remote) if remote else "", local=str(local or ""),
                           remote_host=host, remote_port=port)
    return text.rstrip()


def phrase(name: str, lang: str, op: Optional[str] = None, local: object = None,
           remote: object = None, os: str = "Linux") -> Optional[str]:
    """The message `lang` prints when a call fails with errno `name`.

    `lang` is one of ``Go``, ``Python``, ``Java``, ``Node``, ``curl``
    (case-insensitive). `op` is the model's op (``read``/``recv``/``write``/
    ``send``/``connect``/...): it decides Go's ``read:``/``write:``/
    ``connect:`` and which Java/curl message applies. `local` and `remote`
    are Endpoints (or ``"1.2.3.4:80"`` text) and appear where the language
    prints them. `os` picks the numbers and texts (``Linux``/``Darwin``).
    Returns None when the language never reports this errno to its user
    (Go never shows EAGAIN: its poller waits instead).

    >>> phrase("EPIPE", "Go", op="write", local="127.0.0.1:50389", remote="127.0.0.1:8080")
    'write tcp 127.0.0.1:50389->127.0.0.1:8080: write: broken pipe'
    """
    info = _info(name)
    key = lang.lower()
    if key == "go":
        return _phrase_go(info, op, local, remote, os)
    if key == "python":
        return _phrase_python(info, op, local, remote, os)
    if key == "java":
        return _fill(_pick(info.java, op), op, local, remote)
    if key in ("node", "node.js", "nodejs"):
        return _fill(_pick(info.node, op), op, local, remote)
    if key == "curl":
        text = _fill(_pick(info.curl, op), op, local, remote)
        return f"curl: {text}" if text else None
    raise ValueError(f"unknown language {lang!r} (expected one of {', '.join(LANGUAGES)})")
