"""The ladder as text diagrams for write-ups: Mermaid (GitHub, GitLab, Notion) and PlantUML.

`sequence(recording, links)` lists what the ladder shows, in time order, as
plain items (a segment arrow, a socket call, an idle gap, a band of elided
segments, where the teardown starts); `mermaid_text` and `plantuml_text`
render those items. Both are deterministic text: the same recording gives
byte-identical diagrams, so a write-up diff shows only what changed.

What goes in: both endpoints as participants; one arrow per kept segment
with its frame, flags, relative seq/ack and length (an RST ends in a cross);
each RST's reason as a note over its sender (whose kernel chose it); each
failing call, end-of-file, close and shutdown as a note over the side that
made it, a failing call naming the frame that caused it; idle gaps as notes;
the elided bulk of a long transfer as one note; the teardown (first FIN or
RST onwards) inside a highlighted `rect` (PlantUML: a `group`).

Elision: `sequence` takes the segments to keep and the bands left out
(`kept`, `bands`); without them it folds what the ladder folds
(`analysis.elide`, anchored on the linked causes), so every view of a long
connection leaves out the same bulk.

Pure: no matplotlib, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

from ..analysis.sources import told_once
from ..analysis.connections import ConnectionView, connections, select_connection
from ..analysis.elide import Band, elide
from ..analysis.reasons import reset_reason
from ..analysis.relative import relative_numbers
from ..model import RECEIVE_OPS, Link, Recording, Segment, SocketCall, TcpFlags
from .timeaxis import adaptive_break_ns, format_elapsed

__all__ = ["Item", "sequence", "mermaid_text", "plantuml_text", "segment_text", "call_text"]

# Calls worth a note even when they succeed: they start the teardown.
_TEARDOWN_OPS = frozenset({"close", "shutdown"})

# Mermaid backgrounds for the teardown highlight (RST red, FIN blue), light
# enough that arrows and notes stay legible on GitHub's light and dark themes.
_RECT_RST = "rgba(198, 40, 40, 0.12)"
_RECT_FIN = "rgba(31, 95, 191, 0.10)"


@dataclass(frozen=True, slots=True)
class Item:
    """One line of a text diagram, in time order.

    kind: ``segment`` (arrow from `sender` to `receiver`), ``call`` (a note
    over `sender`), ``gap`` and ``band`` (notes over both), ``teardown``
    (the highlight starts here; `text` is ``rst`` or ``fin``).
    """

    kind: str
    time_ns: int
    text: str
    sender: Optional[str] = None  # "client" or "server"
    receiver: Optional[str] = None
    note: str = ""  # the RST's reason (segment items)
    rst: bool = False
    fin: bool = False
    frame: Optional[int] = None
    # What the item stands for, for views that show more than its text (the HTML ladder).
    segment: Optional[Segment] = None
    call: Optional[SocketCall] = None
    link: Optional[Link] = None


def _elided(connection: ConnectionView, links: Sequence[Link]) -> tuple[Sequence[Segment], Sequence[Band]]:
    """The segments a diagram keeps and the bands it leaves out: the ladder's elision."""
    anchors = [link.cause.time_ns for link in links if link.cause is not None]
    elision = elide(connection.segments, connection.calls, anchors=anchors)
    return elision.kept, elision.bands


def segment_text(segment: Segment, relative: dict, frame_format: str = "#{}") -> str:
    """``#7 PSH,ACK seq=1 ack=1 len=9``: relative numbers, as Wireshark shows them."""
    seq, ack = relative.get(segment.frame, (segment.seq, segment.ack))
    parts = [frame_format.format(segment.frame), segment.flags.render(), f"seq={seq}"]
    if segment.flags & TcpFlags.ACK:
        parts.append(f"ack={ack}")
    parts.append(f"len={segment.payload_len}")
    return " ".join(parts)


def call_text(call: SocketCall, link: Optional[Link] = None) -> str:
    """``send() → EPIPE ← frame 8``: the call, its outcome, and what caused it."""
    if call.failed:
        text = f"{call.op}() → {call.errno}"
    elif call.is_eof:
        text = f"{call.op}() → EOF"
    elif call.result is None:
        text = f"{call.op}()"
    else:
        text = f"{call.op}() = {call.result}"
    if link is not None and link.cause is not None:
        text += f" ← frame {link.cause.frame}"
    elif link is not None and link.local_call is not None:
        text += f" ← own {link.local_call.op}()"
    return text


