"""Headless Chromium for tests: Debian's chromium driven by chromium-driver through Selenium.

`headless_chromium()` yields a driver that records the browser console
(`console_errors(driver)`), and quits it (and its browser) however the test
ends. Chromium's own scratch files (`org.chromium.Chromium.*`, which it
leaves in $TMPDIR when it is quit) go to a private directory removed after.
A missing browser, driver or selenium is a skip naming it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

import pytest

from conftest import tool_or_skip


@contextlib.contextmanager
def headless_chromium(width: int = 1100, height: int = 900) -> Iterator[object]:
    chromium = tool_or_skip("chromium")
    driver_path = tool_or_skip("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with tempfile.TemporaryDirectory(prefix="tcpteardown-chromium-") as scratch:
        service = webdriver.ChromeService(executable_path=driver_path, env=dict(os.environ, TMPDIR=scratch))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            yield driver
        finally:
            driver.quit()


def console_errors(driver) -> list[dict]:
    """The console's errors since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
