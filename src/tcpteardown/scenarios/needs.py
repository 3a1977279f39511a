"""What a scenario needs from the host, and whether this host has it."""

from __future__ import annotations

from typing import Optional

from ..capture import platform as host
from .registry import Scenario

# need -> probe returning None (fine) or a sentence saying what is missing
def _netns_problem() -> Optional[str]:
    from ..capture import netns

    return host.netns_problem() or netns.namespace_problem()  # the second one really tries


def _gate_problem() -> Optional[str]:
    from ..capture import netns

    return netns.gate_problem()  # a tbf qdisc on lo, inside a namespace


PROBES = {
    "capture": host.capture_problem,
    "netns": _netns_problem,
    "tc": _gate_problem,
    "netem": lambda: __import__("tcpteardown.capture.netns", fromlist=["netem_problem"]).netem_problem(),
    "tracefs": host.tracefs_problem,
    "linux": lambda: None if host.IS_LINUX else "runs only on Linux",
    "iptables": lambda: None if all(host.find_tool(t) for t in ("iptables", "ip6tables"))
    else "needs iptables and ip6tables (apt-get install iptables)",
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
