"""Mermaid and PlantUML ladders (views/mermaid.py) from stored real captures.

The structural check a write-up relies on: two participants, one arrow per
segment of the connection (nothing invented, nothing dropped unless a band
says so), the RST's reason over its sender, each failing call over its own
side naming the frame that caused it, the teardown inside one `rect`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tcpteardown.analysis.correlate import correlate
from tcpteardown.cli import main
from tcpteardown.formats.bundle import load_recording
from tcpteardown.analysis.connections import connections, select_connection
from tcpteardown.views.mermaid import mermaid_text, plantuml_text

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "linux"
STORED = sorted(CAPTURES.glob("*.pcapng")) + sorted((CAPTURES / "ipv6").glob("*.pcapng"))
ARROW = re.compile(r"^\s*(client|server)(->>|-x)(client|server): \[(\d+)\] (\S+) seq=\d+( ack=\d+)? len=\d+$")


def parse(text: str) -> dict:
    """The diagram's structure, line by line; any line not understood fails the test."""
    found = {"participants": [], "arrows": [], "notes": [], "rects": 0, "ends": 0}
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("participant "):
            found["participants"].append(stripped.split()[1])
        elif match := ARROW.match(line):
            sender, arrow, receiver, frame, flags, _ack = match.groups()
            assert sender != receiver
            found["arrows"].append((sender, arrow, receiver, int(frame), flags))
        elif stripped.startswith("Note over "):
            where, _, text_ = stripped[len("Note over "):].partition(": ")
            assert where in ("client", "server", "client,server") and text_, line
            found["notes"].append((where, text_))
        elif stripped.startswith("rect rgba("):
            found["rects"] += 1
        elif stripped == "end":
            found["ends"] += 1
        elif stripped.startswith("title "):
            pass
        else:
            raise AssertionError(f"line not understood: {line!r}")
        # Mermaid's lexer: `#` starts a comment, `;` ends a statement anywhere.
        assert "#" not in stripped and (";" not in stripped or stripped.startswith("rect")), line
    return found