def _noteworthy(call: SocketCall) -> bool:
    return call.failed or call.is_eof or call.op in _TEARDOWN_OPS or (call.op in RECEIVE_OPS and call.result == 0)


def sequence(
    recording: Recording,
    links: Iterable[Link] = (),
    *,
    conn: Union[None, int, str] = None,
    kept: Optional[Sequence[Segment]] = None,
    bands: Sequence[Band] = (),
    every_call: bool = False,
    frame_format: str = "#{}",
) -> tuple[ConnectionView, list[Item]]:
    """The chosen connection and its diagram items, in time order.

    Calls: the failing, end-of-file, close and shutdown ones and those a
    link names; with `every_call`, all of them (a step-through shows each).
    """
    links = tuple(links)
    recording = told_once(recording, links)  # a failure several sources saw is drawn once
    connection = select_connection(connections(recording), conn)
    if kept is None:
        kept, bands = _elided(connection, [link for link in links if link.call in connection.calls])
    side = {connection.client: "client", connection.server: "server"}
    relative = relative_numbers(connection.segments)
    link_of = {id(link.call): link for link in links if link.call in connection.calls}
    events: list[tuple[int, int, Item]] = []  # (time, order at one instant, item)
    for segment in kept:
        sender, receiver = side.get(segment.src), side.get(segment.dst)
        if sender is None or receiver is None:
            continue
        note = ""
        if segment.is_rst:
            reason, inferred = reset_reason(segment, recording)
            note = f"RST reason {reason} ({'inferred' if inferred else 'kernel'})" if reason else \
                "RST reason unknown (the packets do not say)"
        events.append((segment.time_ns, 1, Item("segment", segment.time_ns, segment_text(segment, relative, frame_format),
                                                sender, receiver, note, segment.is_rst, segment.is_fin,
                                                segment.frame, segment=segment)))
    for call in connection.calls:
        who = connection.side_of(call)
        if who is None or not (every_call or _noteworthy(call) or id(call) in link_of):
            continue
        if not call.failed and any(b.start_ns <= call.start_ns and call.end_ns <= b.end_ns for b in bands):
            continue  # inside a band: left out with its segments (a failing call never is)
        link = link_of.get(id(call))
        events.append((call.end_ns, 2, Item("call", call.end_ns, call_text(call, link), who, call=call, link=link)))
    for band in bands:
        text = f"{band.label.strip('… ')} not drawn ({band.frames})"
        events.append((band.start_ns, 0, Item("band", band.start_ns, text)))
    events.sort(key=lambda e: (e[0], e[1]))
    items = _with_gaps([item for _t, _o, item in events])
    return connection, _with_teardown(items)


def _with_gaps(items: list[Item]) -> list[Item]:
    """A note for each idle gap, as long as the ladder's compressed axis would cut."""
    if len(items) < 2:
        return items
    threshold = adaptive_break_ns([item.time_ns for item in items])
    out = [items[0]]
    for previous, item in zip(items, items[1:]):
        gap = item.time_ns - previous.time_ns
        if gap >= threshold and previous.kind != "band" and item.kind != "band":
            out.append(Item("gap", previous.time_ns, f"{format_elapsed(gap)} idle"))
        out.append(item)
    return out


def _with_teardown(items: list[Item]) -> list[Item]:
    """A teardown marker before the first FIN or RST arrow."""
    segments = [item for item in items if item.kind == "segment"]
    first = next((i for i, item in enumerate(items) if item.rst or item.fin), None)
    if first is None:
        return items
    kind = "rst" if any(item.rst for item in segments) else "fin"
    return items[:first] + [Item("teardown", items[first].time_ns, kind)] + items[first:]


# -- Mermaid ----------------------------------------------------------------------

# Characters Mermaid's sequence lexer reads as syntax anywhere in a message
# or note: `#` starts a comment (the rest of the line vanishes), `;` ends the
# statement, `<...>` is HTML, `%%` a comment. Entities (`#35;`) are not
# decoded in message text by Mermaid 12, so each is replaced by a look-alike
# (a frame is written `[8]` there, not `#8`: see `mermaid_text`).
_MERMAID_SAFE = {"#": "\u2116", ";": ",", "<": "\u2039", ">": "\u203a"}


