"""The diff as a figure: both ladders side by side, one aligned step per row, differing rows highlighted.

Rows, not time, run down the page: row n of A's ladder and row n of B's
are partners, so the eye compares across, and a step only one recording has
leaves a gap in the other. Each ladder has the client's lifeline on the
left and the server's on the right; a segment is an arrow between them
(RST red, FIN blue, SYN grey, data and ACKs black, as in every tcpteardown
figure), a socket call a label beside its side's lifeline (failed red).
Rows that differ get a band across both ladders and their row number in
the margin; the legend says what each mark means. A long diff keeps the
differing rows with a little context, folding runs of agreeing rows into
one line, as diff -u does.

This module only draws a `DiffResult` on a matplotlib Figure (Agg, no
pyplot state); it never analyses or reads files. Same input, same bytes
(through `style.save_figure`).
"""

from __future__ import annotations

from typing import Optional

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..analysis.diff import (AlignedRow, CallStep, DiffResult, OptionDifference, ReasonDifference, SegmentStep,
                             TimingDifference)
from ..model import TcpFlags
from . import style
from .diff_table import row_mark

CLIENT_X, SERVER_X = 0.22, 0.78
ROW_HEIGHT_IN = 0.32
BAND_CHANGED = "#fff3c4"  # both have the step, it differs
BAND_ONLY = "#fde0dc"  # one recording lacks the step
BAND_INFO = "#ececec"  # shown, not counted (a bare ACK one side sent)
FOLD_ABOVE = 60  # longer diffs fold runs of agreeing rows
CONTEXT = 2  # agreeing rows kept around each differing one, as in diff -u
MAX_LINES = 120  # beyond this the figure shows the start and the end; the table has all
OMITTED = -1  # display_lines marker: rows not drawn


def _flags_colour(flags: TcpFlags) -> str:
    if flags & TcpFlags.RST:
        return style.RST
    if flags & TcpFlags.FIN:
        return style.FIN
    if flags & TcpFlags.SYN:
        return style.SYN
    return style.DATA


def _left_roles(closer: Optional[str]) -> tuple[str, ...]:
    """Roles drawn on the left lifeline: the client; aligned by structure,
    the side that did not close first (so closers face each other)."""
    if closer is None:
        return ("client", "peer")
    return ("peer", "server" if closer == "client" else "client")


