"""Census plot: how connections ended, over time (one row per end kind, one dot per connection).

A dot sits at the time of the connection's first FIN or RST (or its last
packet when still open); filled when the client ended it, hollow when the
server did. Above, a histogram of ends per time bin shows bursts of RSTs at
a glance. Draws with matplotlib's Agg backend; never reads files or runs
analysis: it takes a finished `Census`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..analysis.census import END_KINDS, Census

# One colour per end kind; the narrative and ladder use the same reds for RST.
END_COLOURS = {"fin": "#2b8a3e", "rst": "#c92a2a", "refused": "#e67700", "open": "#868e96"}


def census_figure(result: Census, *, title: Optional[str] = None):
    """A matplotlib Figure of `result` (Agg; the caller saves or shows it)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5), layout="constrained")
    bins_axes, dots_axes = figure.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    connections = result.connections
    origin = min((c.start_ns for c in connections), default=0)

    def when(connection) -> float:
        moment = connection.end_time_ns if connection.end_time_ns is not None else connection.end_ns
        return (moment - origin) / 1e9

    times_by_kind = {kind: [when(c) for c in connections if c.end == kind] for kind in END_KINDS}
    all_times = [t for times in times_by_kind.values() for t in times]
    span = max(all_times, default=0.0)
    bins = max(1, min(100, len(all_times) // 5 or 1))
    bins_axes.hist([times_by_kind[k] for k in END_KINDS], bins=bins, range=(0, span or 1.0), stacked=True,
                   color=[END_COLOURS[k] for k in END_KINDS], label=list(END_KINDS))
    bins_axes.set_ylabel("connections ended")
    bins_axes.legend(loc="upper right", fontsize="small", ncols=4)

    for row, kind in enumerate(END_KINDS):
        for side, filled in (("client", True), ("server", False), (None, True)):
            times = [when(c) for c in connections if c.end == kind and c.ended_by == side]
            if not times:
                continue
            colour = END_COLOURS[kind]
            dots_axes.scatter(times, [row] * len(times), s=18, marker="o",
                              facecolors=colour if filled else "none", edgecolors=colour, linewidths=1,
                              label=f"{kind} by {side}" if side else kind)
    counts = result.by_end()
    dots_axes.set_yticks(range(len(END_KINDS)), [f"{k} ({counts[k]})" for k in END_KINDS])
    dots_axes.set_ylim(-0.6, len(END_KINDS) - 0.4)
    dots_axes.set_xlabel("seconds since the first connection began")
    dots_axes.legend(loc="upper left", fontsize="x-small", ncols=3, bbox_to_anchor=(0, -0.18))
    dots_axes.grid(axis="x", alpha=0.3)
    figure.suptitle(title or f"How {len(connections)} TCP connections ended (filled: client ended it; "
                    "hollow: server)", fontsize="medium")
    return figure


def save_census_plot(result: Census, path: "str | Path", *, title: Optional[str] = None) -> Path:
    """Draw and save (png, svg or pdf by suffix)."""
    path = Path(path)
    figure = census_figure(result, title=title)
    figure.savefig(path)
    return path
