"""Benchmark `tcpteardown census` against dpkt and `tshark -T fields` on one file.

    python bench/census.py [CAPTURE] [--packets N] [--skip-tshark] [--skip-dpkt]

Without CAPTURE it builds (once, cached under bench/data/) a ~1M-packet
loopback capture: tcpdump on `lo` while a bounded load generator on
127.0.0.1 runs connections that end every way census knows (graceful FIN,
client RST, server RST, refused). Prints packets/s for each reader, the
ratios, and our peak RSS. The goals (issue 8): >= 1,000,000 packets/s end to
end, >= 7x dpkt, >= 14x tshark, peak RSS under 300 MB for 1M packets.

Never a test: timing lives here, printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


# -- the load generator ------------------------------------------------------------

def _serve(listener: socket.socket, stop: threading.Event) -> None:
    """Echo server: answers each request line; a request 'RST' makes it reset, 'STOP' stops."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    break
                if not data:
                    break
                if data.startswith(b"RST"):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                try:
                    conn.sendall(b"R" * 120)
                except OSError:
                    break


def generate_load(packets: int, *, exchanges: int = 40) -> dict:
    """Run connections on 127.0.0.1 until about `packets` packets went by. Bounded."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects to it are refused
    refused_port = closed.getsockname()[1]
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(listener, stop), daemon=True)
    server.start()
    counts = {"fin": 0, "rst-client": 0, "rst-server": 0, "refused": 0}
    # ~2 packets per exchange plus handshake and teardown
    per_connection = 2 * exchanges - 10  # measured: ~73 packets for 40 exchanges
    connections = max(1, packets // per_connection)
    try:
        for number in range(connections):
            kind = ("fin", "fin", "fin", "rst-client", "rst-server", "refused")[number % 6]
            if kind == "refused":
                with socket.socket() as client:
                    try:
                        client.connect(("127.0.0.1", refused_port))
                    except ConnectionRefusedError:
                        counts[kind] += 1
                continue
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for _ in range(exchanges):
                    client.sendall(b"Q" * 60)
                    got = 0
                    while got < 120:
                        chunk = client.recv(4096)
                        if not chunk:
                            break
                        got += len(chunk)
                if kind == "rst-client":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif kind == "rst-server":
                    client.sendall(b"RST")
                    try:
                        client.recv(10)
                    except ConnectionResetError:
                        pass
            counts[kind] += 1
    finally:
        stop.set()
        listener.close()
        closed.close()
        server.join(5)
    return counts


def build_capture(path: Path, packets: int) -> Path:
    """tcpdump on lo while the load generator runs; returns the finished file."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        sys.exit("bench/census.py: needs tcpdump to build a capture (or give one: bench/census.py FILE)")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    # -U: write each packet out; -B: a big kernel buffer so nothing drops.
    proc = subprocess.Popen([tcpdump, "-i", "lo", "-n", "-B", "65536", "-w", str(part), "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # "listening on lo, ..." once the capture is open
        if "listening" not in line:
            raise SystemExit(f"tcpdump did not start: {line.strip()}")
        counts = generate_load(packets)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    print(f"built {path}: connections {counts}; tcpdump: {' '.join(err.split())}", file=sys.stderr)
    os.replace(part, path)
    return path


# -- the readers -----------------------------------------------------------------

def run_ours(path: Path) -> tuple[int, int]:
    """File to per-connection table, as `tcpteardown census` does it."""
    from tcpteardown.commands.census import census_file

    result = census_file(str(path))
    return result.packets, len(result.connections)


def run_dpkt(path: Path) -> tuple[int, int]:
    """dpkt's reader and dissector, counting RSTs per 4-tuple (the least it takes)."""
    import dpkt

    packets = 0
    tuples = set()
    with open(path, "rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        for _ts, buf in reader:
            packets += 1
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                if tcp.flags & dpkt.tcp.TH_RST:
                    tuples.add((ip.src, tcp.sport, ip.dst, tcp.dport))
    return packets, len(tuples)


def run_tshark(path: Path) -> tuple[int, int]:
    proc = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.stream", "-e", "tcp.flags"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    lines = proc.stdout.splitlines()
    streams = {line.split(b"\t")[0] for line in lines}
    return len(lines), len(streams)


def _timed(function, path):
    start = time.perf_counter()
    result = function(path)
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", nargs="?", help="a pcap/pcapng file (default: build one)")
    parser.add_argument("--packets", type=int, default=1_000_000, help="size of the built capture")
    parser.add_argument("--skip-tshark", action="store_true")
    parser.add_argument("--skip-dpkt", action="store_true")
    args = parser.parse_args(argv)
    if args.capture:
        path = Path(args.capture)
    else:
        path = DATA / f"loopback-{args.packets}.pcap"
        if not path.exists():
            build_capture(path, args.packets)
    size = path.stat().st_size
    print(f"file: {path} ({size / 1e6:.1f} MB)")
    import tcpteardown.analysis.census  # noqa: F401  (imports are not part of the timing)
    import tcpteardown.commands.census  # noqa: F401
    import tcpteardown.formats.pcap_columns  # noqa: F401

    seconds, (packets, connections) = _timed(run_ours, path)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ours = packets / seconds
    print(f"tcpteardown census: {packets} packets, {connections} connections, {seconds:.2f} s, "
          f"{ours:,.0f} packets/s, peak RSS {peak_mb:.0f} MB")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tcpteardown", "census", "--json", str(path)],
                   stdout=subprocess.DEVNULL, check=True)
    cli = time.perf_counter() - started
    print(f"`tcpteardown census --json` (whole CLI, imports and JSON included): {cli:.2f} s, "
          f"{packets / cli:,.0f} packets/s")
    if not args.skip_dpkt:
        try:
            seconds, (count, _) = _timed(run_dpkt, path)
            rate = count / seconds
            print(f"dpkt:               {count} packets, {seconds:.2f} s, {rate:,.0f} packets/s; "
                  f"ours/dpkt = {ours / rate:.1f}x (goal 7x)")
        except ImportError:
            print("dpkt: not installed (pip install dpkt)")
    if not args.skip_tshark and shutil.which("tshark"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        seconds, (count, streams) = _timed(run_tshark, path)
        rate = count / seconds
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"tshark -T fields:   {count} packets, {streams} streams, {seconds:.2f} s, {rate:,.0f} packets/s, "
              f"peak RSS {max(peak, before):.0f} MB; ours/tshark = {ours / rate:.1f}x (goal 14x)")
    print(f"goal 1,000,000 packets/s: {'met' if ours >= 1_000_000 else 'NOT met'} ({ours:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
