"""A compact overview of a capture with many connections.

Above `census_plot.AGGREGATE_ABOVE` connections it is the census aggregate
(connection ends over time by kind and by side, failed socket calls marked,
the first failing connections named): one page at any size. Otherwise one
row per connection: a bar from its first to its last segment on a
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

from ..analysis.census import census
from ..analysis.connections import ENDINGS, connections
from ..model import Recording
from . import style
from .census_plot import AGGREGATE_ABOVE, census_figure
from .timeaxis import DEFAULT_BREAK_NS, build_time_axis, format_elapsed

__all__ = ["draw_overview", "MAX_ROWS"]

MAX_ROWS = 300  # more connections than this: the first ones, and a note saying how many more
ROW_IN = 0.26
PLOT_IN = 5.6
CHAR_IN = 0.6 * style.SMALL / 72  # one character of the monospaced row labels


def _row_labels(shown) -> list[str]:
    """`  3  10.0.0.1:5000 → 10.0.0.2:80   rst`, columns aligned."""
    client_w = max((len(str(c.client)) for c in shown), default=0)
    server_w = max((len(str(c.server)) for c in shown), default=0)
    index_w = len(str(max((c.index for c in shown), default=0)))
    return [f"{c.index:>{index_w}}  {str(c.client):<{client_w}} → {str(c.server):<{server_w}}  {c.ending}"
            for c in shown]


def draw_overview(recording: Recording, *, highlight: Optional[int] = None, ax=None) -> Figure:
    """One row per connection of `recording`, coloured by how it ended.

    The time axis is compressed like the ladder's: every start, end and
    failure keeps its order, idle gaps become dotted breaks labelled with
    the real time they hide (captures often span hours between bursts).
    Above AGGREGATE_ABOVE TCP connections (and without `ax`): the aggregate.
    """
    if ax is None and len(recording.segments) > 2 * AGGREGATE_ABOVE:
        result = census(recording.segments)
        if len(result) > AGGREGATE_ABOVE:
            return _aggregate(recording, result, highlight)
    found = connections(recording)
    shown = found[:MAX_ROWS]
    labels = _row_labels(shown)
    label_in = max((len(text) for text in labels), default=20) * CHAR_IN + 0.5
    with style.figure_style():
        rows = max(len(shown), 1)
        header_in, footer_in = 1.0, 0.75
        if ax is None:
            width = label_in + PLOT_IN + 0.3
            height = header_in + rows * ROW_IN + footer_in
            figure = Figure(figsize=(width, height))
            ax = figure.add_axes((label_in / width, footer_in / height, PLOT_IN / width, rows * ROW_IN / height))
        else:
            figure = ax.figure
        events = [(c.start_ns, 1.0) for c in shown] + [(c.end_ns, 1.0) for c in shown]
        events += [(call.end_ns, 1.0) for c in shown for call in c.calls if call.failed]
        axis = build_time_axis(events, break_ns=max(_typical_span(shown) * 20, DEFAULT_BREAK_NS))
        extent = max(axis.height, 1.0)
        ax.set_ylim(rows - 0.5, -0.5)
        ax.set_xlim(-0.02 * extent, extent * 1.02)
        ax.set_yticks([])
        ax.set_xticks([])
        for spine in ("top", "right", "left"):
            ax.spines[spine].set_visible(False)
        ax.set_xlabel("time (compressed: order kept, idle gaps cut)", fontsize=style.SMALL, color=style.MUTED,
                      labelpad=16)
        for cut in axis.breaks:
            middle = (cut.top + cut.bottom) / 2
            ax.axvline(middle, color=style.BREAK, linestyle=":", linewidth=1.2, zorder=1)
        _break_labels(ax, axis.breaks)
        for row, (conn, text) in enumerate(zip(shown, labels)):
            colour = style.ENDING_COLOURS[conn.ending]
            start, end = axis.y(conn.start_ns), axis.y(conn.end_ns)
            ax.barh(row, max(end - start, extent * 0.004), left=start, height=0.62, color=colour,
                    gid=f"connection-{conn.index}", linewidth=1.5,
                    edgecolor="black" if conn.index == highlight else colour)
            failures = [c for c in conn.calls if c.failed]
            if failures:
                ax.add_line(Line2D([axis.y(c.end_ns) for c in failures], [row] * len(failures),
                                   marker="X", markersize=8, color=style.FAILURE, markeredgecolor="white",
                                   linestyle="none", zorder=5, gid=f"failures-{conn.index}"))
            marker = "▶ " if conn.index == highlight else "  "
            ax.annotate(marker + text, (0, row), xycoords=("axes fraction", "data"),
                        xytext=(-(label_in - 0.1) * 72, 0), textcoords="offset points", ha="left", va="center",
                        fontsize=style.SMALL, family="DejaVu Sans Mono",
                        color=colour if conn.ending != "open" else style.MUTED)
        name = recording.metadata.scenario or (recording.metadata.source_file or "recording").rsplit("/", 1)[-1]
        counts = {ending: sum(1 for c in found if c.ending == ending) for ending in ENDINGS}
        summary = ", ".join(f"{n} {ending}" for ending, n in counts.items() if n)
        ax.annotate(f"{name}: {len(found)} TCP connections ({summary or 'none'})", (0, 1),
                    xycoords="axes fraction", xytext=(-(label_in - 0.1) * 72, 40), textcoords="offset points",
                    fontsize=style.TITLE, fontweight="bold", va="bottom")
        if len(found) > len(shown):
            ax.annotate(f"… and {len(found) - len(shown)} more (tcpteardown plot --conn N draws any of them)",
                        (0, 1), xycoords="axes fraction", xytext=(-(label_in - 0.1) * 72, 26),
                        textcoords="offset points", fontsize=style.SMALL, color=style.MUTED, va="bottom")
        handles = [Patch(color=style.ENDING_COLOURS[e], label=e) for e in ENDINGS if counts[e]]
        if any(c.first_failure for c in shown):
            handles.append(Line2D([], [], marker="X", color=style.FAILURE, linestyle="none", label="failed call"))
        if highlight is not None:
            handles.append(Patch(facecolor="white", edgecolor="black", label="▶ drawn as a ladder"))
        if handles:
            ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1.0), ncol=len(handles),
                      frameon=False, fontsize=style.SMALL, borderaxespad=0.2)
        return figure


def _aggregate(recording: Recording, result, highlight: Optional[int]) -> Figure:
    name = recording.metadata.scenario or (recording.metadata.source_file or "recording").rsplit("/", 1)[-1]
    failed = [call.end_ns for call in recording.calls if call.failed]
    counts = result.by_end()
    summary = ", ".join(f"{n:,} {kind}" for kind, n in counts.items() if n)
    notes = [f"{len(failed):,} failed socket calls (X)" if failed else "no failed socket call in the evidence"]
    if highlight is not None:
        notes.append(f"▶ connection {highlight} is drawn as a ladder beside this overview")
    return census_figure(result, title=f"{name}: {len(result):,} TCP connections ({summary})",
                         failures_ns=failed, notes=notes)


def _typical_span(shown) -> int:
    """The median connection duration: gaps far longer than it are idle time."""
    spans = sorted(c.end_ns - c.start_ns for c in shown)
    return spans[len(spans) // 2] if spans else 0


def _break_labels(ax, breaks) -> None:
    """Each break's elapsed time under the axis, skipping any that would collide."""
    left, right = ax.get_xlim()
    units_per_inch = (right - left) / PLOT_IN
    char = 0.56 * style.SMALL / 72 * units_per_inch  # one character of DejaVu Sans, in x units
    last_end = float("-inf")
    for index, cut in enumerate(breaks):
        middle = (cut.top + cut.bottom) / 2
        text = format_elapsed(cut.elapsed_ns)
        half = len(text) * char / 2 + 0.08 * units_per_inch
        if middle - half < last_end:
            continue
        ax.annotate(text, (middle, 0), xycoords=("data", "axes fraction"), xytext=(0, -4),
                    textcoords="offset points", ha="center", va="top", fontsize=style.SMALL,
                    color=style.MUTED, gid=f"break-{index}")
        last_end = middle + half
