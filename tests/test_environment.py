"""The user's environment, as it comes: an unwritable HOME, file names that are not UTF-8."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

STORED = REPO / "captures" / "linux" / "broken-pipe.pcapng"


def test_an_unwritable_home_prints_no_matplotlib_warnings(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)  # read-only (root may still write: then use a path nobody can create under)
    unwritable = str(home) if not os.access(home, os.W_OK) else "/proc/1"
    environment = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME",
                                                                  "XDG_CACHE_HOME")}
    environment["HOME"] = unwritable
    result = subprocess.run([sys.executable, "-m", "tcpteardown", "plot", str(STORED), "-o",
                             str(tmp_path / "ladder.svg")], env=environment, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Matplotlib" not in result.stderr and "mkdir" not in result.stderr, result.stderr
    assert (tmp_path / "ladder.svg").stat().st_size > 0


def test_a_file_name_that_is_not_utf8_prints_as_given(tmp_path):
    name = os.fsencode(tmp_path) + b"/bad\xffname.pcap"
    with open(name, "wb"):
        pass  # empty: an error that names the file
    result = subprocess.run([os.fsencode(sys.executable), b"-m", b"tcpteardown", b"explain", name],
                            capture_output=True, timeout=60)
    assert result.returncode == 2
    assert name in result.stderr, result.stderr
    assert b"\\udcff" not in result.stderr
