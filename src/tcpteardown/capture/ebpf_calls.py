"""Socket calls traced in the kernel with bpftrace (`record --calls ebpf`).

strace stops the program twice per traced syscall (ptrace); a bpftrace
script on the ``syscalls:sys_enter_*``/``sys_exit_*`` tracepoints never
stops it: the kernel runs a small filter at each call and hands one line to
bpftrace through a ring buffer. The script:

- follows only the traced process tree: a map of pids seeded with the
  pid of a stub (a Python one-liner) that waits on a pipe until the
  script is attached, then execs CMD, so CMD's first syscall is seen;
  ``sched:sched_process_fork`` adds every child and thread;
- keeps only calls on TCP sockets (an enter probe per syscall, a few exit
  probes on raw_syscalls:sys_exit shared by them), decided in the kernel from the fd (the
  file's inode is a socket, its sock is IPPROTO_TCP, SOCK_STREAM) through
  BTF, and reads both ends from the kernel's sock, so no -yy-like lookup
  costs anything; a connect refused or reset has its ends cleared by the
  time it returns, so ``sock:inet_sock_set_state`` from SYN_SENT prints
  them for the sockets connect() is running on;
- prints errno NAMES (a map filled from errnos.py and the C library's
  names of this kernel's numbers), never
  numbers, one line per call (formats/bpftrace_calls.py reads them).

Clock: bpftrace's nsecs is CLOCK_MONOTONIC; the offset to CLOCK_REALTIME
(the packets' clock) is measured as the kernel witness measures its own
(capture/kernel.measure_clock_mapping) when the program is released and
when it has exited, and written at the end of the log as a ``clock`` line.

Readiness (epoll_wait, poll, select) is not traced: links to the wake-up
that told an event loop stay strace's (`--calls strace`).

Nothing is left behind: bpftrace and the program run in process groups of
their own, each known to the reaper (SIGKILLed if we die), and stopped on
Ctrl-C, SIGTERM and any failure.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

# syscall -> the argument holding the socket's fd
SYSCALLS = {
    "connect": "fd", "accept": "fd", "accept4": "fd",
    "read": "fd", "write": "fd", "readv": "fd", "writev": "fd",
    "recvfrom": "fd", "sendto": "fd", "recvmsg": "fd", "sendmsg": "fd", "recvmmsg": "fd", "sendmmsg": "fd",
    "sendfile64": "out_fd", "close": "fd", "shutdown": "fd", "setsockopt": "fd", "getsockopt": "fd",
}
SOL_SOCKET, SO_ERROR, SO_LINGER = 1, 4, 13
TCP_SYN_SENT = 2
SOCK_LINGER_BIT = 4  # enum sock_flags: SOCK_DEAD, SOCK_DONE, SOCK_URGINLINE, SOCK_KEEPOPEN, SOCK_LINGER
READY_SECONDS = 60.0  # bpftrace compiles and attaches (1-3 s here); beyond this, something is wrong
DRAIN_SECONDS = 10.0  # after the program exited: bpftrace prints what is still in its buffers
RING_PAGES = 1024  # per CPU (4 MiB): what bpftrace has not read yet; beyond it, "Lost N events"
MAP_KEYS = 65536  # processes and threads of the traced tree alive at once, calls in flight
SIGINT_EVERY = 0.25  # bpftrace can miss a SIGINT (see _stop): sent again this often until it exits
# Waits for one byte on the pipe (the script is attached), then becomes the program: exec'd, nothing stays.
STUB = "import os, sys; fd = int(sys.argv[1]); os.read(fd, 1); os.close(fd); os.execvp(sys.argv[2], sys.argv[2:])"

_ENTER_FD = """\
  $t = curtask->files->fdt;
  $n = (uint32)args->{fdarg};
  if ($n < $t->max_fds) {{
    $f = *($t->fd + $n);
    if ($f != 0 && ($f->f_inode->i_mode & 0xf000) == 0xc000) {{
      $sk = ((struct socket *)$f->private_data)->sk;
      if ($sk->sk_protocol == 6 && $sk->sk_type == 1) {{
{keep}
      }}
    }}
  }}"""

_KEEP = "        @t0[tid] = nsecs; @sk[tid] = (uint64)$sk; @fd[tid] = $n;"

_ENDS = {
    "v4": 'ntop(2, $s->__sk_common.skc_rcv_saddr), $s->__sk_common.skc_num, '
          'ntop(2, $s->__sk_common.skc_daddr), bswap($s->__sk_common.skc_dport)',
    "v6": 'ntop(10, $s->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8), $s->__sk_common.skc_num, '
          'ntop(10, $s->__sk_common.skc_v6_daddr.in6_u.u6_addr8), bswap($s->__sk_common.skc_dport)',
}


def _print_call(name: str, ret: str = "args->ret", extra: str = '"-"', name_arg: str = "") -> str:
    """printf of one C line for the sock in $s (both families); `name` "%s"
    with `name_arg` prints the syscall's name from a map."""
    named = f"{name_arg}, " if name_arg else ""
    head = f'"C %d %d %llu %llu {name} %d %d %s %llu %s %d %s %d %s\\n", tid, pid, @t0[tid], nsecs, {named}@fd[tid], ' \
           f'{ret}, $e, (uint64)$s, '
    return (f"  if ($s->__sk_common.skc_family == 10) {{ printf({head}{_ENDS['v6']}, {extra}); }}\n"
            f"  else {{ printf({head}{_ENDS['v4']}, {extra}); }}")


