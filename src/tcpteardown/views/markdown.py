"""A snippet for an incident write-up: the ladder as Mermaid (or an image link) and the paragraphs.

`tcpteardown explain CAPTURE --markdown` calls `render_markdown`. It returns
GitHub-flavoured Markdown ready to paste into an incident document: a
heading naming the capture and the first failure, one line saying which
connection and system, the ladder as a ```` ```mermaid ```` block (GitHub,
GitLab, Notion and Confluence's Mermaid macro render it; nothing to upload),
then each paragraph under its own heading with the frame numbers it rests on
(``### client send() → EPIPE ← frame 8 (RST)``).

With `--image` (`args.image`), the ladder is drawn as a PNG next to the
capture (`<capture stem>.png`) and linked instead of embedded; that is the
only case where a file is written. Never prints: the command prints the
returned text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..model import Link, Recording

__all__ = ["figure_path", "render_markdown", "snippet", "link_heading", "mermaid_block"]


def figure_path(capture: str, suffix: str = ".png") -> Path:
    """`<capture stem>.png` next to the capture (`run/broken-pipe.pcapng` -> `run/broken-pipe.png`)."""
    return Path(capture).with_suffix(suffix)


def mermaid_block(diagram: str) -> str:
    """A fenced ```` ```mermaid ```` block around a diagram."""
    return f"```mermaid\n{diagram.rstrip()}\n```"


def image_link(image: str, alt: str) -> str:
    """``![alt](image)``, brackets in the alt text made harmless."""
    alt = alt.replace("[", "(").replace("]", ")")
    return f"![{alt}]({Path(image).as_posix()})"


def link_heading(link: Link) -> str:
    """``client send() → EPIPE ← frame 8 (RST)``: the call and the frames its cause rests on."""
    from .mermaid import call_text

    call = link.call
    head = f"{call.process} {call_text(call)}"
    if link.cause is not None:
        frames = [link.cause.frame, *(s.frame for s in link.related if s.frame != link.cause.frame)]
        label = "frame" if len(frames) == 1 else "frames"
        return f"{head} ← {label} {', '.join(map(str, sorted(frames)))} ({link.cause.flags.render()})"
    if link.local_call is not None:
        return f"{head} ← own {link.local_call.op}(), no segment"
    return f"{head} ← no segment ({link.rule})"


def snippet(figure: str, paragraphs: Sequence[tuple[str, str]], *, title: str, context: str) -> str:
    """The whole snippet: `## title`, the context line, the figure, then `### heading` + paragraph each."""
    parts = [f"## {title}", context, figure]
    for heading, text in paragraphs:
        parts += [f"### {heading}", text]
    return "\n\n".join(parts)


def render_markdown(links: Iterable[Link], recording: Recording, args) -> str:
    """explain's renderer: Mermaid embedded (default), or with `args.image` a PNG written and linked."""
    from ..analysis.connections import connections, select_connection
    from .mermaid import call_text, mermaid_text
    from .narrative import narrate, paragraph

    links = list(links)
    lang: Optional[str] = getattr(args, "lang", None)
    tz = getattr(args, "tzinfo", None)
    found = connections(recording)
    conn = select_connection(found, getattr(args, "conn", None))
    drawn = [link for link in links if link.call in conn.calls]
    name = recording.metadata.scenario or Path(args.capture).stem
    failing = conn.first_failure
    title = name + (f": {failing.process} {call_text(failing)}" if failing is not None else "")
    meta = recording.metadata
    context = [f"Ladder of {conn.client or '?'} → {conn.server} (connection {conn.index + 1} of {len(found)}, "
               f"{len(conn.segments)} segments)"]
    system = " ".join(p for p in (meta.os, meta.kernel) if p)
    if system:
        context.append(system)
    context.append(f"from `{Path(args.capture).name}`")
    if getattr(args, "image", False):
        figure = image_link(_draw_png(recording, drawn, conn, lang, args.capture),
                            f"{title} (ladder of {conn.client} → {conn.server})")
    else:
        figure = mermaid_block(mermaid_text(recording, drawn, conn=conn, title=name))
    paragraphs = [(link_heading(link), paragraph(link, recording, lang=lang, tz=tz)) for link in drawn]
    if not paragraphs:
        paragraphs = [("What happened", narrate(links, recording, lang=lang, tz=tz))]
    return snippet(figure, paragraphs, title=title, context=" · ".join(context) + ".")


def _draw_png(recording: Recording, links: list[Link], conn, lang: Optional[str], capture: str) -> str:
    from .ladder import draw_ladder
    from .style import save_figure

    return str(save_figure(draw_ladder(recording, links, conn=conn, lang=lang), figure_path(capture)))
