"""Benchmark the ladder: a short and a long connection drawn and written as PNG.

    python bench/ladder.py [--short N] [--segments N] [--repeat R] [--format png|svg|pdf]

Builds recordings shaped like a real loopback exchange (handshake, request
and response pairs with their ACKs and socket calls, an RST at the end that
fails the last write), then times `draw_ladder` + `save_figure` for a
20-segment and a 2,000-segment connection in the same run. Prints the best
of R runs, the split between drawing and writing, and the ratio to a bare
matplotlib reference drawing the short ladder's number of arrows and labels
(the floor for any ladder drawn with matplotlib). Goals: the long
connection, its bulk folded into a band (`analysis.elide`), in at most 1.5x
the short one's time (issue 13); under 1 s either way (issue 4). `--full`
draws every segment of the long one too, for comparison.

Never a test: timing lives here, printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tcpteardown.analysis.correlate import correlate
from tcpteardown.model import Endpoint, Metadata, Recording, Segment, SocketCall, TcpFlags
from tcpteardown.views.ladder import draw_ladder
from tcpteardown.views.style import figure_style, save_figure

GOAL_S = 1.0
RATIO_GOAL = 1.5  # long / short, in the same run
CLIENT, SERVER = Endpoint("127.0.0.1", 50000), Endpoint("127.0.0.1", 8080)
T0 = 1_795_290_000_000_000_000


def build(n_segments: int) -> Recording:
    flags = TcpFlags.parse
    segments, calls = [], []
    t = T0
    c_seq, s_seq = 1000, 5000

    def seg(src, dst, f, seq, ack, length=0):
        nonlocal t
        t += 12_000  # 12 µs apart, as on loopback
        segments.append(Segment(len(segments) + 1, t, src, dst, flags(f), seq, ack, 65483, length))

    def call(role, op, start, end, result, errno=None):
        local, remote = (CLIENT, SERVER) if role == "client" else (SERVER, CLIENT)
        calls.append(SocketCall(role, op, start, end, result, errno, 1, 3 if role == "client" else 4, local, remote))

    start = t
    seg(CLIENT, SERVER, "SYN", c_seq, 0)
    seg(SERVER, CLIENT, "SYN,ACK", s_seq, c_seq + 1)
    seg(CLIENT, SERVER, "ACK", c_seq + 1, s_seq + 1)
    call("client", "connect", start - 5_000, t + 5_000, 0)
    c_seq, s_seq = c_seq + 1, s_seq + 1
    while len(segments) < n_segments - 2:
        begin = t
        seg(CLIENT, SERVER, "PSH,ACK", c_seq, s_seq, 100)
        c_seq += 100
        seg(SERVER, CLIENT, "ACK", s_seq, c_seq)
        call("client", "send", begin + 1_000, t + 1_000, 100)
        t += 30_000
    seg(SERVER, CLIENT, "RST,ACK", s_seq, c_seq)
    call("client", "send", t + 20_000, t + 25_000, -1, "ECONNRESET")
    return Recording(tuple(segments), tuple(calls), metadata=Metadata(scenario=f"bench-{n_segments}", os="Linux",
                                                                      kernel="bench", started_ns=T0))


def reference(n_segments: int, path: Path) -> None:
    """Bare matplotlib: n arrows and n labels on a page of the same size."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    with figure_style():
        figure = Figure(figsize=(12, 0.3 * n_segments * 1.3 + 2.5))
        ax = figure.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, 1)
        ax.set_ylim(n_segments * 1.3, -1)
        ax.set_axis_off()
        for i in range(n_segments):
            ax.add_artist(FancyArrowPatch((0.3, i * 1.3), (0.7, i * 1.3), arrowstyle="-|>", mutation_scale=14))
            ax.text(0.5, i * 1.3 - 0.1, f"#{i + 1} PSH,ACK seq={i} ack={i} len=100", ha="center", va="bottom")
        figure.savefig(path, dpi=110)


def best_of(repeat: int, work, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        began = clock()
        work()
        times.append(clock() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--segments", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", choices=("png", "svg", "pdf"), default="png")
    parser.add_argument("--full", action="store_true", help="also time the long one with every segment drawn")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"ladder.{args.format}"
        cases = [("short", args.short, False), ("long", args.segments, False)]
        if args.full:
            cases.append(("long --full", args.segments, True))
        built = {name: (build(size), full) for name, size, full in cases}
        links = {name: correlate(recording) for name, (recording, _) in built.items()}

        def work(name):
            recording, full = built[name]
            return lambda: save_figure(draw_ladder(recording, links[name], full=full), out)

        # Interleaved, best of R each: load from the other processes on this machine drifts,
        # and must not favour whichever case happened to run in a quiet second.
        wall = {name: [] for name in built}
        cpu = {name: [] for name in built}
        for _ in range(args.repeat):
            for name in built:
                wall[name].append(best_of(1, work(name)))
                cpu[name].append(best_of(1, work(name), time.process_time))
        for name, (recording, full) in built.items():
            draw = best_of(args.repeat, lambda: draw_ladder(recording, links[name], full=full))
            work(name)()
            height = draw_ladder(recording, links[name], full=full).get_size_inches()[1]
            total, used = min(wall[name]), min(cpu[name])
            results[name] = (total, used)
            print(f"{name}: {len(recording.segments)} segments, {len(recording.calls)} socket calls, "
                  f"{len(links[name])} links -> {args.format.upper()} ({out.stat().st_size / 1024:.0f} KiB, "
                  f"{height:.1f} in tall)")
            print(f"  draw_ladder          {draw * 1000:7.0f} ms")
            print(f"  draw + save_figure   {total * 1000:7.0f} ms   (goal < {GOAL_S * 1000:.0f} ms: "
                  f"{'met' if total < GOAL_S else 'NOT met'})")
            print(f"  ... of which CPU     {used * 1000:7.0f} ms")
        floor = best_of(args.repeat, lambda: reference(args.short, Path(tmp) / f"ref.{args.format}"))
    ratio = results["long"][0] / results["short"][0]
    print(f"long / short = {ratio:.2f}x wall, {results['long'][1] / results['short'][1]:.2f}x CPU   "
          f"(goal <= {RATIO_GOAL}x: {'met' if ratio <= RATIO_GOAL else 'NOT met'})")
    print(f"bare matplotlib ref, {args.short} arrows: {floor * 1000:.0f} ms "
          f"(short ladder / reference = {results['short'][0] / floor:.2f}x); "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
