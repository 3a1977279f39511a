"""The ladder as one self-contained interactive HTML page (`plot -o ladder.html`).

Inline SVG, CSS and a little JavaScript; nothing fetched from the network,
so it opens offline in any browser, survives `nbconvert --to html`, and can
be attached to an incident ticket. The reader steps through the connection
one segment or socket call at a time (buttons, or the arrow keys, Home and
End): the current step is highlighted on the ladder, what comes after it
fades, both sides' TCP state at that moment shows on the lifelines and in
the panel, and a call's panel gives its rule and paragraph. Hovering a
segment shows its full header and frame number; clicking a frame number
copies its Wireshark filter (``frame.number == 8``).

Same data as the PNG ladder, from the same model: the items and their order
come from `mermaid.sequence` (segments kept, elided bands, calls), rows from
`timeaxis.build_time_axis`, states from `analysis.tcpstate`, reasons from
`analysis.reasons`, paragraphs from `narrative.paragraph`, colours from
`style`.

`html_fragment` returns a `<div>` that a notebook can display (several on a
page step independently: keys go to the focused ladder); `html_ladder`
wraps it in a whole page. Both are pure and deterministic text.
"""

from __future__ import annotations

import html
import json
from dataclasses import replace
from typing import Iterable, Optional, Union

from ..analysis import rules, tcpstate
from ..analysis.reasons import reason_phrase, reset_reason
from ..analysis.sources import told_once
from ..analysis.relative import relative_numbers
from ..model import Link, Recording, Segment, TcpFlags
from . import style
from .mermaid import Item, sequence
from .narrative import paragraph
from .timeaxis import build_time_axis

__all__ = ["html_ladder", "html_fragment"]

# -- geometry (px) ------------------------------------------------------------------
ROW = 26  # one row of the time axis
TIME_W = 70  # tick labels
STATE_W = 120  # TCP state names, at the outer edges
CALL_W = 190  # call labels, beside their lifeline
MID_W = 340  # segment arrows and their labels
X_CLIENT = TIME_W + STATE_W + CALL_W
X_SERVER = X_CLIENT + MID_W
WIDTH = X_SERVER + CALL_W + STATE_W
TOP = 78  # lifeline heads and the current states
BOTTOM = 24

# The PNG ladder's colours (views/style.py), by the CSS class of each kind.
COLOURS = {"rst": style.RST, "fin": style.FIN, "syn": style.SYN, "data": style.DATA,
           "failed": style.FAILURE, "eof": style.EOF, "call": style.LIFELINE, "state": style.STATE,
           "break": style.BREAK}


def _kind(segment: Segment) -> str:
    """``rst``, ``fin``, ``syn`` or ``data`` (pure ACKs are drawn as data, as on the PNG)."""
    kind = style.segment_kind(segment)
    return "data" if kind == "ACK" else kind.lower()


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _rel(time_ns: int, origin: int) -> str:
    return f"+{(time_ns - origin) / 1e6:.3f} ms" if time_ns >= origin else f"−{(origin - time_ns) / 1e6:.3f} ms"


def _header(segment: Segment, relative: dict, recording: Recording, origin: int) -> list[str]:
    """The whole TCP header of a segment, as lines for its hover card."""
    seq, ack = relative.get(segment.frame, (segment.seq, segment.ack))
    lines = [f"frame {segment.frame} · {_rel(segment.time_ns, origin)}",
             f"{segment.src} → {segment.dst}",
             f"flags {segment.flags.render()} (0x{int(segment.flags):02x})",
             f"seq {seq} (raw {segment.seq})",
             f"ack {ack} (raw {segment.ack})" if segment.flags & TcpFlags.ACK else "ack — (ACK flag off)",
             f"window {segment.window} (raw, before scaling) · payload {segment.payload_len} bytes"]
    if segment.options:
        lines.append("options " + ", ".join(name if value is None else f"{name}={value}"
                                             for name, value in segment.options))
    if segment.is_rst:
        reason, inferred = reset_reason(segment, recording)
        lines.append(_reason_line(reason, inferred))
    return lines