def _draw_step(ax, y: float, step, differs: bool, left: tuple[str, ...] = ("client", "peer")) -> None:
    weight = "bold" if differs else "normal"
    if isinstance(step, SegmentStep):
        start, end = (CLIENT_X, SERVER_X) if step.sender in left else (SERVER_X, CLIENT_X)
        colour = _flags_colour(step.flags)
        ax.annotate("", xy=(end, y + 0.18), xytext=(start, y - 0.18),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.6 if differs else 1.1,
                                "shrinkA": 0, "shrinkB": 0})
        label = step.flags.render() + (f" len={step.payload_len}" if step.payload_len else "")
        ax.text(0.5, y - 0.08, label, ha="center", va="bottom", fontsize=style.SMALL, color=colour,
                fontweight=weight, bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    elif isinstance(step, CallStep):
        colour = style.OK if step.outcome == "ok" else style.EOF if step.outcome == "EOF" else style.FAILURE
        if step.side not in left:
            ax.text(SERVER_X + 0.02, y, step.label, ha="left", va="center", fontsize=style.SMALL,
                    color=colour, fontweight=weight)
        else:
            ax.text(CLIENT_X - 0.02, y, step.label, ha="right", va="center", fontsize=style.SMALL,
                    color=colour, fontweight=weight)
        x = CLIENT_X if step.side in left else SERVER_X
        ax.plot([x], [y], marker="o", markersize=4, color=colour)


def display_lines(rows: tuple[AlignedRow, ...], *, context: int = CONTEXT, fold_above: int = FOLD_ABOVE,
                  max_lines: int = MAX_LINES) -> list[tuple[Optional[int], int]]:
    """What the figure shows, top to bottom: ``(row number, 1)`` for a row,
    ``(None, n)`` for n agreeing rows folded into one line, ``(OMITTED, n)``
    for n rows left to the table. Short diffs show every row; longer ones
    keep the differing rows, `context` rows around each, and the first and
    last few (the handshake and the end); at most `max_lines` lines."""
    if len(rows) <= fold_above:
        return [(number, 1) for number in range(len(rows))]
    keep = set(range(context + 1)) | set(range(len(rows) - context - 1, len(rows)))
    for number, row in enumerate(rows):
        if row.differs:
            keep.update(range(number - context, number + context + 1))
    lines: list[tuple[Optional[int], int]] = []
    for number in range(len(rows)):
        if number in keep:
            lines.append((number, 1))
        elif lines and lines[-1][0] is None:
            lines[-1] = (None, lines[-1][1] + 1)
        else:
            lines.append((None, 1))
    if len(lines) > max_lines:  # two unrelated captures: the start and the end, the table has the rest
        half = max_lines // 2
        middle = sum(folded for _, folded in lines[half:-half])
        lines = lines[:half] + [(OMITTED, middle)] + lines[-half:]
    return lines


def _draw_ladder(ax, rows: tuple[AlignedRow, ...], lines, pick: str, title: str,
                 closer: Optional[str] = None) -> None:
    count = len(lines)
    ax.set_xlim(-0.45, 1.45)
    ax.set_ylim(count + 0.2, -1.2)
    ax.axis("off")
    left = _left_roles(closer)
    names = (f"peer ({left[1]})", f"closer ({closer})") if closer else ("client", "server")
    for x, name in zip((CLIENT_X, SERVER_X), names):
        ax.plot([x, x], [-0.6, count - 0.4], color=style.LIFELINE, lw=1.0)
        ax.text(x, -0.75, name, ha="center", va="bottom", fontsize=style.FONT, fontweight="bold")
    ax.set_title(title, fontsize=style.FONT, loc="center")
    for y, (number, folded) in enumerate(lines):
        if number is None or number == OMITTED:
            plural = "s" if folded != 1 else ""
            text = (f"... {folded} row{plural} alike ..." if number is None
                    else f"... {folded} more row{plural}: see the table ...")
            ax.axhspan(y - 0.45, y + 0.45, color="white", zorder=1, lw=0)
            ax.text(0.5, y, text, ha="center", va="center", fontsize=style.SMALL, color=style.MUTED, zorder=2)
            continue
        row = rows[number]
        if row.differs:
            colour = BAND_ONLY if row.a is None or row.b is None else BAND_CHANGED
            if not any(d.counts for d in row.differences):
                colour = BAND_INFO
            ax.axhspan(y - 0.45, y + 0.45, color=colour, zorder=0, lw=0)
        step = row.a if pick == "a" else row.b
        if step is None:
            if row.differs:
                ax.text(0.5, y, "(absent)", ha="center", va="center", fontsize=style.SMALL,
                        color=style.MUTED, style="italic")
            continue
        _draw_step(ax, y, step, row.differs, left)
        note = _row_note(row, pick)
        if note and isinstance(step, SegmentStep):
            ax.text(SERVER_X + 0.03, y, note, ha="left", va="center", fontsize=style.SMALL,
                    color=style.MUTED)


def _row_note(row: AlignedRow, pick: str) -> str:
    """This side's values of what differs on the row, where the arrow cannot show them."""
    notes = []
    for difference in row.differences:
        if isinstance(difference, OptionDifference):
            present = difference.a_present if pick == "a" else difference.b_present
            value = difference.a_value if pick == "a" else difference.b_value
            shown = "" if difference.option in ("TS", "SACK", "SACK_PERM") else f" {value}"
            notes.append(f"{difference.option}{shown}" if present else f"no {difference.option}")
        elif isinstance(difference, ReasonDifference):
            notes.append((difference.a if pick == "a" else difference.b).reset_reason or "")
        elif isinstance(difference, TimingDifference):
            value = difference.a_ns if pick == "a" else difference.b_ns
            notes.append(f"{'took' if difference.what == 'duration' else 'after'} {value / 1e6:.1f} ms")
    return ", ".join(n for n in notes if n)


def draw_diff(result: DiffResult, *, title: Optional[str] = None) -> Figure:
    """A Figure with A's ladder left, B's right, one aligned step per row."""
    rows = result.aligned_rows
    lines = display_lines(rows)
    height = 1.9 + ROW_HEIGHT_IN * max(len(lines), 1)
    with style.figure_style():
        figure = Figure(figsize=(11.0, height))
        top = 1 - 0.95 / height
        bottom = 0.75 / height
        margin = figure.add_axes((0.0, bottom, 0.04, top - bottom))
        left = figure.add_axes((0.04, bottom, 0.48, top - bottom))
        right = figure.add_axes((0.52, bottom, 0.48, top - bottom))
        _draw_ladder(left, rows, lines, "a", _side_title("A", result.a), result.a.closer)
        _draw_ladder(right, rows, lines, "b", _side_title("B", result.b), result.b.closer)
        margin.set_xlim(0, 1)
        margin.set_ylim(left.get_ylim())
        margin.axis("off")
        for y, (number, _) in enumerate(lines):
            if number is not None and number >= 0 and rows[number].differs:
                margin.text(0.95, y, f"{row_mark(rows[number])}{number + 1}", ha="right", va="center",
                            fontsize=style.SMALL, color=style.FAILURE, fontweight="bold")
        count = sum(1 for d in result.differences if d.counts)
        stack = sum(1 for d in result.differences if d.counts and d.category == "stack")
        verdict = ("the teardowns match" if result.matches
                   else f"{count} difference{'s' if count != 1 else ''}" + (f", {stack} of the stacks" if stack else ""))
        figure.suptitle(title or f"tcpteardown diff: {verdict}", fontsize=style.TITLE,
                        y=1 - 0.12 / height, va="top")
        figure.legend(handles=[
            Patch(color=BAND_CHANGED, label="differs"),
            Patch(color=BAND_ONLY, label="only in one"),
            Patch(color=BAND_INFO, label="shown, not counted"),
            Patch(color=style.FIN, label="FIN"),
            Patch(color=style.RST, label="RST / failed call"),
            Patch(color=style.OK, label="call ok"),
        ], loc="lower center", ncol=6, fontsize=style.SMALL, frameon=False)
    return figure


def _side_title(name: str, side) -> str:
    label = side.label if side.label and side.label != name else ""
    text = f"{name}: {label}" if label else name
    if side.os:
        text += f" ({side.os})"
    return text
