"""The lines capture/ebpf_calls.py's bpftrace script prints -> SocketCalls.

One line per event, fields separated by one space (an empty field is an
errno this tool has no name for):

    ready MONO                                  the script is attached
    F PARENT_TID CHILD_TID                      fork/clone of a traced task
    X TID PATH                                  exec (PATH may hold spaces)
    Q PID MONO                                  a traced process exited
    S SOCK MONO LADDR LPORT RADDR RPORT         a connecting socket leaves SYN_SENT
    C TID PID T0 T1 SYSCALL FD RET ERRNO SOCK LADDR LPORT RADDR RPORT EXTRA
    E TID PID MONO EPFD OP FD DATA SOCK         epoll_ctl on a TCP socket (OP 1 add, 2 del, 3 mod)
    R TID PID T0 T1 OP WAITFD RET A B           a wait's ready fd: epoll_wait (A events, B data),
                                                poll (A fd, B revents), select (A in/out/except,
                                                B its first two 64-bit words: fds 0-127)
    clock OFFSET_NS UNCERTAINTY_NS              CLOCK_MONOTONIC -> CLOCK_REALTIME
    timing ATTACH_NS STOP_NS DRAINED            bpftrace's start-up and stop (DRAINED 0: it was killed)
    gone STATUS LAST_WORDS                      bpftrace exited before the program did
    Lost N events                               bpftrace's ring buffer overflowed

``C`` is one call on a TCP socket: T0/T1 its entry and return (bpftrace's
nsecs, CLOCK_MONOTONIC, placed on the packets' clock with the ``clock``
line), RET the return value, ERRNO its name (``-`` when it succeeded),
SOCK the kernel's sock address (a socket's identity while it lives), the
two ends read from that sock (port 0: not known at that moment, e.g. after
a reset unhashed it; close prints none), EXTRA per call: the SO_ERROR
value's name (getsockopt), ``linger=ONOFF,JIFFIES`` (setsockopt SO_LINGER),
SHUT_* (shutdown), else ``-``.

The calls are the ones formats/strace.py makes of the same program (its
op names, roles named by the exec'd file as strace names them, the pid of
the thread, a non-blocking connect and its SO_ERROR as two calls), with
``source="ebpf"`` and ``where="bpftrace:LINE"``. Readiness events (an
event loop's wake-ups) are made as strace's reader makes them: one per TCP
fd the wait reported, an epoll fd's data mapped back to the fd its
epoll_ctl registered (else taken as the fd, as libuv and Python store it,
and said), each fd to the socket its last call on that fd named. Pure:
lines in, an ImportResult out; problems name the line.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Iterable, Optional

from tcpteardown.errnos import strerror
from tcpteardown.formats.imported import ImportResult, Problems
from tcpteardown.formats.strace import _OPS, _endpoint
from tcpteardown.model import Endpoint, SocketCall

__all__ = ["parse_bpftrace", "read_bpftrace_file"]

_RESTARTS = frozenset({512, 513, 514, 516})  # ERESTART*: the kernel restarts the call (strace drops them too)
_CALL_FIELDS = 15
_EPOLL_CTL_DEL = "2"
_WAIT_READ = 32  # capture/ebpf_calls.WAIT_READ: ready fds the script reads per wait


def _host(text: str) -> str:
    """An address as the script printed it: dotted or colon text (ntop), or an
    IPv6 address read at a BTF offset as 32 hex digits, two little-endian
    64-bit words (capture/ebpf_calls._Kernel)."""
    if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
        raw = int(text[:16], 16).to_bytes(8, "little") + int(text[16:], 16).to_bytes(8, "little")
        address = ipaddress.IPv6Address(raw)
        # as bpftrace's ntop (inet_ntop) prints it: a mapped IPv4 peer in dots
        return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else str(address)
    return text


def _ends(laddr: str, lport: str, raddr: str, rport: str) -> tuple[Optional[Endpoint], Optional[Endpoint]]:
    def one(host: str, port: str) -> Optional[Endpoint]:
        if host == "-" or port in ("0", "-") or not port.isdigit():
            return None
        host = _host(host)
        return _endpoint(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return one(laddr, lport), one(raddr, rport)


def parse_bpftrace(lines: Iterable[str], *, path: str = "bpftrace") -> ImportResult:
    """Socket calls from the script's output lines. Never raises for bad lines."""
    problems = Problems()
    calls, syn_ends, parents, names = [], {}, {}, {}
    offset, lost = None, 0
    for line_no, raw in enumerate(lines, 1):
        line = raw.rstrip("\n")
        kind = line[:2]
        if kind == "C ":
            fields = line.split(" ")
            if len(fields) != _CALL_FIELDS or not all(f.lstrip("-").isdigit() for f in fields[1:5]):
                problems.add(path, line_no, f"expected {_CALL_FIELDS} fields: C TID PID T0 T1 SYSCALL FD RET "
                                            f"ERRNO SOCK LADDR LPORT RADDR RPORT EXTRA")
                continue
            calls.append((int(fields[3]), int(fields[4]), line_no, fields))
        elif kind in ("E ", "R "):
            fields = line.split(" ")
            if len(fields) == (9 if kind == "E " else 10) and all(f.lstrip("-").isdigit() for f in fields[1:5]):
                at = int(fields[3]) if kind == "E " else int(fields[4])  # a wait tells at its return
                calls.append((at, at, line_no, fields))
            else:
                problems.add(path, line_no, "expected E TID PID MONO EPFD OP FD DATA SOCK" if kind == "E " else
                             "expected R TID PID T0 T1 OP WAITFD RET A B")
        elif kind == "S ":
            fields = line.split(" ")
            if len(fields) == 7 and fields[2].isdigit():
                syn_ends.setdefault(fields[1], []).append((int(fields[2]), _ends(*fields[3:7])))
            else:
                problems.add(path, line_no, "expected S SOCK MONO LADDR LPORT RADDR RPORT")
        elif kind == "F ":
            _, parent, child = (line.split(" ") + ["", ""])[:3]
            if parent.isdigit() and child.isdigit():
                parents[int(child)] = int(parent)
        elif kind == "X ":
            _, tid, exe = (line.split(" ", 2) + ["", ""])[:3]
            if tid.isdigit():
                names[int(tid)] = os.path.basename(exe)
        elif line.startswith("clock "):
            words = line.split()
            if len(words) == 3 and words[1].lstrip("-").isdigit():
                offset = int(words[1])
        elif line.startswith("timing "):
            if line.split()[3:4] == ["0"]:
                problems.note("killed", f"{path}: bpftrace did not exit on SIGINT and was killed: calls still "
                                        f"in its buffers when the program ended are missing")
        elif line.startswith("gone "):
            _, status, said = (line.split(" ", 2) + ["", ""])[:3]
            problems.note("gone", f"{path}: bpftrace exited (status {status}) before the program did: "
                                  f"calls after its last line are missing ({said})")
        elif line.startswith("Lost ") and line.endswith(" events"):
            lost += int(line.split()[1]) if line.split()[1].isdigit() else 0
        elif line.startswith(("ready ", "Q ", "Attaching ")) or not line.strip():
            continue
        else:
            problems.add(path, line_no, "expected a line of tcpteardown's bpftrace script (C, S, F, X, Q, clock)")
    if offset is None:
        offset = 0
        if calls:
            problems.note("clock", f"{path}: no clock line (the recording was cut short?): times are the "
                                   f"monotonic clock, not the packets'")
    if lost:
        problems.note("lost", f"{path}: bpftrace lost {lost} events (its ring buffer was full): some calls are missing")
    out = _Calls(offset, syn_ends, _Names(names, parents), path, problems)
    for _, _, line_no, fields in sorted(calls, key=lambda c: (c[0], c[1], c[2])):
        if fields[0] == "C":
            out.feed(int(fields[3]), int(fields[4]), line_no, fields)
        elif fields[0] == "E":
            out.epoll_ctl(fields)
        else:
            out.ready(line_no, fields)
    out.calls.sort(key=lambda c: (c.start_ns, c.end_ns))
    return ImportResult(tuple(out.calls), problems.lines())


