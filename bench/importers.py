"""Benchmark: the evidence importers are linear in their input (issue 19).

Two production-size hostile inputs, each at two sizes, through the real file
readers (`read_strace_file`, `read_log_file`):

- an strace log of ONE line: a 50 MB ``write()`` whose argument repeats
  ``) = 1<`` and ``sin_port=htons(1)`` (what made the old result and
  sockaddr patterns quadratic: 160 KB took 0.8 s, 1.3 MB 18.5 s);
- an application log of 1e6 lines, every one a socket error, in the seven
  phrasings production prints most (Go, Node.js, Java, Python, nginx, curl,
  redis-py), ports and request numbers varying per line.

For each it prints seconds, MB/s and seconds per MB, and the ratio of the
large input's seconds-per-MB to the small one's (linear: about 1; the old
quadratic code gave 10x per 8x of input), plus `grep -c` over the same file
as the floor (the cost of merely scanning it).

Usage: .venv/bin/python bench/importers.py [--small]   (--small: 1/10 sizes)
"""

from __future__ import annotations

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
    print(f"Python {sys.version.split()[0]}; sizes divided by {scale}")
    with tempfile.TemporaryDirectory(prefix="tcpteardown-bench-") as tmp:
        directory = Path(tmp)
        report("strace one line, bytes", read_strace_file, write_strace,
               (50 * MB // 8 // scale, 50 * MB // scale), directory)
        report("app log of errors, lines", read_log_file, write_applog,
               (125_000 // scale, 1_000_000 // scale), directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
