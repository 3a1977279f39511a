"""The step-through for notebooks: the ladder itself, stepped.

One self-contained HTML block, no network: the ladder (SVG)
beside a panel, and one radio button per step above them. Checking step N
(by its button, by the arrow keys once a step button has focus, or by the
panel's Previous/Next) highlights that step's segment or call on the ladder,
fades everything after it, and shows the panel for it: "Step N of M", the
time since the first SYN, both sides' TCP state at that moment, the rule that
linked a failing call and its paragraph. Stylesheet rules keyed on the
checked radio do all of it (no script steps anything), so the same block
steps in JupyterLab, in Notebook 7 and in a page exported with `jupyter
nbconvert --to html`, offline. One line of script only keeps the arrow keys
from the notebook's own shortcuts (`_keep_keys`). `steps_text` is the plain-text fallback (no IPython).

The ladder is drawn once by `views.ladder.draw_ladder`; this module only
names its elements (their SVG ids are the artists' gids) in the stylesheet.
"""

from __future__ import annotations

import html
import io
import re
import uuid
from typing import Optional, Sequence

from ..analysis.sources import told_once
from ..model import Link, Recording
from .steps import LOG_NOTE, Step, after_cause, build_steps

__all__ = ["stepper_html", "ladder_svg", "steps_text", "step_element_ids", "after_their_causes"]

FADED_OPACITY = 0.15
HIGHLIGHT = "#f0a800"


def ladder_svg(recording: Recording, links: Sequence[Link] = (), *, lang: Optional[str] = None,
               conn=None, **options) -> tuple[str, str]:
    """(svg, alt text) of the ladder drawn for a notebook's width and one
    screen's height (`views.ladder.draw_ladder_on_screen`; ``full=True``
    draws everything): an inline SVG as wide as the cell up to the width it
    was drawn for (never wider, so text keeps its size; narrower only in a
    narrower cell), with a <title> and an aria-label saying what it shows."""
    from .ladder import CSS_DPI, draw_ladder_on_screen

    figure = draw_ladder_on_screen(recording, links, conn=conn, lang=lang, **options)
    drawn_px = round(figure.get_size_inches()[0] * CSS_DPI)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)  # RDF boilerplate
    # The ladder's own one-sentence description when it labels its figure;
    # otherwise (an older ladder) one said here.
    alt = figure.get_label() or _alt_text(recording, links, conn=conn)
    head_end = svg.index(">") + 1
    opening = svg[:head_end]
    opening = re.sub(r'\s(width|height)="[^"]*"', "", opening)  # the viewBox keeps the proportions
    opening = opening.replace("<svg ", f'<svg role="img" aria-label="{html.escape(alt)}" width="100%" '
                                       f'style="max-width:{drawn_px}px;height:auto;display:block" ', 1)
    return opening + f"<title>{html.escape(alt)}</title>" + svg[head_end:], alt


def _alt_text(recording: Recording, links: Sequence[Link] = (), *, conn=None) -> str:
    """What the ladder shows, in one or two sentences (for screen readers and
    for a page whose image did not load)."""
    from ..analysis.connections import connections, select_connection

    view = select_connection(connections(recording), conn)
    name = recording.metadata.scenario or "recording"
    segments = view.segments
    flags = ", ".join(f"{s.flags.render()} from the {'client' if s.src == view.client else 'server'}"
                      for s in segments[:12])
    if len(segments) > 12:
        flags += f" and {len(segments) - 12} more"
    text = (f"Ladder of {name}: client {view.client or '(address unknown)'} on the left, server {view.server} "
            f"on the right, time downwards; {len(segments)} segment{'s' if len(segments) != 1 else ''}"
            f"{': ' + flags if flags else ''}.")
    for link in links:
        if link.call in view.calls and link.call.outcome != "ok":
            cause = f"frame {link.cause.frame} ({link.cause.flags.render()})" if link.cause is not None else \
                "no segment"
            text += f" The {link.call.role}'s {link.call.op}() ended in {link.call.outcome}, linked to {cause}."
    return text


