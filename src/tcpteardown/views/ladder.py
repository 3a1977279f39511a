"""The ladder diagram: one TCP connection, both sides, one time axis.

Two lifelines (client left, server right, labelled with their endpoints);
each segment an arrow from sender to receiver, labelled with its frame
number, flags, relative seq/ack and payload length (RST red, FIN blue, SYN
grey, data and ACKs black); each socket call a bar on its side's lifeline
with its op and result, failures in red with the errno name and, with
`lang`, how that language reports it; a dashed connector from each linked
call to the segment (or our own close) that caused it; each side's TCP state
along its lifeline; breaks where the compressed time axis cut idle time.

Layout is in inches (x) and rows (y, see `timeaxis`), so label sizes are
known when the page is sized and labels cannot collide by construction.
This module must never touch pyplot's global state or the file system:
`draw_ladder` returns a `matplotlib.figure.Figure`; `style.save_figure`
writes it.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from .. import errnos
from ..analysis import reasons, rules, tcpstate
from ..analysis.sources import told_once
from ..analysis.connections import ConnectionView, connections, select_connection
from ..analysis.elide import CONTEXT, MIN_BAND, elide
from ..analysis.origin import time_origin
from ..model import Link, Recording, Segment, SocketCall, TcpFlags
from ..units import calendar_time
from . import style
from .steps import after_cause
from .timeaxis import MIN_ROWS, TimeAxis, build_time_axis, format_elapsed

__all__ = ["draw_ladder", "draw_ladder_on_screen", "shown_height_px", "ladder_alt_text", "min_text_px",
           "segment_label", "fit_segment_label", "call_label", "LANGS"]

LANGS = errnos.LANG_CHOICES

# -- geometry (inches across, rows down) ----------------------------------------
# Sized for a projector: the page is about 10.4 in wide, so shown 1024 px wide
# every text (9 pt and up) is at least 11 px tall (`min_text_px`). From the
# lifeline outwards: the connector lane, the TCP state column, the call labels.
ROW_IN = 0.28  # one row of the time axis (one text line, LINE_ROWS, is 12 pt: 10 pt text at spacing 1.15 fits)
STATE_W = 0.92  # TCP state names, beside their lifeline ("ESTABLISHED" fits)
CALL_W = 2.2  # socket-call labels, outside the state column
LANE_W = 0.22  # connector brackets, between the state column and the lifeline
MID_W = 2.6  # segment arrows and their labels
X_CLIENT = CALL_W + STATE_W + LANE_W
X_SERVER = X_CLIENT + MID_W
X_MAX = X_SERVER + LANE_W + STATE_W + CALL_W
MARGIN_LEFT = 0.95  # time ticks ("+18 h 31 min" fits)
MARGIN_RIGHT = 0.15
PAGE_W = MARGIN_LEFT + X_MAX + MARGIN_RIGHT
BAR_W = 0.09  # a call's activation bar on its lifeline
LINE_ROWS = 0.6  # one text line, in rows
CALL_WRAP = 31  # characters per line of a call's language phrase (9 pt italic: 2.1 in, within CALL_W)
CALL_CHARS = 22  # characters of a bold call label that fit CALL_W; longer ones break after "→"
CHAR_IN = 0.083  # average width of a 10 pt DejaVu Sans character (digits, capitals), in inches
SMALL_CHAR_IN = 0.075  # the same at 9 pt
BOLD_CHAR_IN = 0.095  # the same at 10 pt bold
TEXT_WRAP = int((X_MAX + MARGIN_RIGHT) / SMALL_CHAR_IN)  # header details and rule footnotes
LINE_PT = 1.45 * style.SMALL  # one line of 9 pt text at linespacing 1.2, in points
LEGEND_COLUMNS = 4
ROWS_ABOVE = 0.8  # room above the first event (its label sits above it)

# A notebook on a 1024x768 projector: about 1000 px of content across, and
# 700 px below the toolbars. The page above is drawn for that width (10.4 in
# at a browser's 96 px per inch), so text keeps its size there.
CSS_DPI = 96
SCREEN_WIDTH_PX = 1000
SCREEN_HEIGHT_PX = 700
# elide's (context, min_band), loosest first: what `draw_ladder_on_screen` tries.
FOLDS = ((CONTEXT, MIN_BAND), (2, 4), (1, 3), (0, 3))

# Legend: what each colour means, in the order it is listed.
SEGMENT_LEGEND = (("SYN", style.SYN, "SYN (opening)"), ("data", style.DATA, "data / ACK"),
                  ("ACK", style.DATA, "data / ACK"), ("FIN", style.FIN, "FIN (orderly close)"),
                  ("RST", style.RST, "RST (reset)"))


@dataclass(frozen=True, slots=True)
class _Placed:
    """A label placed in one column: its anchor row, and the rows it spans above."""

    row: float
    height: float


def draw_ladder(
    recording: Recording,
    links: Iterable[Link] = (),
    *,
    conn: Union[None, int, str] = None,
    lang: Optional[str] = None,
    time_axis: str = "compressed",
    full: bool = False,
    fold: tuple[int, int] = (CONTEXT, MIN_BAND),
    ax=None,
) -> Figure:
    """Draw one connection of `recording` as a ladder; return its Figure.

    `links` come from `tcpteardown.analysis.correlate.correlate`; `conn`
    picks the connection (`analysis.connections`' grammar: a 1-based number,
    ADDR:PORT, :PORT, ``"a:1-b:2"`` or a ConnectionView; default: the one with
    the first failing call); `lang` (go, python, java, node, curl) adds how that
    language reports each failure; `time_axis` is ``compressed`` or ``real``.
    A long transfer is drawn as one labelled band (`analysis.elide`) unless
    `full`; `fold` is elide's (context, min_band): how many segments it keeps
    around what matters, and the shortest run it folds. Time counts from the
    connection's first SYN (`analysis.origin`).
    With `ax`, draws into it (the caller owns its size) instead of a new Figure.
    """
    if lang is not None and lang.lower() not in LANGS:
        raise ValueError(f"unknown language {lang!r} (expected one of {', '.join(LANGS)})")
    links = tuple(links)
    recording = told_once(recording, links)  # a failure several sources saw is drawn once
    found = connections(recording)
    connection = select_connection(found, conn)
    links = [link for link in links if link.call in connection.calls]
    with style.figure_style():
        return _Ladder(recording, connection, len(found), links, lang, time_axis, full, fold).draw(ax)


def draw_ladder_on_screen(recording: Recording, links: Iterable[Link] = (), *, width_px: int = SCREEN_WIDTH_PX,
                          height_px: int = SCREEN_HEIGHT_PX, full: bool = False, **options) -> Figure:
    """The ladder for a screen `width_px` wide, at most `height_px` tall there
    (a notebook on a 1024x768 projector): text keeps its size; what does not
    fit is folded, a little more at each try (fewer segments kept around what
    matters, shorter runs folded), into labelled bands. `full` draws
    everything, however tall. The last try is returned even if still too tall."""
    links = list(links)
    figure = None
    for fold in FOLDS:
        figure = draw_ladder(recording, links, full=full, fold=fold, **options)
        if full or shown_height_px(figure, width_px) <= height_px:
            break
    return figure


def shown_height_px(figure: Figure, width_px: int = SCREEN_WIDTH_PX) -> float:
    """How tall `figure` is on a screen `width_px` wide (a browser shows an SVG
    at its own size, 96 px per inch, or narrower when the page is)."""
    width_in, height_in = figure.get_size_inches()
    return height_in * min(width_px, width_in * CSS_DPI) / width_in


def ladder_alt_text(figure: Figure) -> str:
    """The one-sentence description `draw_ladder` gave its figure (alt text for
    Markdown and notebooks; `style.save_figure` also writes it into the file)."""
    return figure.get_label()


def min_text_px(figure: Figure, shown_width_px: int = 1024) -> float:
    """The smallest text on `figure`, in pixels, when it is shown `shown_width_px` wide."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in figure.findobj(Text) if t.get_text() and t.get_visible()]
    width_in = figure.get_size_inches()[0]
    return min(sizes, default=0) / 72 * shown_width_px / width_in


