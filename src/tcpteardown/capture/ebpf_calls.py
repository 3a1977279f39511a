"""Socket calls traced in the kernel with bpftrace (`record --calls ebpf`).

strace stops the program twice per traced syscall (ptrace); a bpftrace
script on the syscall tracepoints never stops it: the kernel runs a small
filter at each call and hands one line to bpftrace through a ring buffer.
The script:

- follows only the traced process tree: a map of pids seeded with the
  pid of a stub (a Python one-liner) that waits on a pipe until the
  script is attached, then execs CMD, so CMD's first syscall is seen (and
  exits, never running CMD, if the pipe closes without the go byte);
  ``sched:sched_process_fork`` adds every child and thread, a thread's
  entry leaves at its exit (a full BPF map would refuse new children);
- keeps only calls on TCP sockets (one raw_syscalls:sys_enter probe telling
  the syscalls apart by number, where this architecture's numbers are
  known, else a sys_enter_NAME probe each; a few exit probes on
  raw_syscalls:sys_exit shared by them), decided in the kernel from the fd
  (the file's inode is a socket, its sock is IPPROTO_TCP, SOCK_STREAM),
  and reads both ends from the kernel's sock, so no -yy-like lookup costs
  anything. The structs are read at byte offsets from this kernel's BTF
  (capture/btf.py; bpftrace's typed access has clang parse them, seconds
  more at start-up), typed where the offsets cannot be read. A connect
  refused or reset has its ends cleared by the time it returns, so
  ``sock:inet_sock_set_state`` from SYN_SENT prints them for the sockets
  connect() is running on;
- event loops: at the exit of epoll_wait/epoll_pwait(2), poll/ppoll and
  select/pselect6 it reads the ready fds from the program's memory (the
  first WAIT_READ; select's fds 0-127) and epoll_ctl on a TCP socket says
  which epoll data stands for which fd, so the parser makes the same
  readiness events as strace's;
- prints errno NAMES (a map filled from errnos.py and the C library's
  names of this kernel's numbers), never
  numbers, one line per call (formats/bpftrace_calls.py reads them).

Clock: bpftrace's nsecs is CLOCK_MONOTONIC; the offset to CLOCK_REALTIME
(the packets' clock) is measured as the kernel witness measures its own
(capture/kernel.measure_clock_mapping) when the program is released and
when it has exited, and written at the end of the log as a ``clock`` line
(record then checks it against each connect's SYN:
formats/bpftrace_calls.check_clock). A ``timing`` line says how long
bpftrace took to attach and to stop; ``gone`` that it exited before the
program did.

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

from . import btf

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
READY_SECONDS = 60.0  # bpftrace compiles and attaches (3-10 s at load 5 here); beyond this, something is wrong
DRAIN_SECONDS = 10.0  # after the program exited: bpftrace prints what is still in its buffers
RING_PAGES = 1024  # per CPU (4 MiB): what bpftrace has not read yet; beyond it, "Lost N events"
MAP_KEYS = 65536  # processes and threads of the traced tree alive at once, calls in flight
SIGINT_EVERY = 0.25  # bpftrace can miss a SIGINT (see _stop): sent again this often until it exits
# Waits for one byte on the pipe (the script is attached), then becomes the program: exec'd, nothing stays.
# The pipe closed without it (bpftrace failed, we died): exit, never run the program untraced.
STUB = ("import os, sys; fd = int(sys.argv[1]); go = os.read(fd, 1); os.close(fd); go or sys.exit(125); "
        "os.execvp(sys.argv[2], sys.argv[2:])")

# The kernel fields the script reads: (struct, member path, C type read)
FIELDS = (("task_struct", "files", "uint64"), ("files_struct", "fdt", "uint64"), ("fdtable", "max_fds", "uint32"),
          ("fdtable", "fd", "uint64"), ("file", "f_inode", "uint64"), ("file", "private_data", "uint64"),
          ("inode", "i_mode", "uint16"), ("socket", "sk", "uint64"), ("sock", "sk_protocol", "uint16"),
          ("sock", "sk_type", "uint16"), ("sock", "sk_err", "int32"), ("sock", "sk_err_soft", "int32"),
          ("sock", "sk_lingertime", "int64"), ("sock", "__sk_common.skc_family", "uint16"),
          ("sock", "__sk_common.skc_rcv_saddr", "uint32"), ("sock", "__sk_common.skc_daddr", "uint32"),
          ("sock", "__sk_common.skc_num", "uint16"), ("sock", "__sk_common.skc_dport", "uint16"),
          ("sock", "__sk_common.skc_v6_rcv_saddr", "in6"), ("sock", "__sk_common.skc_v6_daddr", "in6"),
          ("sock", "__sk_common.skc_flags", "uint64"))


class _Kernel:
    """How the script reads the kernel's structs: by byte offsets from this
    kernel's BTF (capture/btf.py: bpftrace compiles that at once), or, where
    they cannot be read, through bpftrace's typed access (it parses the types
    with clang, seconds). The same reads either way; an IPv6 address by
    offsets prints as 32 hex digits (two little-endian words), which
    formats/bpftrace_calls.py turns back into an address."""

    def __init__(self, offsets: Optional[dict[str, int]]):
        self.offsets = offsets

    def read(self, base: str, struct_name: str, path: str, ctype: str) -> str:
        if self.offsets is None:
            return f"{base}->{path}"
        return f"*({ctype} *)({base} + {self.offsets[f'{struct_name}.{path}']})"

    def fdt(self) -> str:
        if self.offsets is None:
            return "curtask->files->fdt"
        return self.read(self.read("(uint64)curtask", "task_struct", "files", "uint64"), "files_struct", "fdt",
                         "uint64")

    def file(self, fdt: str, fd: str) -> str:
        if self.offsets is None:
            return f"*({fdt}->fd + {fd})"
        return f"*(uint64 *)({self.read(fdt, 'fdtable', 'fd', 'uint64')} + (uint64){fd} * 8)"

    def sock_of(self, file: str) -> str:
        if self.offsets is None:
            return f"((struct socket *){file}->private_data)->sk"
        return self.read(self.read(file, "file", "private_data", "uint64"), "socket", "sk", "uint64")

    def is_socket(self, file: str) -> str:
        mode = (f"{file}->f_inode->i_mode" if self.offsets is None else
                self.read(self.read(file, "file", "f_inode", "uint64"), "inode", "i_mode", "uint16"))
        return f"({mode} & 0xf000) == 0xc000"

    def sock(self, field: str, ctype: str, base: str = "$s") -> str:
        return self.read(base, "sock", field, ctype)

    def as_sock(self, value: str) -> str:
        return f"(struct sock *){value}" if self.offsets is None else value

    def ends(self, v6: bool) -> tuple[str, str]:
        """(printf conversions, arguments) of the sock's two ends in $s."""
        port, dport = self.sock("__sk_common.skc_num", "uint16"), self.sock("__sk_common.skc_dport", "uint16")
        if not v6:
            addr = lambda field: f"ntop(2, {self.sock(field, 'uint32')})"  # noqa: E731
            return "%s %d %s %d", f"{addr('__sk_common.skc_rcv_saddr')}, {port}, " \
                                  f"{addr('__sk_common.skc_daddr')}, bswap({dport})"
        if self.offsets is None:
            addr = lambda field: f"ntop(10, $s->{field}.in6_u.u6_addr8)"  # noqa: E731
            return "%s %d %s %d", f"{addr('__sk_common.skc_v6_rcv_saddr')}, {port}, " \
                                  f"{addr('__sk_common.skc_v6_daddr')}, bswap({dport})"
        local, remote = (self.offsets[f"sock.__sk_common.{f}"] for f in ("skc_v6_rcv_saddr", "skc_v6_daddr"))
        words = lambda at: f"*(uint64 *)($s + {at}), *(uint64 *)($s + {at + 8})"  # noqa: E731
        return "%016llx%016llx %d %016llx%016llx %d", f"{words(local)}, {port}, {words(remote)}, bswap({dport})"