def _reason_line(reason: Optional[str], inferred: bool) -> str:
    if reason is None:
        return "RST reason unknown (the packets do not say)"
    source = "inferred from the packets" if inferred else "kernel: tcp:tcp_send_reset"
    phrase = reason_phrase(reason)
    return f"RST reason {reason} ({source})" + (f": {phrase}" if phrase else "")


class _Page:
    """Builds the SVG and the steps of one connection."""

    def __init__(self, recording: Recording, links: list[Link], conn, lang: Optional[str]):
        recording = told_once(recording, links)  # a failure several sources saw is drawn once
        self.recording = recording
        self.lang = lang
        self.connection, self.items = sequence(recording, links, conn=conn, every_call=True)
        self.relative = relative_numbers(self.connection.segments)
        segments = self.connection.segments
        self.origin = segments[0].time_ns if segments else self.connection.start_ns  # the first SYN
        self.axis = self._axis()
        self.timelines = self._timelines()
        self.step_of: dict[int, int] = {}  # id(item) -> step number

    # -- data -------------------------------------------------------------------
    def _axis(self):
        events, cuts = [], {}
        for item in self.items:
            if item.kind == "segment":
                events.append((item.time_ns, 1.7 if item.rst else 1.1))
            elif item.kind == "call":
                events.append((item.call.start_ns, 0.25))
                events.append((item.call.end_ns, 1.0))
            elif item.kind == "band":
                events.append((item.time_ns, 0.6))
                cuts[item.time_ns] = item.text
        axis = build_time_axis(events, "compressed", cuts=cuts)
        return replace(axis, origin_ns=self.origin)

    def _timelines(self) -> dict[str, list[tuple[int, str]]]:
        """Each side's state changes, one per instant (where it ended up)."""
        conn = self.connection
        if conn.connection is None:
            return {}
        out = {}
        for endpoint, timeline in tcpstate.infer_states(self.recording, conn.connection).items():
            side = "client" if endpoint == conn.client else "server" if endpoint == conn.server else None
            if side is None:
                continue
            last: dict[int, str] = {}
            for when, state in timeline:
                last[when] = state
            out[side] = sorted(last.items())
        return out

    def y(self, time_ns: int) -> float:
        return TOP + ROW + self.axis.y(time_ns) * ROW

    @property
    def height(self) -> float:
        return TOP + ROW * 2 + self.axis.height * ROW + BOTTOM

    # -- steps ------------------------------------------------------------------
    def steps(self) -> list[dict]:
        out = []
        for item in self.items:
            if item.kind not in ("segment", "call"):
                continue
            when = item.time_ns
            step = {"n": len(out), "kind": item.kind, "time": _rel(when, self.origin),
                    "client": tcpstate.state_at(self.timelines.get("client", ()), when) or "—",
                    "server": tcpstate.state_at(self.timelines.get("server", ()), when) or "—"}
            if item.kind == "segment":
                seg = item.segment
                step.update(what=f"{item.sender} → {item.receiver}: {item.text}", frame=seg.frame,
                            why=[_header(seg, self.relative, self.recording, self.origin)[-1]] if seg.is_rst else [],
                            cause=None)
            else:
                link = item.link
                what = f"{item.sender} {item.text.split(' ← ')[0]}"
                why = []  # the paragraph quotes the language's phrase (`lang`) itself
                if link is not None:
                    try:
                        rule = rules.rule_named(link.rule)
                        why.append(f"rule {rule.name}: {rule.description}")
                    except KeyError:
                        why.append(f"rule {link.rule}")
                    why.append(paragraph(link, self.recording, lang=self.lang))
                step.update(what=what, frame=None, why=why,
                            cause=link.cause.frame if link is not None and link.cause is not None else None)
            self.step_of[id(item)] = step["n"]
            out.append(step)
        return out

    # -- SVG --------------------------------------------------------------------
    def svg(self) -> str:
        parts = [f'<svg class="tt-svg" viewBox="0 0 {WIDTH} {self.height:.0f}" width="{WIDTH}" '
                 f'role="img" aria-label="{_esc(self._alt())}" xmlns="http://www.w3.org/2000/svg">',
                 '<defs>' + "".join(
                     f'<marker id="tt-head-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="10" '
                     f'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
                     for k, c in COLOURS.items() if k in ("rst", "fin", "syn", "data")) + '</defs>']
        parts += self._lifelines()
        parts += self._breaks()
        parts += self._ticks()
        parts += self._state_labels()
        for item in self.items:
            if item.kind == "segment":
                parts.append(self._segment(item))
            elif item.kind == "call":
                parts.append(self._call(item))
        parts.append("</svg>")
        return "\n".join(parts)

    def _alt(self) -> str:
        conn = self.connection
        failing = conn.first_failure
        text = f"Ladder of {conn.client} → {conn.server}: {len(conn.segments)} segments, {len(conn.calls)} socket calls"
        if failing is not None:
            text += f"; {failing.process} {failing.op}() failed with {failing.errno}"
        return text

    def _lifelines(self) -> list[str]:
        out, bottom = [], self.height - BOTTOM
        for side, x in (("client", X_CLIENT), ("server", X_SERVER)):
            endpoint = getattr(self.connection, side)
            out.append(f'<line class="tt-life" x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom:.1f}"/>')
            out.append(f'<text class="tt-head" x="{x}" y="20" text-anchor="middle">{side}</text>')
            out.append(f'<text class="tt-addr" x="{x}" y="38" text-anchor="middle">'
                       f'{_esc(endpoint or "(address unknown)")}</text>')
            out.append(f'<text class="tt-now" data-side="{side}" x="{x}" y="60" text-anchor="middle"></text>')
        return out

    def _breaks(self) -> list[str]:
        out = []
        for cut in self.axis.breaks:
            top, bottom = TOP + ROW + cut.top * ROW, TOP + ROW + cut.bottom * ROW
            for x in (X_CLIENT, X_SERVER):
                out.append(f'<line class="tt-gap" x1="{x}" y1="{top:.1f}" x2="{x}" y2="{bottom:.1f}"/>')
            out.append(f'<text class="tt-break" x="{(X_CLIENT + X_SERVER) / 2:.0f}" y="{(top + bottom) / 2 + 4:.1f}" '
                       f'text-anchor="middle">{_esc(cut.label)}</text>')
        return out

    def _ticks(self) -> list[str]:
        times = [item.time_ns for item in self.items if item.kind == "segment"]
        return [f'<text class="tt-tick" x="{TIME_W - 6}" y="{TOP + ROW + row * ROW + 4:.1f}" text-anchor="end">'
                f'{_esc(label)}</text>' for row, label in self.axis.ticks(at=times or None, spacing=0.9)]

    def _state_labels(self) -> list[str]:
        out = []
        for side, timeline in self.timelines.items():
            x, anchor = (TIME_W + 4, "start") if side == "client" else (WIDTH - 4, "end")
            last_y = -1e9
            for when, state in timeline:
                y = max(self.y(when) + 12, last_y + 13)
                last_y = y
                out.append(f'<text class="tt-state" x="{x}" y="{y:.1f}" text-anchor="{anchor}">{_esc(state)}</text>')
        return out

    def _segment(self, item: Item) -> str:
        seg = item.segment
        kind = _kind(seg)
        x0, x1 = (X_CLIENT, X_SERVER) if item.sender == "client" else (X_SERVER, X_CLIENT)
        y = self.y(seg.time_ns)
        n = self.step_of[id(item)]
        header = "\n".join(_header(seg, self.relative, self.recording, self.origin))
        lines = [f'<g class="tt-item tt-seg tt-k-{kind}" data-step="{n}" data-frame="{seg.frame}" '
                 f'data-header="{_esc(header)}">',
                 f'<title>{_esc(header)}</title>',
                 f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{COLOURS[kind]}" '
                 f'marker-end="url(#tt-head-{kind})"/>',
                 f'<line class="tt-hit" x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}"/>',
                 f'<text x="{(X_CLIENT + X_SERVER) / 2:.0f}" y="{y - 6:.1f}" text-anchor="middle" '
                 f'fill="{COLOURS[kind]}">{_esc(item.text)}</text>']
        if item.note:
            lines.append(f'<text class="tt-note" x="{(X_CLIENT + X_SERVER) / 2:.0f}" y="{y - 22:.1f}" '
                         f'text-anchor="middle" fill="{COLOURS[kind]}">{_esc(item.note)}</text>')
        lines.append("</g>")
        return "".join(lines)

    def _call(self, item: Item) -> str:
        call = item.call
        x = X_CLIENT if item.sender == "client" else X_SERVER
        y0, y1 = self.y(call.start_ns), self.y(call.end_ns)
        kind = "failed" if call.failed else "eof" if call.is_eof else "call"
        n = self.step_of[id(item)]
        tx, anchor = (x - 10, "end") if item.sender == "client" else (x + 10, "start")
        mark = (f'<path class="tt-x" d="M{x - 5},{y1 - 5} L{x + 5},{y1 + 5} M{x - 5},{y1 + 5} L{x + 5},{y1 - 5}"/>'
                if call.failed else "")
        cause = f' data-cause="{item.link.cause.frame}"' if item.link is not None and item.link.cause else ""
        return (f'<g class="tt-item tt-call tt-k-{kind}" data-step="{n}"{cause}>'
                f'<title>{_esc(call.text or item.text)}</title>'
                f'<rect x="{x - 4}" y="{y0:.1f}" width="8" height="{max(y1 - y0, 4):.1f}" fill="{COLOURS[kind]}"/>'
                f'{mark}<text x="{tx}" y="{y1 - 4:.1f}" text-anchor="{anchor}" fill="{COLOURS[kind]}">'
                f'{_esc(item.text)}</text></g>')