# -- labels (pure) ---------------------------------------------------------------

def segment_label(segment: Segment, isn: dict, reason: Optional[str] = None) -> str:
    """``#7 PSH,ACK seq=1 ack=1 len=9``: relative numbers, as Wireshark shows them."""
    parts = [f"#{segment.frame}", segment.flags.render()]
    base = isn.get(segment.src)
    parts.append(f"seq={(segment.seq - base) % (1 << 32) if base is not None else segment.seq}")
    if segment.flags & TcpFlags.ACK:
        peer = isn.get(segment.dst)
        parts.append(f"ack={(segment.ack - peer) % (1 << 32) if peer is not None else segment.ack}")
    if segment.payload_len:
        parts.append(f"len={segment.payload_len}")
    if segment.pid is not None:  # Apple captures name the process (tcpdump -k, PKTAP)
        parts.append(f"[{segment.process or 'pid'} {segment.pid}]")
    text = " ".join(parts)
    return f"{text}\n{reason}" if reason else text


def fit_segment_label(text: str, width_in: float = MID_W - 0.2) -> str:
    """Break a label too wide for the space between the lifelines after its
    flags, and its reason line ("TCP_ABORT_ON_CLOSE or TCP_STATE (inferred)") between words."""
    first, _, rest = text.partition("\n")
    reason = textwrap.wrap(rest, int(width_in / CHAR_IN), break_long_words=False) if rest else []
    if len(first) * CHAR_IN <= width_in or " seq=" not in first:
        return "\n".join([first, *reason])
    head, _, tail = first.partition(" seq=")
    return "\n".join([head, "seq=" + tail, *reason])