def _enter_fd(kernel: _Kernel, fd: str, keep: str) -> str:
    """Keep the call when `fd` is a TCP stream socket (`keep` runs with $sk and $n set)."""
    return f"""\
  $t = {kernel.fdt()};
  $n = (uint32){fd};
  if ($n < {kernel.read("$t", "fdtable", "max_fds", "uint32")}) {{
    $f = {kernel.file("$t", "$n")};
    if ($f != 0 && {kernel.is_socket("$f")}) {{
      $sk = {kernel.sock_of("$f")};
      if ({kernel.sock("sk_protocol", "uint16", "$sk")} == 6 && {kernel.sock("sk_type", "uint16", "$sk")} == 1) {{
{keep}
      }}
    }}
  }}"""


_KEEP = "        @t0[tid] = nsecs; @sk[tid] = (uint64)$sk; @fd[tid] = $n;"


def _print_call(kernel: _Kernel, name: str, ret: str = "args->ret", extra: tuple[str, str] = ("%s", '"-"'),
                name_arg: str = "") -> str:
    """printf of one C line for the sock in $s (both families); `name` "%s"
    with `name_arg` prints the syscall's name from a map; `extra`: the last
    field's (conversion, arguments)."""
    named = f"{name_arg}, " if name_arg else ""
    lines = []
    for v6 in (True, False):
        conversions, values = kernel.ends(v6)
        lines.append(f'printf("C %d %d %llu %llu {name} %d %d %s %llu {conversions} {extra[0]}\\n", tid, pid, '
                     f'@t0[tid], nsecs, {named}@fd[tid], {ret}, $e, (uint64)$s, {values}, {extra[1]});')
    family = kernel.sock("__sk_common.skc_family", "uint16")
    return f"  if ({family} == 10) {{ {lines[0]} }}\n  else {{ {lines[1]} }}"


