"""strace logs -> SocketCalls: the socket side of a story, from production.

Reads what `strace -f -ttt -T -yy -o FILE` writes, and the plainer forms:
``-tt`` or ``-t`` wall clock (needs `date=`), no ``-T``, no ``-f`` pid column,
``[pid N]`` prefixes (strace writing to stderr), per-pid files from
``-ff -o NAME`` (the pid is taken from the ``NAME.PID`` suffix).

What it understands:
- ``<unfinished ...>`` / ``<... read resumed>`` pairs, across pids;
- fds annotated by ``-yy``: ``3<TCP:[127.0.0.1:50389->127.0.0.1:8080]>``,
  ``3<TCPv6:[[::1]:5->[::1]:6]>``, ``3<TCP:[8730]>`` (inode only: not bound
  yet); without ``-yy`` an fd counts as TCP once ``socket(AF_INET*,
  SOCK_STREAM)``, ``accept`` or an inet ``connect`` made it one (``-y``'s
  ``3<socket:[8730]>`` too), and its ends come from the sockaddr of connect,
  accept, bind, getsockname and getpeername, and from `ends`
  (formats/socket_ends.py: the witness and the capture) for what those leave
  open (the local port a connect got);
- a non-blocking ``connect`` returning EINPROGRESS whose outcome arrives later
  through ``getsockopt(fd, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4])`` (Go
  does this): the two become ONE ``connect`` call from the connect's start to
  the getsockopt's end, with the SO_ERROR errno (None when it was 0), the
  remote endpoint taken from the connect's sockaddr;
- read/recv* returning 0 (end-of-file: result 0, errno None);
- ``= -1 EPIPE (Broken pipe)``; ``--- SIGPIPE ---`` and ``+++ exited +++``
  lines (no calls, never a problem).

Calls kept (only on TCP fds): connect, accept (accept4), read, write, recv,
recvfrom, recvmsg, readv, send, sendto, sendmsg, writev, sendfile, close,
shutdown, and setsockopt(SO_LINGER) (it tells an abortive close's reason). Op names are the syscall names (``accept4`` -> ``accept``,
``sendfile64`` -> ``sendfile``, ``*mmsg`` -> ``*msg``); the model's
RECEIVE_OPS/SEND_OPS know them all. Calls interrupted with ERESTART* are
dropped (the kernel restarts them and strace prints the restart).
IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) become plain IPv4, as they
appear in a capture.

Every call: ``source="strace"``, role = the process name when the log shows its
execve (``curl``), else ``pid N``; start_ns from the timestamp, end_ns = start
+ the ``-T`` duration (or the resumed line's time), text = the original
line(s). A line that cannot be read becomes a problem
``"path:LINE: what was expected"`` and is skipped; nothing here raises for bad
input. Pure: lines in, an ImportResult out (`read_strace_file` is the only
function that opens a file).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
from typing import Iterable, Optional, Union

from tcpteardown.errnos import name_from_number
from tcpteardown.formats.imported import ImportResult, Problems, open_evidence
from tcpteardown.formats.socket_ends import SocketEnds, is_wildcard
from tcpteardown.model import Endpoint, SocketCall

__all__ = ["parse_strace", "read_strace_file", "read_strace_files", "ImportResult", "TRACED_SYSCALLS"]

# syscall -> op name in the model
_OPS = {
    "connect": "connect", "accept": "accept", "accept4": "accept",
    "read": "read", "write": "write", "recv": "recv", "send": "send",
    "recvfrom": "recvfrom", "sendto": "sendto", "recvmsg": "recvmsg", "sendmsg": "sendmsg",
    "recvmmsg": "recvmsg", "sendmmsg": "sendmsg", "readv": "readv", "writev": "writev",
    "sendfile": "sendfile", "sendfile64": "sendfile", "close": "close", "shutdown": "shutdown",
    "setsockopt": "setsockopt",  # SO_LINGER only: it decides why an abortive close sent RST
}
# An event loop's wake-ups: one readiness event (a SocketCall of this op) per TCP fd reported
_READINESS = {"epoll_wait": "epoll_wait", "epoll_pwait": "epoll_wait", "epoll_pwait2": "epoll_wait",
              "poll": "poll", "ppoll": "poll", "select": "select", "pselect6": "select", "_newselect": "select"}
# syscalls read only to learn about fds, processes and endpoints
_BOOKKEEPING = frozenset({"socket", "bind", "getsockname", "getpeername", "getsockopt", "epoll_ctl",
                          "clone", "clone3", "fork", "vfork", "execve", "execveat", "dup", "dup2", "dup3"})
_WANTED = frozenset(_OPS) | frozenset(_READINESS) | _BOOKKEEPING
# What `record` asks strace to trace (strace -e trace=...): exactly the syscalls
# this parser reads. Process exits come from strace's own "+++ exited" lines,
# which it prints whatever is traced.
TRACED_SYSCALLS = tuple(sorted(_WANTED))

_PREFIX_RE = re.compile(
    r"\s*(?:\[pid\s+(?P<pid1>\d+)\]\s+|(?P<pid2>\d+)\s+(?=[\d<a-z_+\-]))?"
    r"(?:(?P<epoch>\d{9,}\.\d+)|(?P<clock>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?|(?P<rel>\d{1,8}\.\d+))?\s*")
_NAME_RE = re.compile(r"([a-z_][a-z0-9_]*)\(")
_RESUMED_RE = re.compile(r"<\.\.\. ([a-z_][a-z0-9_]*) resumed>")
# Matched only at the last ") = " of a line (see _result), never searched:
# a search retried at every ")" of a 50 MB write() argument is quadratic.
_RESULT_RE = re.compile(
    r"\)\s+=\s+(?P<ret>-?\d+|\?|0x[0-9a-fA-F]+)(?P<ann><(?:->|[^>])*>+)?"
    r"(?:\s+(?P<errno>E[A-Z0-9]+)\s+\((?P<errtext>[^)]*)\))?(?:\s+\((?P<tail>[^)]*)\))?"
    r"(?:\s+<(?P<dur>\d+\.\d+)>)?\s*$")
_FD_RE = re.compile(r"(?P<fd>-?\d+)(?:<(?P<proto>[A-Za-z0-9\-]+):\[(?P<inner>.*?)\]>|<(?P<other>[^>]*)>+)?")
# Port and address are found by two searches (the second from the port on),
# not one pattern with ".*?" between them, which is quadratic on a line of
# many "sin_port=" and no address.
_PORT_RE = re.compile(r"sin6?_port=htons\((?P<port>\d+)\)")
_ADDR_RE = re.compile(r"inet_addr\(\"(?P<v4>[^\"]+)\"\)|inet_pton\(AF_INET6?,\s*\"(?P<v6>[^\"]+)\"")
_SO_ERROR_RE = re.compile(r"SO_ERROR,\s*\[(?P<value>[A-Z0-9]+)\]")
# epoll's user data (the cookie epoll_ctl stored: the fd for libuv and Python, a
# pointer for Go and nginx): strace 6 prints {u32=N, u64=N}, later ones a number.
_EPOLL_EVENT_RE = re.compile(r"\{events=(?P<events>[A-Z0-9_|]+|0),\s*data=(?:\{u32=(?P<u32>\d+),\s*u64=(?P<u64>\d+)\}"
                             r"|(?P<data>0x[0-9a-fA-F]+|\d+))")
_POLL_REVENTS_RE = re.compile(r"\{fd=(?P<fd>\d+)(?:<[^>]*>+)?,\s*revents=(?P<events>[A-Z0-9_|]+)\}")
_SELECT_SET_RE = re.compile(r"\b(?P<set>in|out|except|exp)\s+\[(?P<fds>[\d\s]*)\]")
_PID_SUFFIX_RE = re.compile(r"\.(\d+)$")
_UNFINISHED = " <unfinished ...>"
# connect() errors raised before the kernel sends a SYN: no local end to look up
_NO_SYN_SENT = frozenset({"EALREADY", "EISCONN", "EBADF", "ENOTSOCK", "EINVAL", "EAFNOSUPPORT", "EADDRNOTAVAIL",
                          "ENETUNREACH", "EACCES", "EPERM", "EFAULT"})


class _Socket:
    """What we know about one TCP fd of one process."""

    __slots__ = ("local", "remote", "waiting")

    def __init__(self) -> None:
        self.local: Optional[Endpoint] = None
        self.remote: Optional[Endpoint] = None
        self.waiting: list[dict] = []  # calls still missing an endpoint

    def learn(self, local: Optional[Endpoint], remote: Optional[Endpoint]) -> None:
        if local is not None:
            self.local = local
        if remote is not None:
            self.remote = remote
        if self.waiting and (local or remote):
            still = []
            for call in self.waiting:
                call["local"] = call["local"] or self.local
                call["remote"] = call["remote"] or self.remote
                if call["local"] is None or call["remote"] is None:
                    still.append(call)
            self.waiting = still


_ENDPOINTS: dict[str, Optional[Endpoint]] = {}


def _endpoint(text: str) -> Optional[Endpoint]:
    """Endpoint from strace's ``127.0.0.1:80`` / ``[::1]:80`` text (cached)."""
    found = _ENDPOINTS.get(text, _ENDPOINTS)
    if found is not _ENDPOINTS:
        return found  # type: ignore[return-value]
    try:
        endpoint: Optional[Endpoint] = Endpoint.parse(text)
        if endpoint.host.startswith("::ffff:"):
            mapped = ipaddress.IPv6Address(endpoint.host).ipv4_mapped
            if mapped is not None:
                endpoint = Endpoint(str(mapped), endpoint.port)
    except ValueError:
        endpoint = None
    if len(_ENDPOINTS) < 100_000:
        _ENDPOINTS[text] = endpoint
    return endpoint


