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


def rules_table() -> str:
    """The correlation rule table, one line per rule (read from analysis.rules)."""
    from ..analysis.rules import RULES

    width = max(len(rule.name) for rule in RULES)
    text = "\n".join(f"{rule.name:<{width}}  {rule.kind.value:<14} {rule.description}" for rule in RULES)
    print(text)
    return text


def mac_counterpart(name: str) -> tuple[Recording, Recording, Optional[int], str]:
    """The Linux recording of `name` (live or stored) and a real Mac's: the
    scenario recorded on a Mac (captures/macos/<name>.pcapng) when someone
    contributed one, else the atlas's real macOS capture of the same kind of
    teardown, from a public project. Returns (linux, mac, the Mac capture's
    connection, where it came from) and prints the last."""
    from ..formats.bundle import load_recording
    from ..scenarios.atlas import atlas_pair

    linux = record_or_load(name)
    recorded = captures_dir() / "macos" / f"{name}.pcapng"
    if recorded.exists():
        source = f"{recorded.name}: {name} recorded on a Mac (captures/macos/README.md says which)"
        print("macOS side:", source)
        return linux, load_recording(recorded), None, source
    pair = atlas_pair(name)
    path = pair.darwin_path(captures_dir())
    where = ("shipped in captures/macos/public/" if path.parent.name == "public"
             else "read from the shared corpus")
    source = (f"{path.name}, connection {pair.darwin.connection}, {where} ({pair.licence}): "
              f"{pair.darwin.shows}")
    print("macOS side:", source)
    return linux, load_recording(path), pair.darwin.connection, source


def diff(a: Recording, b: Recording, *, connection_b: Optional[int] = None, align_by: str = "steps") -> str:
    """The aligned table `tcpteardown diff` prints, printed and returned."""
    from ..analysis.diff import diff as diff_recordings
    from .diff_table import render_table

    text = render_table(diff_recordings(a, b, connection_b=connection_b, align_by=align_by))
    print(text)
    return text


def atlas() -> str:
    """The Linux/macOS atlas: every pair, diffed by structure, one line each; printed and returned."""
    from ..analysis.diff import diff as diff_recordings
    from ..errors import UserError
    from ..formats.bundle import load_recording
    from ..scenarios.atlas import ATLAS
    from .diff_table import atlas_table

    rows = []
    for pair in ATLAS:
        linux = load_recording(pair.linux_path(captures_dir()))
        try:
            mac = load_recording(pair.darwin_path(captures_dir()))
        except UserError as missing:  # not redistributed and no corpus here: say so, go on
            rows.append((pair, str(missing)))
            continue
        rows.append((pair, diff_recordings(linux, mac, connection_b=pair.darwin.connection, align_by="structure")))
    text = atlas_table(rows)
    print(text)
    return text


def expectations(name: str) -> str:
    """What scenario `name` expects on each OS, and what each expectation rests on; printed and returned."""
    from ..scenarios import get_scenario

    lines = []
    for os_name, expected in get_scenario(name).expected.items():
        lines.append(f"{os_name} ({expected.status}): " + ("; ".join(map(str, expected.outcomes)) or "no failing call"))
        lines += [f"  {evidence}" for evidence in expected.evidence]
    text = "\n".join(lines)
    print(text)
    return text


def load_incident() -> Recording:
    """captures/linux/incident: tcpdump's capture plus the client's own log."""
    from ..formats.applog import parse_log
    from ..formats.bundle import load_recording

    folder = captures_dir() / "linux" / "incident"
    recording = load_recording(folder / "capture.pcap")
    log = folder / "client.log"
    imported = parse_log(log.read_text().splitlines(), path=str(log))
    for problem in imported.problems:
        print("warning:", problem)
    return recording.with_calls(imported.calls)


def evidence_summary(recording: Recording) -> str:
    failing = [call for call in recording.calls if call.outcome != "ok"]
    resets = [seg for seg in recording.segments if seg.is_rst]
    lines = [f"{len(recording.segments)} TCP segments ({len(resets)} RST) and {len(failing)} failing call(s) from the log:"]
    lines += [f"  {call.text}" for call in failing]
    return "\n".join(lines)


def markdown_snippet(recording: Recording, *, capture: Optional[str] = None) -> str:
    """What `explain --markdown` prints (the image link and the paragraphs);
    the figure is written next to `capture`, by default in the temporary
    folder (a class must not write into the stored captures)."""
    import tempfile
    from types import SimpleNamespace

    from ..analysis.correlate import correlate
    from .markdown import render_markdown

    name = Path(recording.metadata.source_file or "tcpteardown-incident.pcapng").name
    capture = capture or str(Path(tempfile.gettempdir()) / name)
    args = SimpleNamespace(capture=capture, lang=None, tzinfo=None, conn=None)
    return render_markdown(correlate(recording), recording, args)