def _errno_map() -> str:
    """@errname[N] = "NAME" for every errno this (Linux) kernel has: errnos.py's
    names first, then the C library's (the kernel traced is the one we run on)."""
    import errno

    from ..errnos import name_from_number

    names = [(n, name_from_number(n) or errno.errorcode.get(n)) for n in range(1, 134)]
    return "\n".join(f'  @errname[{n}] = "{name}";' for n, name in names if name)


def script(available: Optional[set[str]] = None, *, raw_enter: bool = True, offsets: bool = True) -> str:
    """The bpftrace program; `available`: the syscalls this kernel has
    tracepoints for (default all of SYSCALLS). `raw_enter`: one probe on
    raw_syscalls:sys_enter for every traced syscall, told apart by number,
    where this architecture's numbers are known (syscall_numbers); else one
    sys_enter_NAME probe each. Fewer probes: bpftrace compiles and attaches
    in a fraction of the time (measured in bench/record_pace.py). `offsets`:
    read the kernel's structs at the offsets this kernel's BTF gives (no
    clang pass in bpftrace: it starts in well under a second) where it can."""
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
    kernel = _Kernel(btf.kernel_offsets(FIELDS) if offsets else None)
    parts[1:1] = [f'  @op[{code}] = "{name}";' for code, name in enumerate(names)]  # in BEGIN
    waits = traced_waits(available, numbers is not None)
    parts += _enter_probes(kernel, names, numbers, waits)
    # A few exit probes for them all (fewer probes to compile and attach), each
    # for the kinds its enter probes kept; one printf pair per probe (the BPF stack).
    code = {name: index for index, name in enumerate(names)}
    special = ("close", "getsockopt", "setsockopt", "shutdown", "accept", "accept4")
    linger = (f"({kernel.sock('__sk_common.skc_flags', 'uint64')} >> {SOCK_LINGER_BIT}) & 1, "
              f"{kernel.sock('sk_lingertime', 'int64')}")
    exits = {
        "close": ['  printf("C %d %d %llu %llu close %d %d %s %llu - 0 - 0 -\\n", tid, pid, @t0[tid], nsecs, '
                  '@fd[tid], args->ret, $e, @sk[tid]);'],  # the file is gone: the ends known before
        "getsockopt": ['  $v = @x[tid] ? @errname[@x[tid]] : "0";', _print_call(kernel, "getsockopt", extra=("%s", "$v"))],
        "setsockopt": [_print_call(kernel, "setsockopt", extra=("linger=%d,%d", linger))],
        "shutdown": ['  $how = @x[tid] == 0 ? "SHUT_RD" : (@x[tid] == 1 ? "SHUT_WR" : "SHUT_RDWR");',
                     _print_call(kernel, "shutdown", extra=("%s", "$how"))],
        "accept": ["  if (args->ret >= 0) {  // the new socket's ends, from the fd it returned",
                   f"    $t = {kernel.fdt()};",
                   f"    $f = {kernel.file('$t', '(uint32)args->ret')};",
                   f"    $s = {kernel.sock_of('$f')};",
                   "  }", _print_call(kernel, "%s", name_arg="@op[@kind[tid]]")],
    }
    groups = {kind: [code[n] for n in ((kind, "accept4") if kind == "accept" else (kind,)) if n in code]
              for kind in exits}
    groups["other"] = [code[n] for n in names if n not in special]
    exits["other"] = [_print_call(kernel, "%s", name_arg="@op[@kind[tid]]")]
    for kind, codes in groups.items():
        if not codes:
            continue
        which = " || ".join(f"@kind[tid] == {c}" for c in codes)
        parts += [f"tracepoint:raw_syscalls:sys_exit /@t0[tid] && ({which})/ {{",
                  "  $e = args->ret < 0 ? @errname[-args->ret] : \"-\";",
                  f"  $s = {kernel.as_sock('@sk[tid]')};", *exits[kind]]
        if "connect" in code and code["connect"] in codes:
            parts.append("  delete(@connecting[@sk[tid]]);")
        parts += ["  delete(@t0[tid]); delete(@sk[tid]); delete(@fd[tid]); delete(@kind[tid]); delete(@x[tid]);",
                  "}"]
    maps = ["traced", "errname", "t0", "sk", "fd", "x", "connecting", "kind", "op"]
    if waits - {"epoll_ctl"}:
        maps += ["w0", "wk", "wa", "wb", "wc", "wd"]
    parts += ["END {", "  " + " ".join(f"clear(@{name});" for name in maps), "}"]
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
# An event loop's waits and epoll_ctl, by number (aarch64 has only the p- forms)
_WAITS = {
    "x86_64": {"poll": 7, "select": 23, "epoll_wait": 232, "epoll_ctl": 233, "pselect6": 270, "ppoll": 271,
               "epoll_pwait": 281, "epoll_pwait2": 441},
    "aarch64": {"epoll_ctl": 21, "epoll_pwait": 22, "pselect6": 72, "ppoll": 73, "epoll_pwait2": 441},
}
# struct epoll_event: (its size, the offset of its data); packed on x86_64 only
_EPOLL_EVENT = {"x86_64": (12, 4), "aarch64": (16, 8)}
# The waits' tracepoint arguments: (kind, where the answer is...) as the raw probe's args[0..3]
_WAIT_ARGS = {"epoll_wait": (1, "epfd", "events"), "epoll_pwait": (1, "epfd", "events"),
              "epoll_pwait2": (1, "epfd", "events"), "poll": (2, "ufds", "nfds"), "ppoll": (2, "ufds", "nfds"),
              "select": (3, "n", "inp", "outp", "exp"), "pselect6": (3, "n", "inp", "outp", "exp")}
