"""`tcpteardown explain --markdown`: a snippet ready for an incident document.

Read back with a real Markdown parser (mistune, which nbconvert uses): the
Mermaid diagram is one fenced block, each paragraph sits under its own
heading naming the frames, and nothing is written next to the capture
unless `--image` asks for the PNG.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tcpteardown.analysis.correlate import correlate
from tcpteardown.cli import main
from tcpteardown.formats.bundle import load_recording
from tcpteardown.views.mermaid import mermaid_text

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "linux"


def blocks(markdown: str) -> list[tuple[str, str]]:
    """(kind, text) of each top-level block, as a CommonMark parser sees them."""
    mistune = pytest.importorskip("mistune", reason="needs mistune (installed with jupyter's nbconvert)")
    out = []
    for token in mistune.create_markdown(renderer="ast")(markdown):
        if token["type"] == "heading":
            text = "".join(child.get("raw", "") for child in token["children"])
            out.append((f"h{token['attrs']['level']}", text))
        elif token["type"] == "block_code":
            out.append((f"code:{token.get('attrs', {}).get('info', '')}", token["raw"]))
        elif token["type"] == "paragraph":
            out.append(("p", "".join(child.get("raw", "") for child in token["children"])))
        elif token["type"] != "blank_line":
            out.append((token["type"], ""))
    return out


@pytest.fixture
def capture(tmp_path) -> Path:
    """A stored capture copied to a folder of its own: what the command writes beside it shows."""
    return Path(shutil.copy(CAPTURES / "broken-pipe.pcapng", tmp_path / "broken-pipe.pcapng"))


def test_default_embeds_mermaid_and_writes_nothing(capture, capsys):
    assert main(["explain", str(capture), "--markdown", "--lang", "go"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in capture.parent.iterdir()) == ["broken-pipe.pcapng"]
    found = blocks(out)
    kinds = [kind for kind, _ in found]
    assert kinds == ["h2", "p", "code:mermaid", "h3", "p"], found
    assert found[0][1] == "broken-pipe: client send() → EPIPE"
    recording = load_recording(capture)
    assert found[2][1] == mermaid_text(recording, correlate(recording), title="broken-pipe")
    assert found[3][1] == "client send() → EPIPE ← frame 8 (RST)"
    assert "EPIPE" in found[4][1] and "broken pipe" in found[4][1] and "sent RST (frame 8" in found[4][1]


def test_mermaid_flag_is_the_same_snippet(capture, capsys):
    assert main(["explain", str(capture), "--markdown"]) == 0
    plain = capsys.readouterr().out
    assert main(["explain", str(capture), "--markdown", "--mermaid"]) == 0
    assert capsys.readouterr().out == plain


def test_image_option_writes_the_png_and_links_it(capture, capsys):
    assert main(["explain", str(capture), "--markdown", "--image"]) == 0
    out = capsys.readouterr().out
    image = capture.with_suffix(".png")
    assert image.read_bytes().startswith(b"\x89PNG")
    found = blocks(out)
    assert [kind for kind, _ in found] == ["h2", "p", "p", "h3", "p"], found
    assert out.count(f"]({image.as_posix()})") == 1 and "```mermaid" not in out


def test_every_link_gets_a_heading_with_its_frames():
    """A capture with several links: one heading each, frames named, local causes said so."""
    from types import SimpleNamespace

    from tcpteardown.views.markdown import render_markdown

    for name in ("shutdown-then-write", "connect-timeout", "reset-by-peer"):
        recording = load_recording(CAPTURES / f"{name}.pcapng")
        links = correlate(recording)
        text = render_markdown(links, recording, SimpleNamespace(capture=f"{name}.pcapng"))
        headings = [t for kind, t in blocks(text) if kind == "h3"]
        assert len(headings) == len([l for l in links if l.call in _chosen_calls(recording)]) > 0, name
        for heading in headings:
            assert "← frame" in heading or "← own " in heading or "← no segment" in heading, heading


def _chosen_calls(recording):
    from tcpteardown.analysis.connections import connections, select_connection

    return select_connection(connections(recording)).calls