class _Names:
    """A task's name as strace gives it: the file it exec'd, else its parent's."""

    def __init__(self, names: dict[int, str], parents: dict[int, int]):
        self.names, self.parents = names, parents

    def __call__(self, tid: int) -> str:
        seen = set()
        at: Optional[int] = tid
        while at is not None and at not in seen:
            if at in self.names:
                return self.names[at]
            seen.add(at)
            at = self.parents.get(at)
        return f"pid {tid}"


class _Calls:
    def __init__(self, offset: int, syn_ends: dict, role: _Names, path: str, problems: Problems):
        self.offset, self.syn_ends, self.role, self.path, self.problems = offset, syn_ends, role, path, problems
        self.socks: dict[tuple[str, int], str] = {}  # (process, fd) -> the sock its last call named
        self.cookies: dict[tuple[str, int], dict[str, int]] = {}  # (process, epoll fd) -> {data: fd}
        self.known: dict[str, tuple[Optional[Endpoint], Optional[Endpoint]]] = {}  # sock -> its ends
        self.connecting: set[str] = set()  # socks whose connect returned EINPROGRESS
        self.calls: list[SocketCall] = []

    def feed(self, t0: int, t1: int, line_no: int, fields: list[str]) -> None:
        _, tid_text, _, _, _, name, fd_text, ret_text, errno, sock, *ends, extra = fields
        ret = int(ret_text)
        if -ret in _RESTARTS:
            return
        errno = None if ret >= 0 else (errno or f"errno {-ret} (Linux)")
        local, remote = _ends(*ends)
        if name == "connect" and (local is None or remote is None):
            local, remote = self._syn_sent(sock, t0, t1) or (local, remote)
        old_local, old_remote = self.known.get(sock, (None, None))
        if name in ("connect", "accept", "accept4") or old_local is None or old_remote is None:
            self.known[sock] = (local or old_local, remote or old_remote)  # a new socket on this sock
        local, remote = local or old_local, remote or old_remote
        op, fd = _OPS.get(name, name), int(fd_text)
        if op == "accept" and ret >= 0:
            fd = ret
        if op == "getsockopt":
            if sock not in self.connecting:
                return  # SO_ERROR with no connect pending: nothing to tell (as strace's reader)
            self.connecting.discard(sock)
            errno, ret = (None if extra == "0" else extra), 0
        elif op == "connect" and errno == "EINPROGRESS":
            self.connecting.add(sock)
        process = fields[2]
        if op == "close":
            self.socks.pop((process, fd), None)
        elif op != "accept" or ret >= 0:
            self.socks[(process, fd)] = sock
        tid = int(tid_text)
        self.calls.append(SocketCall(
            role=self.role(tid), op=op, start_ns=t0 + self.offset, end_ns=t1 + self.offset,
            result=-1 if errno is not None and op != "getsockopt" else ret, errno=errno, pid=tid, fd=fd,
            local=local, remote=remote, source="ebpf", text=_text(name, fd, ret, errno, local, remote, extra),
            where=f"{self.path}:{line_no}"))

    def epoll_ctl(self, fields: list[str]) -> None:
        """Which epoll data stands for which TCP fd (add, mod), forgotten on del."""
        _, _, process, _, epfd, how, fd, data, sock = fields
        cookies = self.cookies.setdefault((process, int(epfd)), {})
        if how == _EPOLL_CTL_DEL:
            for cookie in [c for c, known in cookies.items() if known == int(fd)]:
                del cookies[cookie]
        else:
            cookies[data] = int(fd)
            self.socks[(process, int(fd))] = sock

    def ready(self, line_no: int, fields: list[str]) -> None:
        """One readiness event per TCP fd a wait reported (as formats/strace.py makes them)."""
        _, tid_text, process, t0, t1, op, wait_fd, ret, first, second = fields
        if op == "epoll_wait":
            cookies = self.cookies.get((process, int(wait_fd)))
            fd = cookies.get(second) if cookies is not None else None
            if cookies is None and second.isdigit() and int(second) < 1 << 31:
                fd = int(second)
                self.problems.note("epoll-cookies", f"{self.path}: epoll_wait reports fds whose epoll_ctl the "
                                                    f"log does not show; their data was taken as the fd, which "
                                                    f"holds for libuv and Python, not for Go or nginx")
            found = [(fd, _flags(int(first), "EPOLL"))] if fd is not None else []
            if int(ret) > _WAIT_READ:
                self._unread(op, ret)
        elif op == "poll":
            found = [(int(first), _flags(int(second), "POLL"))]
            if int(wait_fd) > _WAIT_READ:
                self._unread(op, wait_fd)
        else:
            words = [int(w) for w in second.split(",")]
            found = [(64 * n + bit, first) for n, word in enumerate(words) for bit in range(64) if word >> bit & 1]
            if int(wait_fd) > 64 * len(words):
                self.problems.note("select-wide", f"{self.path}: select() on fds beyond {64 * len(words) - 1}: "
                                                  f"those fds' readiness is not read")
        for fd, events in found:
            sock = self.socks.get((process, fd))
            if sock is None:
                continue  # not a TCP socket of this process (a pipe, a timer), or one never used
            local, remote = self.known.get(sock, (None, None))
            tid = int(tid_text)
            self.calls.append(SocketCall(
                role=self.role(tid), op=op, start_ns=int(t0) + self.offset, end_ns=int(t1) + self.offset,
                result=int(ret), errno=None, pid=tid, fd=fd, local=local, remote=remote, source="ebpf",
                text=f"{op}({wait_fd}, [{fd}<TCP:[{local or '?'}->{remote or '?'}]> {events}]) = {ret}",
                where=f"{self.path}:{line_no}", events=events))

    def _unread(self, op: str, count: str) -> None:
        self.problems.note(f"{op}-wide", f"{self.path}: {op}() reported {count} fds at once; the script reads "
                                         f"the first {_WAIT_READ}: the others' readiness is not known")

    def _syn_sent(self, sock: str, t0: int, t1: int):
        """The ends the sock had when it left SYN_SENT during this connect (a refusal clears them)."""
        for when, ends in self.syn_ends.get(sock, ()):
            if t0 <= when <= t1:
                return ends
        return None


