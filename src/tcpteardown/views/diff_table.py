"""The diff as text: aligned steps side by side, differing rows marked, then each difference in words.

Marks in the first column read like diff(1): ``<`` only in A, ``>`` only in
B, ``!`` both have the step but it differs, blank when they agree. Times are
milliseconds since each recording's first SYN.

This module only formats a `DiffResult`; it never analyses, reads files or prints.
"""

from __future__ import annotations

from typing import Optional

from ..analysis.diff import AlignedRow, CallStep, DiffResult, SegmentStep, SideSummary

MARK_SAME, MARK_CHANGED, MARK_ONLY_A, MARK_ONLY_B = " ", "!", "<", ">"


def row_mark(row: AlignedRow) -> str:
    if not row.differs:  # e.g. a call the other side's plain capture cannot know
        return MARK_SAME
    if row.a is None:
        return MARK_ONLY_B
    if row.b is None:
        return MARK_ONLY_A
    return MARK_CHANGED


def step_text(step) -> str:
    """One cell: ``server -> client FIN,ACK seq=1 ack=1 len=0`` or ``client send() -> EPIPE``."""
    if step is None:
        return ""
    if isinstance(step, SegmentStep):
        text = f"{step.arrow} {step.label}"
        if step.reset_reason:
            text += f" [{step.reset_reason}]"
        return text
    assert isinstance(step, CallStep)
    return f"{step.side} {step.label}"


def time_text(step) -> str:
    return "" if step is None else f"{step.time_ns / 1e6:.3f}"


def side_text(name: str, side: SideSummary) -> str:
    parts = [f"{name} = {side.label or name}"]
    if side.os:
        parts.append(side.os)
    if side.client is not None:
        conn = f"connection {side.connection} of {side.connections}: {side.client} -> {side.server}"
        if not side.roles_known:
            conn += " (no SYN seen: roles guessed)"
        parts.append(conn)
    elif side.calls:
        parts.append("no packets, socket calls only")
    return ", ".join(parts)


def render_table(result: DiffResult, *, width: Optional[int] = None) -> str:
    """The whole report: header, aligned table, the differences, the verdict."""
    lines = [side_text("A", result.a), side_text("B", result.b), ""]
    cells = [(row_mark(row), str(number + 1), time_text(row.a), step_text(row.a), time_text(row.b),
              step_text(row.b)) for number, row in enumerate(result.aligned_rows)]
    header = ("", "#", "ms A", "A", "ms B", "B")
    widths = [max(len(c[i]) for c in (header, *cells)) for i in range(len(header))]
    if width:  # keep each step column inside the terminal
        room = max(20, (width - sum(widths[:3]) - widths[4] - 12) // 2)
        widths[3] = min(widths[3], room)
        widths[5] = min(widths[5], room)

    def line(values):
        mark, number, ta, a, tb, b = values
        return (f"{mark} {number:>{widths[1]}}  {ta:>{widths[2]}}  {_fit(a, widths[3]):<{widths[3]}}  | "
                f"{tb:>{widths[4]}}  {_fit(b, widths[5])}").rstrip()

    body = [line(c) for c in cells]
    lines.append(line(header))
    lines.append("-" * max(len(text) for text in (line(header), *body)))
    lines += body
    lines.append("")
    lines += [f"Note: {note}." for note in result.notes]
    if result.matches:
        lines.append(f"The teardowns match (timing tolerance {result.tolerance_ns / 1e6:g} ms).")
    else:
        count = len(result.differences)
        lines.append(f"{count} difference{'s' if count != 1 else ''} "
                     f"(timing tolerance {result.tolerance_ns / 1e6:g} ms):")
        for difference in result.differences:
            lines.append(f"  row {difference.row + 1} [{difference.kind}] {difference.describe()}")
    return "\n".join(lines) + "\n"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 3, 0)] + "..."