_CSS = """
.tt-ladder{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#222;
  max-width:%(width)dpx;outline:none}
.tt-ladder:focus-visible{outline:2px solid #1f5fbf55}
.tt-ladder h1{font-size:18px;margin:8px 0 2px}
.tt-ladder .tt-sub{font-size:13px;color:#616161;margin:0 0 8px}
.tt-controls{display:flex;gap:6px;align-items:center;position:sticky;top:0;background:#fff;padding:6px 0;z-index:2}
.tt-controls button{font-size:14px;padding:4px 10px;cursor:pointer}
.tt-counter{font-size:14px;margin-left:8px}
.tt-panel{border:1px solid #ddd;border-radius:6px;padding:8px 12px;font-size:14px;line-height:1.45;min-height:5.5em;
  background:#fafafa}
.tt-panel p{margin:3px 0}
.tt-what{font-weight:600}
.tt-what.tt-bad{color:#c62828}
.tt-why{margin:4px 0 0 18px;padding:0}
.tt-frame{color:#1f5fbf;text-decoration:underline;cursor:copy}
.tt-svg{width:100%%;height:auto;display:block;margin-top:8px}
.tt-svg text{font-size:12px}
.tt-head{font-weight:700;font-size:14px!important}
.tt-addr,.tt-tick,.tt-break{fill:#616161}
.tt-now{font-style:italic;fill:#5d4037;font-weight:600}
.tt-state{fill:#5d4037;font-style:italic;font-size:11px!important}
.tt-life{stroke:#444;stroke-width:1.4}
.tt-gap{stroke:#fff;stroke-width:3;stroke-dasharray:3 3}
.tt-seg line{stroke-width:1.6}
.tt-hit{stroke:transparent!important;stroke-width:12!important;cursor:help}
.tt-x{stroke:#c62828;stroke-width:2.2}
.tt-item{transition:opacity .15s}
.tt-item.tt-future{opacity:.18}
.tt-item.tt-current text{font-weight:700}
.tt-item.tt-current line:not(.tt-hit){stroke-width:3.2}
.tt-item.tt-current rect{stroke:#000;stroke-width:1}
.tt-item.tt-cause line:not(.tt-hit){stroke-dasharray:6 3;stroke-width:3}
.tt-card{position:fixed;display:none;white-space:pre;background:#fffef3;border:1px solid #bbb;border-radius:4px;
  padding:6px 8px;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;pointer-events:none;z-index:3;
  box-shadow:0 2px 6px #0002}
.tt-toast{font-size:13px;color:#2e7d32;min-height:1.2em;margin:2px 0}
""" % {"width": WIDTH}

