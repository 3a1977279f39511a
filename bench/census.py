"""Benchmark `tcpteardown census` end to end against dpkt and `tshark -T fields`, in one run.

    python bench/census.py [--connections N] [--long-packets N] [--runs N] [--pcapng] [--skip-tshark] [--skip-dpkt]
                           [CAPTURE ...]

Without CAPTURE it measures two captures, built once and reused from
bench/data/ (gitignored), both made by tcpdump on `lo` while a bounded load
generator on 127.0.0.1 runs real sockets:

- short: the hard case, what production gives: >= 100,000 short connections
  (~8 packets each, >= 1M packets) ending every way census knows: FIN sent
  first by the client or by the server, client RST, server RST, refused.
- long: the old case, few connections of ~75 packets (40 request/response
  exchanges each); a favourable workload, printed for comparison only.

Every command runs as a child process (`python -m tcpteardown census`,
`python` + dpkt, `tshark`), timed by wall clock, with the child's own peak
RSS and CPU time from wait4(), in --runs rounds (default 3): each round runs
census, census --json, dpkt and tshark one after the other, and the ratios
are taken round by round, so each compares runs of the same minute; the
bench prints their min/median/max. The goals (issues 13 and 27), on the
short capture: >= 15x dpkt and >= 30x tshark in every round, peak RSS
< 300 MB, for the text table and for --json; without the compiled loops
>= 3x dpkt. Both run with
the compiled loops (tcpteardown/speedups.py) when they are built, and once
more without them (TCPTEARDOWN_PURE_PYTHON=1), for information: that is the
speed where no C compiler was found at install.

Never a test: timing lives here, printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SRC = HERE.parent / "src"
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST


# -- the short-connection load: a selectors server in a child process --------------------

def _short_server(ports_out, ready: "threading.Event | None" = None, count: int = 8) -> None:
    """Serve on `count` ports until stdin closes. Per connection, the first byte asks:
    F: answer, then close after the client's FIN (client ends with FIN)
    B: answer and close at once (server ends with FIN)
    C: answer (the client then resets)
    S: close with SO_LINGER 0 without answering (server RST)."""
    selector = selectors.DefaultSelector()
    listeners = []
    for _ in range(count):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, "listen")
        listeners.append(listener)
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
    ports_out.write(" ".join(str(s.getsockname()[1]) for s in listeners) + "\n")
    ports_out.flush()
    answer = b"R" * 100
    while True:
        for key, _ in selector.select():
            if key.data == "stdin":
                return
            if key.data == "listen":
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(100)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data[:1] in (b"F", b"C"):
                try:
                    conn.send(answer)
                    continue
                except OSError:
                    pass
            elif data[:1] == b"B":
                try:
                    conn.send(answer)
                except OSError:
                    pass
            elif data[:1] == b"S":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            selector.unregister(conn)
            conn.close()


KINDS = ("fin-client", "fin-client", "fin-client", "fin-server", "fin-server",
         "rst-client", "rst-client", "rst-server", "rst-server", "refused")


def short_load(connections: int) -> dict:
    """`connections` short connections to a server child process; bounded (each step times out)."""
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects to it are refused
    counts = dict.fromkeys(sorted(set(KINDS)), 0)
    try:
        ports = [int(p) for p in server.stdout.readline().split()]
        if not ports:
            raise SystemExit("bench server did not start")
        refused = ("127.0.0.1", closed.getsockname()[1])
        for number in range(connections):
            kind = KINDS[number % len(KINDS)]
            with socket.socket() as client:
                client.settimeout(5)
                if kind == "refused":
                    try:
                        client.connect(refused)
                    except ConnectionRefusedError:
                        counts[kind] += 1
                    continue
                client.connect(("127.0.0.1", ports[number % len(ports)]))
                try:
                    client.sendall({"fin-client": b"F", "fin-server": b"B", "rst-client": b"C",
                                    "rst-server": b"S"}[kind])
                    if kind == "fin-server":
                        while client.recv(4096):
                            pass
                    elif kind != "rst-server":
                        client.recv(4096)
                    else:
                        client.recv(4096)  # b"" or ConnectionResetError: the server's RST
                except ConnectionResetError:
                    pass
                if kind == "rst-client":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            counts[kind] += 1
    finally:
        closed.close()
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return counts


# -- the long-connection load (the old bench): 40 exchanges per connection ------------------

def _echo(listener: socket.socket, stop: threading.Event) -> None:
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
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    break
                try:
                    conn.sendall(b"R" * 120)
                except OSError:
                    break


def long_load(packets: int, exchanges: int = 40) -> dict:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    stop = threading.Event()
    server = threading.Thread(target=_echo, args=(listener, stop), daemon=True)
    server.start()
    counts = {"fin": 0, "rst-client": 0, "rst-server": 0, "refused": 0}
    try:
        for number in range(max(1, packets // (2 * exchanges - 10))):
            kind = ("fin", "fin", "fin", "rst-client", "rst-server", "refused")[number % 6]
            if kind == "refused":
                with socket.socket() as client:
                    try:
                        client.connect(("127.0.0.1", closed.getsockname()[1]))
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
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
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


def build_capture(path: Path, load) -> Path:
    """tcpdump on lo while `load()` runs; the finished file appears only when complete."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        sys.exit("bench/census.py: needs tcpdump to build a capture (or give one: bench/census.py FILE)")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    # -B: a big kernel buffer so nothing drops; --immediate-mode: nothing waits in a half-full
    # ring block when SIGINT comes (those packets were lost); the filter keeps other helpers' traffic out.
    proc = subprocess.Popen([tcpdump, "-i", "lo", "-n", "-B", "131072", "-s", "200", "--immediate-mode", "-w", str(part),
                             "tcp and host 127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # "listening on lo, ..." once the capture is open
        if "listening" not in line:
            raise SystemExit(f"tcpdump did not start: {line.strip()}")
        started = time.perf_counter()
        counts = load()
        took = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    print(f"built {path} in {took:.0f} s: connections {counts}; tcpdump: {' '.join(err.split())}",
          file=sys.stderr)
    os.replace(part, path)
    return path


# -- the readers, each a child process ---------------------------------------------------

def reference_dpkt(path: str) -> None:
    """dpkt's reader and dissector, the least a per-connection census takes:
    RST/FIN/SYN flags per 4-tuple. Prints packets and 4-tuples."""
    import dpkt

    packets = 0
    tuples: dict = {}
    with open(path, "rb") as handle:
        reader = dpkt.pcapng.Reader(handle) if path.endswith(".pcapng") else dpkt.pcap.Reader(handle)
        for _ts, buf in reader:
            packets += 1
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                key = (ip.src, tcp.sport, ip.dst, tcp.dport)
                tuples[key] = tuples.get(key, 0) | (tcp.flags & 0x07)
    print(packets, len(tuples))


def measure(command: list, env=None) -> tuple[float, float, bytes, float]:
    """(wall seconds, the child's peak RSS in MB, the first 64 KB of its stdout, its CPU
    seconds, user + system) of one child.

    Output goes to a temporary file, never into this process: a child's peak RSS
    counts what it shared with this process when it was forked, so this one stays small."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        cpu = usage.ru_utime + usage.ru_stime
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): "
                             f"{err.read().decode(errors='replace')[-500:]}")
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read(65536), cpu


def summary_of(results: list) -> tuple[float, float, bytes, float]:
    """(median wall, largest peak RSS, the first run's output, median CPU) of `measure` results."""
    walls = sorted(r[0] for r in results)
    cpus = sorted(r[3] for r in results)
    return walls[len(walls) // 2], max(r[1] for r in results), results[0][2], cpus[len(cpus) // 2]


def median_of(runs: int, command: list, env=None) -> tuple[float, float, bytes, float]:
    """`measure` run `runs` times: the median wall and CPU, the largest peak RSS."""
    return summary_of([measure(command, env) for _ in range(runs)])


def bench_file(path: Path, args) -> dict:
    size = path.stat().st_size
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ours = [sys.executable, "-m", "tcpteardown", "census"]
    runs = args.runs
    commands = {"text": (ours + [str(path)], env), "json": (ours + ["--json", str(path)], env)}
    if not args.skip_dpkt:
        commands["dpkt"] = ([sys.executable, __file__, "--dpkt", str(path)], None)
    if not args.skip_tshark and shutil.which("tshark"):
        commands["tshark"] = (["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.stream", "-e", "tcp.flags"], None)
    # Rounds: each round runs every command once, one after the other, so run i of census and
    # run i of each reference share the same minute of a shared machine; the ratios are
    # taken round by round (min/median/max over the rounds), the table shows medians.
    measured: dict = {mode: [] for mode in commands}
    for _ in range(runs):
        for mode, (command, command_env) in commands.items():
            measured[mode].append(measure(command, command_env))
    results = {mode: summary_of(measured[mode]) for mode in commands}
    walls = {mode: [r[0] for r in measured[mode]] for mode in commands}
    head = results["text"][2].decode().splitlines()[0]
    import json

    # The first line holds everything but the connections (census streams them after it).
    document = json.loads(results["json"][2].split(b"\n", 1)[0].rstrip(b",") + b"}")
    packets, connections = document["packets"], document["summary"]["connections"]
    pure = dict(env, TCPTEARDOWN_PURE_PYTHON="1")
    pure_text = median_of(runs, ours + [str(path)], pure)
    pure_json = median_of(runs, ours + ["--json", str(path)], pure)
    print(f"\n== {path.name}: {size / 1e6:.0f} MB, {packets:,} packets, {connections:,} connections "
          f"({packets / max(connections, 1):.1f} packets each); by end {document['summary']['by_end']}")
    print(f"   {head}")
    names = {"text": "tcpteardown census (text)", "json": "tcpteardown census --json",
             "dpkt": "dpkt (flags per 4-tuple)", "tshark": "tshark -T fields"}
    rows = [(names["text"], *results["text"]), (names["json"], *results["json"]),
            ("  text, pure Python", *pure_text), ("  --json, pure Python", *pure_json)]
    rows += [(names[mode], *results[mode]) for mode in ("dpkt", "tshark") if mode in results]
    print(f"   median of {runs} rounds (each round: census, census --json, dpkt, tshark, one after the other)")
    print(f"   {'command':<28}{'wall s':>8}{'cpu s':>8}{'packets/s':>13}{'peak RSS MB':>13}")
    for name, wall, rss, _out, cpu in rows:
        print(f"   {name:<28}{wall:>8.2f}{cpu:>8.2f}{packets / wall:>13,.0f}{rss:>13.0f}")
    for mode in ("text", "json"):
        rss = results[mode][1]
        print(f"   census {mode:<5}: peak RSS {rss:.0f} MB (goal < 300: {'met' if rss < 300 else 'NOT met'})")
        for reference, goal in (("dpkt", 15), ("tshark", 30)):
            if reference in walls:
                ratios = sorted(ref / ours_wall for ref, ours_wall in zip(walls[reference], walls[mode]))
                print(f"   census {mode:<5}: x {reference} per round min/median/max {ratios[0]:.1f} / "
                      f"{ratios[len(ratios) // 2]:.1f} / {ratios[-1]:.1f} (goal >= {goal}x in every round: "
                      f"{'met' if ratios[0] >= goal else 'NOT met'})")
    for mode, (wall, _rss, _out, _cpu) in (("text", pure_text), ("json", pure_json)):
        if "dpkt" in results:
            ratio = results["dpkt"][0] / wall
            print(f"   census {mode:<5}, pure Python: {ratio:.1f}x dpkt (medians; goal >= 3x: "
                  f"{'met' if ratio >= 3 else 'NOT met'})")
    print(f"   load average: {open('/proc/loadavg').read().strip()}")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", nargs="*", help="pcap/pcapng files (default: the built short and long captures)")
    parser.add_argument("--connections", type=int, default=130_000, help="short connections in the built capture")
    parser.add_argument("--long-packets", type=int, default=1_000_000, help="packets in the built long capture")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command; the median is printed (default 3)")
    parser.add_argument("--skip-tshark", action="store_true")
    parser.add_argument("--skip-dpkt", action="store_true")
    parser.add_argument("--build-only", action="store_true", help="build the captures and stop")
    parser.add_argument("--pcapng", action="store_true",
                        help="also the short capture converted to pcapng by editcap (what dumpcap writes)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the load's server child
    parser.add_argument("--dpkt", metavar="FILE", help=argparse.SUPPRESS)  # the dpkt reference child
    args = parser.parse_args(argv)
    if args.serve:
        _short_server(sys.stdout)
        return 0
    if args.dpkt:
        reference_dpkt(args.dpkt)
        return 0
    paths = [Path(p) for p in args.capture]
    if not paths:
        short = DATA / f"short-{args.connections}.pcap"
        long = DATA / f"long-{args.long_packets}.pcap"
        if not short.exists():
            build_capture(short, lambda: short_load(args.connections))
        if not long.exists():
            build_capture(long, lambda: long_load(args.long_packets))
        paths = [short, long]
        if args.pcapng:  # the short capture as Wireshark's dumpcap would write it (EPBs)
            converted = short.with_suffix(".pcapng")
            if not converted.exists():
                subprocess.run(["editcap", "-F", "pcapng", str(short), str(converted)], check=True)
            paths.append(converted)
    if args.build_only:
        return 0
    # Byte-compile tcpteardown first, as any installed copy is: where PYTHONDONTWRITEBYTECODE
    # is set (it is on this machine) every child would otherwise compile each module again.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(SRC / "tcpteardown")], check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONDONTWRITEBYTECODE=""))
    engine = subprocess.run([sys.executable, "-c", "from tcpteardown import speedups; print(speedups.ENGINE)"],
                            env=dict(os.environ, PYTHONPATH=str(SRC)), capture_output=True, text=True).stdout.strip()
    print(f"speedups: {engine} (tcpteardown/speedups.py; 'python' means _speedups.c was not built)")
    print(f"machine: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs "
          f"({_cpu_model()}), Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for path in paths:
        bench_file(path, args)
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
