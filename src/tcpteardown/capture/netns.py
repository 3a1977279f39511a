"""Private network namespaces for scenarios: delay, sysctls, routes, a gate on `lo`.

    from tcpteardown.capture import netns
    result = netns.run_in_namespace(fn, delay_ms=20)   # fn() runs in a fresh netns

`run_in_namespace` forks a child that unshares its network namespace (as
root; otherwise through a user namespace, `unshare -rn` style), brings `lo`
up, adds `netem delay` when asked (where the kernel lacks netem, an NFQUEUE
delay line in user space, `DelayLine`), runs `fn` there and sends its result
back over a pipe (pickled). The namespace has no name and no bind mount: it
dies with the child, and with it every qdisc, route and sysctl set inside.
The child is reaped on every path: normal return, exception, Ctrl-C
(SIGINT is forwarded, then SIGKILL after a deadline), and the child kills
itself if the parent dies (PR_SET_PDEATHSIG).

Inside the namespace, scenarios may change what only that namespace sees:
`set_sysctl`, `ip`, and a `Gate` that holds every packet on `lo` until
released (a token-bucket qdisc throttled to 1 byte/s), for the few
teardowns that need two segments in flight at once.

This module must never change the host's own namespace: every mutating
helper refuses to run unless `inside_private_namespace()` is true. Nothing
Linux-only is imported at module level.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from functools import lru_cache
from typing import Any, Callable, Optional

from ..errors import MissingTool, UserError
from . import platform as host

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

CHILD_EXIT_SECONDS = 5.0  # how long a signalled child may take to clean up before SIGKILL
RESULT_SECONDS = 120.0  # guard against a child that never answers

_inside = False  # set in the child once it has its own namespace


class NamespaceError(UserError):
    """A private network namespace (or something in it) could not be set up."""


def inside_private_namespace() -> bool:
    return _inside


def _require_private(what: str) -> None:
    if not _inside:
        raise NamespaceError(f"refusing to {what} outside a private network namespace "
                             "(it would change the host); run it through run_in_namespace()")


# -- probing -----------------------------------------------------------------------

@lru_cache(maxsize=None)
def namespace_problem() -> Optional[str]:
    """None when this process can create a private network namespace, else why not."""
    if not sys.platform.startswith("linux"):
        return "network namespaces exist only on Linux"
    try:
        run_in_namespace(lambda: None)
    except NamespaceError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=None)
def netem_problem() -> Optional[str]:
    """None when --delay works: `netem delay` on lo in a namespace, or else the
    NFQUEUE delay line (`DelayLine`); otherwise why not."""
    problem = namespace_problem() or _tool_problem("tc", "iproute2")
    if problem:
        return problem
    try:
        run_in_namespace(lambda: None, delay_ms=1)
    except NamespaceError as exc:
        return str(exc).replace("a 1 ms delay", "a delay")
    return None


@lru_cache(maxsize=None)
def gate_problem() -> Optional[str]:
    """None when a Gate (tbf qdisc on lo) can be installed inside a namespace."""
    problem = namespace_problem() or _tool_problem("tc", "iproute2")
    if problem:
        return problem

    def probe() -> None:
        Gate().remove()

    try:
        run_in_namespace(probe)
    except NamespaceError as exc:
        return str(exc)
    return None


def _tool_problem(name: str, package: str) -> Optional[str]:
    return None if host.find_tool(name) else f"needs the `{name}` program (apt-get install {package})"


# -- the child -----------------------------------------------------------------------

def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> None:
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(flags)
        return
    if _libc().unshare(ctypes.c_int(flags)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _enter_new_namespace() -> str:
    """Unshare the network namespace; through a user namespace when not root."""
    if os.geteuid() == 0:
        try:
            _unshare(CLONE_NEWNET)
            return "root"
        except OSError as exc:
            raise NamespaceError(f"cannot create a network namespace as root: {exc.strerror}") from None
    uid, gid = os.geteuid(), os.getegid()
    try:
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    except OSError as exc:
        raise NamespaceError(
            "cannot create a network namespace without root: this system does not allow unprivileged "
            f"user namespaces ({exc.strerror}; see kernel.unprivileged_userns_clone, "
            "user.max_user_namespaces or AppArmor's restrict_unprivileged_userns). Run as root instead."
        ) from None
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")
    return "user namespace"


def _bring_lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _child(fn: Callable[[], Any], delay_ms: Optional[float], write_fd: int) -> None:
    """Never returns: runs fn in a fresh namespace, reports, _exits."""
    global _inside
    import contextlib

    status = 0
    cleanup = contextlib.ExitStack()
    try:
        try:
            _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.setpgid(0, 0)  # a group of our own: whatever we start in there is killed with it
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            how = _enter_new_namespace()
            _inside = True
            _bring_lo_up()
            if delay_ms:  # 0: a private namespace, no qdisc (works without netem)
                _add_delay(delay_ms, cleanup)
            payload = ("ok", fn(), how)
        except KeyboardInterrupt:
            payload, status = ("interrupted", None, None), 130
        except BaseException as exc:  # reported to the parent, which raises it
            payload, status = ("error", _picklable(exc), None), 1
        try:
            cleanup.close()
        except BaseException as exc:
            if payload[0] == "ok":
                payload, status = ("error", _picklable(exc), None), 1
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:
        status = status or 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            _kill_group(os.getpid(), spare=os.getpid())  # nothing we started outlives the namespace
        finally:
            os._exit(status)


def _kill_group(pgid: int, spare: Optional[int] = None) -> None:
    """SIGKILL every process of process group `pgid` (ours: the child made it) but `spare`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == spare:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        import traceback

        return RuntimeError("".join(traceback.format_exception(exc)))


