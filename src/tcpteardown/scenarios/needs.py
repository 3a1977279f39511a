"""What a scenario needs from the host, and whether this host has it."""

from __future__ import annotations

from typing import Optional

from ..capture import platform as host
from .registry import Scenario

# need -> probe returning None (fine) or a sentence saying what is missing
PROBES = {
    "capture": host.capture_problem,
    "netns": host.netns_problem,
    "tracefs": host.tracefs_problem,
    "linux": lambda: None if host.IS_LINUX else "runs only on Linux",
}


def can_run(scenario: Scenario, *, capture: bool = True) -> Optional[str]:
    """None when this host can run `scenario` (with capture), else why not."""
    needs = list(scenario.needs) + (["capture"] if capture else [])
    for need in needs:
        probe = PROBES.get(need)
        problem = probe() if probe else None
        if problem:
            return problem
    return None
