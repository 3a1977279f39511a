"""Benchmark: the evidence importers are linear in their input (issue 19).

Two production-size hostile inputs, each at two sizes, through the real file
readers (`read_strace_file`, `read_log_file`):

- an strace log of ONE line: a 50 MB ``write()`` whose argument repeats
  ``) = 1<`` and ``sin_port=htons(1)`` (what made the old result and
  sockaddr patterns quadratic: 160 KB took 0.8 s, 1.3 MB 18.5 s);
- an application log of 1e6 lines, every one a socket error, in the seven
  phrasings production prints most (Go, Node.js, Java, Python, nginx, curl,
  redis-py), ports and request numbers varying per line;
- a realistic application log of 1e6 lines (issue 27 part 5, goal < 10 s):
  mostly ordinary records (requests served, retries, validation errors,
  pool statistics, timeouts configured: words like "error", "failed",
  "closed" that are not socket errors), Java stack traces under some
  records, and about 3 % socket errors in the seven phrasings.

For each it prints seconds, MB/s and seconds per MB, and the ratio of the
large input's seconds-per-MB to the small one's (linear: about 1; the old
quadratic code gave 10x per 8x of input), plus `grep -c` over the same file
as the floor (the cost of merely scanning it).

Usage: .venv/bin/python bench/importers.py [--small]   (--small: 1/10 sizes)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tcpteardown.formats.applog import read_log_file
from tcpteardown.formats.strace import read_strace_file

MB = 1 << 20

# {port} and {n} vary per line, as client ports and request numbers do in
# production (so that no cache of repeated messages makes the bench easy).
_APP_LINES = (
    "write tcp 127.0.0.1:{port}->127.0.0.1:8080: write: broken pipe",
    "Error: read ECONNRESET",
    "java.net.SocketException: Connection reset",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    '[error] 7#7: *{n} recv() failed (104: Connection reset by peer) while reading response header from '
    'upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:{port}/"',
    "curl: (56) Recv failure: Connection reset by peer",
    "redis.exceptions.ConnectionError: Error while reading from 127.0.0.1:{port} : (104, 'Connection reset "
    "by peer')",
)


def write_strace(path: Path, size: int) -> None:
    unit = ") = 1<sin_port=htons(1) "
    body = unit * (size // len(unit))
    path.write_text('1714584362.140166 write(3<TCP:[127.0.0.1:50389->127.0.0.1:8080]>, "'
                    f'{body}", {len(body)}) = -1 EPIPE (Broken pipe) <0.000010>\n')


def write_applog(path: Path, lines: int) -> None:
    with open(path, "w") as out:
        for i in range(lines):
            second, micro = divmod(i, 1000)
            out.write(f"2024/05/01 17:{second // 60 % 60:02d}:{second % 60:02d}.{micro:06d} "
                      f"{_APP_LINES[i % len(_APP_LINES)].format(port=1024 + i % 60000, n=i)}\n")


# The ordinary records of a service's log: mostly not socket errors, some with the
# words a socket error uses (error, failed, closed, timeout, reset) about other things.
_ORDINARY = (
    "INFO handled GET /api/v1/items/{n} status=200 bytes={b} in {ms}ms remote=10.0.{x}.{y}:{port}",
    "INFO handled POST /api/v1/orders status=201 bytes={b} in {ms}ms remote=10.0.{x}.{y}:{port}",
    "DEBUG cache hit key=item:{n} ttl=300s",
    "INFO [worker-{x}] job {n} done in {ms} ms",
    "WARN retrying job {n} (attempt 2/5): upstream returned 503",
    "ERROR validation failed for order {n}: missing field \"email\"",
    "DEBUG connection pool stats: {x} idle, {y} in use, 2 closed since last report",
    "INFO config reloaded: read_timeout=30s write_timeout=30s idle_timeout=120s",
    "INFO user {n} password reset requested",
    "DEBUG GET /healthz 200 0.{ms}ms",
)
_JAVA_TRACE = ("java.net.SocketException: Connection reset",
               "\tat java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:323)",
               "\tat java.base/sun.nio.ch.NioSocketImpl.read(NioSocketImpl.java:350)",
               "\tat java.base/java.io.BufferedInputStream.fill(BufferedInputStream.java:244)",
               "\tat com.example.client.UpstreamClient.fetch(UpstreamClient.java:88)")


def write_realistic_applog(path: Path, lines: int) -> None:
    """`lines` lines: ordinary records, every 40th record a socket error in one of the
    seven phrasings, every 200th a Java exception with its stack trace (5 lines)."""
    with open(path, "w") as out:
        written = record = 0
        while written < lines:
            second, micro = divmod(record * 37, 1_000_000)
            stamp = f"2024-05-01T{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}.{micro:06d}Z"
            fields = dict(n=record, b=200 + record % 9000, ms=record % 97, x=record % 16, y=record % 251,
                          port=1024 + record % 60000)
            if record % 200 == 199:
                out.write(f"{stamp} ERROR [pool-1-thread-{fields['x']}] request {record} failed\n")
                out.write("\n".join(_JAVA_TRACE) + "\n")
                written += 1 + len(_JAVA_TRACE)
            elif record % 40 == 39:
                out.write(f"{stamp} ERROR {_APP_LINES[record // 40 % len(_APP_LINES)].format(**fields)}\n")
                written += 1
            else:
                out.write(f"{stamp} {_ORDINARY[record % len(_ORDINARY)].format(**fields)}\n")
                written += 1
            record += 1


def timed(read, path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    result = read(path)
    return time.perf_counter() - start, len(result.calls)


def grep_seconds(path: Path) -> float | None:
    if not shutil.which("grep"):
        return None
    start = time.perf_counter()
    subprocess.run(["grep", "-c", "e", str(path)], check=False, capture_output=True)
    return time.perf_counter() - start


def report(name: str, read, write, sizes, directory: Path) -> None:
    per_mb = []
    for size in sizes:
        path = directory / f"{name}-{size}"
        write(path, size)
        mb = path.stat().st_size / MB
        seconds, calls = timed(read, path)
        grep_s = grep_seconds(path)
        per_mb.append(seconds / mb)
        floor = f"; grep -c {grep_s:.3f} s (import/grep {seconds / grep_s:.0f}x)" if grep_s else ""
        print(f"{name} {size:,}: {mb:.1f} MB -> {calls:,} calls in {seconds:.2f} s "
              f"({mb / seconds:.1f} MB/s, {seconds / mb:.3f} s/MB){floor}")
        path.unlink()
    print(f"{name}: s/MB at the largest size / at the smallest = {per_mb[-1] / per_mb[0]:.2f} (linear: ~1)")


def main() -> int:
    scale = 10 if "--small" in sys.argv[1:] else 1
    print(f"Python {sys.version.split()[0]}; sizes divided by {scale}; load average "
          f"{' '.join(f'{load:.2f}' for load in os.getloadavg())} (other work on the machine slows every figure)")
    with tempfile.TemporaryDirectory(prefix="tcpteardown-bench-") as tmp:
        directory = Path(tmp)
        report("strace one line, bytes", read_strace_file, write_strace,
               (50 * MB // 8 // scale, 50 * MB // scale), directory)
        report("app log of errors, lines", read_log_file, write_applog,
               (125_000 // scale, 1_000_000 // scale), directory)  # the hardest: a call a line
        report("app log, realistic mix, lines", read_log_file, write_realistic_applog,
               (125_000 // scale, 1_000_000 // scale), directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