def _errno_map() -> str:
    """@errname[N] = "NAME" for every errno this (Linux) kernel has: errnos.py's
    names first, then the C library's (the kernel traced is the one we run on)."""
    import errno

    from ..errnos import name_from_number

    names = [(n, name_from_number(n) or errno.errorcode.get(n)) for n in range(1, 134)]
    return "\n".join(f'  @errname[{n}] = "{name}";' for n, name in names if name)


def script(available: Optional[set[str]] = None, *, raw_enter: bool = True) -> str:
    """The bpftrace program; `available`: the syscalls this kernel has
    tracepoints for (default all of SYSCALLS). `raw_enter`: one probe on
    raw_syscalls:sys_enter for every traced syscall, told apart by number,
    where this architecture's numbers are known (syscall_numbers); else one
    sys_enter_NAME probe each. Fewer probes: bpftrace compiles and attaches
    in a fraction of the time (measured in bench/record_pace.py)."""
    parts = ["BEGIN {", "  @traced[$1] = 1;", _errno_map(), '  printf("ready %llu\\n", nsecs);', "}",
             "tracepoint:sched:sched_process_fork /@traced[pid]/ {",
             '  @traced[args->child_pid] = 1; printf("F %d %d\\n", tid, args->child_pid);', "}",
             "tracepoint:sched:sched_process_exec /@traced[pid]/ {",
             '  printf("X %d %s\\n", tid, str(args->filename));', "}",
             # a thread's own entry is never read (the filter is on the process); kept, they
             # would fill the map (BPFTRACE_MAP_KEYS_MAX) and a full map silently traces no new child
             "tracepoint:sched:sched_process_exit /@traced[pid]/ {",
             '  if (pid == tid) { printf("Q %d %llu\\n", pid, nsecs); } else { delete(@traced[tid]); }',
             "  delete(@t0[tid]); delete(@sk[tid]); delete(@fd[tid]); delete(@kind[tid]); delete(@x[tid]);", "}",
             # a connect refused or reset clears the sock's ends before connect() returns
             f"tracepoint:sock:inet_sock_set_state /args->oldstate == {TCP_SYN_SENT} && "
             f"@connecting[(uint64)args->skaddr]/ {{",
             '  if (args->family == 10) { printf("S %llu %llu %s %d %s %d\\n", (uint64)args->skaddr, nsecs, '
             'ntop(10, args->saddr_v6), args->sport, ntop(10, args->daddr_v6), args->dport); }',
             '  else { printf("S %llu %llu %s %d %s %d\\n", (uint64)args->skaddr, nsecs, ntop(2, args->saddr), '
             'args->sport, ntop(2, args->daddr), args->dport); }', "}"]
    numbers = syscall_numbers() if raw_enter else None
    if numbers is not None:
        names = [name for name in SYSCALLS if name in numbers]
    else:
        names = [name for name in SYSCALLS if available is None or name in available]
    parts[1:1] = [f'  @op[{code}] = "{name}";' for code, name in enumerate(names)]  # in BEGIN
    parts += _enter_probes(names, numbers)
    # A few exit probes for them all (fewer probes to compile and attach), each
    # for the kinds its enter probes kept; one printf pair per probe (the BPF stack).
    code = {name: index for index, name in enumerate(names)}
    special = ("close", "getsockopt", "setsockopt", "shutdown", "accept", "accept4")
    exits = {
        "close": ['  printf("C %d %d %llu %llu close %d %d %s %llu - 0 - 0 -\\n", tid, pid, @t0[tid], nsecs, '
                  '@fd[tid], args->ret, $e, @sk[tid]);'],  # the file is gone: the ends known before
        "getsockopt": ['  $v = @x[tid] ? @errname[@x[tid]] : "0";', _print_call("getsockopt", extra="$v")],
        "setsockopt": [f"  $on = ($s->__sk_common.skc_flags >> {SOCK_LINGER_BIT}) & 1;",
                       '  if ($s->__sk_common.skc_family == 10) { printf("C %d %d %llu %llu setsockopt %d %d %s %llu '
                       '%s %d %s %d linger=%d,%d\\n", tid, pid, @t0[tid], nsecs, @fd[tid], args->ret, $e, (uint64)$s, '
                       f"{_ENDS['v6']}, $on, $s->sk_lingertime); }}",
                       '  else { printf("C %d %d %llu %llu setsockopt %d %d %s %llu %s %d %s %d linger=%d,%d\\n", '
                       'tid, pid, @t0[tid], nsecs, @fd[tid], args->ret, $e, (uint64)$s, '
                       f"{_ENDS['v4']}, $on, $s->sk_lingertime); }}"],
        "shutdown": ['  $how = @x[tid] == 0 ? "SHUT_RD" : (@x[tid] == 1 ? "SHUT_WR" : "SHUT_RDWR");',
                     _print_call("shutdown", extra="$how")],
        "accept": ["  if (args->ret >= 0) {  // the new socket's ends, from the fd it returned",
                   "    $t = curtask->files->fdt;",
                   "    $f = *($t->fd + (uint32)args->ret);",
                   "    $s = ((struct socket *)$f->private_data)->sk;",
                   "  }", _print_call("%s", name_arg="@op[@kind[tid]]")],
    }
    groups = {kind: [code[n] for n in ((kind, "accept4") if kind == "accept" else (kind,)) if n in code]
              for kind in exits}
    groups["other"] = [code[n] for n in names if n not in special]
    exits["other"] = [_print_call("%s", name_arg="@op[@kind[tid]]")]
    for kind, codes in groups.items():
        if not codes:
            continue
        which = " || ".join(f"@kind[tid] == {c}" for c in codes)
        parts += [f"tracepoint:raw_syscalls:sys_exit /@t0[tid] && ({which})/ {{",
                  "  $e = args->ret < 0 ? @errname[-args->ret] : \"-\";",
                  "  $s = (struct sock *)@sk[tid];", *exits[kind]]
        if "connect" in code and code["connect"] in codes:
            parts.append("  delete(@connecting[@sk[tid]]);")
        parts += ["  delete(@t0[tid]); delete(@sk[tid]); delete(@fd[tid]); delete(@kind[tid]); delete(@x[tid]);",
                  "}"]
    parts += ["END {", "  clear(@traced); clear(@errname); clear(@t0); clear(@sk); clear(@fd); clear(@x); "
              "clear(@connecting); clear(@kind); clear(@op);", "}"]
    return "\n".join(parts) + "\n"



