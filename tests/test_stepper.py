"""The notebooks' step-through and text output, on the stored captures.

The stepper is one HTML block with no script and no network: its steps must
name elements that exist on the ladder, its "Step N of M" must agree with
the control that selects it, and evidence from another clock must never come
before the segment it is linked to. Text output wraps on word boundaries.
(tests/test_browser.py drives the same block in a real browser.)
"""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from tcpteardown.analysis.correlate import correlate
from tcpteardown.formats.bundle import load_recording
from tcpteardown import load, notebook
from tcpteardown.views.stepper import stepper_html

STORED = REPO / "captures" / "linux"


def _stepper(recording):
    text = stepper_html(recording, correlate(recording), lang="go")
    radios = re.findall(r"<input type='radio' name='(tt-[0-9a-f]+)' id='\1-(\d+)' value='(\d+)'[^>]*"
                        r"aria-label='Step (\d+) of (\d+)", text)
    panels = re.findall(r"data-step='(\d+)'><p><b>Step (\d+) of (\d+)</b>", text)
    return text, radios, panels


# http-client-abort with Go's phrases is folded to fit one screen: its folded steps highlight the band.
@pytest.mark.parametrize("name", ["broken-pipe", "graceful-close", "half-close", "refused", "no-route",
                                  "http-client-abort"])
def test_steps_name_ladder_elements_and_agree_on_their_number(name):
    text, radios, panels = _stepper(load_recording(STORED / f"{name}.pcapng"))
    total = len(radios)
    assert total >= 2 and len(panels) == total
    for k, (_prefix, index, value, label_n, label_m) in enumerate(radios):
        assert int(index) == k and int(value) == int(label_n) == k + 1 and int(label_m) == total
    for k, (data_step, shown_n, shown_m) in enumerate(panels):
        assert int(data_step) == int(shown_n) == k + 1 and int(shown_m) == total
    svg_ids = set(re.findall(r' id="([^"]+)"', text))
    faded = re.findall(r'\[id="([^"]+)"\]', text)
    assert faded, "no ladder element is ever faded or highlighted"
    missing = sorted(set(faded) - svg_ids)
    assert not missing, f"the stylesheet names elements the ladder does not have: {missing[:5]}"
    highlighted = set(re.findall(r"#(tt-[0-9a-f]+-\d+):checked[^{]*\{filter:drop-shadow", text))
    assert len(highlighted) == total, "some step highlights nothing on the ladder"
    scripts = re.findall(r"<script.*?</script>", text, flags=re.S)
    assert len(scripts) == 1 and "stopPropagation" in scripts[0] and "src=" not in scripts[0], \
        "stepping must not depend on a script: one keeps the arrow keys from the notebook's shortcuts"
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), "the stepper must work offline"
    alt = re.search(r'<svg role="img" aria-label="([^"]+)"', text)
    assert alt and len(alt.group(1)) > 40 and f"<title>{alt.group(1)}</title>" in text, "the ladder has no alt text"


def test_time_wait_shows_in_the_stepper():
    text, _radios, _panels = _stepper(load_recording(STORED / "graceful-close.pcapng"))
    assert "TIME_WAIT (60 s) [from the packets]" in text


def test_a_log_line_never_steps_before_its_cause():
    folder = notebook.captures_dir() / "linux" / "incident"
    recording = load(folder / "capture.pcap", logs=[folder / "client.log"])
    text, _radios, panels = _stepper(recording)
    order = re.findall(r"data-step='(\d+)'>.*?<b>(client: recv\(\) ECONNRESET|[^<]*frame 7\))</b>", text)
    names = [what for _n, what in order]
    assert names.index("client: recv() ECONNRESET") > names.index(next(n for n in names if "frame 7" in n))
    assert "by the application" in text and "±1 ms" in text


def _tokens(text):
    return text.split()


def test_explanations_wrap_on_word_boundaries(capsys):
    recording = load_recording(STORED / "broken-pipe.pcapng")
    notebook.explain(recording, lang="go")
    wrapped = capsys.readouterr().out
    from tcpteardown.views.narrative import narrate

    plain = narrate(correlate(recording), recording, lang="go")
    assert _tokens(wrapped) == _tokens(plain), "a word, errno or address was split"
    assert max(len(line) for line in wrapped.splitlines()) <= notebook.TEXT_WIDTH
    assert len(wrapped.splitlines()) > len(plain.splitlines())


def test_rules_table_wraps_on_word_boundaries(capsys):
    from tcpteardown.analysis.rules import RULES

    notebook.rules_table()
    table = capsys.readouterr().out
    assert max(len(line) for line in table.splitlines()) <= notebook.TEXT_WIDTH
    for rule in RULES:
        assert " ".join(_tokens(rule.description)) in " ".join(_tokens(table))


def test_stored_capture_reason_is_said_once_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(notebook, "_told_why", set())
    for name in ("refused", "connect-timeout", "no-route"):
        notebook.record_or_load(name, mode="stored")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("Loaded the stored capture") for line in lines)
    assert sum("stored mode was requested" in line for line in lines) == 1
    assert not any("setcap" in line or "load a stored capture instead" in line for line in lines)


def test_diff_prints_once_and_returns_nothing(capsys):
    recording = load_recording(STORED / "graceful-close.pcapng")
    assert notebook.diff(recording, load_recording(STORED / "ipv6" / "graceful-close.pcapng")) is None
    out = capsys.readouterr().out
    assert out.count("\n") > 3 and "\\n" not in out


def test_the_ladder_is_svg_drawn_for_the_notebooks_width_and_never_downscaled():
    """A notebook shows the ladder as SVG, as wide as the cell up to the width
    it was drawn for (about 1000 px, so text is >= 11 px on a 1024 px screen);
    the stepper gives it that width, its panel beside or below it."""
    from tcpteardown.views.ladder import CSS_DPI, SCREEN_WIDTH_PX, draw_ladder_on_screen, min_text_px
    from tcpteardown.views.stepper import ladder_svg

    recording = load_recording(STORED / "broken-pipe.pcapng")
    links = correlate(recording)
    svg, _alt = ladder_svg(recording, links, lang="go")
    opening = svg[:svg.index(">")]
    drawn_px = int(re.search(r"max-width:(\d+)px", opening).group(1))
    figure = draw_ladder_on_screen(recording, links, lang="go")
    assert drawn_px == round(figure.get_size_inches()[0] * CSS_DPI)
    assert abs(drawn_px - SCREEN_WIDTH_PX) <= 0.05 * SCREEN_WIDTH_PX  # drawn for the notebook's width
    assert min_text_px(figure, drawn_px) >= 11
    assert 'width="100%"' in opening and "viewBox=" in opening and " height=" not in opening
    shown = notebook.ladder(recording, lang="go").data
    assert "<svg" in shown and "<img" not in shown and "png" not in shown.split("<svg", 1)[0]
    text, _radios, _panels = _stepper(recording)
    ladder_rule = re.search(r"\.tt-ladder \{flex:1 1 (\d+)px;max-width:(\d+)px\}", text)
    assert ladder_rule and int(ladder_rule.group(1)) == int(ladder_rule.group(2)) == drawn_px


def test_a_step_folded_into_a_band_highlights_the_band():
    text, _radios, _panels = _stepper(load_recording(STORED / "http-client-abort.pcapng"))
    assert "folded into a band" in text
    style = text[text.index("<style>"):text.index("</style>")]
    bands = [rule for rule in style.split("}") if "{filter:drop-shadow" in rule and '[id="break-' in rule]
    assert len(bands) >= 3, "the folded data segments' steps do not point at their band"
