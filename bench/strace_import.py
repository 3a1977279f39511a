"""Benchmark: import a 10,000-line `strace -f -ttt -T -yy` log.

Goal (issue 3): under one second. Generates a realistic log (several
threads interleaving, unfinished/resumed pairs, non-blocking connects
resolved through SO_ERROR, file and epoll noise between the socket calls),
imports it, and prints the time, the goal ratio, and the ratio against
`grep -c` over the same file as a floor (the cost of merely scanning it).

Usage: .venv/bin/python bench/strace_import.py [LINES]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tcpteardown.formats.strace import parse_strace

BASE_S = 1_795_290_055


def story(first_port: int, t_us: int, pid: int, thread: int) -> list[str]:
    """One connection's lines: connect via SO_ERROR, traffic, a failure, noise."""
    port = first_port
    local = f"127.0.0.1:{40000 + port % 20000}"
    remote = f"127.0.0.1:{8000 + port % 1000}"
    tcp = f"TCP:[{local}->{remote}]"

    def ts(step: int) -> str:
        t = t_us + step * 17
        return f"{BASE_S + t // 1_000_000}.{t % 1_000_000:06d}"

    return [
        f"{pid}  {ts(0)} socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_IP) = 7<TCP:[{port}]> <0.000020>",
        f"{pid}  {ts(1)} connect(7<TCP:[{port}]>, {{sa_family=AF_INET, sin_port=htons({remote.split(':')[1]}), sin_addr=inet_addr(\"127.0.0.1\")}}, 16 <unfinished ...>",
        f"{thread}  {ts(2)} futex(0xc00003c948, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>",
        f"{pid}  {ts(3)} <... connect resumed>) = -1 EINPROGRESS (Operation now in progress) <0.000068>",
        f"{pid}  {ts(4)} epoll_ctl(5<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 7<{tcp}>, {{events=EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, data={{u32=1, u64=1}}}}) = 0 <0.000020>",
        f"{thread}  {ts(5)} <... futex resumed>) = 0 <0.000276>",
        f"{thread}  {ts(6)} getsockopt(7<{tcp}>, SOL_SOCKET, SO_ERROR,  <unfinished ...>",
        f"{pid}  {ts(7)} nanosleep({{tv_sec=0, tv_nsec=20000}},  <unfinished ...>",
        f"{thread}  {ts(8)} <... getsockopt resumed>[0], [4]) = 0 <0.000023>",
        f"{pid}  {ts(9)} <... nanosleep resumed>NULL) = 0 <0.000094>",
        f"{thread}  {ts(10)} write(7<{tcp}>, \"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\", 27) = 27 <0.000031>",
        f"{thread}  {ts(11)} read(7<{tcp}>, 0xc000180000, 4096) = -1 EAGAIN (Resource temporarily unavailable) <0.000011>",
        f"{pid}  {ts(12)} epoll_pwait(5<anon_inode:[eventpoll]>, [{{events=EPOLLIN|EPOLLOUT, data={{u32=1, u64=1}}}}], 128, 0, NULL, 0) = 1 <0.000012>",
        f"{thread}  {ts(13)} read(7<{tcp}>, \"HTTP/1.1 200 OK\\r\\n\"..., 4096) = 512 <0.000015>",
        f"{thread}  {ts(14)} read(7<{tcp}>, \"\", 4096) = 0 <0.000009>",
        f"{thread}  {ts(15)} write(7<{tcp}>, \"x\", 1) = -1 EPIPE (Broken pipe) <0.000018>",
        f"{thread}  {ts(16)} --- SIGPIPE {{si_signo=SIGPIPE, si_code=SI_USER, si_pid={pid}, si_uid=0}} ---",
        f"{pid}  {ts(17)} openat(AT_FDCWD, \"/etc/hosts\", O_RDONLY|O_CLOEXEC) = 8</etc/hosts> <0.000020>",
        f"{pid}  {ts(18)} read(8</etc/hosts>, \"127.0.0.1 localhost\\n\", 4096) = 20 <0.000010>",
        f"{pid}  {ts(19)} close(8</etc/hosts>) = 0 <0.000008>",
        f"{thread}  {ts(20)} close(7<{tcp}>) = 0 <0.000023>",
    ]


def make_log(lines: int) -> list[str]:
    out: list[str] = [f"1000  {BASE_S}.000000 execve(\"/usr/bin/client\", [\"client\"], 0x7ffd /* 20 vars */) = 0 <0.000300>"]
    n = 0
    while len(out) < lines:
        out.extend(story(n, 1000 + n * 400, 1000, 1001 + n % 4))
        n += 1
    out = out[:lines]
    out.append(f"1000  {BASE_S + 100}.000000 +++ exited with 0 +++")
    return out


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    lines = make_log(count)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.txt"
        path.write_text("\n".join(lines) + "\n")
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            with open(path) as handle:
                result = parse_strace(handle, path=str(path))
            best = min(best, time.perf_counter() - start)
        grep_s = None
        if shutil.which("grep"):
            start = time.perf_counter()
            subprocess.run(["grep", "-c", "TCP", str(path)], check=False, capture_output=True)
            grep_s = time.perf_counter() - start
    print(f"strace import: {len(lines)} lines -> {len(result.calls)} calls, {len(result.problems)} problems")
    print(f"best of 5: {best:.3f} s ({len(lines) / best:,.0f} lines/s); goal < 1 s: {best / 1.0:.2f}x of budget")
    if grep_s:
        print(f"grep -c over the same file: {grep_s:.4f} s (import/grep ratio {best / grep_s:.1f}x)")
    return 0 if best < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