WAIT_READ = 32  # ready fds read per epoll_wait/poll (more are said, not read); select: fds 0-127
EPOLL_CTL_DEL = 2
# raw_syscalls:sys_enter has the arguments as args->args[N]; every traced call's fd is the first
_RAW_ARGS = {"fd": "args->args[0]", "out_fd": "args->args[0]", "level": "args->args[1]",
             "optname": "args->args[2]", "how": "args->args[1]"}


def syscall_numbers() -> Optional[dict[str, int]]:
    """SYSCALLS' numbers on this machine's architecture, or None where not known here."""
    import platform

    return _NUMBERS.get(platform.machine())


def _enter_probes(kernel: _Kernel, names: list[str], numbers: Optional[dict[str, int]],
                  waits: frozenset[str]) -> list[str]:
    """What each traced call keeps at entry: one raw_syscalls:sys_enter probe
    telling them apart by number, or one sys_enter_NAME probe each; then the
    event loops' waits (`waits`: the wait syscalls traced)."""
    def arg(name: str) -> str:
        return _RAW_ARGS[name] if numbers is not None else f"args->{name}"

    def keep(code: int, name: str) -> str:
        kept = _KEEP + f" @kind[tid] = {code};"
        if name == "connect":
            kept += " @connecting[(uint64)$sk] = 1;"
        elif name == "getsockopt":  # SO_ERROR only: what it will return is the sock's pending error
            err, soft = kernel.sock("sk_err", "int32", "$sk"), kernel.sock("sk_err_soft", "int32", "$sk")
            kept = (f"        if ({arg('level')} == {SOL_SOCKET} && {arg('optname')} == {SO_ERROR}) {{ "
                    f"{kept.strip()} @x[tid] = {err} ? {err} : {soft}; }}")
        elif name == "setsockopt":  # SO_LINGER only: it tells an abortive close's reason
            kept = f"        if ({arg('level')} == {SOL_SOCKET} && {arg('optname')} == {SO_LINGER}) {{ {kept.strip()} }}"
        elif name == "shutdown":
            kept += f" @x[tid] = {arg('how')};"
        return kept

    if numbers is None:
        probes = []
        for code, name in enumerate(names):
            probes += [f"tracepoint:syscalls:sys_enter_{name} /@traced[pid]/ {{",
                       _enter_fd(kernel, f"args->{SYSCALLS[name]}", keep(code, name)), "}"]
        for name in waits:
            if name in _WAIT_ARGS:
                kind, *fields = _WAIT_ARGS[name]
                kept = " ".join(f"@w{slot}[tid] = {f'(uint64)args->{field}' if field else '(uint64)0'};"
                                for slot, field in zip("abcd", fields + [None] * (4 - len(fields))))
                probes += [f"tracepoint:syscalls:sys_enter_{name} /@traced[pid]/ {{",
                           f"  @w0[tid] = nsecs; @wk[tid] = {kind}; {kept}", "}"]
        return probes + _epoll_ctl(kernel, waits) + _wait_exits(waits)
    body = ["  $id = args->id;", "  $k = -1;",
            *(f"  if ($id == {numbers[name]}) {{ $k = {code}; }}" for code, name in enumerate(names))]
    # One site per map update, whatever the call (each site is code bpftrace has LLVM
    # compile: the start-up): which calls are kept, and what else they keep, by $k.
    code = {name: index for index, name in enumerate(names)}
    kept = ["        $keep = 1; $x = (int64)0;"]
    for name, option in (("getsockopt", SO_ERROR), ("setsockopt", SO_LINGER)):  # SO_ERROR, SO_LINGER only
        if name in code:
            kept.append(f"        if ($k == {code[name]} && !({arg('level')} == {SOL_SOCKET} && "
                        f"{arg('optname')} == {option})) {{ $keep = 0; }}")
    if "getsockopt" in code:  # what it will return is the sock's pending error
        err, soft = kernel.sock("sk_err", "int32", "$sk"), kernel.sock("sk_err_soft", "int32", "$sk")
        kept.append(f"        if ($k == {code['getsockopt']}) {{ $x = (int64)({err} ? {err} : {soft}); }}")
    if "shutdown" in code:
        kept.append(f"        if ($k == {code['shutdown']}) {{ $x = (int64){arg('how')}; }}")
    kept.append(f"        if ($keep) {{ {_KEEP.strip()} @kind[tid] = $k; @x[tid] = $x;"
                + (f" if ($k == {code['connect']}) {{ @connecting[(uint64)$sk] = 1; }}" if "connect" in code else "")
                + " }")
    body += ["  if ($k >= 0) {", _enter_fd(kernel, "args->args[0]", "\n".join(kept)), "  }"]
    body += _wait_enter(waits)
    return ["tracepoint:raw_syscalls:sys_enter /@traced[pid]/ {", *body, "}", *_epoll_ctl(kernel, waits),
            *_wait_exits(waits)]


