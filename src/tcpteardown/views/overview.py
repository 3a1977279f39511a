"""A compact overview of a capture with many connections.

One row per connection: a bar from its first to its last segment on a
shared time axis, coloured by how it ended (fin blue, rst red, refused
orange, open grey), a red mark at each failing socket call, and the 4-tuple
and ending written beside it. The row to zoom into with
`tcpteardown plot --conn N` is the one with its index.

Must never touch pyplot's global state or the file system: it returns a
`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from typing import Optional

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..model import Recording
from . import style
from .connections import ENDINGS, connections
from .timeaxis import format_elapsed

__all__ = ["draw_overview", "MAX_ROWS"]

MAX_ROWS = 300  # more connections than this: the first ones, and a note saying how many more
ROW_IN = 0.26
LABEL_IN = 4.6  # the text column: index, client -> server, ending
PLOT_IN = 6.4


def draw_overview(recording: Recording, *, highlight: Optional[int] = None, ax=None) -> Figure:
    """One row per connection of `recording`, coloured by how it ended."""
    found = connections(recording)
    shown = found[:MAX_ROWS]
    with style.figure_style():
        rows = max(len(shown), 1)
        header_in, footer_in = 0.9, 0.75
        if ax is None:
            width = LABEL_IN + PLOT_IN + 0.4
            height = header_in + rows * ROW_IN + footer_in
            figure = Figure(figsize=(width, height))
            ax = figure.add_axes((LABEL_IN / width, footer_in / height, PLOT_IN / width, rows * ROW_IN / height))
        else:
            figure = ax.figure
        origin = min((c.start_ns for c in shown), default=0)
        span = max((c.end_ns - origin for c in shown), default=0) or 1
        ax.set_ylim(rows - 0.5, -0.5)
        ax.set_xlim(-0.01 * span / 1e6, span * 1.01 / 1e6)
        ax.set_yticks([])
        for spine in ("top", "right", "left"):
            ax.spines[spine].set_visible(False)
        ax.set_xlabel(f"milliseconds since the first segment (span {format_elapsed(span)})", fontsize=style.SMALL)
        ax.tick_params(labelsize=style.SMALL)
        min_width = span / 1e6 * 0.004
        for row, conn in enumerate(shown):
            colour = style.ENDING_COLOURS[conn.ending]
            start = (conn.start_ns - origin) / 1e6
            width = max((conn.end_ns - conn.start_ns) / 1e6, min_width)
            ax.barh(row, width, left=start, height=0.62, color=colour, gid=f"connection-{conn.index}",
                    edgecolor="black" if conn.index == highlight else colour, linewidth=1.5)
            failures = [c for c in conn.calls if c.failed]
            if failures:
                ax.add_line(Line2D([(c.end_ns - origin) / 1e6 for c in failures], [row] * len(failures),
                                   marker="X", markersize=8, color=style.FAILURE, markeredgecolor="white",
                                   linestyle="none", zorder=5, gid=f"failures-{conn.index}"))
            text = f"{conn.index:>3}  {conn.client} → {conn.server}  {conn.ending}"
            ax.annotate(text, (0, row), xycoords=("axes fraction", "data"), xytext=(-8, 0),
                        textcoords="offset points", ha="right", va="center", fontsize=style.SMALL,
                        family="DejaVu Sans Mono", color=colour if conn.ending != "open" else style.MUTED,
                        fontweight="bold" if conn.index == highlight else "normal")
        name = recording.metadata.scenario or (recording.metadata.source_file or "recording").rsplit("/", 1)[-1]
        counts = {ending: sum(1 for c in found if c.ending == ending) for ending in ENDINGS}
        summary = ", ".join(f"{n} {ending}" for ending, n in counts.items() if n)
        ax.annotate(f"{name}: {len(found)} TCP connections ({summary or 'none'})", (0, 1),
                    xycoords="axes fraction", xytext=(-LABEL_IN * 72 + 10, 30), textcoords="offset points",
                    fontsize=style.TITLE, fontweight="bold", va="bottom")
        if len(found) > len(shown):
            ax.annotate(f"… and {len(found) - len(shown)} more (tcpteardown plot --conn N draws any of them)",
                        (0, 1), xycoords="axes fraction", xytext=(-LABEL_IN * 72 + 10, 12),
                        textcoords="offset points", fontsize=style.SMALL, color=style.MUTED, va="bottom")
        handles = [Patch(color=style.ENDING_COLOURS[e], label=e) for e in ENDINGS if counts[e]]
        if any(c.first_failure for c in shown):
            handles.append(Line2D([], [], marker="X", color=style.FAILURE, linestyle="none", label="failed call"))
        if handles:
            ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1), ncol=len(handles),
                      frameon=False, fontsize=style.SMALL)
        return figure