def call_label(call: SocketCall) -> str:
    """``send() → EPIPE``, ``recv() → EOF``, ``send() = 9``, ``read() → EAGAIN (would
    block)`` (not a failure: drawn grey), ``epoll_wait() → EPOLLIN|EPOLLRDHUP``."""
    if call.would_block:
        return f"{call.op}() → {call.errno} (would block)"
    if call.is_readiness and call.events:
        return f"{call.op}() → {call.events}"
    if call.failed:
        return f"{call.op}() → {call.errno}"
    if call.is_eof:
        return f"{call.op}() → EOF"
    if call.result is None:
        return f"{call.op}()"
    return f"{call.op}() = {call.result}"


def initial_sequence_numbers(segments: Sequence[Segment]) -> dict:
    """Each sender's ISN: its SYN's seq, else the first seq it sent."""
    isn: dict = {}
    for segment in segments:
        if segment.is_syn:
            isn[segment.src] = segment.seq
    for segment in segments:
        isn.setdefault(segment.src, segment.seq)
    return isn


def _phrase(call: SocketCall, lang: Optional[str], os_name: Optional[str]) -> Optional[str]:
    if lang is None or not call.failed:
        return None
    try:
        text = errnos.phrase(call.errno, lang, op=call.op, local=call.local, remote=call.remote,
                             os=os_name or "Linux")
    except (KeyError, ValueError):
        return None
    if not text:
        return None
    name = {"go": "Go", "python": "Python", "java": "Java", "node": "Node", "curl": "curl"}[lang.lower()]
    return f"{name}: {text}"


