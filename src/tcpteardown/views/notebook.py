"""What the notebooks call: record live when this machine can, otherwise
load the stored capture, and say which; then show the story.

Notebooks hold no logic; everything they do is one call into this module
(or into the views it uses). `TCPTEARDOWN_NOTEBOOK_MODE=stored|live|auto`
forces a mode (the test suite runs every notebook both ways).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..model import Recording

MODE_VARIABLE = "TCPTEARDOWN_NOTEBOOK_MODE"


def captures_dir() -> Path:
    """The repository's captures/ folder (notebooks run from notebooks/)."""
    override = os.environ.get("TCPTEARDOWN_CAPTURES")
    if override:
        return Path(override)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "captures" / "linux").is_dir():
            return parent / "captures"
    return Path.cwd().parent / "captures"


def record_or_load(name: str, *, family: str = "ipv4", mode: Optional[str] = None) -> Recording:
    """Record scenario `name` live when we may capture, else load
    captures/linux/<name>.pcapng. Prints which it did, and why."""
    from ..capture.platform import capture_problem
    from ..errors import UserError
    from ..formats.bundle import load_recording

    mode = mode or os.environ.get(MODE_VARIABLE, "auto")
    problem = capture_problem()
    if mode == "live" or (mode == "auto" and problem is None):
        from ..scenarios import run_scenario

        run = run_scenario(name, family=family)
        verdict = "as the scenario expects" if run.matches else "DIFFERENTLY from what the scenario expects"
        print(f"Recorded '{name}' live on this machine ({run.recording.metadata.os} "
              f"{run.recording.metadata.kernel}); the kernel behaved {verdict}.")
        return run.recording
    path = captures_dir() / "linux" / f"{name}.pcapng"
    if not path.exists():
        raise UserError(f"cannot record live ({problem or 'stored mode requested'}) and there is no stored "
                        f"capture {path}; run `make captures` as root to create it")
    recording = load_recording(path)
    why = "stored mode was requested" if mode == "stored" else problem
    print(f"Loaded the stored capture {path.relative_to(path.parents[2])} "
          f"(recorded on {recording.metadata.os} {recording.metadata.kernel}) because {why}.")
    return recording


def explain(recording: Recording, *, lang: Optional[str] = None) -> str:
    """The paragraphs `tcpteardown explain` prints, printed and returned."""
    from ..analysis.correlate import correlate
    from .narrative import narrate

    text = narrate(correlate(recording), recording, lang=lang)
    print(text)
    return text


def ladder(recording: Recording, *, lang: Optional[str] = None, **options):
    """The ladder for the recording: a PNG image in Jupyter, else the Figure."""
    import io

    from ..analysis.correlate import correlate
    from .ladder import draw_ladder

    figure = draw_ladder(recording, correlate(recording), lang=lang, **options)
    try:
        from IPython.display import Image
    except ImportError:
        return figure
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return Image(data=buffer.getvalue())


def step_through(recording: Recording):
    """The slider widget (or, without a widget front end, the steps as text)."""
    from ..analysis.correlate import correlate
    from .stepper import stepper, steps_text
    from .steps import build_steps

    links = correlate(recording)
    try:
        return stepper(recording, links)
    except ImportError:
        print(steps_text(build_steps(recording, links)))
        return None
