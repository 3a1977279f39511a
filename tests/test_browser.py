"""A notebook in a real browser, as a student runs it.

JupyterLab runs on 127.0.0.1 with a token, as an unprivileged user (so the
notebook loads the stored captures); headless Chromium drives it through
Selenium at a projector's 1024x768: run every cell, check that no cell
printed an error, step the ladder by its buttons and by the arrow keys and
check that the highlighted step on the ladder itself changes. Then the
notebook is saved, exported with `jupyter nbconvert --to html`, and the
exported page, opened from disk with no server, still steps; and the same
notebook runs and steps in Notebook 7 (served by the same server).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser import headless_chromium
from conftest import REPO
from notebook_runner import as_user, unused_uids

NOTEBOOK = "01-trace-eof-to-its-fin.ipynb"
SERVER_START_S = 60
RUN_ALL_S = 90


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(what: str, ready, timeout: float, interval: float = 0.2):
    """Poll `ready` until it returns something truthy (a state we wait for,
    not a fixed delay); fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)  # intended: the poll interval of a bounded wait


def _server_up(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def lab():
    """JupyterLab as an unprivileged user, serving a copy of the notebook in
    that user's home, started at once; yields a function that waits until it
    answers and returns (base url, token, folder). Always stopped."""
    pytest.importorskip("jupyterlab", reason="needs jupyterlab (pip install -e '.[notebooks]')")
    (uid,) = unused_uids(1)
    with as_user(uid) as (prefix, home):
        folder = home / "class"
        folder.mkdir()
        shutil.copy(REPO / "notebooks" / NOTEBOOK, folder / NOTEBOOK)
        for path in (folder, folder / NOTEBOOK):
            os.chown(path, uid, uid)
        port, token = _free_port(), secrets.token_hex(16)
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONDONTWRITEBYTECODE="1",
                   TCPTEARDOWN_CAPTURES=str(REPO / "captures"))
        env.pop("TCPTEARDOWN_NOTEBOOK_MODE", None)
        log = open(home / "lab.log", "w")
        server = subprocess.Popen(
            [*prefix, sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--expose-app-in-browser",
             "--JupyterNotebookApp.expose_app_in_browser=True",
             f"--ServerApp.root_dir={folder}"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"

        def answering():
            """Waits for the server (the browser starts meanwhile); (base url, token, folder)."""
            _wait_for("JupyterLab to answer", lambda: server.poll() is not None or
                      _server_up(f"{base}/api/status?token={token}"), SERVER_START_S)
            assert server.poll() is None, (home / "lab.log").read_text()[-3000:]
            return base, token, folder

        try:
            yield answering
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            log.close()


@pytest.fixture
def browser():
    with headless_chromium(1024, 768) as driver:  # the projector's resolution
        yield driver


# What the page shows, read in the page.
CHECKED = ("const r = document.querySelector('.tt-stepper input[type=radio]:checked');"
           "return r ? Number(r.value) : null;")
HIGHLIGHTED = ("return [...document.querySelectorAll('.tt-stepper .tt-ladder svg [id]')]"
               ".filter(e => getComputedStyle(e).filter !== 'none').map(e => e.id);")
FADED = ("return [...document.querySelectorAll('.tt-stepper .tt-ladder svg [id]')]"
         ".filter(e => Number(getComputedStyle(e).opacity) < 0.5).length;")
SHOWN_PANEL = ("const p = [...document.querySelectorAll('.tt-stepper .tt-panel')]"
               ".find(e => getComputedStyle(e).display !== 'none'); return p ? p.innerText : null;")


def _step_by_buttons_and_keys(driver):
    """Next (mouse), then the right arrow key (keyboard), then Previous:
    the checked step, the panel and the highlight on the ladder follow."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    assert driver.execute_script(CHECKED) == 1
    first = driver.execute_script(HIGHLIGHTED)
    total = len(driver.find_elements(By.CSS_SELECTOR, ".tt-stepper input[type=radio]"))
    assert first and driver.execute_script(FADED) > 0, "step 1 should highlight one step and fade the rest"
    assert driver.execute_script(SHOWN_PANEL).startswith(f"Step 1 of {total}")

    next_button = driver.find_element(By.XPATH, "//div[contains(@class,'tt-p0')]//label[contains(., 'Next')]")
    next_button.click()
    assert driver.execute_script(CHECKED) == 2
    second = driver.execute_script(HIGHLIGHTED)
    assert second and second != first, f"the ladder's highlight did not move: {first} -> {second}"
    assert driver.execute_script(SHOWN_PANEL).startswith(f"Step 2 of {total}")

    radio = driver.find_element(By.CSS_SELECTOR, ".tt-stepper input[type=radio]:checked")
    radio.send_keys(Keys.ARROW_RIGHT)
    assert driver.execute_script(CHECKED) == 3, "the arrow key did not step; focus went to " + driver.execute_script(
        "const a = document.activeElement; return a.tagName + '#' + a.id + '.' + a.className;")
    third = driver.execute_script(HIGHLIGHTED)
    assert third and third != second
    assert driver.execute_script(SHOWN_PANEL).startswith(f"Step 3 of {total}")

    previous = driver.find_element(By.XPATH, "//div[contains(@class,'tt-p2')]//label[contains(., 'Previous')]")
    previous.click()
    assert driver.execute_script(CHECKED) == 2 and driver.execute_script(HIGHLIGHTED) == second


def _run_all(browser, url: str) -> None:
    """Open the notebook at `url`, run every cell (its outputs cleared first),
    and check that no cell printed an error."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    _wait_for("the notebook and its kernel", lambda: browser.execute_script(
        "const a = window.jupyterapp; const w = a && a.shell.currentWidget;"
        "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle');"), SERVER_START_S)
    browser.execute_script("const c = window.jupyterapp.commands;"
                           "c.execute('notebook:clear-all-cell-outputs').then(() => c.execute('notebook:run-all-cells'));")
    _wait_for("every cell to run", lambda: browser.execute_script(
        "const w = window.jupyterapp.shell.currentWidget;"
        "const cells = w.content.widgets.filter(c => c.model.type === 'code');"
        "return cells.every(c => c.model.executionCount !== null) && "
        "w.sessionContext.session.kernel.status === 'idle';"), RUN_ALL_S)
    errors = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type="
                                                    "'application/vnd.jupyter.stderr']")
    assert not errors, "a cell printed an error: " + errors[0].text[:2000]
    page = browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
    assert "Loaded the stored capture" in page, "an unprivileged student should get the stored capture"
    stepper = browser.find_element(By.CSS_SELECTOR, ".tt-stepper")
    assert "TIME_WAIT" in stepper.get_attribute("innerHTML")
    stepper.location_once_scrolled_into_view


