"""Every notebook executes top to bottom, live as root and from the stored
captures without the capture privilege, and says which mode it ran in.

Notebooks are committed without outputs: diffs stay reviewable, and a stored
output would show one machine's timestamps as if they were the lesson.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from notebook_runner import as_user, unused_uids

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_is_a_numbered_sequence():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 9
    assert [n[:2] for n in names] == [f"{i:02d}" for i in range(len(names))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_and_without_logic(path):
    notebook = json.loads(path.read_text())
    first = "".join(notebook["cells"][0]["source"])
    for heading in ("What you'll do", "What you'll learn", "What you'll need"):
        assert heading in first, f"{path.name} does not open with {heading!r}"
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, \
            f"{path.name} is committed with outputs; clear them"
        source = "".join(cell["source"])
        for word in ("def ", "class ", "for ", "while ", "lambda"):
            assert word not in source, f"{path.name} holds logic ({word.strip()}): move it into tcpteardown"
    assert "<details>" in "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")


def _execute(path, tmp_path, prefix=()):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    return subprocess.run([*prefix, sys.executable, str(REPO / "tests" / "notebook_runner.py"), str(path),
                           str(REPO / "notebooks")], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.needs_capture
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_live(path, tmp_path):
    result = _execute(path, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    if "incident" not in path.name:
        assert "live on this machine" in result.stdout, result.stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_from_stored_captures_without_privilege(path, tmp_path):
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0:
        if setpriv is None:
            pytest.skip("needs setpriv (util-linux) to drop CAP_NET_RAW as root")
        prefix = (setpriv, "--bounding-set", "-net_raw,-net_admin", "--")
    else:
        prefix = ()
    result = _execute(path, tmp_path, prefix)
    assert result.returncode == 0, result.stderr[-3000:]
    if "incident" not in path.name:
        assert "Loaded the stored capture" in result.stdout and "CAP_NET_RAW" in result.stdout, result.stdout


# Notebook 08's write-up cell, as a student runs it (the notebook holds no
# logic: this is all it does).
INCIDENT_SNIPPET = ("import tcpteardown.views.notebook as tt; "
                    "print(tt.markdown_snippet(tt.load_incident()))")


def test_incident_snippet_for_two_users_in_a_row():
    """Two students on one machine: the second must not trip over the file
    the first wrote (it used to be /tmp/capture.png for everyone)."""
    written = []
    try:
        uids = unused_uids(2)
        for uid in uids:
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
                       PYTHONPATH=str(REPO / "src"))
            env.pop("TMPDIR", None)  # the shared temporary folder is the point
            with as_user(uid) as prefix:
                result = subprocess.run([*prefix, sys.executable, "-c", INCIDENT_SNIPPET], capture_output=True,
                                        text=True, timeout=120, env=env, cwd=REPO / "notebooks")
            assert result.returncode == 0, result.stderr[-3000:]
            image = result.stdout.split("](", 1)[1].split(")", 1)[0]
            written.append(image)
        for uid, image in zip(uids, written):
            assert os.lstat(image).st_uid == uid, f"{image} is not the student's own file"
            folder = os.lstat(os.path.dirname(image))
            assert folder.st_uid == uid and folder.st_mode & 0o077 == 0, f"{image} is in a folder others can write"
    finally:
        for image in written:  # the image, and the student's own folder if it made one (never more)
            os.unlink(image)
            folder = os.path.dirname(image)
            if os.path.basename(folder).startswith("tcpteardown-") and os.lstat(folder).st_uid != 0:
                shutil.rmtree(folder)