# The syscall numbers of SYSCALLS per architecture (stable kernel ABI:
# arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h).
_NUMBERS = {
    "x86_64": {"read": 0, "write": 1, "close": 3, "readv": 19, "writev": 20, "sendfile64": 40, "connect": 42,
               "accept": 43, "sendto": 44, "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "shutdown": 48,
               "setsockopt": 54, "getsockopt": 55, "accept4": 288, "recvmmsg": 299, "sendmmsg": 307},
    "aarch64": {"close": 57, "read": 63, "write": 64, "readv": 65, "writev": 66, "sendfile64": 71, "accept": 202,
                "connect": 203, "sendto": 206, "recvfrom": 207, "setsockopt": 208, "getsockopt": 209,
                "shutdown": 210, "sendmsg": 211, "recvmsg": 212, "accept4": 242, "recvmmsg": 243, "sendmmsg": 269},
}
# raw_syscalls:sys_enter has the arguments as args->args[N]; every traced call's fd is the first
_RAW_ARGS = {"fd": "args->args[0]", "out_fd": "args->args[0]", "level": "args->args[1]",
             "optname": "args->args[2]", "how": "args->args[1]"}


def syscall_numbers() -> Optional[dict[str, int]]:
    """SYSCALLS' numbers on this machine's architecture, or None where not known here."""
    import platform

    return _NUMBERS.get(platform.machine())