def _sockaddr(args: str) -> Optional[Endpoint]:
    port = _PORT_RE.search(args)
    if not port:
        return None
    m = _ADDR_RE.search(args, port.end())
    if not m:
        return None
    host = m.group("v4") or m.group("v6")
    return _endpoint(f"[{host}]:{port.group('port')}" if ":" in host else f"{host}:{port.group('port')}")


def _tuple(inner: str) -> tuple[Optional[Endpoint], Optional[Endpoint]]:
    """``A->B`` / ``A`` / ``inode`` from a TCP annotation -> (local, remote)."""
    if inner.isdigit():
        return None, None
    local, arrow, remote = inner.partition("->")
    return _endpoint(local), (_endpoint(remote) if arrow else None)


def _result(body: str, start: int) -> Optional[re.Match]:
    """The ``) = RESULT ...`` tail of a syscall line: tried at the last
    `` = `` only (strace puts the result last, after padding spaces when
    there is no -T; arguments may hold the same text), so reading a line is
    linear in its length."""
    at = body.rfind(" = ", start)
    if at < 0:
        return None
    paren = len(body[:at].rstrip()) - 1
    return _RESULT_RE.match(body, paren) if paren >= start and body[paren] == ")" else None


def _cookie(event: re.Match) -> str:
    """epoll data as one text, whichever way strace printed it."""
    if event.group("u64") is not None:
        return event.group("u64")
    data = event.group("data")
    return str(int(data, 16)) if data.startswith("0x") else data