# The page's behaviour. Keys go to the ladder that has focus (a notebook may
# show several); a standalone page focuses its only ladder on load.
_JS = r"""
(function (root) {
  "use strict";
  var steps = JSON.parse(root.querySelector(".tt-data").textContent);
  var items = root.querySelectorAll(".tt-item");
  var panel = root.querySelector(".tt-panel");
  var counter = root.querySelector(".tt-counter");
  var toast = root.querySelector(".tt-toast");
  var card = root.querySelector(".tt-card");
  var current = 0;
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function frameLink(frame) {
    var a = el("a", "tt-frame", "frame " + frame);
    a.setAttribute("data-filter", "frame.number == " + frame);
    a.setAttribute("title", "copy the Wireshark filter frame.number == " + frame);
    a.tabIndex = 0;
    return a;
  }
  function show(n) {
    if (!steps.length) { return; }
    current = Math.max(0, Math.min(steps.length - 1, n));
    var step = steps[current];
    items.forEach(function (item) {
      var k = Number(item.getAttribute("data-step"));
      item.classList.toggle("tt-current", k === current);
      item.classList.toggle("tt-future", k > current);
      item.classList.toggle("tt-cause", step.cause !== null && item.getAttribute("data-frame") === String(step.cause));
    });
    counter.textContent = "Step " + (current + 1) + " of " + steps.length;
    panel.textContent = "";
    var head = el("p", "tt-time", step.time + " · " + step.kind + " ");
    if (step.frame !== null) { head.appendChild(frameLink(step.frame)); }
    if (step.cause !== null) { head.appendChild(document.createTextNode(" caused by ")); head.appendChild(frameLink(step.cause)); }
    panel.appendChild(head);
    var what = el("p", "tt-what", step.what);
    if (step.what.indexOf("RST") >= 0 || step.what.indexOf("→ E") >= 0) { what.classList.add("tt-bad"); }
    panel.appendChild(what);
    var states = el("p", "tt-states");
    states.appendChild(document.createTextNode("client: "));
    states.appendChild(el("b", "tt-client-state", step.client));
    states.appendChild(document.createTextNode(" · server: "));
    states.appendChild(el("b", "tt-server-state", step.server));
    panel.appendChild(states);
    if (step.why.length) {
      var list = el("ul", "tt-why");
      step.why.forEach(function (line) { list.appendChild(el("li", null, line)); });
      panel.appendChild(list);
    }
    root.querySelectorAll(".tt-now").forEach(function (t) {
      t.textContent = step[t.getAttribute("data-side")];
    });
  }
  function copy(text) {
    function done() { toast.textContent = "copied: " + text; }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else { fallback(text); done(); }
  }
  function fallback(text) {
    var area = el("textarea");
    area.value = text;
    area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the toast still shows the filter */ }
    document.body.removeChild(area);
  }
  root.addEventListener("click", function (event) {
    var target = event.target.closest("[data-filter]");
    if (target) { copy(target.getAttribute("data-filter")); return; }
    var item = event.target.closest(".tt-item");
    if (item) { show(Number(item.getAttribute("data-step"))); }
    var button = event.target.closest("button[data-go]");
    if (button) {
      var go = button.getAttribute("data-go");
      show(go === "first" ? 0 : go === "last" ? steps.length - 1 : current + Number(go));
    }
  });
  root.addEventListener("keydown", function (event) {
    var moves = {ArrowRight: current + 1, ArrowDown: current + 1, ArrowLeft: current - 1, ArrowUp: current - 1,
                 Home: 0, End: steps.length - 1};
    if (event.key in moves) { event.preventDefault(); show(moves[event.key]); }
    else if (event.key === "Enter" && event.target.hasAttribute("data-filter")) { copy(event.target.getAttribute("data-filter")); }
  });
  root.addEventListener("mousemove", function (event) {
    var seg = event.target.closest(".tt-seg");
    if (!seg) { card.style.display = "none"; return; }
    card.textContent = seg.getAttribute("data-header");
    card.style.display = "block";
    card.style.left = (event.clientX + 14) + "px";
    card.style.top = (event.clientY + 14) + "px";
  });
  root.addEventListener("mouseleave", function () { card.style.display = "none"; });
  show(0);
  if (root.hasAttribute("data-autofocus")) { root.focus(); }
})(document.currentScript.parentElement);
"""