def step_element_ids(steps: Sequence[Step], recording: Recording, links: Sequence[Link] = (),
                     conn=None) -> list[list[str]]:
    """For each step, the ids of the ladder elements it draws (the gids
    `views.ladder` gives its artists): a segment's arrow and label, a call's
    bar, label and mark, and the connector from a linked call to its cause."""
    from ..analysis.connections import connections, select_connection

    view = select_connection(connections(told_once(recording, links)), conn)  # as the ladder draws them
    drawn_calls = [call for call in view.calls if view.side_of(call) is not None]
    call_index = {id(call): i for i, call in enumerate(drawn_calls)}
    drawn_links = [link for link in links if link.call in view.calls]
    connector_of = {id(link.call): i for i, link in enumerate(drawn_links)}
    ids = []
    for step in steps:
        if step.kind == "segment":
            ids.append([f"segment-{step.frame}", f"segment-label-{step.frame}"])
            continue
        i = call_index.get(id(step.call))
        found = [] if i is None else [f"call-{i}", f"call-label-{i}", f"call-failed-{i}", f"call-phrase-{i}"]
        if id(step.call) in connector_of:
            found.append(f"connector-{connector_of[id(step.call)]}")
        ids.append(found)
    return ids


def _stylesheet(prefix: str, steps: Sequence[Step], element_ids: list[list[str]], state_ids: dict,
                ladder_px: int) -> str:
    rules = [
        f"#{prefix} {{font-family:sans-serif;font-size:15px;line-height:1.4}}",
        f"#{prefix} .tt-body {{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}}",
        # The ladder at the width it was drawn for (text >= 11 px on a 1024 px screen): the
        # panel goes beside it when the cell is wide enough, else below it, kept in view
        # at the bottom of the window while the ladder scrolls (sticky), so both show together.
        f"#{prefix} .tt-ladder {{flex:1 1 {ladder_px}px;max-width:{ladder_px}px}}",
        f"#{prefix} .tt-panels {{flex:1 1 260px;max-width:420px;position:sticky;top:0;bottom:0;"
        "background:white;box-shadow:0 -2px 6px rgba(0,0,0,.08)}",
        f"#{prefix} .tt-panel {{display:none;border-left:4px solid {HIGHLIGHT};padding:2px 10px}}",
        f"#{prefix} .tt-panel p {{margin:4px 0}}",
        f"#{prefix} .tt-btn {{display:inline-block;border:1px solid #888;border-radius:4px;padding:2px 10px;"
        f"margin:6px 6px 0 0;cursor:pointer;background:#f4f4f4;user-select:none}}",
        f"#{prefix} > input {{margin:2px 1px;cursor:pointer}}",
        f"#{prefix} .tt-ladder svg [id] {{transition:opacity .15s}}",
    ]
    for k, step in enumerate(steps):
        checked = f"#{prefix}-{k}:checked"
        rules.append(f"{checked} ~ .tt-body .tt-p{k} {{display:block}}")
        current = element_ids[k] + [i for i in (state_ids["client"], state_ids["server"])
                                    for i in [_latest(i, step.time_ns)] if i]
        later = [i for j in range(k + 1, len(steps)) for i in element_ids[j] if i not in current]
        later += [i for when, i in state_ids["all"] if when > step.time_ns]
        if later:
            rules.append(",".join(f"{checked} ~ .tt-body .tt-ladder [id=\"{i}\"]" for i in dict.fromkeys(later))
                         + f" {{opacity:{FADED_OPACITY}}}")
        if current:
            rules.append(",".join(f"{checked} ~ .tt-body .tt-ladder [id=\"{i}\"]" for i in current)
                         + f" {{filter:drop-shadow(0 0 2px {HIGHLIGHT}) drop-shadow(0 0 3px {HIGHLIGHT})}}")
    return "\n".join(rules)


