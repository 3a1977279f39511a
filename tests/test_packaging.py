"""environment.yml and pyproject.toml name the same dependencies."""

import re
import sys

import pytest

from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_covers_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in pyproject["dependencies"]}
    for extra in ("test", "notebooks"):
        wanted |= {_name(r) for r in pyproject["optional-dependencies"][extra]}
    conda = set()
    for line in (REPO / "environment.yml").read_text().splitlines():
        match = re.match(r"\s*-\s+([A-Za-z0-9_.-]+)", line)
        if match:
            conda.add(_name(match.group(1)))
    missing = wanted - conda
    assert not missing, f"environment.yml lacks {sorted(missing)} that pyproject.toml requires"
    assert "libpcap" in conda and "python" in conda


def test_console_script_and_module_entry_point():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "tcpteardown", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("tcpteardown ")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tcpteardown"] == "tcpteardown.cli:main"