def _title(recording: Recording) -> str:
    meta = recording.metadata
    return meta.scenario or (meta.source_file.rsplit("/", 1)[-1] if meta.source_file else "recording")


def html_fragment(recording: Recording, links: Iterable[Link] = (), *, conn: Union[None, int, str] = None,
                  lang: Optional[str] = None, autofocus: bool = False) -> str:
    """One ladder as a `<div>` with its style, data and script (for a notebook or a page)."""
    page = _Page(recording, list(links), conn, lang)
    steps = page.steps()
    svg = page.svg()
    data = json.dumps(steps, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")
    conn_view = page.connection
    meta = recording.metadata
    system = " ".join(p for p in (meta.os, meta.kernel) if p)
    sub = [f"{conn_view.client or '?'} → {conn_view.server}", f"{len(conn_view.segments)} segments",
           f"{len(conn_view.calls)} socket calls"]
    if system:
        sub.append(system)
    if page.axis.breaks:
        sub.append("idle gaps cut (real time shown)")
    sub.append("← → or the buttons step; hover a segment for its header; click a frame number to copy its "
               "Wireshark filter")
    return "\n".join([
        f'<div class="tt-ladder" tabindex="0"{" data-autofocus" if autofocus else ""}>',
        f"<style>{_CSS}</style>",
        f"<h1>{_esc(_title(recording))}</h1>",
        f'<p class="tt-sub">{_esc(" · ".join(sub))}</p>',
        '<div class="tt-controls"><button type="button" data-go="first" title="Home">« first</button>'
        '<button type="button" data-go="-1" title="←">◀ previous</button>'
        '<button type="button" data-go="1" title="→">next ▶</button>'
        '<button type="button" data-go="last" title="End">last »</button>'
        '<span class="tt-counter"></span></div>',
        '<div class="tt-panel" aria-live="polite"></div>',
        '<p class="tt-toast" aria-live="polite"></p>',
        svg,
        '<div class="tt-card"></div>',
        f'<script type="application/json" class="tt-data">{data}</script>',
        f"<script>{_JS}</script>",
        "</div>",
    ])


def html_ladder(recording: Recording, links: Iterable[Link] = (), *, conn: Union[None, int, str] = None,
                lang: Optional[str] = None) -> str:
    """A whole self-contained HTML page with one interactive ladder."""
    title = _title(recording)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network: everything is inline; this policy makes sure of it.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>{_esc(title)} — tcpteardown ladder</title></head>",
        '<body style="margin:12px 18px">',
        html_fragment(recording, links, conn=conn, lang=lang, autofocus=True),
        "</body></html>",
        "",
    ])