def _mermaid_escape(text: str) -> str:
    """`text` with nothing Mermaid would read as syntax (`a;b` -> `a,b`, `#` -> `№`)."""
    text = re.sub(r"[#;<>]", lambda m: _MERMAID_SAFE[m.group()], text)
    return text.replace("%%", "% %")


@dataclass(frozen=True, slots=True)
class _Syntax:
    """How one diagram language writes each kind of item (format strings)."""

    head: tuple[str, ...]
    title: str
    participant: str
    arrow: str  # {indent}{sender}{arrow}{receiver}{text}
    cross: str  # the arrow of an RST
    note: str  # {indent}{side}{text}
    both: str  # a note over both lifelines
    open_teardown: str  # {rst} is true for an RST teardown
    close_teardown: str
    tail: tuple[str, ...]
    indent: str
    escape: Callable[[str], str] = staticmethod(lambda text: text)


_MERMAID = _Syntax(
    head=("sequenceDiagram",), title="    title {text}",
    participant="    participant {name} as {name} {endpoint}",
    arrow="{indent}{sender}->>{receiver}: {text}", cross="{indent}{sender}-x{receiver}: {text}",
    note="{indent}Note over {side}: {text}", both="{indent}Note over client,server: ⋯ {text} ⋯",
    open_teardown="    rect {colour}", close_teardown="    end", tail=(), indent="    ",
    escape=_mermaid_escape)

_PLANTUML = _Syntax(
    head=("@startuml",), title="title {text}",
    participant='participant "{name}\\n{endpoint}" as {name}',
    arrow="{indent}{sender} -> {receiver} : {text}", cross="{indent}{sender} ->x {receiver} : {text}",
    note="{indent}note over {side} : {text}", both="{indent}...{text}...",
    open_teardown="group teardown", close_teardown="end", tail=("@enduml",), indent="")


def _render(syntax: _Syntax, connection: ConnectionView, items: list[Item], title: Optional[str]) -> str:
    e = syntax.escape
    lines = list(syntax.head)
    if title:
        lines.append(syntax.title.format(text=e(title)))
    for name in ("client", "server"):
        endpoint = getattr(connection, name)
        lines.append(syntax.participant.format(name=name, endpoint=e(str(endpoint) if endpoint else "(address unknown)")))
    indent, torn = syntax.indent, False
    for item in items:
        if item.kind == "teardown":
            lines.append(syntax.open_teardown.format(colour=_RECT_RST if item.text == "rst" else _RECT_FIN))
            indent, torn = syntax.indent + "    ", True
        elif item.kind == "segment":
            form = syntax.cross if item.rst else syntax.arrow
            lines.append(form.format(indent=indent, sender=item.sender, receiver=item.receiver, text=e(item.text)))
            if item.note:
                lines.append(syntax.note.format(indent=indent, side=item.sender, text=e(item.note)))
        elif item.kind == "call":
            lines.append(syntax.note.format(indent=indent, side=item.sender, text=e(item.text)))
        else:  # gap, band
            lines.append(syntax.both.format(indent=indent, text=e(item.text)))
    if torn:
        lines.append(syntax.close_teardown)
    return "\n".join([*lines, *syntax.tail]) + "\n"


def mermaid_text(recording: Recording, links: Iterable[Link] = (), *, conn: Union[None, int, str] = None,
                 kept: Optional[Sequence[Segment]] = None, bands: Sequence[Band] = (),
                 title: Optional[str] = None) -> str:
    """A Mermaid `sequenceDiagram` of one connection (ends with a newline)."""
    # `#` would start a Mermaid comment: frames are `[8]` here.
    connection, items = sequence(recording, links, conn=conn, kept=kept, bands=bands, frame_format="[{}]")
    return _render(_MERMAID, connection, items, title)


# -- PlantUML ---------------------------------------------------------------------

def plantuml_text(recording: Recording, links: Iterable[Link] = (), *, conn: Union[None, int, str] = None,
                  kept: Optional[Sequence[Segment]] = None, bands: Sequence[Band] = (),
                  title: Optional[str] = None) -> str:
    """The same diagram for PlantUML (``@startuml`` ... ``@enduml``; the teardown is a `group`)."""
    # A label starting with `#` is a numbered list in PlantUML's Creole: `[8]` here too.
    connection, items = sequence(recording, links, conn=conn, kept=kept, bands=bands, frame_format="[{}]")
    return _render(_PLANTUML, connection, items, title)