@pytest.mark.parametrize("capture", STORED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_stored_capture_gives_a_well_formed_diagram(capture):
    recording = load_recording(capture)
    links = correlate(recording)
    text = mermaid_text(recording, links)
    assert text == mermaid_text(recording, correlate(recording))  # deterministic
    found = parse(text)
    assert found["participants"] == ["client", "server"]
    chosen = select_connection(connections(recording))
    # One arrow per segment of the connection, in capture order, with its own flags.
    assert [a[3] for a in found["arrows"]] == [s.frame for s in chosen.segments]
    assert [a[4] for a in found["arrows"]] == [s.flags.render() for s in chosen.segments]
    side = {chosen.client: "client", chosen.server: "server"}
    for (sender, arrow, receiver, _frame, _flags), segment in zip(found["arrows"], chosen.segments):
        assert (sender, receiver) == (side[segment.src], side[segment.dst])
        assert (arrow == "-x") == segment.is_rst
    # Each RST's reason over its sender; each failing call over its side with its cause's frame.
    for segment in chosen.segments:
        if segment.is_rst:
            assert any(where == side[segment.src] and note.startswith("RST reason ")
                       for where, note in found["notes"]), segment
    for link in links:
        if link.call in chosen.calls and link.call.failed:
            wanted = f"{link.call.op}() → {link.call.errno}"
            if link.cause is not None:
                wanted += f" ← frame {link.cause.frame}"
            elif link.local_call is not None:
                wanted += f" ← own {link.local_call.op}()"
            assert (chosen.side_of(link.call), wanted) in found["notes"]
    torn = any(s.is_fin or s.is_rst for s in chosen.segments)
    assert found["rects"] == found["ends"] == (1 if torn else 0)


def test_broken_pipe_reads_as_the_story():
    recording = load_recording(CAPTURES / "broken-pipe.pcapng")
    text = mermaid_text(recording, correlate(recording), title="broken-pipe")
    assert "    title broken-pipe\n" in text
    assert re.search(r"\n        server-xclient: \[8\] RST seq=2 len=0\n"
                     r"        Note over server: RST reason TCP_ABORT_ON_DATA \(kernel\)\n", text), text
    assert "Note over client: send() → EPIPE ← frame 8\n" in text
    # The teardown highlight starts at the FIN, after the request and its ACK.
    before, _, after = text.partition("rect ")
    assert "[5] ACK" in before and "[6] FIN,ACK" in after


def test_elided_bulk_is_one_note_and_the_ends_stay(corpus):
    """zeek's 878-packet transfer: the diagram folds what the ladder folds (analysis.elide)."""
    from tcpteardown.analysis.elide import elide

    recording = load_recording(corpus / "zeek" / "timestamp.pcap")
    chosen = select_connection(connections(recording))
    elision = elide(chosen.segments, chosen.calls)
    assert elision.bands
    found = parse(mermaid_text(recording, correlate(recording)))
    assert [a[3] for a in found["arrows"]] == [s.frame for s in elision.kept]
    elided = [note for where, note in found["notes"] if "not drawn" in note]
    assert len(elided) == len(elision.bands)
    for note, band in zip(elided, elision.bands):
        assert note.endswith(f" not drawn ({band.frames}) ⋯") and f"{band.data_segments} data segments" in note


def test_idle_gaps_are_notes():
    recording = load_recording(CAPTURES / "read-timeout.pcapng")
    found = parse(mermaid_text(recording, correlate(recording)))
    gaps = [note for where, note in found["notes"] if where == "client,server" and note.startswith("⋯ ")]
    assert gaps, found["notes"]  # the read timeout waits: an idle gap


def test_syntax_characters_are_escaped():
    from dataclasses import replace

    recording = load_recording(CAPTURES / "broken-pipe.pcapng")
    meta = replace(recording.metadata, scenario="a;b <c> #1 50%%")
    text = mermaid_text(replace(recording, metadata=meta), title=meta.scenario)
    assert "title a,b ‹c› №1 50% %\n" in text


def test_plantuml_has_the_same_arrows():
    recording = load_recording(CAPTURES / "broken-pipe.pcapng")
    text = plantuml_text(recording, correlate(recording))
    assert text.startswith("@startuml\n") and text.endswith("@enduml\n")
    arrows = re.findall(r"^\s*(client|server) (->x?) (client|server) : \[(\d+)\] ", text, re.M)
    assert [int(a[3]) for a in arrows] == list(range(1, 9))
    assert "  server ->x client : [8] RST seq=2 len=0\n" in text
    assert "note over client : send() → EPIPE ← frame 8\n" in text
    assert text.count("group teardown\n") == 1


@pytest.mark.parametrize("suffix, head", [(".mmd", "sequenceDiagram\n"), (".puml", "@startuml\n")])
def test_plot_writes_text_diagrams_by_suffix(suffix, head, tmp_path, capsys):
    out = tmp_path / f"ladder{suffix}"
    assert main(["plot", str(CAPTURES / "broken-pipe.pcapng"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text(encoding="utf-8").startswith(head)
    assert not list(tmp_path.glob("*overview*"))


MERMAID_JS = Path(__file__).resolve().parent.parent / ".node" / "mermaid-12.3.0.min.js"

RENDER = """
const done = arguments[arguments.length - 1];
mermaid.initialize({startOnLoad: false});
mermaid.render(arguments[1], arguments[0]).then(result => {
  const box = document.createElement("div");
  box.innerHTML = result.svg;
  const texts = css => Array.from(box.querySelectorAll(css)).map(e => e.textContent);
  done({messages: texts(".messageText"), notes: texts(".noteText")});
}, error => done({error: String(error.message || error)}));
"""


@pytest.fixture(scope="module")
def mermaid_page(tmp_path_factory):
    """A blank page with Mermaid's own renderer loaded, in headless Chromium."""
    from browser import console_errors, headless_chromium

    if not MERMAID_JS.exists():
        pytest.skip(f"needs Mermaid's renderer at {MERMAID_JS} (scripts/setup.sh fetches it with npm)")
    page = tmp_path_factory.mktemp("mermaid") / "render.html"
    page.write_text(f'<!DOCTYPE html><html><body><script src="{MERMAID_JS.as_uri()}"></script></body></html>')
    with headless_chromium() as driver:
        driver.get(page.as_uri())
        yield driver
        assert console_errors(driver) == []


def test_mermaid_itself_renders_every_label(mermaid_page):
    """Mermaid 12 parses every stored capture's diagram and shows each arrow's and note's text whole."""
    for n, capture in enumerate(STORED):
        recording = load_recording(capture)
        text = mermaid_text(recording, correlate(recording), title=capture.stem)
        shown = mermaid_page.execute_async_script(RENDER, text, f"d{n}")
        assert "error" not in shown, (capture.name, shown)
        found = parse(text)
        wanted = [line.split(": ", 1)[1] for line in text.splitlines() if ARROW.match(line)]
        assert shown["messages"] == wanted, capture.name
        assert sorted(shown["notes"]) == sorted(note for _where, note in found["notes"]), capture.name


STATE_RENDER = """
const done = arguments[arguments.length - 1];
mermaid.render(arguments[1], arguments[0]).then(result => {
  const box = document.createElement("div");
  box.innerHTML = result.svg;
  done({text: box.textContent});
}, error => done({error: String(error.message || error)}));
"""


def test_mermaid_itself_draws_the_state_diagram(mermaid_page):
    """views.states: the TCP state diagram from tcpstate.TRANSITIONS renders, every state and edge label shown."""
    from tcpteardown.analysis.tcpstate import STATES
    from tcpteardown.views.states import state_diagram

    text = state_diagram(title="TCP states")
    shown = mermaid_page.execute_async_script(STATE_RENDER, text, "states")
    assert "error" not in shown, shown
    for state in STATES:
        assert state in shown["text"], state
    for label in re.findall(r"^    \w+ --> \w+: (.+)$", text, re.M):
        assert label in shown["text"], label


def test_plantuml_itself_draws_every_stored_capture(tmp_path):
    """PlantUML (Debian's) parses every diagram in one run and draws each arrow's label."""
    import html
    import subprocess

    from conftest import tool_or_skip

    plantuml = tool_or_skip("plantuml")
    labels = {}
    for capture in STORED:
        recording = load_recording(capture)
        text = plantuml_text(recording, correlate(recording), title=capture.stem)
        name = f"{capture.parent.name}-{capture.stem}"
        (tmp_path / f"{name}.puml").write_text(text, encoding="utf-8")
        labels[name] = re.findall(r"^\s*(?:client|server) ->x? (?:client|server) : (.*)$", text, re.M)
    result = subprocess.run([plantuml, "-tsvg", "-failfast2", "-charset", "UTF-8", *sorted(tmp_path.glob("*.puml"))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, wanted in labels.items():
        svg = html.unescape((tmp_path / f"{name}.svg").read_text(encoding="utf-8"))
        shown = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        assert [label for label in wanted if label not in shown] == [], name


def test_overview_in_a_text_format_is_a_user_error(tmp_path, capsys):
    out = tmp_path / "overview.mmd"
    assert main(["plot", str(CAPTURES / "broken-pipe.pcapng"), "--overview", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overview draws a figure" in err and err.count("\n") == 1 and not out.exists()