def _waits() -> dict[str, int]:
    import platform

    return _WAITS.get(platform.machine(), {})


def traced_waits(available: Optional[set[str]], raw_enter: bool) -> frozenset[str]:
    """The waits (and epoll_ctl) traced: where this architecture's struct
    epoll_event is known, those it has (numbers with the raw enter probe,
    tracepoints otherwise)."""
    import platform

    if platform.machine() not in _EPOLL_EVENT:
        return frozenset()
    names = _waits() if raw_enter else (_WAIT_ARGS.keys() | {"epoll_ctl"})
    return frozenset(name for name in names if available is None or raw_enter or name in available)


def _wait_enter(waits: frozenset[str]) -> list[str]:
    """In the raw enter probe, at entry of an event loop's wait: where its
    answer will be (read at its exit)."""
    numbers = _waits()
    kinds = {1: ("epoll_wait", "epoll_pwait", "epoll_pwait2"), 2: ("poll", "ppoll"), 3: ("select", "pselect6")}
    lines = []
    for kind, names in kinds.items():
        which = " || ".join(f"$id == {numbers[n]}" for n in names if n in waits and n in numbers)
        if which:
            lines.append(f"  if ({which}) {{ @w0[tid] = nsecs; @wk[tid] = {kind}; @wa[tid] = args->args[0]; "
                         f"@wb[tid] = args->args[1]; @wc[tid] = args->args[2]; @wd[tid] = args->args[3]; }}")
    return lines