def _ns_from_decimal(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


class _Reader:
    """One pass over an strace log; state per process and per fd."""

    def __init__(self, path: str, pid: Optional[int], date: Optional[_dt.date],
                 tz: Optional[_dt.tzinfo], ends: Optional["SocketEnds"] = None) -> None:
        self.path = path
        self.ends = ends  # where a socket's ends come from when the log does not name them (strace -y)
        self.where = path  # the file the current line came from (per-pid files are merged)
        self.default_pid = pid
        self.date = date
        self.tz = tz or _dt.timezone.utc
        self.calls: list[dict] = []
        self.problems = Problems()
        self.pending: dict[Optional[int], tuple[str, int, str, str, int]] = {}
        self.connecting: dict[tuple, dict] = {}
        self.cookies: dict[tuple, dict[str, int]] = {}  # (fd group, epoll fd) -> {epoll data: fd}
        self.sockets: dict[tuple, _Socket] = {}
        self.group: dict[Optional[int], Optional[int]] = {}
        self.names: dict[Optional[int], str] = {}
        self.day_offset_ns = 0
        self.relative_ns = 0  # strace -r: the sum of the deltas so far
        self.last_clock_ns: Optional[int] = None
        self.midnight_ns: Optional[int] = None

    # -- reporting ---------------------------------------------------------
    def problem(self, line_no: int, text: str) -> None:
        self.problems.add(self.where, line_no, text)

    def note_once(self, key: str, text: str) -> None:
        self.problems.note(key, f"{self.path}: {text}")

    # -- time --------------------------------------------------------------
    def start_ns(self, m: re.Match, line_no: int) -> int:
        epoch = m.group("epoch")
        if epoch:
            return _ns_from_decimal(epoch)
        clock = m.group("clock")
        if clock:
            return self.clock_ns(clock, m.group("frac") or "0")
        if m.group("rel"):
            self.note_once("rel", "relative timestamps (strace -r) cannot be placed on the capture's "
                                  "clock; times start at 0 (use strace -ttt)")
            return self.relative_ns  # summed in feed(), over every line
        self.note_once("notime", "no timestamps in this log; all calls are placed at time 0 "
                                 "(run strace with -ttt -T)")
        return 0

    def clock_ns(self, clock: str, frac: str) -> int:
        if self.midnight_ns is None:
            date = self.date
            if date is None:
                date = _dt.date(1970, 1, 1)
                self.note_once("nodate", "strace -tt/-t times carry no date; assumed 1970-01-01 "
                                         "(pass date=, or record with strace -ttt)")
            midnight = _dt.datetime(date.year, date.month, date.day, tzinfo=self.tz)
            self.midnight_ns = int(midnight.timestamp()) * 1_000_000_000
        hours, minutes, seconds = int(clock[0:2]), int(clock[3:5]), int(clock[6:8])
        of_day = ((hours * 60 + minutes) * 60 + seconds) * 1_000_000_000 + int((frac + "000000000")[:9])
        if self.last_clock_ns is not None and of_day + 43_200 * 1_000_000_000 < self.last_clock_ns:
            self.day_offset_ns += 86_400 * 1_000_000_000  # past midnight
        self.last_clock_ns = of_day
        return self.midnight_ns + self.day_offset_ns + of_day

    # -- processes and fds -------------------------------------------------
    def fd_group(self, pid: Optional[int]) -> Optional[int]:
        """Whose fd table `pid` uses. A pid the log never showed being
        forked is taken for a thread of the traced process (Go, Java and
        `strace -p` traces show threads without their clone lines)."""
        return self.group.get(pid, -1)

    def role(self, pid: Optional[int]) -> str:
        name = self.names.get(pid)
        if name:
            return name
        return f"pid {pid}" if pid is not None else "traced process"

    def socket_of(self, pid: Optional[int], fd: int, create: bool) -> Optional[_Socket]:
        key = (self.fd_group(pid), fd)
        found = self.sockets.get(key)
        if found is None and create:
            found = self.sockets[key] = _Socket()
        return found

    def forget(self, pid: Optional[int], fd: int) -> None:
        key = (self.fd_group(pid), fd)
        self.sockets.pop(key, None)
        pending = self.connecting.pop(key, None)
        if pending is not None:
            self.calls.append(pending)

    # -- lines -------------------------------------------------------------
    def feed(self, line_no: int, raw: str) -> None:
        line = raw.rstrip("\n")
        if not line.strip():
            return
        if "\ufffd" in line:
            self.problem(line_no, "bytes that are not valid UTF-8 (read with replacement characters)")
        m = _PREFIX_RE.match(line)
        body = line[m.end():]
        pid_text = m.group("pid1") or m.group("pid2")
        pid = int(pid_text) if pid_text else self.default_pid
        if m.group("rel"):
            self.relative_ns += _ns_from_decimal(m.group("rel"))
        if body.startswith("---") or body.startswith("strace:"):
            return  # signals, strace's own notes
        if body.startswith("+++"):
            self.exited(pid)
            return
        if body.startswith("<..."):
            self.resumed(line_no, line, body, pid, m)
            return
        name_match = _NAME_RE.match(body)
        if not name_match:
            if body.startswith("????") or body.startswith("Process "):
                return
            self.problem(line_no, "expected an strace line: [pid] [time] syscall(args) = result")
            return
        name = name_match.group(1)
        if name not in _WANTED:
            return
        start = self.start_ns(m, line_no)
        if body.endswith(_UNFINISHED):
            self.pending[pid] = (name, start, body[: -len(_UNFINISHED)], line, line_no)
            return
        self.complete(line_no, name, body, pid, start, line)

    def resumed(self, line_no: int, line: str, body: str, pid: Optional[int], prefix: re.Match) -> None:
        m = _RESUMED_RE.match(body)
        if not m:
            self.problem(line_no, "expected '<... syscall resumed>'")
            return
        name = m.group(1)
        if name not in _WANTED:
            self.pending.pop(pid, None)
            return
        rest = body[m.end():]
        stamp = self.start_ns(prefix, line_no)
        started = self.pending.get(pid)
        if started is None or started[0] != name:
            # The start is missing (trace attached mid-call): no fd, so no socket to put it on.
            self.problem(line_no, f"'{name} resumed' without its '<unfinished ...>' start for pid {pid}; "
                                  f"skipped (fd unknown)")
            return
        del self.pending[pid]
        _, start, head, first_line, _ = started
        text = first_line + "\n" + line
        self.complete(line_no, name, head + rest, pid, start, text, resumed_at=stamp)

    def exited(self, pid: Optional[int]) -> None:
        started = self.pending.pop(pid, None)
        if started is not None:
            name, start, head, first_line, line_no = started
            if name in _OPS:
                self.complete(line_no, name, head + ") = ?", pid, start, first_line)

    def complete(self, line_no: int, name: str, body: str, pid: Optional[int],
                 start: int, text: str, resumed_at: Optional[int] = None) -> None:
        paren = len(name) + 1
        m = _result(body, paren - 1)
        if not m:
            self.problem(line_no, f"expected '{name}(...) = RESULT' (the line may be cut short)")
            return
        args = body[paren: m.start()]
        ret_text = m.group("ret")
        errno = m.group("errno")
        if errno and errno.startswith("ERESTART"):
            return
        dur = m.group("dur")
        if dur:
            end = start + _ns_from_decimal(dur)
        else:
            end = resumed_at if resumed_at is not None else start
        end = max(end, start)  # a -tt clock stepping back never gives a negative duration
        ret = None if ret_text == "?" else int(ret_text, 16) if ret_text.startswith("0x") else int(ret_text)
        if name in _BOOKKEEPING:
            self.bookkeep(name, args, ret, m.group("ann"), errno, pid, end, text, line_no)
            return
        if name in _READINESS:
            if ret is not None and ret > 0:
                self.readiness(_READINESS[name], args, m.group("tail") or "", pid, start, end, ret, text, line_no)
            return
        if name == "setsockopt" and "SO_LINGER" not in args:
            return
        fd_match = _FD_RE.match(args)
        if not fd_match:
            self.problem(line_no, f"expected an fd as the first argument of {name}()")
            return
        fd = int(fd_match.group("fd"))
        sock = self.tcp_socket(pid, fd, fd_match, name, args)
        if sock is None:
            return
        op = _OPS[name]
        call = {"role": self.role(pid), "op": op, "start_ns": start, "end_ns": end,
                "result": ret, "errno": errno, "pid": pid, "fd": fd,
                "local": sock.local, "remote": sock.remote, "source": "strace", "text": text,
                "where": f"{self.where}:{line_no}"}
        if op == "accept":
            self.accepted(call, sock, args, ret, m.group("ann"), pid)
        elif op == "connect":
            remote = _sockaddr(args)
            sock.learn(None, remote)
            call["remote"] = sock.remote
            if self.ends is not None and errno not in _NO_SYN_SENT:
                local = self.ends.connected(pid, start, end, sock.remote)
                if local is not None:  # the ephemeral port this connect got (a retry gets another)
                    sock.learn(local, None)
                    call["local"] = local
            if errno == "EINPROGRESS":
                self.connecting[(self.fd_group(pid), fd)] = call
                if call["local"] is None:
                    sock.waiting.append(call)
                return
        if call["local"] is None or call["remote"] is None:
            sock.waiting.append(call)
        self.calls.append(call)
        if op == "close" and ret == 0:
            self.forget(pid, fd)

    def tcp_socket(self, pid: Optional[int], fd: int, fd_match: re.Match, name: str,
                   args: str) -> Optional[_Socket]:
        """The TCP socket behind `fd`, or None when `fd` is something else."""
        proto = fd_match.group("proto")
        if proto in ("TCP", "TCPv6"):
            sock = self.socket_of(pid, fd, create=True)
            local, remote = _tuple(fd_match.group("inner"))
            sock.learn(local, remote)  # type: ignore[union-attr]
            return sock
        if proto is not None and proto != "socket":
            self.sockets.pop((self.fd_group(pid), fd), None)  # UDP, UNIX, NETLINK...
            return None
        if fd_match.group("other"):
            return None  # a file, a pipe, an epoll fd
        sock = self.socket_of(pid, fd, create=False)
        if sock is None and name == "connect" and _sockaddr(args) is not None:
            sock = self.socket_of(pid, fd, create=True)
        return sock

    def accepted(self, call: dict, listener: _Socket, args: str, ret: Optional[int],
                 ann: Optional[str], pid: Optional[int]) -> None:
        if ret is None or ret < 0:
            return
        new = self.socket_of(pid, ret, create=True)
        assert new is not None
        new.local, new.remote, new.waiting = listener.local, _sockaddr(args), []
        if self.ends is not None and (new.local is None or is_wildcard(new.local)):
            new.local = self.ends.accepted(listener.local, new.remote, call["end_ns"]) or new.local
        if ann:
            fd_match = _FD_RE.match(f"{ret}{ann}")
            if fd_match and fd_match.group("inner") is not None:
                new.learn(*_tuple(fd_match.group("inner")))
        call.update(fd=ret, local=new.local, remote=new.remote)
        if new.local is None or new.remote is None:
            new.waiting.append(call)

    def bookkeep(self, name: str, args: str, ret: Optional[int], ann: Optional[str],
                 errno: Optional[str], pid: Optional[int], end: int, text: str, line_no: int) -> None:
        if name == "socket":
            if ret is not None and ret >= 0:
                self.forget(pid, ret)
                is_tcp = ("AF_INET" in args and "SOCK_STREAM" in args) or bool(ann and "<TCP" in ann)
                if is_tcp:
                    self.socket_of(pid, ret, create=True)
            return
        if name in ("clone", "clone3", "fork", "vfork"):
            if ret is not None and ret > 0:
                if "CLONE_THREAD" in args or "CLONE_FILES" in args:
                    self.group[ret] = self.fd_group(pid)
                else:  # a new process: its own copy of the fd table
                    self.group[ret] = ret
                    parent = self.fd_group(pid)
                    for (group, fd), sock in list(self.sockets.items()):
                        if group == parent:
                            copy = _Socket()
                            copy.local, copy.remote = sock.local, sock.remote
                            self.sockets[(ret, fd)] = copy
                if pid in self.names:
                    self.names[ret] = self.names[pid]
            return
        if name in ("execve", "execveat"):
            if ret == 0:
                if name == "execveat":  # execveat(DIRFD, "PATH", ...)
                    args = args.split(", ", 1)[-1]
                path = args.split('"', 2)[1] if args.startswith('"') else ""
                if path:
                    self.names[pid] = os.path.basename(path)
            return
        fd_match = _FD_RE.match(args)
        if not fd_match:
            return
        fd = int(fd_match.group("fd"))
        if name in ("dup", "dup2", "dup3"):
            return
        if name == "epoll_ctl":
            if errno is None:
                self.epoll_ctl(fd, args[fd_match.end():], pid)
            return
        sock = self.tcp_socket(pid, fd, fd_match, name, args)
        if sock is None:
            return
        if name == "bind" and errno is None:
            sock.learn(_sockaddr(args), None)
        elif name == "getsockname" and errno is None:
            sock.learn(_sockaddr(args), None)
        elif name == "getpeername" and errno is None:
            sock.learn(None, _sockaddr(args))
        elif name == "getsockopt":
            self.so_error(args, pid, fd, sock, end, text, line_no)

    def so_error(self, args: str, pid: Optional[int], fd: int, sock: _Socket, end: int, text: str,
                 line_no: int) -> None:
        """getsockopt(SO_ERROR) after a non-blocking connect: the connect's outcome, as a
        call of its own (op getsockopt, the SO_ERROR value as its errno, None for 0)."""
        m = _SO_ERROR_RE.search(args)
        if not m:
            return
        key = (self.fd_group(pid), fd)
        connect = self.connecting.pop(key, None)
        if connect is None:
            return
        value = m.group("value")
        if value.isdigit():
            errno = None if value == "0" else (name_from_number(int(value)) or f"errno {value}")
        else:
            errno = value
        self.calls.append(connect)
        sock.learn(None, connect["remote"])
        call = {"role": connect["role"], "op": "getsockopt", "start_ns": end, "end_ns": end, "result": 0,
                "errno": errno, "pid": pid, "fd": fd, "local": sock.local, "remote": sock.remote,
                "source": "strace", "text": text, "where": f"{self.where}:{line_no}"}
        self.timed(call, text)
        if call["local"] is None:
            sock.waiting.append(call)
        self.calls.append(call)

    @staticmethod
    def timed(call: dict, text: str) -> None:
        """Give a bookkeeping call its own start (bookkeep() is handed only its end)."""
        dur = re.search(r"<(\d+\.\d+)>\s*$", text)
        if dur:
            call["start_ns"] = call["end_ns"] - _ns_from_decimal(dur.group(1))

    # -- event loops -------------------------------------------------------
    def epoll_ctl(self, epfd: int, rest: str, pid: Optional[int]) -> None:
        """EPOLL_CTL_ADD/MOD remember which fd a cookie (epoll data) stands for; DEL forgets it."""
        op, _, rest = rest.lstrip(", ").partition(",")
        target = _FD_RE.match(rest.lstrip())
        if target is None:
            return
        fd = int(target.group("fd"))
        cookies = self.cookies.setdefault((self.fd_group(pid), epfd), {})
        if op.strip() == "EPOLL_CTL_DEL":
            for cookie in [c for c, known in cookies.items() if known == fd]:
                del cookies[cookie]
            return
        if target.group("proto") in ("TCP", "TCPv6"):
            self.tcp_socket(pid, fd, target, "epoll_ctl", rest)
        event = _EPOLL_EVENT_RE.search(rest)
        if event is not None:
            cookies[_cookie(event)] = fd

    def readiness(self, op: str, args: str, tail: str, pid: Optional[int], start: int, end: int,
                  ready: int, text: str, line_no: int) -> None:
        """One readiness event per TCP fd the wait reported: when the loop was told, and what."""
        if op == "epoll_wait":
            found = self.epoll_ready(args, pid)
        elif op == "poll":
            found = [(int(m.group("fd")), m.group("events")) for m in _POLL_REVENTS_RE.finditer(tail)]
        else:
            sets: dict[int, list[str]] = {}
            for m in _SELECT_SET_RE.finditer(tail):
                for fd in m.group("fds").split():
                    sets.setdefault(int(fd), []).append("except" if m.group("set") == "exp" else m.group("set"))
            found = [(fd, "|".join(names)) for fd, names in sets.items()]
        for fd, events in found:
            sock = self.socket_of(pid, fd, create=False)
            if sock is None:
                continue
            call = {"role": self.role(pid), "op": op, "start_ns": start, "end_ns": end, "result": ready,
                    "errno": None, "pid": pid, "fd": fd, "local": sock.local, "remote": sock.remote,
                    "source": "strace", "text": text, "where": f"{self.where}:{line_no}", "events": events}
            if call["local"] is None or call["remote"] is None:
                sock.waiting.append(call)
            self.calls.append(call)

    def epoll_ready(self, args: str, pid: Optional[int]) -> list[tuple[int, str]]:
        epfd = _FD_RE.match(args)
        if epfd is None:
            return []
        cookies = self.cookies.get((self.fd_group(pid), int(epfd.group("fd"))))
        found = []
        for event in _EPOLL_EVENT_RE.finditer(args):
            cookie = _cookie(event)
            if cookies is not None:
                fd = cookies.get(cookie)
            else:  # attached after the epoll_ctl calls: libuv and Python store the fd itself
                fd = int(event.group("u32")) if event.group("u32") else None
                self.note_once("epoll-cookies", "epoll_wait reports fds whose epoll_ctl the log does not "
                                                "show (strace attached late?); their data.u32 was taken as the "
                                                "fd, which holds for libuv and Python, not for Go or nginx")
            if fd is not None:
                found.append((fd, event.group("events")))
        return found

    def finish(self) -> ImportResult:
        for pid, (name, _, _, _, line_no) in list(self.pending.items()):
            if name in _OPS:
                self.problem(line_no, f"{name}() of {self.role(pid)} is '<unfinished ...>' and never "
                                      f"resumes before the log ends; kept without a result")
            self.exited(pid)
        self.calls.extend(self.connecting.values())
        self.connecting.clear()
        self.calls.sort(key=lambda call: (call["start_ns"], call["end_ns"]))
        calls = tuple(SocketCall(**call) for call in self.calls)
        return ImportResult(calls, self.problems.lines())


def _as_date(date: Union[None, str, _dt.date]) -> Optional[_dt.date]:
    if date is None or isinstance(date, _dt.date):
        return date
    return _dt.date.fromisoformat(date)


def parse_strace(lines: Iterable[str], *, path: str = "<strace>", pid: Optional[int] = None,
                 date: Union[None, str, _dt.date] = None,
                 tz: Optional[_dt.tzinfo] = None, ends: Optional[SocketEnds] = None) -> ImportResult:
    """Socket calls on TCP fds from strace output lines.

    `path` names the source in problems (and, for ``-ff -o NAME`` files called
    ``NAME.PID``, gives the pid). `pid` is the pid for lines without a pid
    column (default: from `path`, else unknown). `date` (``date`` or
    ``"YYYY-MM-DD"``) and `tz` (a tzinfo, default UTC) place ``-tt``/``-t``
    wall-clock times; without `date` they land on 1970-01-01 and a problem
    says so. `ends` (a `socket_ends.SocketEnds`) names the local end of a
    connect or an accepted socket the log does not (``strace -y``, no
    4-tuples). Never raises for bad lines: they are skipped and reported.
    """
    if pid is None:
        suffix = _PID_SUFFIX_RE.search(path)
        pid = int(suffix.group(1)) if suffix else None
    reader = _Reader(path, pid, _as_date(date), tz, ends)
    for line_no, line in enumerate(lines, 1):
        reader.feed(line_no, line)
    return reader.finish()


def read_strace_files(paths: Iterable[Union[str, "os.PathLike[str]"]], **options) -> ImportResult:
    """One result from the per-pid files of ``strace -ff -o NAME`` (``NAME.PID``).

    The files are merged into one stream ordered by timestamp, each line
    carrying the pid from its file name, so that a connect in one thread's
    file and its SO_ERROR in another's still meet. Problems name the original
    file and line.
    """
    tagged = []
    notes = []
    for index, path in enumerate(paths):
        suffix = _PID_SUFFIX_RE.search(str(path))
        handle, encoding = open_evidence(path)
        if encoding:
            notes.append((path, encoding))
        with handle:
            for line_no, line in enumerate(handle, 1):
                stamp = _PREFIX_RE.match(line)
                key = stamp.group("epoch") or stamp.group("clock") or ""
                body = line if suffix is None or stamp.group("pid1") or stamp.group("pid2") else \
                    f"{suffix.group(1)} {line}"
                tagged.append((float(key) if stamp.group("epoch") else 0.0, key, index, line_no, str(path), body))
    tagged.sort(key=lambda item: item[:4])
    reader = _Reader("<strace -ff>", options.pop("pid", None), _as_date(options.pop("date", None)),
                     options.pop("tz", None))
    if options:
        raise TypeError(f"unexpected options {sorted(options)}")
    for path, encoding in notes:
        reader.problems.note(f"encoding {path}", f"{path}: {encoding}")
    for _, _, _, line_no, path, body in tagged:
        reader.where = path
        reader.feed(line_no, body)
    return reader.finish()


def read_strace_file(path: Union[str, "os.PathLike[str]"], *, name: Optional[str] = None,
                     **options) -> ImportResult:
    """`parse_strace` over a file (UTF-8, or UTF-16/32 when it starts with a
    byte-order mark; undecodable bytes replaced and reported). Each call's `where`
    is "NAME:LINE", NAME the path unless given (`record` names its own temporary
    log "strace", which is gone once the bundle is written)."""
    handle, encoding = open_evidence(path)
    with handle:
        result = parse_strace(handle, path=str(path) if name is None else name, **options)
    if encoding:
        return ImportResult(result.calls, (f"{path}: {encoding}",) + result.problems)
    return result
