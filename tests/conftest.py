"""Shared fixtures and the host probes behind the skip markers.

Each probe runs once; a skipped test names exactly what is missing. CI runs
as root with every tool installed, so nothing is skipped there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def tool_or_skip(name: str) -> str:
    """The path of an external program, or skip naming the missing tool."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs the program {name!r} on PATH (apt-get install {name})")
    return path


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus, the real captures from public projects."""
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"needs the shared corpus at {CORPUS}")
    return CORPUS


def pytest_collection_modifyitems(config, items):
    from tcpteardown.capture import platform as host
    from tcpteardown.capture.kernel import mount_tracefs_if_missing

    mount_tracefs_if_missing()  # a fresh CI machine may have tracefs unmounted

    reasons = {
        "needs_capture": host.capture_problem(),
        "needs_tracefs": host.tracefs_problem(),
        "needs_netns": host.netns_problem(),
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: {reason}"))


@pytest.fixture
def is_root() -> bool:
    return os.geteuid() == 0