@pytest.mark.slow
def test_a_student_steps_a_ladder_in_jupyterlab_notebook7_and_the_exported_page(lab, browser, tmp_path):
    from selenium.webdriver.common.by import By

    base, token, folder = lab()
    _run_all(browser, f"{base}/lab/tree/{NOTEBOOK}?token={token}")
    _step_by_buttons_and_keys(browser)

    # Save (the user's own copy) and export, as a teacher would hand it out.
    browser.execute_script("window.jupyterapp.commands.execute('docmanager:save');")
    _wait_for("the notebook to be saved with its outputs", lambda: any(
        cell.get("outputs") for cell in json.loads((folder / NOTEBOOK).read_text())["cells"]
        if cell["cell_type"] == "code"), 30)
    saved, exported = tmp_path / NOTEBOOK, tmp_path / "exported.html"
    shutil.copy(folder / NOTEBOOK, saved)  # what was saved, whatever the server writes next
    with subprocess.Popen([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(tmp_path),
                           "--output", exported.stem, str(saved)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as export:  # exports while Notebook 7 runs
        try:
            # The same notebook in Notebook 7, whose arrow keys also move between cells.
            _run_all(browser, f"{base}/notebooks/{NOTEBOOK}?token={token}")
            _step_by_buttons_and_keys(browser)
            said, _ = export.communicate(timeout=120)
        finally:
            if export.poll() is None:
                export.kill()
    assert export.returncode == 0, said[-3000:]
    browser.get(exported.as_uri())
    assert browser.find_elements(By.CSS_SELECTOR, ".tt-stepper"), "the exported page lost the step-through"
    _step_by_buttons_and_keys(browser)
