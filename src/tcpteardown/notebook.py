"""The classroom helpers the notebooks call: record live when this machine
can, otherwise load the stored capture, and say which; then show the story
in a notebook's output area.

Each helper is the public API (api.py: `tcpteardown.load`, `run`, `explain`,
`diff`, `ladder`) plus what a class needs around it: the stored captures,
text wrapped for the output area, inline SVG and the stepper. Notebooks hold
no logic; everything they do is one call into this module or the API.
`TCPTEARDOWN_NOTEBOOK_MODE=stored|live|auto` forces a mode (the test suite
runs every notebook both ways).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from . import api
from .model import Recording

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


# Said once per notebook (one kernel, one process): why this notebook loads
# stored captures instead of recording; later loads only say which file.
_told_why: set[str] = set()

# Text output is wrapped here, on word boundaries: a notebook's output area
# would otherwise break long lines anywhere, mid-word.
TEXT_WIDTH = 88


def record_or_load(name: str, *, family: str = "ipv4", mode: Optional[str] = None) -> Recording:
    """Record scenario `name` live when we may capture, else load
    captures/linux/<name>.pcapng. Prints which it did in one line, and
    why only the first time."""
    from .capture.platform import capture_problem
    from .errors import UserError

    mode = mode or os.environ.get(MODE_VARIABLE, "auto")
    problem = capture_problem()
    if mode == "live" or (mode == "auto" and problem is None):
        run = api.run(name, family=family)
        verdict = "as the scenario expects" if run.matches else "DIFFERENTLY from what the scenario expects"
        print(f"Recorded '{name}' live on this machine ({run.recording.metadata.os} "
              f"{run.recording.metadata.kernel}); the kernel behaved {verdict}.")
        return run.recording
    path = captures_dir() / "linux" / f"{name}.pcapng"
    if not path.exists():
        raise UserError(f"cannot record live ({problem or 'stored mode requested'}) and there is no stored "
                        f"capture {path}; run `make captures` as root to create it")
    recording = api.load(path)
    why = "stored mode was requested" if mode == "stored" else _first_sentence(problem)
    line = (f"Loaded the stored capture {path.relative_to(path.parents[2])} "
            f"(recorded on {recording.metadata.os} {recording.metadata.kernel})")
    print(f"{line}: {why}." if why not in _told_why else f"{line}.")
    _told_why.add(why)
    return recording


def _first_sentence(problem: Optional[str]) -> str:
    """The reason alone ("capturing on lo needs root or CAP_NET_RAW"): the
    ways out are the README's (Privileges), not a block under every load."""
    return (problem or "live capture is not possible here").split(". ", 1)[0].rstrip(".")


def explain(recording: Recording, *, lang: Optional[str] = None) -> None:
    """The paragraphs `tcpteardown explain` prints (api.explain), wrapped on word boundaries."""
    print(api.explain(recording).text(lang=lang, width=TEXT_WIDTH))


def ladder(recording: Recording, *, lang: Optional[str] = None, **options):
    """The ladder as an inline SVG drawn for the notebook's width and one
    projector screen's height (what does not fit folded into labelled bands;
    ``full=True`` draws everything), with alt text saying what it shows (the
    Figure itself without IPython)."""
    from .analysis.correlate import correlate
    from .views.stepper import ladder_svg

    links = correlate(recording)
    try:
        from IPython.display import HTML
    except ImportError:
        from .views.ladder import draw_ladder_on_screen

        return draw_ladder_on_screen(recording, links, lang=lang, **options)
    svg, _alt = ladder_svg(recording, links, lang=lang, **options)
    return HTML(f"<div class='tt-ladder'>{svg}</div>")


def step_through(recording: Recording, *, lang: Optional[str] = None):
    """The ladder, stepped: one self-contained HTML block (views.stepper)
    that steps live, in Notebook 7 and in an exported page alike; without
    IPython, the steps as text."""
    from .analysis.correlate import correlate
    from .views.stepper import stepper_html, steps_text
    from .views.steps import build_steps

    links = correlate(recording)
    try:
        from IPython.display import HTML
    except ImportError:
        print(steps_text(build_steps(recording, links)))
        return None
    return HTML(stepper_html(recording, links, lang=lang))


def rules_table() -> None:
    """The correlation rule table, one rule per entry, its description
    wrapped on word boundaries under its name (read from analysis.rules)."""
    import textwrap

    from .analysis.rules import RULES

    width = max(len(rule.name) for rule in RULES) + 2
    entries = []
    for rule in RULES:
        lines = textwrap.wrap(f"[{rule.kind.value}] {rule.description}", TEXT_WIDTH - width,
                              break_long_words=False, break_on_hyphens=False)
        entries.append("\n".join([f"{rule.name:<{width}}{lines[0]}", *(" " * width + line for line in lines[1:])]))
    print("\n".join(entries))


