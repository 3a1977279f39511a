"""The interactive HTML ladder (views/html_ladder.py), opened in headless Chromium.

A stored real capture becomes a page through the CLI; Debian's chromium,
driven by chromium-driver through Selenium, steps through it with key
presses and buttons and reads what the page shows: the counter, the
highlighted step on the ladder, both sides' TCP state, the rule and the
paragraph of the failing call, the hover card of a segment, the copied
Wireshark filter; and the browser console stays free of errors (the page's
Content-Security-Policy forbids any network load, so a fetch would be one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tcpteardown.analysis.correlate import correlate
from tcpteardown.cli import main
from tcpteardown.formats.bundle import load_recording
from tcpteardown.analysis.connections import connections, select_connection
from tcpteardown.views.html_ladder import html_fragment, html_ladder

from browser import console_errors, headless_chromium

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "linux"


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "broken-pipe.html"
    assert main(["plot", str(CAPTURES / "broken-pipe.pcapng"), "-o", str(out)]) == 0
    return out


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def _current(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.get_attribute("data-step") for e in driver.find_elements(By.CSS_SELECTOR, ".tt-current")]


def _press(driver, key, times: int = 1):
    for _ in range(times):
        driver.switch_to.active_element.send_keys(key)


def test_the_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # The only URL is the SVG namespace; nothing is loaded from anywhere.
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|img|iframe)\b|\ssrc=", text)
    assert "default-src 'none'" in text


def test_one_step_per_segment_and_call_and_deterministic():
    recording = load_recording(CAPTURES / "broken-pipe.pcapng")
    links = correlate(recording)
    chosen = select_connection(connections(recording))
    text = html_fragment(recording, links)
    assert text == html_fragment(recording, correlate(recording))
    steps = set(re.findall(r'data-step="(\d+)"', text))
    assert len(steps) == len(chosen.segments) + len(chosen.calls)
    assert sorted(map(int, re.findall(r'tt-seg[^"]*" data-step="\d+" data-frame="(\d+)"', text))) == \
        [s.frame for s in chosen.segments]


def test_step_through_with_keys_and_buttons(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    recording = load_recording(CAPTURES / "broken-pipe.pcapng")
    chosen = select_connection(connections(recording))
    total = len(chosen.segments) + len(chosen.calls)
    browser.get(page.as_uri())
    assert _text(browser, ".tt-counter") == f"Step 1 of {total}"
    assert _current(browser) == ["0"]
    assert "#1 SYN" in _text(browser, ".tt-panel") and "client: SYN_SENT" in _text(browser, ".tt-panel")

    _press(browser, Keys.ARROW_RIGHT, 9)  # the server's FIN (frame 6)
    assert _text(browser, ".tt-counter") == f"Step 10 of {total}"
    assert _current(browser) == ["9"]
    panel = _text(browser, ".tt-panel")
    assert "#6 FIN,ACK" in panel and "client: ESTABLISHED · server: FIN_WAIT1" in panel
    # The states on the lifelines say the same as the panel; later steps are faded.
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".tt-now")] == ["ESTABLISHED", "FIN_WAIT1"]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".tt-future")) == total - 10

    _press(browser, Keys.ARROW_RIGHT, 5)  # send() -> EPIPE: the rule, the paragraph, its cause highlighted
    panel = _text(browser, ".tt-panel")
    assert "client send() → EPIPE" in panel, panel
    assert "rule send-epipe-after-rst" in panel and re.search(r"because the server \S* ?sent RST \(frame 8", panel)
    assert "caused by frame 8" in panel
    assert [e.get_attribute("data-frame") for e in browser.find_elements(By.CSS_SELECTOR, ".tt-cause")] == ["8"]

    _press(browser, Keys.ARROW_LEFT)
    assert _text(browser, ".tt-counter") == f"Step 14 of {total}"
    _press(browser, Keys.END)
    assert _text(browser, ".tt-counter") == f"Step {total} of {total}" and not browser.find_elements(By.CSS_SELECTOR, ".tt-future")
    _press(browser, Keys.ARROW_RIGHT)  # past the end: stays
    assert _text(browser, ".tt-counter") == f"Step {total} of {total}"
    browser.find_element(By.CSS_SELECTOR, "button[data-go='first']").click()
    assert _current(browser) == ["0"]
    browser.find_element(By.CSS_SELECTOR, "button[data-go='1']").click()
    assert _current(browser) == ["1"]
    assert console_errors(browser) == []


def test_hover_shows_the_header_and_frame_numbers_copy_a_filter(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    card = browser.find_element(By.CSS_SELECTOR, ".tt-card")
    assert not card.is_displayed()
    rst = browser.find_element(By.CSS_SELECTOR, ".tt-seg[data-frame='8'] line.tt-hit")
    ActionChains(browser).move_to_element(rst).perform()
    assert card.is_displayed()
    assert card.text.splitlines()[0].startswith("frame 8 · +")
    assert "flags RST (0x04)" in card.text and "RST reason TCP_ABORT_ON_DATA (kernel: tcp:tcp_send_reset)" in card.text

    ActionChains(browser).click().perform()  # clicking a segment steps to it; its frame number is a link
    assert "#8 RST" in _text(browser, ".tt-panel")
    browser.find_element(By.CSS_SELECTOR, ".tt-panel .tt-frame").click()
    # the toast follows the clipboard's promise: wait for it (bounded), not a fixed sleep
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 5).until(lambda driver: _text(driver, ".tt-toast") != "")
    assert _text(browser, ".tt-toast") == "copied: frame.number == 8"
    assert console_errors(browser) == []


def test_every_stored_capture_opens_without_console_errors(browser, tmp_path):
    for capture in sorted(CAPTURES.glob("*.pcapng")):
        recording = load_recording(capture)
        out = tmp_path / f"{capture.stem}.html"
        out.write_text(html_ladder(recording, correlate(recording)), encoding="utf-8")
        browser.get(out.as_uri())
        assert _text(browser, ".tt-counter").startswith("Step 1 of "), capture.name
        assert console_errors(browser) == [], capture.name


def test_a_long_transfer_is_elided_into_one_band(browser, corpus, tmp_path):
    """zeek's 878-packet capture: handshake and teardown drawn, the bulk one labelled break."""
    from selenium.webdriver.common.by import By

    from tcpteardown.analysis.elide import elide

    recording = load_recording(corpus / "zeek" / "timestamp.pcap")
    chosen = select_connection(connections(recording))
    elision = elide(chosen.segments, chosen.calls)  # what the ladder folds, the page folds
    assert elision.bands and len(elision.kept) < len(chosen.segments)
    out = tmp_path / "long.html"
    assert main(["plot", str(corpus / "zeek" / "timestamp.pcap"), "-o", str(out)]) == 0
    browser.get(out.as_uri())
    drawn = browser.find_elements(By.CSS_SELECTOR, ".tt-seg")
    assert len(drawn) == len(elision.kept)
    breaks = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".tt-break")]
    for band in elision.bands:
        assert any(band.frames in text for text in breaks), (band.frames, breaks)
    _press(browser, _end_key())
    assert _text(browser, ".tt-counter").endswith(f"of {len(drawn) + len(browser.find_elements(By.CSS_SELECTOR, '.tt-call'))}")
    assert console_errors(browser) == []


def _end_key():
    from selenium.webdriver.common.keys import Keys

    return Keys.END


def test_two_ladders_on_one_page_step_on_their_own(browser, tmp_path):
    """What a notebook (or its nbconvert export) holds: fragments side by side, keys to the focused one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    parts = []
    for name in ("broken-pipe", "reset-by-peer"):
        recording = load_recording(CAPTURES / f"{name}.pcapng")
        parts.append(html_fragment(recording, correlate(recording)))
    page = tmp_path / "two.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>" + "\n".join(parts)
                    + "</body></html>", encoding="utf-8")
    browser.get(page.as_uri())
    first, second = browser.find_elements(By.CSS_SELECTOR, ".tt-ladder")
    browser.execute_script("arguments[0].focus()", second)
    _press(browser, Keys.ARROW_RIGHT, 2)
    counters = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".tt-counter")]
    assert counters[0].startswith("Step 1 of ") and counters[1].startswith("Step 3 of ")
    assert "reset-by-peer" in second.text and console_errors(browser) == []