def _epoll_ctl(kernel: _Kernel, waits: frozenset[str]) -> list[str]:
    """epoll_ctl on a TCP socket: which epoll data stands for which fd (an E line),
    a probe of its own (in the shared enter probe, the BPF stack overflows)."""
    import platform

    if "epoll_ctl" not in waits:
        return []
    _, data = _EPOLL_EVENT[platform.machine()]
    keep = (f'        printf("E %d %d %llu %d %d %d %llu %llu\\n", tid, pid, nsecs, $epfd, $how, $n, '
            f'$how == {EPOLL_CTL_DEL} || $ev == 0 ? (uint64)0 : *(uint64 *)uptr($ev + {data}), (uint64)$sk);')
    return ["tracepoint:syscalls:sys_enter_epoll_ctl /@traced[pid]/ {",
            "  $epfd = (int64)args->epfd; $how = (int64)args->op; $ev = (uint64)args->event;",
            _enter_fd(kernel, "args->fd", keep), "}"]


def _wait_exits(waits: frozenset[str]) -> list[str]:
    """At a wait's return: one R line per fd it reported ready (the first
    WAIT_READ): R TID PID T0 T1 OP WAITFD RET A B, with A B the epoll event's
    events and data, poll's fd and revents, or select's set and its first two
    64-bit words (fds 0-127)."""
    import platform

    if not waits - {"epoll_ctl"}:
        return []
    size, data = _EPOLL_EVENT[platform.machine()]
    head = 'tid, pid, @w0[tid], nsecs'
    forget = "  delete(@w0[tid]); delete(@wk[tid]); delete(@wa[tid]); delete(@wb[tid]); delete(@wc[tid]); delete(@wd[tid]);"
    epoll = ["tracepoint:raw_syscalls:sys_exit /@wk[tid] == 1/ {", "  if (args->ret > 0) {",
             "    $i = (uint64)0; $p = @wb[tid];",
             f"    while ($i < {WAIT_READ} && (int64)$i < args->ret) {{",
             f'      printf("R %d %d %llu %llu epoll_wait %d %d %u %llu\\n", {head}, (int64)@wa[tid], args->ret, '
             f"*(uint32 *)uptr($p + {size} * $i), *(uint64 *)uptr($p + {size} * $i + {data}));",
             "      $i++;", "    }", "  }", forget, "}"]
    poll = ["tracepoint:raw_syscalls:sys_exit /@wk[tid] == 2/ {", "  if (args->ret > 0) {",
            "    $i = (uint64)0; $p = @wa[tid];",
            f"    while ($i < {WAIT_READ} && $i < @wb[tid]) {{",
            "      $rev = *(uint16 *)uptr($p + 8 * $i + 6);",
            f'      if ($rev != 0) {{ printf("R %d %d %llu %llu poll %d %d %d %u\\n", {head}, (int64)@wb[tid], '
            "args->ret, *(int32 *)uptr($p + 8 * $i), $rev); }",
            "      $i++;", "    }", "  }", forget, "}"]
    select = ["tracepoint:raw_syscalls:sys_exit /@wk[tid] == 3/ {", "  if (args->ret > 0) {"]
    for name, slot in (("in", "@wb"), ("out", "@wc"), ("except", "@wd")):
        select.append(f'    if ({slot}[tid] != 0) {{ printf("R %d %d %llu %llu select %d %d {name} %llu,%llu\\n", '
                      f"{head}, (int64)@wa[tid], args->ret, *(uint64 *)uptr({slot}[tid]), "
                      f"*(uint64 *)uptr({slot}[tid] + 8)); }}")
    select += ["  }", forget, "}"]
    return epoll + poll + select

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
    """The syscalls of SYSCALLS and the waits this kernel has enter tracepoints
    for (sendfile64 is sendfile on some architectures)."""
    listed = subprocess.run(["bpftrace", "-l", "tracepoint:syscalls:sys_enter_*"], capture_output=True,
                            text=True, timeout=60).stdout
    names = {line.rsplit("sys_enter_", 1)[-1].strip() for line in listed.splitlines()}
    return frozenset(name for name in (*SYSCALLS, *_WAIT_ARGS, "epoll_ctl") if name in names)