def mac_counterpart(name: str) -> tuple[Recording, Recording, Optional[int], str]:
    """The Linux recording of `name` (live or stored) and a real Mac's: the
    scenario recorded on a Mac (captures/macos/<name>.pcapng) when someone
    contributed one, else the atlas's real macOS capture of the same kind of
    teardown, from a public project. Returns (linux, mac, the Mac capture's
    connection, where it came from) and prints the last."""
    from .scenarios.atlas import atlas_pair

    linux = record_or_load(name)
    recorded = captures_dir() / "macos" / f"{name}.pcapng"
    if recorded.exists():
        source = f"{recorded.name}: {name} recorded on a Mac (captures/macos/README.md says which)"
        print("macOS side:", source)
        return linux, api.load(recorded), None, source
    pair = atlas_pair(name)
    path = pair.darwin_path(captures_dir())
    where = ("shipped in captures/macos/public/" if path.parent.name == "public"
             else "read from the shared corpus")
    source = (f"{path.name}, connection {pair.darwin.connection}, {where} ({pair.licence}): "
              f"{pair.darwin.shows}")
    print("macOS side:", source)
    return linux, api.load(path), pair.darwin.connection, source


def diff(a: Recording, b: Recording, *, connection_b: Optional[int] = None, align_by: str = "steps") -> None:
    """The aligned table `tcpteardown diff` prints (printed once: nothing is
    returned for the notebook to echo as an escaped copy)."""
    print(api.diff_text(api.diff(a, b, conn_b=connection_b, align_by=align_by)), end="")


def atlas() -> None:
    """The Linux/macOS atlas: every pair, diffed by structure, one line each; printed once."""
    from .errors import UserError
    from .scenarios.atlas import ATLAS
    from .views.diff_table import atlas_table

    rows = []
    for pair in ATLAS:
        linux = api.load(pair.linux_path(captures_dir()))
        try:
            mac = api.load(pair.darwin_path(captures_dir()))
        except UserError as missing:  # not redistributed and no corpus here: say so, go on
            rows.append((pair, str(missing)))
            continue
        rows.append((pair, api.diff(linux, mac, conn_b=pair.darwin.connection, align_by="structure")))
    text = atlas_table(rows)
    print(text)


def expectations(name: str) -> None:
    """What scenario `name` expects on each OS, and what each expectation rests on; printed once."""
    from .scenarios import get_scenario

    lines = []
    for os_name, expected in get_scenario(name).expected.items():
        lines.append(f"{os_name} ({expected.status}): " + ("; ".join(map(str, expected.outcomes)) or "no failing call"))
        lines += [f"  {evidence}" for evidence in expected.evidence]
    text = "\n".join(lines)
    print(text)


def evidence_summary(recording: Recording) -> str:
    failing = [call for call in recording.calls if call.outcome != "ok"]
    resets = [seg for seg in recording.segments if seg.is_rst]
    lines = [f"{len(recording.segments)} TCP segments ({len(resets)} RST) and {len(failing)} failing call(s) from the log:"]
    lines += [f"  {call.text}" for call in failing]
    return "\n".join(lines)


def user_temp_dir() -> Path:
    """This user's own folder in the temporary directory, `tcpteardown-<uid>`,
    mode 0700: on a shared machine each student writes there, never into a
    path another user may already own. A folder of that name that is not
    ours (or is a link) is never used: a fresh private one is made instead."""
    import stat
    import tempfile

    uid = os.geteuid()
    folder = Path(tempfile.gettempdir()) / f"tcpteardown-{uid}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = folder.lstat()
    if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077:
        return folder
    return Path(tempfile.mkdtemp(prefix=f"tcpteardown-{uid}-"))


def markdown_snippet(recording: Recording, *, capture: Optional[str] = None) -> str:
    """What `explain --markdown --image` prints (the image link and the
    paragraphs); the figure is written next to `capture`, by default in this
    user's own temporary folder (a class must not write into the stored
    captures, nor into a shared path the previous student already owns)."""
    from types import SimpleNamespace

    from .analysis.correlate import correlate
    from .views.markdown import render_markdown

    name = Path(recording.metadata.source_file or "tcpteardown-incident.pcapng").name
    capture = capture or str(user_temp_dir() / name)
    args = SimpleNamespace(capture=capture, lang=None, tzinfo=None, conn=None, image=True)
    return render_markdown(correlate(recording), recording, args)