def _enter_probes(names: list[str], numbers: Optional[dict[str, int]]) -> list[str]:
    """What each traced call keeps at entry: one raw_syscalls:sys_enter probe
    telling them apart by number, or one sys_enter_NAME probe each."""
    def arg(name: str) -> str:
        return _RAW_ARGS[name] if numbers is not None else f"args->{name}"

    def keep(code: int, name: str) -> str:
        kept = _KEEP + f" @kind[tid] = {code};"
        if name == "connect":
            kept += " @connecting[(uint64)$sk] = 1;"
        elif name == "getsockopt":  # SO_ERROR only: what it will return is the sock's pending error
            kept = (f"        if ({arg('level')} == {SOL_SOCKET} && {arg('optname')} == {SO_ERROR}) {{ "
                    f"{kept.strip()} @x[tid] = $sk->sk_err ? $sk->sk_err : $sk->sk_err_soft; }}")
        elif name == "setsockopt":  # SO_LINGER only: it tells an abortive close's reason
            kept = f"        if ({arg('level')} == {SOL_SOCKET} && {arg('optname')} == {SO_LINGER}) {{ {kept.strip()} }}"
        elif name == "shutdown":
            kept += f" @x[tid] = {arg('how')};"
        return kept

    if numbers is None:
        probes = []
        for code, name in enumerate(names):
            probes += [f"tracepoint:syscalls:sys_enter_{name} /@traced[pid]/ {{",
                       _ENTER_FD.format(fdarg=SYSCALLS[name], keep=keep(code, name)), "}"]
        return probes
    body = ["  $id = args->id;", "  $k = -1;",
            *(f"  if ($id == {numbers[name]}) {{ $k = {code}; }}" for code, name in enumerate(names))]
    special = [(code, name) for code, name in enumerate(names) if name in ("connect", "getsockopt", "setsockopt",
                                                                           "shutdown")]
    kept = "".join(f"        {'if' if i == 0 else 'else if'} ($k == {code}) {{\n  {keep(code, name)}\n        }}\n"
                   for i, (code, name) in enumerate(special))
    kept += f"        else {{ {_KEEP.strip()} @kind[tid] = $k; }}" if special else f"{_KEEP} @kind[tid] = $k;"
    body += ["  if ($k >= 0) {", _ENTER_FD.format(fdarg="fd", keep=kept).replace("args->fd", "args->args[0]"), "  }"]
    return ["tracepoint:raw_syscalls:sys_enter /@traced[pid]/ {", *body, "}"]

# -- availability --------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def unavailable() -> Optional[str]:
    """None when `record --calls ebpf` can run here; otherwise why not, in one phrase."""
    from . import platform as host

    if not host.IS_LINUX:
        return "eBPF exists only on Linux"
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (apt-get install bpftrace)"
    if os.geteuid() != 0:
        return "bpftrace needs root (CAP_BPF and CAP_PERFMON)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux), which the script reads sockets through"
    return None


@functools.lru_cache(maxsize=None)
def available_syscalls() -> frozenset[str]:
    """The syscalls of SYSCALLS this kernel has enter tracepoints for (sendfile64
    is sendfile on some architectures)."""
    listed = subprocess.run(["bpftrace", "-l", "tracepoint:syscalls:sys_enter_*"], capture_output=True,
                            text=True, timeout=60).stdout
    names = {line.rsplit("sys_enter_", 1)[-1].strip() for line in listed.splitlines()}
    return frozenset(name for name in SYSCALLS if name in names)


# -- running -------------------------------------------------------------------


