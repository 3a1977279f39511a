"""`watch` under load: every RST tcpdump sees is a line, or counted as missed.

    .venv/bin/python bench/watch_load.py [--rate 2000] [--seconds 10]

A child process makes `--rate` refused connects per second (each answered by
one RST, NO_SOCKET) to a loopback port nothing listens on, for `--seconds`,
while tcpdump (the reference) and `tcpteardown watch --json --port P` run on
that port. Prints the connects made, tcpdump's RSTs, watch's lines and
their share of tcpdump's RSTs (the goal: 100 %, or the rest stated), the
"missed N" events of its summary, watch's peak RSS and the load average.
Issue 26's goal: 2,000 resets/s for 10 s, nothing lost silently, memory
bounded. With --keep, the flight recorder too: its bundles are checked
(complete, none half-written) and the biggest opened by explain and plot.
Needs root. Never a test: numbers are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATOR = r"""
import socket, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
made, start = 0, time.monotonic()
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    if made < now * rate:
        with socket.socket() as s:
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
        made += 1
    else:
        time.sleep(min(0.001, made / rate - now))
print(made)
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--keep", action="store_true", help="with the flight recorder (--keep into a temp folder)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("watch_load: needs root (tracefs and tcpdump)", file=sys.stderr)
        return 2
    port = closed_port()
    with tempfile.TemporaryDirectory(prefix="tcpteardown-watch-load-") as work:
        pcap = Path(work) / "rst.pcap"
        dump = subprocess.Popen([shutil.which("tcpdump"), "-i", "lo", "-n", "-U", "-B", "16384", "-w", str(pcap),
                                 f"tcp port {port} and tcp[13] & 4 != 0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while "listening" not in (line := dump.stderr.readline()):
            if not line:
                raise SystemExit("tcpdump did not start")
        out_path = Path(work) / "watch.jsonl"
        out = open(out_path, "w")
        keep = ["--keep", str(Path(work) / "kept")] if args.keep else []
        watch = None
        try:
            watch = subprocess.Popen([sys.executable, "-m", "tcpteardown", "watch", "--json", "--port", str(port), *keep],
                                     stdout=out, stderr=subprocess.PIPE, text=True)
            assert "watching" in watch.stderr.readline()
            while args.keep and "flight recorder" not in (said := watch.stderr.readline()):
                assert said, "watch ended before its flight recorder started"  # (a stale instance may be said first)
            started = time.monotonic()
            made = int(subprocess.run([sys.executable, "-c", GENERATOR, str(port), str(args.rate), str(args.seconds)],
                                      capture_output=True, text=True, check=True).stdout)
            elapsed = time.monotonic() - started
            # let both drain: stop once watch's output has been quiet for a second
            size, quiet_since = -1, time.monotonic()
            while time.monotonic() - quiet_since < 1.0:
                if out_path.stat().st_size != size:
                    size, quiet_since = out_path.stat().st_size, time.monotonic()
                time.sleep(0.05)  # polling the output file until it stops growing
            rss = peak_rss_kb(watch.pid)
            worker_rss = sum(peak_rss_kb(int(child)) for child in children(watch.pid)
                             if "watch.worker" in Path(f"/proc/{child}/cmdline").read_text())
            watch.send_signal(signal.SIGINT)
            _, err = watch.communicate(timeout=300)
            out.close()
            lines = out_path.read_text().count("\n")
            dump.send_signal(signal.SIGINT)
            dump.communicate(timeout=30)
            rsts = int(subprocess.run(f"tcpdump -r {pcap} -n 2>/dev/null | wc -l", shell=True,
                                      capture_output=True, text=True).stdout)
            kept = check_bundles(Path(work) / "kept") if args.keep else ""
        finally:  # a failed run must not leave tcpdump or watch behind
            for proc in (watch, dump):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    proc.wait(timeout=30)
    missed = re.search(r"missed (\d+) events", err)
    missed = int(missed.group(1)) if missed else -1
    share = 100.0 * lines / rsts if rsts else 0.0
    # a refused connect here is 5 kernel events (set_state x2, send_reset, receive_reset, error_report)
    print(f"connects {made} in {elapsed:.1f} s ({made / elapsed:.0f}/s); tcpdump RSTs {rsts}; watch lines {lines} "
          f"({share:.2f} %); missed events stated {missed} (~{missed / 5:.0f} RSTs); "
          f"watch peak RSS {rss / 1024:.0f} MB" + (f" (its flight recorder's worker {worker_rss / 1024:.0f} MB)"
                                                   if args.keep else "") + "; "
          f"load average {open('/proc/loadavg').read().split()[0]}")
    print(err.strip().splitlines()[-1])
    if kept:
        print(kept)
    return 0


def check_bundles(folder: Path) -> str:
    """Every bundle complete (each RST it says it holds is among its packets, with the kernel's
    reason), none half-written; the biggest opened by `explain --json` and drawn by `plot`."""
    from tcpteardown.formats.bundle import load_recording

    paths = sorted(folder.glob("*"))
    parts = [path for path in paths if path.suffix != ".pcapng"]
    bundles = [path for path in paths if path.suffix == ".pcapng"]
    incomplete = 0
    for path in bundles:
        recording = load_recording(path)
        rsts = [segment for segment in recording.segments if segment.is_rst]
        if len(rsts) != int(recording.metadata.get("watch_rsts") or -1) or not all(s.reset_reason for s in rsts):
            incomplete += 1
    if not bundles:
        return f"bundles: none written; {len(parts)} other files"
    biggest = max(bundles, key=lambda path: path.stat().st_size)
    explained = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", "--json", str(biggest)],
                               capture_output=True, text=True)
    plotted = subprocess.run([sys.executable, "-m", "tcpteardown", "plot", str(biggest), "-o",
                              str(folder.parent / "ladder.svg")], capture_output=True, text=True)
    return (f"bundles: {len(bundles)} files, {incomplete} incomplete, {len(parts)} half-written or other; "
            f"the biggest ({biggest.stat().st_size / 1e3:.0f} KB): explain exit {explained.returncode}, "
            f"plot exit {plotted.returncode}")


if __name__ == "__main__":
    sys.exit(main())