_delay_method: Optional[str] = None  # how the child delays: "netem" or "nfqueue"


def _add_delay(delay_ms: float, cleanup) -> None:
    """netem on lo when the kernel has it; else an NFQUEUE delay line in user space."""
    global _delay_method
    try:
        _add_netem(delay_ms)
        _delay_method = "netem"
        return
    except NamespaceError as netem_error:
        problem = DelayLine.problem()
        if problem:
            raise NamespaceError(f"{netem_error}; and no NFQUEUE fallback: {problem}") from None
    cleanup.enter_context(DelayLine(delay_ms))
    _delay_method = "nfqueue"


def _add_netem(delay_ms: float) -> None:
    tc_path = host.find_tool("tc")
    if tc_path is None:
        raise MissingTool("--delay needs the `tc` program (apt-get install iproute2)")
    result = subprocess.run([tc_path, "qdisc", "add", "dev", "lo", "root", "netem", "delay", f"{delay_ms}ms"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit status {result.returncode}"
        if "unknown" in detail.lower() or "not supported" in detail.lower():
            detail = "this kernel has no netem queueing discipline (CONFIG_NET_SCH_NETEM / module sch_netem)"
        raise NamespaceError(f"cannot add a {delay_ms} ms delay on lo: {detail}")


# -- the parent ----------------------------------------------------------------------

def run_in_namespace(fn: Callable[[], Any], *, delay_ms: Optional[float] = None) -> Any:
    """fn() in a fresh network namespace (lo up, netem delay when asked); its result.

    Raises what fn raised; KeyboardInterrupt when interrupted. The child and
    its namespace are gone when this returns, whatever happened.
    """
    if not sys.platform.startswith("linux"):
        raise NamespaceError("network namespaces exist only on Linux")
    if delay_ms is not None and delay_ms < 0:
        raise UserError(f"--delay must be 0 ms or more, not {delay_ms}")
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        _child(fn, delay_ms, write_fd)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, pid)
    except BaseException:
        _stop_child(pid)
        raise
    finally:
        os.close(read_fd)
    status = _reap(pid)
    _kill_group(pid)  # anything the child started and left behind (its group id is its pid)
    if not data:
        raise NamespaceError(f"the namespace child {pid} died without a result ({_describe(status)})")
    kind, value, how = pickle.loads(data)
    if kind == "interrupted":
        raise KeyboardInterrupt
    if kind == "error":
        raise value
    return value


def _read_all(fd: int, pid: int) -> bytes:
    chunks = []
    deadline = time.monotonic() + RESULT_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NamespaceError(f"the namespace child {pid} gave no result within {RESULT_SECONDS:.0f} s")
        readable, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if not readable:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _stop_child(pid: int) -> None:
    """Ask the child to clean up (SIGINT), then make sure it is gone and reaped."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + CHILD_EXIT_SECONDS
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _kill_group(pid)
            return
        time.sleep(0.01)  # wait-ok: polling a child's exit with a deadline
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)
    _kill_group(pid)


def _reap(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


# -- inside the namespace --------------------------------------------------------------

def set_sysctl(name: str, value: str) -> None:
    """Write a net.* sysctl of the private namespace (`net.ipv4.tcp_abort_on_overflow`)."""
    _require_private(f"set {name}")
    if not name.startswith("net."):
        raise NamespaceError(f"only net.* sysctls belong to a network namespace, not {name}")
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise NamespaceError(f"cannot write {path}: {exc.strerror}") from None


def ip(*args: str) -> None:
    """Run `ip ARGS` in the private namespace (routes, addresses)."""
    _require_private("run ip " + " ".join(args))
    _run_tool("ip", *args)


def tc(*args: str) -> None:
    _require_private("run tc " + " ".join(args))
    _run_tool("tc", *args)


def _run_tool(name: str, *args: str) -> None:
    binary = host.find_tool(name)
    if binary is None:
        raise MissingTool(f"needs the `{name}` program (apt-get install iproute2)")
    result = subprocess.run([binary, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NamespaceError(f"`{name} {' '.join(args)}` failed: {result.stderr.strip() or result.returncode}")


class Gate:
    """Hold every packet on the namespace's `lo` until released.

    A token-bucket qdisc (tbf, present in most kernels, unlike netem and
    plug) is the root of `lo`. `hold()` throttles it to 1 byte/s and spends
    its bucket with one datagram of our own, so the next segment waits about
    a minute for tokens; `release()` restores a fast rate and sends one more
    datagram to make the queue run: everything held leaves in order, back to
    back, within one transmit run -- before any of it is received.
    """

    FAST = ("rate", "100gbit", "burst", "4mb", "limit", "16mb")
    # The bucket is 1600 bytes; the drain datagram spends all but ~10 of them.
    SLOW = ("rate", "8bit", "burst", "1600", "limit", "16mb")
    DRAIN_IP_BYTES = 1576  # + 14 bytes of Ethernet header on lo = 1590 bytes of tokens

    def __init__(self) -> None:
        _require_private("plug lo")
        self._sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sink.bind(("127.0.0.1", 0))
        self._installed = False
        try:
            tc("qdisc", "add", "dev", "lo", "root", "tbf", *self.FAST)
        except BaseException:
            self._sink.close()
            raise
        self._installed = True

    def _datagram(self, size: int) -> None:
        self._sink.sendto(b"g" * size, self._sink.getsockname())
        self._sink.recv(65536)  # it went through; keep the sink's queue empty

    def hold(self) -> None:
        tc("qdisc", "change", "dev", "lo", "root", "tbf", *self.SLOW)
        self._datagram(self.DRAIN_IP_BYTES - 28)

    def release(self) -> None:
        tc("qdisc", "change", "dev", "lo", "root", "tbf", *self.FAST)
        self._sink.sendto(b"kick", self._sink.getsockname())  # makes the queue run now

    def remove(self) -> None:
        if self._installed:
            self._installed = False
            subprocess.run([host.find_tool("tc") or "tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        self._sink.close()


def namespace_id(pid: "int | str" = "self") -> str:
    """`net:[4026532…]`: which network namespace a process is in (no process outlives ours in it)."""
    return os.readlink(f"/proc/{pid}/ns/net")


def mark_recording(recording, delay_ms: Optional[float]):
    """The recording with ("netns", its namespace id) and, with a delay, ("delay_ms", X) in its metadata."""
    from dataclasses import replace

    extra = [pair for pair in recording.metadata.extra if pair[0] not in ("netns", "delay_ms", "delay_method")]
    extra.append(("netns", namespace_id() if _inside else "private"))
    if delay_ms is not None:
        extra.append(("delay_ms", f"{delay_ms:g}"))
        if _delay_method:
            extra.append(("delay_method", _delay_method))
    return replace(recording, metadata=replace(recording.metadata, extra=tuple(extra)))


# -- a delay line without netem -----------------------------------------------------------

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR = 1
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_VERDICT_HDR = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


class DelayLine:
    """Every packet sent in this namespace waits `delay_ms` in user space.

    For kernels without netem (many minimal and cloud kernels): an
    iptables rule sends each outgoing packet to NFQUEUE, a thread holds it
    for the delay and lets it go (NF_ACCEPT), in arrival order. A segment is
    captured on `lo` when it is let go, as with netem; the capture's UDP
    markers wait in the same line, so its stop barrier still comes after
    every segment sent before it. Only inside a private namespace.
    """

    QUEUE = 4242

    def __init__(self, delay_ms: float, *, match: tuple = (), table: str = "filter", queue: int = QUEUE,
                 holding: bool = False):
        """`match`: iptables match arguments (default: every packet); `holding`:
        keep every queued packet until `release()` (a gate, see PacketGate)."""
        _require_private("queue packets")
        self.delay_ns = int(delay_ms * 1_000_000)
        self.queued = 0  # packets that entered the line so far
        self._holding = holding
        self._rule = ("-t", table, "OUTPUT", *match, "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")
        self.queue = queue
        self._seq = 0
        self._stop = False
        self._error: Optional[BaseException] = None
        self._wake_r, self._wake_w = os.pipe()
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        added = []
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind((0, 0))
            self._request(NFQNL_MSG_CONFIG, _nlattr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            self._request(NFQNL_MSG_CONFIG, _nlattr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
            for tool in ("iptables", "ip6tables"):
                _run_tool(tool, "-w", self._rule[0], self._rule[1], "-I", *self._rule[2:])
                added.append(tool)
        except BaseException:
            self._remove_rules(added)
            self._sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        import threading

        self._thread = threading.Thread(target=self._run, name="tcpteardown-delay-line", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Let every held packet go, in order; later ones pass after the delay only."""
        self._holding = False
        os.write(self._wake_w, b"r")

    def _remove_rules(self, tools) -> None:
        for tool in tools:
            subprocess.run([host.find_tool(tool) or tool, "-w", self._rule[0], self._rule[1], "-D", *self._rule[2:]],
                           capture_output=True)

    @staticmethod
    def problem() -> Optional[str]:
        for tool in ("iptables", "ip6tables"):
            if host.find_tool(tool) is None:
                return f"needs `{tool}` (apt-get install iptables) to queue segments"
        return None

    def __enter__(self) -> "DelayLine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._stop = True
        self.release()
        self._thread.join(5.0)
        self._remove_rules(("iptables", "ip6tables"))
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._error is not None:
            raise NamespaceError(f"the delay line failed: {self._error}")

    # -- netlink -------------------------------------------------------------------------
    def _message(self, kind: int, payload: bytes, flags: int) -> bytes:
        self._seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.queue) + payload
        return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, self._seq, 0) + body

    def _request(self, kind: int, payload: bytes) -> None:
        self._sock.send(self._message(kind, payload, NLM_F_REQUEST | NLM_F_ACK))
        data = self._sock.recv(65536)
        length, msg_type = struct.unpack_from("=IH", data)
        if msg_type == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, 16)[0]
            if code:
                raise NamespaceError(f"NFQUEUE configuration refused: {os.strerror(code)}")

    def _run(self) -> None:
        from collections import deque

        waiting: deque = deque()  # (due_ns or None while held, packet id), in arrival order
        try:
            while not self._stop or waiting:
                now = time.monotonic_ns()
                if not self._holding and waiting and waiting[-1][0] is None:
                    waiting = deque((now if due is None else due, packet) for due, packet in waiting)
                while waiting and waiting[0][0] is not None and waiting[0][0] <= now:
                    self._sock.send(self._message(NFQNL_MSG_VERDICT, _nlattr(
                        NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, waiting.popleft()[1])), NLM_F_REQUEST))
                due = waiting[0][0] if waiting else None
                timeout = (due - now) / 1e9 if due is not None else 0.05
                readable, _, _ = select.select([self._sock, self._wake_r], [], [], max(timeout, 0))
                if self._wake_r in readable:
                    os.read(self._wake_r, 64)
                if self._sock in readable:
                    data = self._sock.recv(1 << 20)
                    arrived = time.monotonic_ns()
                    for packet_id in _packet_ids(data):
                        waiting.append((None if self._holding else arrived + self.delay_ns, packet_id))
                        self.queued += 1
        except BaseException as exc:  # surfaced by close()
            self._error = exc


def _nlattr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _packet_ids(data: bytes):
    """Packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type = struct.unpack_from("=IH", data, offset)
        if length < 16:
            return
        if msg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET):
            at = offset + 20  # nlmsghdr + nfgenmsg
            while at + 4 <= offset + length:
                attr_len, attr_type = struct.unpack_from("=HH", data, at)
                if attr_len < 4:
                    break
                if attr_type & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, at + 4)[0]
                at += (attr_len + 3) & ~3
        offset += (length + 3) & ~3


class PacketGate(DelayLine):
    """Hold the packets an iptables match selects until `release()`.

    Where the tbf `Gate` holds everything on lo, this one holds only what
    `match` selects (say, the client's bare ACK that would complete a
    handshake), in the mangle table so it comes before any delay line.
    """

    def __init__(self, match: tuple):
        super().__init__(0, match=match, table="mangle", queue=DelayLine.QUEUE + 1, holding=True)
