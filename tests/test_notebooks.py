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
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from notebook_runner import as_user, unused_uids

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_is_a_numbered_sequence():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 9
    assert [n[:2] for n in names] == [f"{i:02d}" for i in range(len(names))]


def _committed(path) -> str:
    """The notebook as committed (HEAD's blob), not the working tree a class
    may have just run; the working tree only outside a git checkout (a
    release tarball has nothing else)."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return path.read_text()
    relative = path.relative_to(REPO).as_posix()
    shown = subprocess.run([git, "-C", str(REPO), "show", f"HEAD:{relative}"], capture_output=True, text=True)
    if shown.returncode != 0:  # a notebook not committed yet: what will be committed is the index's
        shown = subprocess.run([git, "-C", str(REPO), "show", f":{relative}"], capture_output=True, text=True)
    assert shown.returncode == 0, f"{relative} is not in git: {shown.stderr.strip()}"
    return shown.stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_and_without_logic(path):
    notebook = json.loads(_committed(path))
    # without ids the nbstripout filter invents new ones at every `git add`: a fresh
    # clone would show the notebook modified before anyone touched it
    assert all("id" in cell for cell in notebook["cells"]), f"{path.name} has cells without an id"
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


class _Runner:
    """Every notebook, each in a fresh kernel of its own, through one runner process started
    at once (the live and the stored runs go side by side, one core each); `result()` waits
    for it: {notebook name: {"ok", "stdout", "error"}}."""

    def __init__(self, prefix=()):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
        self.proc = subprocess.Popen([*prefix, sys.executable, str(REPO / "tests" / "notebook_runner.py"), "--json",
                                      str(REPO / "notebooks"), *map(str, NOTEBOOKS)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)

    def result(self) -> dict:
        out, err = self.proc.communicate(timeout=900)
        assert self.proc.returncode == 0, err[-3000:]
        return {Path(path).name: result for path, result in json.loads(out).items()}

    def stop(self) -> None:
        if self.proc.poll() is None:  # a run no test asked for (-k): not left behind
            self.proc.kill()
        self.proc.communicate()


def _stored_prefix():
    """How a student without the capture privilege runs (root drops CAP_NET_RAW), or
    why it cannot be done here (a string)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return "needs setpriv (util-linux) to drop CAP_NET_RAW as root"
    return (setpriv, "--bounding-set", "-net_raw,-net_admin", "--")


@pytest.fixture(scope="module")
def runners(request):
    """The two runs, started together when the first test asks for either."""
    started = {}
    from tcpteardown.capture.platform import capture_problem

    live_wanted = any(item.name.startswith("test_executes_live") for item in request.session.items)
    if live_wanted and not capture_problem():  # else its tests skip, naming the privilege
        started["live"] = _Runner()
    prefix = _stored_prefix()
    started["stored"] = prefix if isinstance(prefix, str) else _Runner(prefix)
    yield started
    for runner in started.values():
        if isinstance(runner, _Runner):
            runner.stop()


@pytest.fixture(scope="module")
def live_runs(runners):
    return runners["live"].result()


@pytest.fixture(scope="module")
def stored_runs(runners):
    if isinstance(runners["stored"], str):
        pytest.skip(runners["stored"])
    return runners["stored"].result()


@pytest.mark.needs_capture
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_live(path, live_runs):
    result = live_runs[path.name]
    assert result["ok"], result["error"]
    if "incident" not in path.name:
        assert "live on this machine" in result["stdout"], result["stdout"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_from_stored_captures_without_privilege(path, stored_runs):
    result = stored_runs[path.name]
    assert result["ok"], result["error"]
    if "incident" not in path.name:
        assert "Loaded the stored capture" in result["stdout"] and "CAP_NET_RAW" in result["stdout"], result["stdout"]
        # Why it loads stored captures is said once per notebook, in one line, and never
        # suggests giving the system's Python the capture privilege.
        assert result["stdout"].count("CAP_NET_RAW") == 1 and "setcap" not in result["stdout"], result["stdout"]


# Notebook 08's write-up cell, as a student runs it (the notebook holds no
# logic: this is all it does).
INCIDENT_SNIPPET = ("import tcpteardown; from tcpteardown import notebook as tt; "
                    "folder = tt.captures_dir() / 'linux' / 'incident'; "
                    "print(tt.markdown_snippet(tcpteardown.load(folder / 'capture.pcap', "
                    "logs=[folder / 'client.log'])))")


def test_incident_snippet_for_two_users_in_a_row():
    """Two students on one machine: the second must not trip over the file
    the first wrote (it used to be /tmp/capture.png for everyone)."""
    written, uids = [], unused_uids(2)
    try:
        for uid in uids:
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
                       PYTHONPATH=str(REPO / "src"))
            env.pop("TMPDIR", None)  # the shared temporary folder is the point
            with as_user(uid) as (prefix, _home):
                result = subprocess.run([*prefix, sys.executable, "-c", INCIDENT_SNIPPET], capture_output=True,
                                        text=True, timeout=120, env=env, cwd=REPO / "notebooks")
            assert result.returncode == 0, result.stderr[-3000:]
            image = result.stdout.split("](", 1)[1].split(")", 1)[0]
            written.append(image)
        for uid, image in zip(uids, written):
            assert os.lstat(image).st_uid == uid, f"{image} is not the student's own file"
            folder = os.lstat(os.path.dirname(image))
            assert folder.st_uid == uid and folder.st_mode & 0o077 == 0, f"{image} is in a folder others can write"
    finally:  # each student's own folders (never more), also when a run failed before printing
        for uid in uids:
            for folder in Path(tempfile.gettempdir()).glob(f"tcpteardown-{uid}*"):
                if folder.lstat().st_uid == uid:
                    shutil.rmtree(folder)


def test_outputs_never_reach_a_commit(tmp_path):
    """The repository's .gitattributes and the filter scripts/setup.sh
    configures strip a notebook run in class (outputs, execution counts) on
    `git add`, keep its cell ids, and ignore JupyterLab's checkpoints."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("needs git")
    setup = (REPO / "scripts" / "setup.sh").read_text()
    clean = setup.split('nbstripout="', 1)[1].split('"\n', 1)[0].replace('\\"', '"')
    clean = clean.replace('$PWD/.venv/bin/python', sys.executable)
    run = lambda *args: subprocess.run([git, "-C", str(tmp_path), *args], capture_output=True, text=True,
                                       check=True).stdout  # noqa: E731
    run("init", "-q")
    run("config", "filter.nbstripout.clean", clean)
    run("config", "filter.nbstripout.smudge", "cat")
    run("config", "filter.nbstripout.required", "true")
    shutil.copy(REPO / ".gitattributes", tmp_path / ".gitattributes")
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    source = NOTEBOOKS[0]
    notebook = json.loads(source.read_text())
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 3
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["a class ran this\n"]}]
    (tmp_path / source.name).write_text(json.dumps(notebook, indent=1))
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / f"{source.stem}-checkpoint.ipynb").write_text("{}")
    run("add", "-A")
    assert run("ls-files").split() == [".gitattributes", ".gitignore", source.name]
    committed = json.loads(run("show", f":{source.name}"))
    codes = [c for c in committed["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in codes)
    assert [c["id"] for c in committed["cells"]] == [c["id"] for c in notebook["cells"]]
    assert run("show", f":{source.name}") == source.read_text(), "a clean notebook must pass through unchanged"
