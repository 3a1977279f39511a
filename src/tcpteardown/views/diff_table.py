"""The diff as text: aligned steps side by side, differing rows marked, then each difference in words.

Marks in the first column read like diff(1): ``<`` only in A, ``>`` only in
B, ``!`` both have the step but it differs, blank when they agree, ``~`` a
difference shown for information only (a bare ACK one side sent). Times are
milliseconds since each recording's first SYN.

This module only formats a `DiffResult`; it never analyses, reads files or prints.
"""

from __future__ import annotations

from typing import Optional

from ..analysis.diff import AlignedRow, CallStep, DiffResult, SegmentStep, SideSummary

MARK_SAME, MARK_CHANGED, MARK_ONLY_A, MARK_ONLY_B, MARK_INFO = " ", "!", "<", ">", "~"


def row_mark(row: AlignedRow) -> str:
    if not row.differs:  # e.g. a call the other side's plain capture cannot know
        return MARK_SAME
    if not any(d.counts for d in row.differences):
        return MARK_INFO  # shown for information only (a bare ACK one side sent)
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
    tolerance = f"timing tolerance {result.tolerance_ns / 1e6:g} ms"
    counted = [d for d in result.differences if d.counts]
    if result.matches:
        lines.append(f"The teardowns match ({tolerance}).")
    else:
        lines.append(f"{len(counted)} difference{'s' if len(counted) != 1 else ''} ({tolerance}):")
        for category, title in CATEGORY_TITLES:
            group = [d for d in counted if d.category == category]
            if group:
                lines.append(f" {title}:")
                lines += [_difference_line(d) for d in group]
    shown = [d for d in result.differences if not d.counts]
    if shown:
        timing = [d for d in shown if d.category != "application" or d.kind == "only-in"]
        applications = [d for d in shown if d not in timing]
        if applications:
            lines.append("Shown, not counted (the applications differ: payload, timing, who closed):")
            lines += [_difference_line(d) for d in applications]
        if timing:
            lines.append("Shown, not counted (acknowledgment timing):")
            lines += [_difference_line(d) for d in timing]
    return "\n".join(lines) + "\n"


# Counted differences are listed by what differs: the kernels first.
CATEGORY_TITLES = (("stack", "stack differences (the kernels chose differently)"),
                   ("teardown", "teardown differences (the story differs)"),
                   ("application", "application differences (payload, timing)"))


def _difference_line(difference) -> str:
    return f"  row {difference.row + 1} [{difference.kind}] {difference.describe()}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 3, 0)] + "..."



def atlas_table(rows) -> str:
    """The Linux/macOS atlas as a Markdown table: per pair (an `AtlasPair`
    and its `DiffResult` aligned by structure, or the sentence saying why
    its Mac capture is not here), the stack differences and the teardown
    differences that remain."""
    lines = ["| teardown | Linux bundle | real macOS capture | stack differences | teardown differences |",
             "| --- | --- | --- | --- | --- |"]
    for pair, result in rows:
        mac = f"`{pair.shipped or pair.corpus_path}` #{pair.darwin.connection}"
        if isinstance(result, str):  # the capture is not here, and why
            lines.append(f"| {pair.kind} | `{pair.scenario}` | {mac} | not compared: {result} | |")
            continue
        stack = sorted({_stack_name(d) for d in result.by_category("stack") if d.counts})
        story = [d.describe() for d in result.by_category("teardown") if d.counts]
        lines.append(f"| {pair.kind} | `{pair.scenario}` | {mac} | {', '.join(stack) or 'none'} | "
                     f"{'; '.join(story) or 'none: the same story'} |")
    return "\n".join(lines) + "\n"


def _stack_name(difference) -> str:
    """Short name of a stack difference for the atlas: ``MSS 65495/16344``, ``option order``..."""
    kind = difference.kind
    if kind == "options":
        if difference.a_present and difference.b_present and difference.option in ("MSS", "WS"):
            return f"{difference.option} {difference.a_value}/{difference.b_value}"
        return f"{difference.option} {'only in A' if difference.a_present else 'only in B'} ({difference.step.flags.render()})"
    if kind == "option-order":
        return "SYN option order"
    if kind == "flags":
        return "bare RST vs RST,ACK"
    if kind == "only-in":
        return "FIN,ACK in CLOSING"
    return kind