def wrap_phrase(text: str, width: int) -> list[str]:
    """Greedy wrap that may also break after ``->`` (Go's ``a:1->b:2``)."""
    tokens = re.findall(r"\S+?(?:->|\s+|$)", text)
    lines, line = [], ""
    for token in tokens:
        if line and len(line + token.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += token
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _delay_ns(recording: Recording) -> int:
    value = recording.metadata.get("delay_ms")
    try:
        return max(int(float(value) * 1_000_000), 0) if value else 0
    except ValueError:
        return 0


def _title(recording: Recording) -> str:
    meta = recording.metadata
    name = meta.scenario or (meta.source_file.rsplit("/", 1)[-1] if meta.source_file else "recording")
    parts = [name]
    system = " ".join(p for p in (meta.os, meta.kernel) if p)
    if system:
        parts.append(system)
    started = meta.started_ns or recording.start_ns
    when = calendar_time(started) if started else None
    if when is not None:  # None: outside the calendar (a damaged capture's timestamps)
        parts.append(when.strftime("%Y-%m-%d %H:%M UTC"))
    return " — ".join(parts)


# -- the drawing -------------------------------------------------------------------

class _Ladder:
    def __init__(self, recording, connection: ConnectionView, count, links, lang, mode, full=False,
                 fold=(CONTEXT, MIN_BAND)):
        self.recording = recording
        self.connection = connection
        self.count = count
        self.links = links
        self.lang = lang
        self.mode = mode
        self.delay = _delay_ns(recording)
        self.isn = initial_sequence_numbers(connection.segments)
        self.elision = elide(connection.segments, connection.calls, full=full, context=fold[0], min_band=fold[1],
                             anchors=[link.cause.time_ns for link in links if link.cause is not None])
        self.segments = self.elision.kept
        self.cuts = [(band.start_ns, band.label) for band in self.elision.bands]
        self.origin = time_origin(connection.segments, connection.calls)
        self.x = {"client": X_CLIENT, "server": X_SERVER}
        self.side = {connection.client: "client", connection.server: "server"}
        kept = set(self.elision.calls)
        sided = [(call, connection.side_of(call)) for call in connection.calls]
        sided = [(call, side) for call, side in sided if side is not None]
        # Element ids (gids) number calls and links as the connection has them, whatever
        # is folded away: the stepper finds a step's elements by them.
        self.call_ids = {id(call): i for i, (call, _) in enumerate(sided)}
        self.link_ids = {id(link): i for i, link in enumerate(links)}
        self.calls = [(call, side) for call, side in sided if call in kept]
        self.links = [link for link in links if link.call in kept]
        self.states, self.states_from = self._states()
        self.time_wait_from_packets = self._time_wait_from_packets()
        self.reasons = {s.frame: self._reason(s) for s in self.segments if s.is_rst}
        self.drawn = set(self.segments)
        # Calls from another clock drawn just after their cause (the stepper's rule too).
        self.after_cause = {id(link.call): moved for link in self.links if link.cause in self.drawn
                            for moved in [after_cause(link.call, link.cause)] if moved is not None}
        self.phrases = {id(call): _phrase(call, lang, recording.metadata.os) for call, _ in self.calls}
        self.axis = self._time_axis()

    # -- data --------------------------------------------------------------------
    def _states(self):
        if self.connection.connection is None:
            return {}, "packets (none seen)"
        timelines = tcpstate.infer_states(self.recording, self.connection.connection)
        source = tcpstate.states_source(self.recording, self.connection.connection)
        per_side = {}
        for endpoint, timeline in timelines.items():
            side = self.side.get(endpoint)
            if side is None:
                continue
            last = {}
            for when, state in timeline:
                last[when] = state  # several changes at one instant: show where it ended
            changes, previous = [], None
            for when, state in sorted(last.items()):
                if state != previous:  # the kernel reports some states twice (old and new)
                    changes.append((when, state))
                previous = state
            per_side[side] = changes
        return per_side, source.split(" (")[0]

    def _time_wait_from_packets(self) -> dict:
        """{side: when} of each TIME_WAIT the kernel did not report (taken from the packets)."""
        if self.connection.connection is None:
            return {}
        found = tcpstate.time_wait_from_packets(self.recording, self.connection.connection)
        return {self.side[endpoint]: when for endpoint, when in found.items() if endpoint in self.side}

    def _reason(self, segment: Segment) -> Optional[str]:
        reason, inferred = reasons.reset_reason(segment, self.recording)
        return reasons.render_reason(reason, inferred)

    def _call_lines(self, call) -> list[str]:
        """The call's label (bold; one entry, maybe two lines), then its language phrase lines."""
        label = call_label(call)
        lines = [label.replace(" → ", " →\n", 1) if len(label) > CALL_CHARS else label]
        phrase = self.phrases.get(id(call))
        if phrase:
            lines += wrap_phrase(phrase, CALL_WRAP)
        return lines + self._note_lines(call)

    def _receive_ns(self, segment: Segment) -> int:
        return segment.time_ns + self.delay

    def _span(self, call: SocketCall) -> tuple[int, int]:
        """When the call is drawn: its own time, or, stamped by another clock before
        its cause, just after that cause reached its side (`steps.after_cause`)."""
        moved = self.after_cause.get(id(call))
        if moved is None:
            return call.start_ns, call.end_ns
        cause = moved.cause
        reached = cause.time_ns if self.side.get(cause.src) == self.connection.side_of(call) \
            else self._receive_ns(cause)
        return reached + 1, reached + 1

    def _note_lines(self, call: SocketCall) -> list[str]:
        moved = self.after_cause.get(id(call))
        return wrap_phrase(moved.short_note(), CALL_WRAP) if moved is not None else []

    def _time_axis(self) -> TimeAxis:
        # Each label's room, in its own column (lane): segment labels between the
        # lifelines, each side's call labels and state names beside its lifeline.
        # Labels in different columns share rows; in one column they never overlap.
        events = []
        self.labels = {s.frame: fit_segment_label(segment_label(s, self.isn, self.reasons.get(s.frame)))
                       for s in self.segments}
        for segment in self.segments:
            lines = self.labels[segment.frame].count("\n") + 1
            events.append((segment.time_ns, lines * LINE_ROWS + 0.3, "segments"))
            if self.delay:
                events.append((self._receive_ns(segment), MIN_ROWS, "segments"))
        for call, side in self.calls:
            # The label hangs above the call's end (from 0.25 below it): the end sits
            # below the last label of its column by this label's height.
            start, end = self._span(call)
            events.append((start, MIN_ROWS, f"bars-{side}"))
            events.append((end, _line_count(self._call_lines(call)) * LINE_ROWS + 0.05, f"calls-{side}"))
            events.append((end, 0.15, f"bars-{side}"))
        self.state_texts = {side: [(when, self._state_text(side, when, state)) for when, state in timeline]
                            for side, timeline in self.states.items()}
        for side, timeline in self.state_texts.items():
            above = LINE_ROWS  # a state name hangs below its time: room for the one before it
            for when, text in timeline:
                events.append((when, above + 0.05, f"states-{side}"))
                above = (text.count("\n") + 1) * LINE_ROWS
        return build_time_axis(events, self.mode, cuts=self.cuts, origin_ns=self.origin)

    def _state_text(self, side: str, when: int, state: str) -> str:
        """A state's name; TIME_WAIT says how long it lasts and, when the kernel did not
        report it, that the packets told it: on lines of their own, the state column is narrow."""
        text = state
        lasts = tcpstate.TIME_WAIT_NS.get(self.recording.metadata.os or "")
        if state == "TIME_WAIT" and lasts:
            text += f"\n{lasts // 1_000_000_000} s"
        if self.time_wait_from_packets.get(side) == when:
            text += "\n(packets)"
        return text

    def _tail_rows(self) -> float:
        """How far below the last event labels reach (state names hang below their time)."""
        ends = [self.axis.y(when) + 0.05 + (text.count("\n") + 1) * LINE_ROWS
                for timeline in self.state_texts.values() for when, text in timeline]
        return max([self.axis.height + 0.6, *(end + 0.2 for end in ends)])

    # -- page --------------------------------------------------------------------
    def draw(self, ax) -> Figure:
        rules_used = self._rules_used()
        self.handles = self._legend_handles(rules_used)
        self.rule_lines = [line for rule in rules_used for line in self._rule_lines(rule)]
        self.title_lines = textwrap.wrap(_title(self.recording), int(TEXT_WRAP * SMALL_CHAR_IN / 0.11)) or [""]
        self.detail_lines = textwrap.wrap(" · ".join(self._details()), TEXT_WRAP)
        # Heights in points, from the line counts: the legend and the rules
        # below it, the title and the details above, can never overprint.
        rows = -(-len(self.handles) // LEGEND_COLUMNS)
        self.legend_pt = (rows * 1.65 * style.SMALL + 12) if self.handles else 0
        footer_in = (self.legend_pt + len(self.rule_lines) * LINE_PT + 8) / 72
        self.lifeline_names = self._lifeline_names()
        lines = self.lifeline_names["client"].count("\n") + 1
        self.details_pt = 16 + 14 * lines  # above the lifeline labels (one or two lines in a box)
        self.title_pt = self.details_pt + len(self.detail_lines) * LINE_PT + 3
        header_in = (self.title_pt + len(self.title_lines) * 1.25 * style.TITLE + 8) / 72
        self.bottom = self._tail_rows()
        body_rows = self.bottom + ROWS_ABOVE
        if ax is None:
            height = header_in + body_rows * ROW_IN + footer_in
            figure = Figure(figsize=(PAGE_W, height))
            ax = figure.add_axes((MARGIN_LEFT / PAGE_W, footer_in / height,
                                  X_MAX / PAGE_W, body_rows * ROW_IN / height))
        else:
            figure = ax.figure
        figure.set_label(self.alt_text())
        ax.set_axis_off()
        ax.set_xlim(0, X_MAX)
        ax.set_ylim(self.bottom, -ROWS_ABOVE)  # time flows downward
        self._lifelines(ax)
        self._breaks(ax)
        self._ticks(ax)
        self._states_drawn(ax)
        self._segments(ax)
        self._calls(ax)
        self._connectors(ax)
        self._header(ax)
        self._legend(ax)
        return figure

    def alt_text(self) -> str:
        """One sentence saying what the ladder shows, for readers who cannot see it."""
        conn = self.connection
        name = self.recording.metadata.scenario or "a recording"
        total = len(conn.segments)
        text = (f"Ladder diagram of {name}, connection {conn.index + 1} of {self.count}: client "
                f"{conn.client or '(address unknown)'} on the left, server {conn.server or '(address unknown)'} "
                f"on the right, {total} segment{'s' if total != 1 else ''}")
        if self.elision.bands:
            text += f" ({self.elision.left_out} of them folded into {len(self.elision.bands)} labelled band" \
                    f"{'s' if len(self.elision.bands) > 1 else ''})"
        ends = []
        for segment in conn.segments:
            if segment.is_fin or segment.is_rst:
                what = f"the {self.side.get(segment.src, 'unknown side')}'s {'RST' if segment.is_rst else 'FIN'}"
                if what not in ends:
                    ends.append(what)
        if ends:
            text += ", ending with " + ", then ".join(ends[:3])
        causes = {id(link.call): link for link in self.links}
        for call, side in [(c, side) for c, side in self.calls if c.failed][:2]:
            text += f"; the {side}'s {call.op}() failed with {call.errno}"
            link = causes.get(id(call))
            if link is not None and link.cause is not None:
                sender = self.side.get(link.cause.src, "other side")
                text += f", caused by the {sender}'s {link.cause.flags.render()} (frame {link.cause.frame})"
            elif link is not None and link.local_call is not None:
                text += f", caused by its own earlier {link.local_call.op}()"
        return text + "."

    def _details(self) -> list[str]:
        conn = self.connection
        details = [f"connection {conn.index + 1} of {self.count}"]
        if not conn.roles_known:
            details.append("no SYN seen: client guessed from the ports")
        details.append(f"time: {self.mode}, from the first SYN" + (", idle gaps cut" if self.axis.breaks else ""))
        if self.elision.bands:
            details.append(f"{self.elision.left_out:,} of {len(conn.segments):,} segments folded into "
                           f"{'a band' if len(self.elision.bands) == 1 else f'{len(self.elision.bands)} bands'}"
                           " (--full draws them all)")
        if self.after_cause:
            details.append("a log line (another clock) is drawn just after the segment it is linked to; "
                           "the shaded band: its own time, give or take its clock")
        if self.delay:
            details.append(f"one-way delay {format_elapsed(self.delay)} (from metadata)")
        if self.connection.connection is None:
            details.append("no packet of this connection was captured")
        else:
            details.append(f"TCP states from the {self.states_from}"
                           + ("; (packets): TIME_WAIT taken from the packets, the kernel was silent"
                              if self.time_wait_from_packets else ""))
        return details

    def _lifeline_names(self) -> dict:
        """"client 127.0.0.1:41184" on one line when both sides' names fit between
        the lifelines side by side (a line saved for the time axis), else on two."""
        conn = self.connection
        names = {side: f"{side} {endpoint or '(address unknown)'}"
                 for side, endpoint in (("client", conn.client), ("server", conn.server))}
        if max(map(len, names.values())) * BOLD_CHAR_IN > MID_W - 0.3:
            names = {side: name.replace(" ", "\n", 1) for side, name in names.items()}
        return names

    def _header(self, ax):
        ax.annotate("\n".join(self.title_lines), (0, 1), xycoords="axes fraction", xytext=(0, self.title_pt),
                    textcoords="offset points", fontsize=style.TITLE, fontweight="bold", va="bottom",
                    gid="title")
        if self.detail_lines:
            ax.annotate("\n".join(self.detail_lines), (0, 1), xycoords="axes fraction", xytext=(0, self.details_pt),
                        textcoords="offset points", fontsize=style.SMALL, color=style.MUTED, va="bottom",
                        linespacing=1.15, gid="details")
        for side in ("client", "server"):
            ax.annotate(self.lifeline_names[side], (self.x[side], 1), xycoords=("data", "axes fraction"),
                        xytext=(0, 6), textcoords="offset points", ha="center", va="bottom",
                        fontsize=style.FONT, fontweight="bold", gid=f"lifeline-label-{side}",
                        bbox=dict(boxstyle="round,pad=0.35", facecolor="#f2f2f2", edgecolor=style.LIFELINE))

    def _lifelines(self, ax):
        top, bottom = -ROWS_ABOVE, self.bottom
        spans, y = [], top
        for cut in self.axis.breaks:
            spans.append((y, cut.top, "-"))
            spans.append((cut.top, cut.bottom, ":"))
            y = cut.bottom
        spans.append((y, bottom, "-"))
        for side in ("client", "server"):
            for i, (y0, y1, dash) in enumerate(spans):
                ax.add_line(Line2D([self.x[side]] * 2, [y0, y1], color=style.LIFELINE, linewidth=1.4,
                                   linestyle=dash, zorder=1, gid=f"lifeline-{side}-{i}"))

    def _breaks(self, ax):
        for i, cut in enumerate(self.axis.breaks):
            middle = (cut.top + cut.bottom) / 2
            for side in ("client", "server"):
                for offset in (-0.12, 0.12):
                    ax.add_line(Line2D([self.x[side] - 0.1, self.x[side] + 0.1],
                                       [middle + offset + 0.1, middle + offset - 0.1],
                                       color=style.BREAK, linewidth=1.2, zorder=3))
            # The time span it stands for in its id (a band's: from its first folded
            # segment to its last): the stepper highlights it for a step folded into it.
            band = next((band for band in self.elision.bands if cut.start_ns <= band.start_ns <= cut.end_ns), None)
            start, end = (band.start_ns, band.end_ns) if cut.text and band else (cut.start_ns, cut.end_ns)
            self._break_label(ax, middle, cut.label, f"break-{i}-{start}-{end}")
        if self.mode == "real":  # a linear axis has no breaks: still say what each band left out, where
            for i, band in enumerate(self.elision.bands):
                middle = self.axis.y((band.start_ns + band.end_ns) // 2)
                self._break_label(ax, middle, band.label, f"band-{i}")

    @staticmethod
    def _break_label(ax, row: float, text: str, gid: str):
        if len(text) * CHAR_IN > MID_W - 0.2 and ", " in text:  # two lines, split at the middle comma
            commas = [i for i in range(len(text)) if text.startswith(", ", i)]
            cut = min(commas, key=lambda i: abs(i - len(text) / 2))
            text = text[:cut + 1] + "\n" + text[cut + 2:]
        ax.text((X_CLIENT + X_SERVER) / 2, row, text, ha="center", va="center", fontsize=style.FONT,
                color=style.MUTED, gid=gid, linespacing=1.1,
                bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=style.BREAK))

    def _ticks(self, ax):
        # Ticks where segments are (and where calls failed); a long ladder gets one every other row.
        times = [s.time_ns for s in self.segments] + [c.end_ns for c, _ in self.calls
                                                      if c.failed and id(c) not in self.after_cause]
        times.append(self.axis.origin_ns)  # "0": where the first event sits
        spacing = 0.9 if len(self.segments) <= 80 else 1.9
        for row, label in self.axis.ticks(at=times or None, spacing=spacing):
            ax.text(-0.08, row, label, ha="right", va="center", fontsize=style.SMALL,
                    color=style.MUTED, clip_on=False)
        ax.annotate("time", (0, 1), xycoords="axes fraction", xytext=(-8, 4), textcoords="offset points",
                    ha="right", va="bottom", fontsize=style.SMALL, color=style.MUTED)

    def _states_drawn(self, ax):
        # Beside each lifeline, outside the connector lane (the legend says italic is a state):
        # the eye reads a side's state next to its arrows, not at the page's edge.
        for side, timeline in self.state_texts.items():
            column = _Column()
            x = X_CLIENT - LANE_W if side == "client" else X_SERVER + LANE_W
            for when, text in timeline:
                lines = text.count("\n") + 1
                row = column.place(self.axis.y(when) + 0.05, LINE_ROWS * lines, below=True)
                ax.text(x, row, text, ha="right" if side == "client" else "left", va="top",
                        fontsize=style.SMALL, color=style.STATE, fontstyle="italic",
                        gid=f"state-{side}-{when}")

    def _segments(self, ax):
        column = _Column()
        middle = (X_CLIENT + X_SERVER) / 2
        for segment in self.segments:
            sender, receiver = self.side.get(segment.src), self.side.get(segment.dst)
            if sender is None or receiver is None:
                continue
            colour = style.segment_colour(segment)
            y0, y1 = self.axis.y(segment.time_ns), self.axis.y(self._receive_ns(segment))
            ax.add_artist(FancyArrowPatch((self.x[sender], y0), (self.x[receiver], y1), arrowstyle="-|>",
                                         mutation_scale=14, linewidth=1.6, color=colour, shrinkA=0,
                                         shrinkB=BAR_W * 36, zorder=4, gid=f"segment-{segment.frame}"))
            text = self.labels[segment.frame]
            lines = text.count("\n") + 1
            anchor = (y0 + y1) / 2 - 0.1
            row = column.place(anchor, lines * LINE_ROWS)
            label = ax.text(middle, row, text, ha="center", va="bottom", fontsize=style.FONT, color=colour,
                            linespacing=1.15, zorder=5, gid=f"segment-label-{segment.frame}")
            if self.mode == "real":  # labels may sit on other arrows there: keep them readable
                label.set_bbox(dict(boxstyle="square,pad=0.05", facecolor="white", edgecolor="none", alpha=0.85))
            if row - anchor > 0.3:  # pushed down by a crowded real time axis: point back
                ax.add_line(Line2D([middle, middle], [row, anchor + 0.1], color=colour, linewidth=0.6,
                                   linestyle=":", zorder=3))

    def _calls(self, ax):
        columns = {"client": _Column(), "server": _Column()}
        for call, side in self.calls:
            index = self.call_ids[id(call)]
            x = self.x[side]
            y0, y1 = map(self.axis.y, self._span(call))
            colour = style.FAILURE if call.failed else (style.EOF if call.is_eof else style.LIFELINE)
            face = style.FAILURE if call.failed else (style.EOF if call.is_eof else "#d9d9d9")
            ax.add_artist(Rectangle((x - BAR_W / 2, y0), BAR_W, max(y1 - y0, 0.15), facecolor=face,
                                   edgecolor=colour, linewidth=0.8, zorder=6, gid=f"call-{index}"))
            if call.failed:
                ax.add_line(Line2D([x], [y1], marker="X", markersize=10, color=style.FAILURE,
                                   markeredgecolor="white", markeredgewidth=0.8, linestyle="none",
                                   zorder=7, gid=f"call-failed-{index}"))
            lines = self._call_lines(call)
            height = _line_count(lines) * LINE_ROWS
            row = columns[side].place(y1 + 0.25, height)
            text_x = CALL_W if side == "client" else X_SERVER + LANE_W + STATE_W
            ha = "right" if side == "client" else "left"
            note = self._note_lines(call)
            phrase = lines[1:len(lines) - len(note)]
            phrase_rows = (len(lines) - 1) * LINE_ROWS
            ax.text(text_x, row - phrase_rows, lines[0], ha=ha, va="bottom", fontsize=style.FONT,
                    color=colour, fontweight="bold" if call.failed else "normal", gid=f"call-label-{index}")
            if phrase:
                ax.text(text_x, row - len(note) * LINE_ROWS, "\n".join(phrase), ha=ha, va="bottom",
                        fontsize=style.SMALL, color=style.FAILURE, fontstyle="italic", linespacing=1.3,
                        gid=f"call-phrase-{index}")
            if note:
                ax.text(text_x, row, "\n".join(note), ha=ha, va="bottom", fontsize=style.SMALL, color=style.MUTED,
                        fontstyle="italic", linespacing=1.3, gid=f"call-clock-{index}")
                self._clock_band(ax, call, side, index)
            if row - y1 > 0.6:
                end = text_x + (0.03 if side == "client" else -0.03)
                ax.add_line(Line2D([end, x], [row - 0.25, y1], color=colour, linewidth=0.6, linestyle=":"))

    def _clock_band(self, ax, call: SocketCall, side: str, index: int):
        """Where the call's own stamp puts it, give or take its clock's
        uncertainty: a shaded band beside its lifeline (the call itself is
        drawn after its cause)."""
        moved = self.after_cause[id(call)]
        top = self.axis.y(moved.logged_ns - moved.late_ns)
        bottom = self.axis.y(moved.logged_ns + moved.late_ns)
        left = X_CLIENT - LANE_W - STATE_W if side == "client" else X_SERVER
        ax.add_artist(Rectangle((left, top - 0.1), LANE_W + STATE_W, max(bottom - top, 0) + 0.2,
                                facecolor=style.MUTED, alpha=0.12, edgecolor="none", zorder=0,
                                gid=f"clock-band-{index}"))

    def _connectors(self, ax):
        side_of = dict((id(call), side) for call, side in self.calls)
        per_side = {"client": 0, "server": 0}
        for link in self.links:
            index = self.link_ids[id(link)]
            side = side_of.get(id(link.call)) or self.connection.side_of(link.call)
            target = self._cause_row(link, side)
            if side is None or target is None:
                continue
            x = self.x[side]
            arm = 9 + 4 * (per_side[side] % 3)
            per_side[side] += 1
            angle = 180 if side == "client" else 0
            ax.add_artist(FancyArrowPatch(
                (x, target), (x, self.axis.y(self._span(link.call)[1])), arrowstyle="-|>", mutation_scale=9,
                connectionstyle=f"arc,angleA={angle},angleB={angle},armA={arm},armB={arm},rad=4",
                linestyle=(0, (3, 2)), linewidth=1.2, color=style.CONNECTOR, shrinkA=2, shrinkB=4,
                zorder=8, gid=f"connector-{index}"))

    def _cause_row(self, link: Link, side: Optional[str]) -> Optional[float]:
        if link.cause is not None and link.cause in self.drawn:
            if self.side.get(link.cause.src) == side:
                return self.axis.y(link.cause.time_ns)
            return self.axis.y(self._receive_ns(link.cause))
        if link.local_call is not None:
            return self.axis.y(link.local_call.end_ns)
        return None

    # -- legend ------------------------------------------------------------------
    def _rules_used(self):
        names = []
        for link in self.links:
            if link.rule not in names and (link.cause is not None or link.local_call is not None):
                names.append(link.rule)
        found = []
        for name in names:
            try:
                found.append(rules.rule_named(name))
            except KeyError:
                found.append(rules.Rule(name, "any", frozenset(), link.kind, name))
        return found

    @staticmethod
    def _rule_lines(rule) -> list[str]:
        return textwrap.wrap(f"{rule.name}: {rule.description}", TEXT_WRAP, subsequent_indent="    ")

    def _legend_handles(self, rules_used) -> list:
        handles, seen = [], set()
        kinds = {style.segment_kind(s) for s in self.segments}
        for kind, colour, label in SEGMENT_LEGEND:
            if kind in kinds and label not in seen:
                seen.add(label)
                handles.append(Line2D([], [], color=colour, linewidth=2, marker=">", markersize=6, label=label))
        outcomes = {("failed" if c.failed else "eof" if c.is_eof else "ok") for c, _ in self.calls}
        if "ok" in outcomes:
            handles.append(Patch(facecolor="#d9d9d9", edgecolor=style.LIFELINE, label="socket call"))
        if "eof" in outcomes:
            handles.append(Patch(facecolor=style.EOF, edgecolor=style.EOF, label="end-of-file (recv → 0)"))
        if "failed" in outcomes:
            handles.append(Line2D([], [], marker="X", color=style.FAILURE, linestyle="none", markersize=9,
                                  label="failed call (errno)"))
        if rules_used:
            handles.append(Line2D([], [], color=style.CONNECTOR, linestyle=(0, (3, 2)), linewidth=1.2,
                                  label="caused by (rule below)"))
        if self.axis.breaks:
            handles.append(Line2D([], [], color=style.BREAK, linestyle=":", linewidth=1.4,
                                  label="time cut (what it hides, said)" if self.elision.bands
                                  else "idle time cut (its length said)"))
        if self.after_cause:
            handles.append(Patch(facecolor=style.MUTED, alpha=0.12, edgecolor="none",
                                 label="a log line's own time ± its clock"))
        if any(self.states.values()):
            handles.append(Line2D([], [], color="none", label="italic: TCP state"))
        return handles

    def _legend(self, ax):
        if self.handles:
            ax.legend(handles=self.handles, loc="upper left", bbox_to_anchor=(0, 0), ncol=LEGEND_COLUMNS,
                      frameon=False, fontsize=style.SMALL, handlelength=2.2, borderaxespad=0.3, borderpad=0.4,
                      labelspacing=0.4, columnspacing=1.4)
        if self.rule_lines:  # below the legend's last row, however many rows it has
            ax.annotate("\n".join(self.rule_lines), (0, 0), xycoords="axes fraction", xytext=(0, -self.legend_pt),
                        textcoords="offset points", va="top", fontsize=style.SMALL, color=style.CONNECTOR,
                        linespacing=1.2, gid="rules")


def _line_count(lines: list[str]) -> int:
    return sum(line.count("\n") + 1 for line in lines)


class _Column:
    """Labels in one column, kept from overlapping: each is pushed below the last."""

    def __init__(self):
        self.last_bottom = float("-inf")

    def place(self, anchor: float, height: float, *, below: bool = False) -> float:
        """The row to anchor a label at. Labels hang above their anchor
        (va=bottom) unless `below` (va=top)."""
        top = anchor if below else anchor - height
        top = max(top, self.last_bottom + 0.05)
        self.last_bottom = top + height
        return top if below else top + height
