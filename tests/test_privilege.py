"""Without the privilege to capture, `run` says what is missing and the ways
out, in one line, with exit code 2 and no traceback."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO


def _check_refusal(result, setcap_on=".venv-capture/bin/python3"):
    """The ways out, in one line; the capability only ever suggested for a
    venv's own copy of python (`setcap_on`), never for a shared interpreter
    (every user running it would get raw sockets), and the message says why."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "CAP_NET_RAW" in result.stderr
    for way_out in ("sudo", "unshare", "captures/linux/"):
        assert way_out in result.stderr
    suggested = re.findall(r"setcap cap_net_raw,cap_net_admin=eip (\S+?)`", result.stderr)
    assert suggested == [setcap_on], result.stderr
    assert "own copy of python" in result.stderr and "every user raw sockets" in result.stderr
    assert result.stdout == ""


def _run_without_cap_net_raw(python, out, env=None):
    """`run broken-pipe` as root with CAP_NET_RAW and CAP_NET_ADMIN removed from the bounding set."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities from the bounding set")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs the program 'setpriv' (util-linux)")
    return subprocess.run(
        [setpriv, "--bounding-set", "-net_raw,-net_admin", "--", str(python), "-m", "tcpteardown",
         "run", "broken-pipe", "-o", str(out)],
        capture_output=True, text=True, timeout=60, env=env)


def test_without_cap_net_raw(tmp_path):
    """As root but with CAP_NET_RAW and CAP_NET_ADMIN removed from the bounding set."""
    out = tmp_path / "never.pcapng"
    real = os.path.realpath(sys.executable)
    own_copy = sys.prefix != sys.base_prefix and Path(real).is_relative_to(Path(sys.prefix).resolve())
    _check_refusal(_run_without_cap_net_raw(sys.executable, out),
                   **({"setcap_on": real} if own_copy else {}))  # a --copies venv's own python is named
    assert not out.exists()


def test_as_user_nobody(tmp_path):
    """As the unprivileged user nobody, with the system interpreter reading our sources."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the user nobody")
    setpriv = shutil.which("setpriv")
    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if setpriv is None or not system_python.exists():
        pytest.skip(f"needs setpriv and {system_python} (a Python that nobody may execute)")
    site = sysconfig.get_paths()["purelib"]
    probe = subprocess.run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "test", "-r", str(REPO / "src" / "tcpteardown" / "cli.py"), "-a", "-r", site],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"the user nobody cannot read {REPO}/src or {site} on this checkout")
    env = {"PYTHONPATH": f"{REPO / 'src'}:{site}", "PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ["PATH"],
           "HOME": str(tmp_path)}
    result = subprocess.run(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(system_python), "-m",
         "tcpteardown", "run", "broken-pipe"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    _check_refusal(result)


def test_a_venvs_own_copy_of_python_is_the_one_named(tmp_path):
    """Run from a `venv --copies` interpreter without CAP_NET_RAW: setcap is
    suggested for that copy (it is this project's alone), by its path."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities from the bounding set")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--copies", "--without-pip", str(venv)], check=True, timeout=120)
    copy = venv / "bin" / "python3"
    assert not copy.is_symlink()
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{sysconfig.get_paths()['purelib']}")
    result = _run_without_cap_net_raw(copy, tmp_path / "never.pcapng", env=env)
    _check_refusal(result, setcap_on=os.path.realpath(copy))