class _Copier:
    """Copies bpftrace's stdout to the log as it comes; tells when the script
    is attached (its ``ready`` line) and when the program has exited (its
    ``Q PID`` line: everything it did is printed or in flight)."""

    def __init__(self, pipe, path: Path, root_pid: int):
        self.ready, self.exited = threading.Event(), threading.Event()
        self._pipe, self._out, self._exit_line = pipe, open(path, "wb"), f"Q {root_pid} ".encode()
        self._thread = threading.Thread(target=self._copy, name="tcpteardown-bpftrace-copy", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        tail = b""
        for chunk in iter(lambda: os.read(self._pipe.fileno(), 1 << 20), b""):
            self._out.write(chunk)
            seen = tail + chunk
            if not self.ready.is_set() and b"ready " in seen:
                self.ready.set()
            if self._exit_line in seen:
                self.exited.set()
            tail = seen[-64:]
        self.ready.set()  # bpftrace ended: whoever waits stops waiting
        self.exited.set()

    def finish(self, clock_line: str) -> None:
        self._thread.join()
        self._out.write(clock_line.encode())
        self._out.close()
        self._pipe.close()


def run_traced(log: Path, command: Sequence[str], *, stderr_log: Optional[Path] = None,
               stop_seconds: float = 5.0) -> tuple[int, Optional[BaseException]]:
    """Run `command` with its socket calls traced by bpftrace into `log`:
    (exit status, the interrupt that stopped it or None), like
    commands/record.run_traced does with strace."""
    from .. import reaper, signals
    from ..commands.record import StderrTee
    from ..errors import UserError
    from ..formats.ftrace import ClockMapping
    from .kernel import measure_clock_mapping

    program_file = log.with_name("calls.bt")
    program_file.write_text(script(set(available_syscalls())))
    release_read, release = os.pipe()
    program = subprocess.Popen([sys.executable, "-c", STUB, str(release_read), *command], pass_fds=(release_read,),
                               start_new_session=True, stderr=subprocess.PIPE if stderr_log is not None else None)
    os.close(release_read)
    tokens = [reaper.watch_group(program.pid)]
    env = {**os.environ, "BPFTRACE_STRLEN": "200", "BPFTRACE_PERF_RB_PAGES": str(RING_PAGES),
           "BPFTRACE_MAP_KEYS_MAX": str(MAP_KEYS)}
    launched = time.monotonic_ns()
    tracer = subprocess.Popen(["bpftrace", "-B", "line", str(program_file), str(program.pid)], env=env,
                              stdout=subprocess.PIPE, stderr=open(log.with_name("bpftrace-stderr.log"), "wb"),
                              start_new_session=True)
    tokens.append(reaper.watch_group(tracer.pid))
    copier = _Copier(tracer.stdout, log, program.pid)
    tee = StderrTee(program.stderr, stderr_log) if stderr_log is not None else None
    interrupted, status, mappings, attach_ns, stop_ns, drained = None, None, [], None, None, True
    try:
        try:
            if not copier.ready.wait(READY_SECONDS) or tracer.poll() is not None:
                said = log.with_name("bpftrace-stderr.log").read_text(errors="replace").strip().splitlines()
                raise UserError("record --calls ebpf: bpftrace did not start"
                                + (f" ({said[-1]})" if said else "") + "; try --calls strace")
            attach_ns = time.monotonic_ns() - launched
            mappings.append(measure_clock_mapping("mono"))
            os.write(release, b"\n")
            os.close(release)
            release = -1
            status = program.wait()
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP (signals.Terminated)
            interrupted = exc
            with contextlib.suppress(ProcessLookupError):
                os.kill(program.pid, signals.signal_of(exc))
            try:
                status = program.wait(timeout=stop_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(program)
                status = program.returncode
        mappings.append(measure_clock_mapping("mono"))
        copier.exited.wait(DRAIN_SECONDS)
    finally:
        if release >= 0:
            os.close(release)
        if program.poll() is None:
            _kill_group(program)
        stopping = time.monotonic_ns()
        drained = _stop(tracer)
        stop_ns = time.monotonic_ns() - stopping
        for token in tokens:
            reaper.forget(token)
        mapping = ClockMapping.combine(mappings[0], mappings[-1]) if mappings else None
        copier.finish((f"clock {mapping.offset_ns} {mapping.uncertainty_ns}\n" if mapping else "")
                      + f"timing {attach_ns if attach_ns is not None else '-'} {stop_ns} {int(drained)}\n")
        if tee is not None:
            tee.finish()
    return (128 - status if status < 0 else status), interrupted


def _stop(tracer: subprocess.Popen) -> bool:
    """SIGINT: bpftrace prints what its buffers still hold and exits; SIGKILL
    if it does not within DRAIN_SECONDS (then False). bpftrace 0.17 loses a
    SIGINT that lands between its check of the flag and its epoll_wait (no
    timeout): with nothing more to read it would sleep on, so the signal is
    sent again every SIGINT_EVERY seconds until it exits."""
    if tracer.poll() is not None:
        return True
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(timeout=SIGINT_EVERY)
            return True
        except subprocess.TimeoutExpired:
            continue
    _kill_group(tracer)
    return False


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