def _band_holding(step: Step, svg: str) -> list[str]:
    """The id of the labelled band a folded step lies in ("break-<i>-<start>-<end>"), if any."""
    for element, start, end in re.findall(r'id="(break-\d+-(\d+)-(\d+))"', svg):
        if int(start) <= step.time_ns <= int(end):
            return [element]
    return []


def _drawn_px(svg: str) -> int:
    """The width `ladder_svg` drew the ladder for (its max-width)."""
    return int(re.search(r"max-width:(\d+)px", svg).group(1))


def _keep_keys() -> str:
    """The one script: JupyterLab and Notebook 7 bind the arrow keys to
    moving between cells (in command mode, on any focused element that is not
    a text field), so an arrow pressed on a step button would leave the
    stepper. One listener per page, on the window in the capture phase (it
    runs before the notebook's own, which Notebook 7 registers on the
    document in the capture phase), stops an arrow key whose target is in a
    stepper from reaching them; the step button's default action, moving the
    checked step, still happens. Without scripts (an untrusted notebook) the
    buttons still step by mouse, and by keyboard outside a notebook."""
    return ("<script>if (!window.tcpteardownStepperKeys) { window.tcpteardownStepperKeys = true; "
            "window.addEventListener('keydown', e => { if (e.key.startsWith('Arrow') && e.target.closest "
            "&& e.target.closest('.tt-stepper')) e.stopPropagation(); }, true); }</script>")


def _latest(timeline: Sequence[tuple[int, str]], time_ns: int) -> Optional[str]:
    """The id of the last state label at or before `time_ns`."""
    found = None
    for when, element in timeline:
        if when <= time_ns:
            found = element
    return found


def _state_ids(svg: str) -> dict:
    """State labels in the SVG ("state-<side>-<time_ns>"), by side and time."""
    found = {"client": [], "server": [], "all": []}
    for side, when in re.findall(r'id="state-(client|server)-(\d+)"', svg):
        element = f"state-{side}-{when}"
        found[side].append((int(when), element))
        found["all"].append((int(when), element))
    for key in found:
        found[key].sort()
    return found


def _panel(k: int, step: Step, total: int, origin_ns: int, prefix: str, link: Optional[Link],
           recording: Recording, lang: Optional[str]) -> str:
    from ..analysis.rules import rule_named
    from .narrative import paragraph

    colour = "#c0392b" if step.failed or "RST" in step.what.split("(")[0] else "#222"
    when = f" · {(step.time_ns - origin_ns) / 1e6:+.3f} ms from the first SYN" if origin_ns else ""
    if step.call is not None and step.call.source == "log":
        when = ""  # another clock: its place comes from its link, said in the step itself
    parts = [f"<p><b>Step {k + 1} of {total}</b>{when}</p>",
             f"<p style='color:{colour}'><b>{html.escape(step.what)}</b></p>",
             f"<p>client: <b>{html.escape(step.client_state or '—')}</b> · "
             f"server: <b>{html.escape(step.server_state or '—')}</b></p>"]
    if step.why and link is None:
        parts.append(f"<p><b>Why:</b> {html.escape(step.why)}</p>")
    elif step.why.startswith(LOG_NOTE):  # a linked call from another clock: where it sits, and why
        parts.append(f"<p><i>{html.escape(step.why.split('. ', 1)[0])}.</i></p>")
    if link is not None:
        rule = rule_named(link.rule)
        parts.append(f"<p><b>Rule</b> <code>{html.escape(rule.name)}</code>: "
                     f"{html.escape(rule.description)}</p>")
        parts.append(f"<p>{html.escape(paragraph(link, recording, lang=lang))}</p>")
    buttons = []
    if k > 0:
        buttons.append(f"<label class='tt-btn' for='{prefix}-{k - 1}'>◀ Previous</label>")
    if k < total - 1:
        buttons.append(f"<label class='tt-btn' for='{prefix}-{k + 1}'>Next ▶</label>")
    parts.append("<p>" + "".join(buttons) + "</p>")
    return f"<div class='tt-panel tt-p{k}' data-step='{k + 1}'>{''.join(parts)}</div>"


