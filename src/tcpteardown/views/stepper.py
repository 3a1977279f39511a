"""The step-through widget for notebooks: a slider over `steps.build_steps`.

Each position shows one segment or socket call, both endpoints' TCP state
and why it happened. Without ipywidgets (a plain Python session, a CI run
without a front end) `show_steps` prints the steps as text instead.
"""

from __future__ import annotations

from typing import Sequence

from ..model import Link, Recording
from .steps import Step, build_steps, step_html


def stepper(recording: Recording, links: Sequence[Link] = ()):
    """An ipywidgets VBox: a slider and the panel for the selected step."""
    import ipywidgets as widgets

    steps = build_steps(recording, links)
    if not steps:
        return widgets.HTML("<p>This recording has no segments or socket calls to step through.</p>")
    start = steps[0].time_ns
    panel = widgets.HTML(step_html(steps[0], len(steps), start))
    slider = widgets.IntSlider(value=0, min=0, max=len(steps) - 1, description="step",
                               continuous_update=True, layout=widgets.Layout(width="95%"))

    def show(change) -> None:
        panel.value = step_html(steps[change["new"]], len(steps), start)

    slider.observe(show, names="value")
    return widgets.VBox([slider, panel])


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