# -- running -------------------------------------------------------------------


class _Copier:
    """Copies bpftrace's stdout to the log as it comes; tells when the script
    is attached (its ``ready`` line) and when the program has exited (its
    ``Q PID`` line: everything it did is printed or in flight)."""

    def __init__(self, pipe, path: Path, root_pid: int):
        self.ready, self.exited = threading.Event(), threading.Event()
        self.attached = False  # its ready line was seen (ready is also set when bpftrace ends without one)
        self._pipe, self._out, self._exit_line = pipe, open(path, "wb"), f"Q {root_pid} ".encode()
        self._thread = threading.Thread(target=self._copy, name="tcpteardown-bpftrace-copy", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        tail = b""
        for chunk in iter(lambda: os.read(self._pipe.fileno(), 1 << 20), b""):
            self._out.write(chunk)
            seen = tail + chunk
            if not self.ready.is_set() and b"ready " in seen:
                self.attached = True
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
    with open(log.with_name("bpftrace-stderr.log"), "wb") as tracer_stderr:  # bpftrace holds its own copy
        tracer = subprocess.Popen(["bpftrace", "-B", "line", str(program_file), str(program.pid)], env=env,
                                  stdout=subprocess.PIPE, stderr=tracer_stderr, start_new_session=True)
    tokens.append(reaper.watch_group(tracer.pid))
    copier = _Copier(tracer.stdout, log, program.pid)
    tee = StderrTee(program.stderr, stderr_log) if stderr_log is not None else None
    interrupted, status, mappings, attach_ns, stop_ns, drained = None, None, [], None, None, True
    try:
        try:
            # not attached: bpftrace failed (its stdout ended before a ready line; it may
            # not be reaped yet, so poll() alone would let the program run untraced)
            if not copier.ready.wait(READY_SECONDS) or not copier.attached or tracer.poll() is not None:
                if not copier.attached:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        tracer.wait(timeout=DRAIN_SECONDS)
                raise UserError(f"record --calls ebpf: bpftrace did not start ({_last_words(log)}); "
                                f"try --calls strace")
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
        gone = tracer.poll()  # bpftrace ended before it was told to: what came after is missing
        stopping = time.monotonic_ns()
        drained = _stop(tracer)
        stop_ns = time.monotonic_ns() - stopping
        for token in tokens:
            reaper.forget(token)
        mapping = ClockMapping.combine(mappings[0], mappings[-1]) if mappings else None
        copier.finish((f"clock {mapping.offset_ns} {mapping.uncertainty_ns}\n" if mapping else "")
                      + f"timing {attach_ns if attach_ns is not None else '-'} {stop_ns} {int(drained)}\n"
                      + (f"gone {gone} {_last_words(log)}\n" if gone is not None else ""))
        if tee is not None:
            tee.finish()
    return (128 - status if status < 0 else status), interrupted


def _last_words(log: Path) -> str:
    said = log.with_name("bpftrace-stderr.log").read_text(errors="replace").strip().splitlines()
    said = [line.strip() for line in said if "RLIMIT_MEMLOCK" not in line and line.strip()]
    errors = [line for line in said if "ERROR" in line]
    return (errors or said or ["nothing on stderr"])[-1]


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