def stepper_html(recording: Recording, links: Sequence[Link] = (), *, lang: Optional[str] = None,
                 conn=None) -> str:
    """The whole step-through as one HTML block (see the module's docstring)."""
    from ..analysis.connections import connections, select_connection

    links = list(links)
    recording = told_once(recording, links)
    view = select_connection(connections(recording), conn)
    steps = after_their_causes(build_steps(recording, links, view.connection), links)
    if not steps:
        return "<p>This recording has no segments or socket calls to step through.</p>"
    svg, _alt = ladder_svg(recording, links, lang=lang, conn=conn)
    prefix = f"tt-{uuid.uuid4().hex[:10]}"
    present = set(re.findall(r' id="([^"]+)"', svg))
    element_ids = [[i for i in ids if i in present] or _band_holding(step, svg)
                   for step, ids in zip(steps, step_element_ids(steps, recording, links, conn))]
    link_of = {id(link.call): link for link in links}
    syns = [s.time_ns for s in view.segments if s.is_syn]
    origin = min(syns) if syns else 0
    total = len(steps)
    radios = "".join(
        f"<input type='radio' name='{prefix}' id='{prefix}-{k}' value='{k + 1}'"
        f"{' checked' if k == 0 else ''} aria-label='Step {k + 1} of {total}: {html.escape(step.what, quote=True)}'"
        f" title='Step {k + 1} of {total}'>"
        for k, step in enumerate(steps))
    panels = "".join(_panel(k, step, total, origin, prefix, link_of.get(id(step.call)), recording, lang)
                     for k, step in enumerate(steps))
    hint = ("<div style='font-size:13px;color:#555'>Steps: click one, or focus it and use the arrow keys; "
            "the ladder highlights the current step and fades what comes after it.</div>")
    stylesheet = _stylesheet(prefix, steps, element_ids, _state_ids(svg), _drawn_px(svg))
    return (f"<div class='tt-stepper' id='{prefix}' data-lm-suppress-shortcuts='true'>{_keep_keys()}<style>{stylesheet}"
            f"</style>{radios}{hint}<div class='tt-body'><div class='tt-ladder'>{svg}</div>"
            f"<div class='tt-panels' aria-live='polite'>{panels}</div></div></div>")


def after_their_causes(steps: Sequence[Step], links: Sequence[Link]) -> list[Step]:
    """Steps in the order a reader should meet them: a call stamped by
    another clock (an application's log) never comes before the segment it
    is linked to. Such a call is moved just after its cause, and its step
    says so, with the clock's uncertainty: where it sat by its own stamp
    says nothing about the order, the link does."""
    from dataclasses import replace

    cause_of = {id(link.call): link.cause for link in links}
    placed = []
    for step in steps:
        moved = after_cause(step.call, cause_of.get(id(step.call))) if step.call is not None else None
        order = step.time_ns
        if moved is not None:
            cause = moved.cause
            at_cause = next((s for s in steps if s.kind == "segment" and s.frame == cause.frame), step)
            step = replace(step, why=f"{moved.note()}. {step.why}".strip(), client_state=at_cause.client_state,
                           server_state=at_cause.server_state)
            order = cause.time_ns
        placed.append((order, 1 if order != step.time_ns else 0, step))
    placed.sort(key=lambda item: (item[0], item[1]))
    return [replace(step, index=i) for i, (_order, _after, step) in enumerate(placed)]


def steps_text(steps: Sequence[Step]) -> str:
    if not steps:
        return "(no steps)"
    start = steps[0].time_ns
    lines = []
    for step in steps:
        states = f"[client {step.client_state or '—'} | server {step.server_state or '—'}]"
        lines.append(f"{step.index + 1:>3}. +{(step.time_ns - start) / 1e6:8.3f} ms  {step.what}  {states}")
        if step.why:
            lines.append(f"      why: {step.why}")
    return "\n".join(lines)