_EVENT_BITS = ((0x1, "IN"), (0x2, "PRI"), (0x4, "OUT"), (0x8, "ERR"), (0x10, "HUP"), (0x20, "NVAL"),
               (0x40, "RDNORM"), (0x80, "RDBAND"), (0x100, "WRNORM"), (0x200, "WRBAND"), (0x400, "MSG"),
               (0x2000, "RDHUP"))


def _flags(mask: int, prefix: str) -> str:
    """EPOLLIN|EPOLLRDHUP, POLLIN|POLLHUP: a wait's event bits as strace names them."""
    names = [f"{prefix}{name}" for bit, name in _EVENT_BITS if mask & bit and not (prefix == "EPOLL" and name == "NVAL")]
    return "|".join(names) or "0"


def _text(name: str, fd: int, ret: int, errno: Optional[str], local, remote, extra: str) -> str:
    """The call as strace -yy would print it, short: what a person reads in the narrative."""
    where = f"<TCP:[{local or '?'}->{remote or '?'}]>" if local or remote else ""
    args = f"{fd}{where}"
    if name == "setsockopt" and extra.startswith("linger="):
        onoff, _, jiffies = extra[len("linger="):].partition(",")
        args += f", SOL_SOCKET, SO_LINGER, {{l_onoff={onoff}, l_linger={'0' if jiffies == '0' else jiffies + ' jiffies'}}}"
    elif name == "getsockopt":
        args += f", SOL_SOCKET, SO_ERROR, [{extra}]"
    elif name == "shutdown":
        args += f", {extra}"
    if errno is not None and name != "getsockopt":
        said = _strerror(errno)
        return f"{name}({args}) = -1 {errno}" + (f" ({said})" if said else "")
    return f"{name}({args}) = {ret}"


