"""Run notebook code the way a student would: execute one notebook top to
bottom in a child process (so the child can run without the capture
privilege), and build the command prefix that runs a child as another,
unprivileged user.

As a script: `notebook_runner.py NOTEBOOK WORKDIR` executes NOTEBOOK and
prints its stream outputs; `notebook_runner.py --json WORKDIR NOTEBOOK...`
executes each, one after the other, each in a fresh kernel of its own as a
student's would be, and prints {notebook: {"ok", "stdout", "error"}} as JSON
(one runner for them all: importing nbformat costs seconds, a kernel does not).
"""

import contextlib
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


def unused_uids(count: int, start: int = 60100) -> list:
    """`count` user ids no account and no file in the temporary folder uses."""
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    taken |= {p.lstat().st_uid for p in Path(tempfile.gettempdir()).iterdir()}
    found, uid = [], start
    while len(found) < count:
        if uid not in taken:
            found.append(uid)
        uid += 1
    return found


@contextlib.contextmanager
def as_user(uid: int):
    """Yield (prefix, home): a command prefix running a command as `uid` (its own group, no
    supplementary groups, no capability but CAP_DAC_READ_SEARCH), with a
    fresh HOME of its own (removed afterwards).

    CAP_DAC_READ_SEARCH only lets it *read* the checkout and the interpreter
    (a virtualenv whose Python lives under root's 0700 home); every write is
    still checked against `uid`, which is what a second student runs into.
    The home is made in the temporary folder, not under pytest's 0700
    tmp_path: access(2), which Matplotlib and Jupyter use, ignores the
    capability. Skips, naming the privilege, when we are not root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as another user (setpriv --reuid)")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run a child as another user")
    home = tempfile.mkdtemp(prefix=f"tcpteardown-test-home-{uid}-")
    try:
        os.chown(home, uid, uid)
        yield (setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
               "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
               "--bounding-set=-all,+dac_read_search", "--", "env", f"HOME={home}"), Path(home)
    finally:
        shutil.rmtree(home)


def execute(path: str, workdir: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    def run():
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
        return notebook

    try:
        notebook = run()
    except RuntimeError as error:
        # jupyter_client picks the kernel's ZMQ ports free, then releases them for the kernel to
        # bind: another runner starting a kernel at that moment can take one, and the kernel dies
        # before it runs a cell. That is the harness, not the notebook: one fresh start, said.
        if "Kernel died before replying to kernel_info" not in str(error):
            raise
        print(f"notebook_runner: {Path(path).name}: the kernel died at start ({error}); started again",
              file=sys.stderr)
        notebook = run()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                sys.stdout.write(output["text"])


def execute_all(paths, workdir: str) -> dict:
    """{path: {"ok", "stdout", "error"}}: each notebook run in its own fresh kernel."""
    import io
    import traceback
    from contextlib import redirect_stdout

    results = {}
    for path in paths:
        out = io.StringIO()
        try:
            with redirect_stdout(out):
                execute(path, workdir)
            results[path] = {"ok": True, "stdout": out.getvalue(), "error": ""}
        except Exception:  # a cell failed: its traceback is the test's message
            results[path] = {"ok": False, "stdout": out.getvalue(), "error": traceback.format_exc()[-6000:]}
    return results


if __name__ == "__main__":
    if sys.argv[1] == "--json":
        import json

        print(json.dumps(execute_all(sys.argv[3:], sys.argv[2])))
    else:
        execute(sys.argv[1], sys.argv[2])
