"""Benchmark the ladder: a 200-segment connection drawn and written as PNG.

    python bench/ladder.py [--segments N] [--repeat R] [--format png|svg|pdf]

Builds a recording shaped like a real loopback exchange (handshake, request
and response pairs with their ACKs and socket calls, an RST at the end that
fails the last write), then times `draw_ladder` + `save_figure`. Prints the
best of R runs, the split between drawing and writing, and the ratio to a
bare matplotlib reference drawing the same number of arrows and labels (the
floor for any ladder drawn with matplotlib). Goal (issue 4): under 1 s for
200 segments to PNG.

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
    return Recording(tuple(segments), tuple(calls), metadata=Metadata(scenario="bench-200", os="Linux",
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
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--format", choices=("png", "svg", "pdf"), default="png")
    args = parser.parse_args()

    recording = build(args.segments)
    links = correlate(recording)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"ladder.{args.format}"
        draw = best_of(args.repeat, lambda: draw_ladder(recording, links))
        total = best_of(args.repeat, lambda: save_figure(draw_ladder(recording, links), out))
        cpu = best_of(args.repeat, lambda: save_figure(draw_ladder(recording, links), out), time.process_time)
        floor = best_of(args.repeat, lambda: reference(args.segments, Path(tmp) / f"ref.{args.format}"))
        size = out.stat().st_size
    print(f"ladder: {len(recording.segments)} segments, {len(recording.calls)} socket calls, "
          f"{len(links)} links -> {args.format.upper()} ({size / 1024:.0f} KiB)")
    print(f"  draw_ladder          {draw * 1000:7.0f} ms")
    print(f"  draw + save_figure   {total * 1000:7.0f} ms   (goal < {GOAL_S * 1000:.0f} ms: "
          f"{'met' if total < GOAL_S else 'NOT met'}, {total / GOAL_S:.2f}x the goal)")
    print(f"  ... of which CPU     {cpu * 1000:7.0f} ms   (wall minus CPU: time lost to other processes, "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"  bare matplotlib ref  {floor * 1000:7.0f} ms   (ladder / reference = {total / floor:.2f}x)")


if __name__ == "__main__":
    main()