def _strerror(name: str) -> Optional[str]:
    import errno as codes

    try:
        return strerror(name)
    except ValueError:  # a name errnos.py does not describe: the C library's words
        number = getattr(codes, name, None)
        return os.strerror(number) if isinstance(number, int) else None


def read_bpftrace_file(path, *, name: str = "bpftrace") -> ImportResult:
    """`parse_bpftrace` over the log `record --calls ebpf` wrote; `name` names it in
    each call's `where` (the temporary file is gone once the bundle is written)."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        return parse_bpftrace(lines, path=name)


def check_clock(calls, segments) -> tuple[int, Optional[str]]:
    """Check the calls' clock against the packets' (pure).

    The ``clock`` line places the monotonic times on the packets' clock with
    an offset measured before and after the run; this proves it, from the
    data: a connect's SYN leaves while that connect() runs, so each connect
    whose SYN the capture holds bounds the error e of the calls' times:
    SYN - end <= e <= SYN - start. Returns (ns to add to every call's
    times, a sentence for the bundle): 0 when every SYN already falls inside
    its connect; the smallest shift that fits them all when they agree on
    one; 0 and the disagreement said when no single shift fits them all."""
    from tcpteardown.model import TcpFlags

    syn_times: dict[tuple, list[int]] = {}
    for segment in segments:
        if segment.is_syn and not int(segment.flags) & int(TcpFlags.ACK):
            syn_times.setdefault((segment.src, segment.dst), []).append(segment.time_ns)
    low, high, checked, worst = None, None, 0, []
    for call in calls:
        if call.op != "connect" or call.local is None or call.remote is None:
            continue
        times = syn_times.get((call.local, call.remote))
        if not times:
            continue
        syn = min(times, key=lambda t: max(call.start_ns - t, t - call.end_ns, 0))
        if abs(syn - call.start_ns) > 1_000_000_000:
            continue  # the same ends reused by another connection: not this connect's SYN
        checked += 1
        low = syn - call.end_ns if low is None else max(low, syn - call.end_ns)
        high = syn - call.start_ns if high is None else min(high, syn - call.start_ns)
        worst.append(max(call.start_ns - syn, syn - call.end_ns, 0))
    if not checked:
        return 0, None
    if low <= 0 <= high:
        return 0, f"checked against {checked} connects' SYNs: each SYN within its connect()"
    if low <= high:
        shift = low if low > 0 else high
        return shift, (f"checked against {checked} connects' SYNs: the calls' clock was {abs(shift) / 1e3:.0f} us "
                       f"{'behind' if shift > 0 else 'ahead of'} the packets' (offset measured under load); "
                       f"shifted so that every SYN falls within its connect()")
    outside = sum(1 for w in worst if w)
    return 0, (f"checked against {checked} connects' SYNs: {outside} fall outside their connect() by up to "
               f"{max(worst) / 1e3:.0f} us and no single clock shift fits them all (links near those times "
               f"may be wrong)")
