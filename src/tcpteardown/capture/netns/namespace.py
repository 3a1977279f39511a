"""A private network namespace per call: fork, unshare, run, report, reap.

See the package docstring (`capture.netns`). This module owns the
namespace's lifecycle and the helpers that may only run inside one
(`set_sysctl`, `ip`, `tc`); shaping (delay, gates) is `shaping`, the
user-space delay line `nfqueue`.
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

from ...errors import MissingTool, UserError
from .. import platform as host

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
                from .shaping import add_delay

                add_delay(delay_ms, cleanup)
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


def iptables(tool: str, *args: str) -> None:
    """`iptables`/`ip6tables` with `args`, in our own namespace only (its rules go with it)."""
    _require_private(f"run {tool} " + " ".join(args))
    if host.find_tool(tool) is None:
        raise MissingTool(f"needs the `{tool}` program (apt-get install iptables)")
    _run_tool(tool, *args)


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


def namespace_id(pid: "int | str" = "self") -> str:
    """`net:[4026532…]`: which network namespace a process is in (no process outlives ours in it)."""
    return os.readlink(f"/proc/{pid}/ns/net")
