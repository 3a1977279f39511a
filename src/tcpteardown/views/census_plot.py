"""Census plot: how connections ended, over time, readable at any number of connections.

Up to `AGGREGATE_ABOVE` connections: one dot per connection, at the time of
its first FIN or RST (or its last packet when still open), one row per end
kind; filled when the client ended it, hollow when the server did. Above
that, the aggregate (`draw_ends`): connection ends per time bin by kind
(fin/rst/refused/open), the same bins split by side (client-ended above
the axis, server-ended below), and the first failing connections called out
by name. Both fit one page whatever the size of the capture.

Draws with matplotlib's Agg backend from a finished `Census`'s columns
(never one object per connection); never reads files or runs analysis.
The overview of a recording with many connections (`views.overview`) draws
the same aggregate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..analysis.census import END_KINDS, Census

__all__ = ["AGGREGATE_ABOVE", "END_COLOURS", "census_figure", "draw_ends", "save_census_plot"]

# One colour per end kind; the narrative and ladder use the same reds for RST.
END_COLOURS = {"fin": "#2b8a3e", "rst": "#c92a2a", "refused": "#e67700", "open": "#868e96"}
AGGREGATE_ABOVE = 40  # more connections than this: bins, not one mark each
CALLED_OUT = 8  # failing connections named under the aggregate
MAX_BINS = 120


def _relative_seconds(times_ns, origin) -> np.ndarray:
    """Seconds since `origin`, as floats (garbage times beyond int64 come as Python ints)."""
    if getattr(times_ns, "dtype", None) == object:
        return np.array([(t - origin) / 1e9 for t in times_ns], dtype=float)
    return (np.asarray(times_ns, dtype=np.int64) - np.int64(origin)) / 1e9


def _bins(seconds: np.ndarray) -> np.ndarray:
    """Bin edges over the finite times; never an empty range (one instant, one far outlier)."""
    finite = seconds[np.isfinite(seconds)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if not high > low:
        high = low + 1.0
    count = int(min(MAX_BINS, max(1, len(finite) // 5)))
    return np.linspace(low, high, count + 1)


def draw_ends(kinds_axes, sides_axes, seconds: np.ndarray, kinds: np.ndarray, by_client: np.ndarray, *,
              failures: Sequence[float] = ()) -> None:
    """The aggregate: ends per bin stacked by kind on `kinds_axes`; on `sides_axes`, the
    same split by side (client-ended up, server-ended down). `kinds` index END_KINDS;
    `failures` are times (s) of failed socket calls, marked on the top axis."""
    edges = _bins(seconds)
    width = edges[1] - edges[0]
    left = edges[:-1]
    stacked = np.zeros(len(left))
    up, down = np.zeros(len(left)), np.zeros(len(left))
    for index, kind in enumerate(END_KINDS):
        mine = kinds == index
        counts, _ = np.histogram(seconds[mine], bins=edges)
        if not counts.any():
            continue
        colour = END_COLOURS[kind]
        kinds_axes.bar(left, counts, width=width, bottom=stacked, align="edge", color=colour,
                       label=f"{kind} ({int(mine.sum()):,})", linewidth=0)
        stacked += counts
        if kind == "open":
            continue
        client, _ = np.histogram(seconds[mine & by_client], bins=edges)
        server, _ = np.histogram(seconds[mine & ~by_client], bins=edges)
        if client.any():
            sides_axes.bar(left, client, width=width, bottom=up, align="edge", color=colour, linewidth=0,
                           label=f"{kind} by client ({int(client.sum()):,})")
        if server.any():
            sides_axes.bar(left, -server, width=width, bottom=-down, align="edge", color=colour, linewidth=0,
                           alpha=0.55, hatch="///", label=f"{kind} by server ({int(server.sum()):,})")
        up += client
        down += server
    if len(failures):
        top = max(float(stacked.max()), 1.0)
        kinds_axes.plot(failures, [top * 1.05] * len(failures), linestyle="none", marker="X", color="#c62828",
                        markersize=6, label=f"failed socket call ({len(failures):,})")
    kinds_axes.set_ylabel("connections ended")
    if kinds_axes.get_legend_handles_labels()[0]:
        kinds_axes.legend(loc="upper right", fontsize="small", ncols=5)
    sides_axes.axhline(0, color="black", linewidth=0.8)
    sides_axes.set_ylabel("ended by client ↑  server ↓")
    if sides_axes.get_legend_handles_labels()[0]:
        sides_axes.legend(loc="upper left", fontsize="x-small", ncols=3, bbox_to_anchor=(0, -0.22))
    sides_axes.set_xlabel("seconds since the first connection began")
    for axes in (kinds_axes, sides_axes):
        axes.grid(axis="x", alpha=0.3)


def _called_out(result: Census, seconds: np.ndarray) -> list[str]:
    """One line for each of the first failing connections (RST or refused, by end time)."""
    chosen = result.failing_first(CALLED_OUT)
    lines = []
    for connection in result.iter_connections(chosen):
        if connection.end not in ("rst", "refused"):
            break
        lines.append(f"stream {connection.stream}: {connection.client} → {connection.server} {connection.end} "
                     f"by {connection.ended_by} at {seconds[connection.stream]:.3f} s, frame {connection.end_frame}")
    failing = int(np.count_nonzero((result.end_kind == 1) | (result.end_kind == 2)))
    if failing > len(lines):
        lines.append(f"… and {failing - len(lines):,} more RST/refused (tcpteardown census --json lists all)")
    return lines


def census_figure(result: Census, *, title: Optional[str] = None, failures_ns: Sequence[int] = (),
                  notes: Sequence[str] = ()):
    """A matplotlib Figure of `result` (Agg; the caller saves or shows it). Same size at any count.

    `failures_ns`: times of failed socket calls to mark (the overview passes them);
    `notes`: lines written above the called-out connections."""
    from matplotlib.figure import Figure

    count = len(result)
    origin = min(result.start_times_ns().tolist(), default=0)
    seconds = _relative_seconds(result.end_times_ns(), origin)
    failures = _relative_seconds(np.array(list(failures_ns), dtype=object), origin) if len(failures_ns) else ()
    kinds, by_client = result.end_kind, result.ended_by_client.astype(bool)
    figure = Figure(figsize=(10, 6.5 if count > AGGREGATE_ABOVE else 5), layout="constrained")
    if count > AGGREGATE_ABOVE:
        kinds_axes, sides_axes, text_axes = figure.subplots(3, 1, sharex=False, height_ratios=(2, 2, 1))
        sides_axes.sharex(kinds_axes)
        draw_ends(kinds_axes, sides_axes, seconds, kinds, by_client, failures=failures)
        text_axes.axis("off")
        lines = [*notes, *_called_out(result, seconds)]
        text_axes.text(0, 1, "\n".join(lines) or "no connection ended with an RST",
                       va="top", ha="left", fontsize="x-small", family="DejaVu Sans Mono")
        default = f"How {count:,} TCP connections ended"
    else:
        bins_axes, dots_axes = figure.subplots(2, 1, sharex=True, height_ratios=(1, 2))
        _draw_dots(bins_axes, dots_axes, result, seconds, kinds, by_client)
        default = f"How {count} TCP connections ended"
        title = (title or default) + " (filled: client ended it; hollow: server)"
    figure.suptitle(title or default, fontsize="medium")
    return figure


def _draw_dots(bins_axes, dots_axes, result: Census, seconds, kinds, by_client) -> None:
    edges = _bins(seconds)
    bins_axes.hist([seconds[kinds == i] for i in range(len(END_KINDS))], bins=edges, stacked=True,
                   color=[END_COLOURS[k] for k in END_KINDS], label=list(END_KINDS))
    bins_axes.set_ylabel("connections ended")
    bins_axes.legend(loc="upper right", fontsize="small", ncols=4)
    ended = kinds != END_KINDS.index("open")
    for row, kind in enumerate(END_KINDS):
        for side, mask, filled in (("client", ended & by_client, True), ("server", ended & ~by_client, False),
                                   (None, ~ended, True)):
            times = seconds[(kinds == row) & mask]
            if not len(times):
                continue
            colour = END_COLOURS[kind]
            dots_axes.scatter(times, [row] * len(times), s=18, marker="o",
                              facecolors=colour if filled else "none", edgecolors=colour, linewidths=1,
                              label=f"{kind} by {side}" if side else kind)
    counts = result.by_end()
    dots_axes.set_yticks(range(len(END_KINDS)), [f"{k} ({counts[k]})" for k in END_KINDS])
    dots_axes.set_ylim(-0.6, len(END_KINDS) - 0.4)
    dots_axes.set_xlabel("seconds since the first connection began")
    if dots_axes.get_legend_handles_labels()[0]:  # nothing to name in an empty capture
        dots_axes.legend(loc="upper left", fontsize="x-small", ncols=3, bbox_to_anchor=(0, -0.18))
    dots_axes.grid(axis="x", alpha=0.3)


def save_census_plot(result: Census, path: "str | Path", *, title: Optional[str] = None) -> Path:
    """Draw and save (png, svg or pdf by suffix)."""
    path = Path(path)
    figure = census_figure(result, title=title)
    figure.savefig(path)
    return path
