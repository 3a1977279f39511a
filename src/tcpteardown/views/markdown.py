"""A snippet for an incident write-up: the ladder image link and the paragraphs.

`tcpteardown explain CAPTURE --markdown` calls `render_markdown`: it draws
the ladder of the connection with the first failing call, writes it next to
the capture (`<capture stem>.png`), and returns Markdown ready to paste: the
image link, then the paragraph for each call drawn on it.

Writes exactly one file (the figure); never prints: the command prints the
returned text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from ..model import Link, Recording

__all__ = ["figure_path", "render_markdown", "snippet"]


def figure_path(capture: str, suffix: str = ".png") -> Path:
    """`<capture stem>.png` next to the capture (`run/broken-pipe.pcapng` -> `run/broken-pipe.png`)."""
    return Path(capture).with_suffix(suffix)


def snippet(image: str, alt: str, paragraphs: Iterable[str]) -> str:
    """``![alt](image)`` and the paragraphs, blank-line separated."""
    alt = alt.replace("[", "(").replace("]", ")")
    parts = [f"![{alt}]({Path(image).as_posix()})", *paragraphs]
    return "\n\n".join(parts)


def render_markdown(links: Iterable[Link], recording: Recording, args) -> str:
    """Draw, write next to `args.capture`, return the snippet (explain's renderer)."""
    from ..views.narrative import narrate, paragraph
    from .connections import connections, select_connection
    from .ladder import call_label, draw_ladder
    from .style import save_figure

    links = list(links)
    lang: Optional[str] = getattr(args, "lang", None)
    tz = getattr(args, "tzinfo", None)
    conn = select_connection(connections(recording), getattr(args, "conn", None))
    drawn = [link for link in links if link.call in conn.calls]
    path = save_figure(draw_ladder(recording, drawn, conn=conn.index, lang=lang), figure_path(args.capture))
    name = recording.metadata.scenario or Path(args.capture).stem
    failing = conn.first_failure
    alt = f"{name}: ladder of {conn.client} → {conn.server}"
    if failing is not None:
        alt += f", {failing.role} {call_label(failing)}"
    paragraphs = [paragraph(link, recording, lang=lang, tz=tz) for link in drawn]
    if not paragraphs:
        paragraphs = [narrate(links, recording, lang=lang, tz=tz)]
    return snippet(str(path), alt, paragraphs)
