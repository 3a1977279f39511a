"""record's pace: the load generator untraced and under `tcpteardown record`, in one run.

    .venv/bin/python bench/record_pace.py [--rate 2500] [--seconds 2]

Runs bench/programs/short_connections.py (connect, write, read, close at a
fixed rate; every 10th reset, every 25th refused) once untraced and once
under record, prints both rates and their ratio (goal >= 70 %), then checks
the bundle against the program's own ground truth: one SYN per connection
made and one RST per reset or refusal, and every failing call the program
counted (per errno name) among the tracer's calls, and how many failing
calls explain links (and why the others are not). With --repeat N the load
is recorded N times per tracer: eBPF's exactness must hold on every run.
record's own cost lines say what bpftrace lost, how long it took to attach
and to stop, and the calls' clock check against the SYNs. Then the same for
a single connection (its wall-time overhead). Root for the capture and the
witness.
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "programs" / "short_connections.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv: list[str]) -> tuple[dict, float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    took = time.monotonic() - started
    return json.loads(done.stdout.strip().splitlines()[-1]), took, done.stderr


def _is_ack(segment) -> bool:
    from tcpteardown.model import TcpFlags

    return bool(int(segment.flags) & int(TcpFlags.ACK))


def check_bundle(bundle: Path, result: dict, port: int, refused_port: int, source: str) -> list[str]:
    from tcpteardown.formats.bundle import load_recording

    rec = load_recording(bundle)
    ports = {port, refused_port}
    ours = [s for s in rec.segments if {s.src.port, s.dst.port} & ports]
    syns = sum(1 for s in ours if s.is_syn and s.dst.port in ports and not _is_ack(s))
    rsts = sum(1 for s in ours if s.is_rst)
    failing = {}
    unnamed = 0
    for call in rec.calls:
        if call.source == source and call.errno and call.remote is not None and call.remote.port in ports:
            failing[call.errno] = failing.get(call.errno, 0) + 1
            unnamed += call.local is None
    lines = [f"bundle: {syns} SYNs for {result['connections']} connections, {rsts} RSTs for "
             f"{sum(result['failures'].values())} failing connections; failing calls from {source} "
             f"{failing} vs the program's {result['failures']}; {unnamed} failing calls without a local end"]
    for name, count in result["failures"].items():
        if failing.get(name, 0) < count:
            lines.append(f"MISSING: {count - failing.get(name, 0)} {name} calls not in the bundle")
    if syns < result["connections"]:
        lines.append(f"MISSING: {result['connections'] - syns} SYNs")
    return lines


def linked(bundle: Path) -> str:
    """How many failing calls explain links to a packet, and how many it could not."""
    done = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", "--json", str(bundle)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"explain: FAILED ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})"
    found = json.loads(done.stdout)
    failing = [link for link in found["links"] if link["call"]["errno"]]
    to_packet = sum(1 for link in failing if link["cause"]["frame"] is not None)
    why = collections.Counter(item["why"][:90] for item in found["unlinked"]).most_common(3)
    return (f"explain: {to_packet} of {len(failing)} failing calls (EOF included) linked to a packet, "
            f"{len(found['unlinked'])} unlinked" + "".join(f"; {n} x {text}" for text, n in why))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2500.0)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--calls", default="strace,ebpf", help="call tracers to compare (default strace,ebpf)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="record the load this many times with each tracer (exactness: unlinked calls, "
                             "lost events and the clock check of every run)")
    args = parser.parse_args()
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    with tempfile.TemporaryDirectory(prefix="record-pace-") as tmp:
        for rate, seconds, label in ((args.rate, args.seconds, "load"), (1.0, 1.0, "single connection")):
            port, refused = free_port(), free_port()
            program = [sys.executable, str(PROGRAM), "--port", str(port), "--refused-port", str(refused),
                       "--rate", str(rate), "--seconds", str(seconds)]
            plain, plain_s, _ = run(program)
            print(f"{label}: untraced {plain['rate']}/s ({plain['connections']} connections), wall time {plain_s:.2f} s")
            runs = [(tracer, n) for tracer in args.calls.split(",") for n in range(args.repeat if label == "load" else 1)]
            for tracer, n in runs:
                bundle = Path(tmp) / f"{label.replace(' ', '_')}-{tracer}-{n}.pcapng"
                traced, traced_s, said = run([sys.executable, "-m", "tcpteardown", "record", "--calls", tracer,
                                              "-o", str(bundle), "--", *program])
                print(f"  under record --calls {tracer}{f' (run {n + 1})' if args.repeat > 1 else ''}: {traced['rate']}/s ({traced['connections']}): ratio "
                      f"{traced['rate'] / max(plain['rate'], 1e-9):.0%} of untraced (goal >= 70 %); wall time "
                      f"{traced_s:.2f} s (+{traced_s - plain_s:.2f} s)")
                for line in said.splitlines():
                    if line.startswith("tcpteardown record:") and "witness and capture disagree" not in line:
                        print(f"    {line}")
                disagree = sum("witness and capture disagree" in line for line in said.splitlines())
                if disagree:
                    print(f"    tcpteardown record: {disagree} witness/capture disagreements (lines left out)")
                for line in check_bundle(bundle, traced, port, refused, tracer):
                    print(f"    {line}")
                print(f"    {linked(bundle)}")
    print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
