"""scripts/record-macos.sh: the one command a Mac owner runs to contribute every scenario.

It can only record on a Mac; here it is checked for what a Linux machine can
check: it parses, it refuses to run off macOS with one line and exit 2
(writing nothing), and the README table it appends to is the file's last.
"""

from __future__ import annotations

import subprocess

from conftest import REPO, tool_or_skip

SCRIPT = REPO / "scripts" / "record-macos.sh"


def test_the_script_parses_as_bash():
    bash = tool_or_skip("bash")
    subprocess.run([bash, "-n", str(SCRIPT)], check=True, timeout=30)


def test_off_a_mac_it_refuses_with_one_line_and_writes_nothing():
    bash = tool_or_skip("bash")
    before = sorted(p.name for p in (REPO / "captures" / "macos").iterdir())
    done = subprocess.run([bash, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "records on a Mac" in done.stderr, done.stderr
    assert sorted(p.name for p in (REPO / "captures" / "macos").iterdir()) == before


def test_bundle_lines_land_in_the_contributors_table():
    readme = (REPO / "captures" / "macos" / "README.md").read_text().rstrip("\n").splitlines()
    assert readme[-1] == "| --- | --- | --- | --- | --- | --- |"  # the header of the last table
    assert readme[-2].startswith("| file | scenario | macOS | kernel | date | how |")
    assert "sw_vers" in SCRIPT.read_text() and 'echo "| \\`' in SCRIPT.read_text()
