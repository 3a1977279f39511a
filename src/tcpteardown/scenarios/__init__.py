"""The scenario library and the runner that records each one on loopback.

    from tcpteardown.scenarios import run_scenario
    run = run_scenario("broken-pipe")      # real sockets, real capture
    run.recording, run.expected, run.observed, run.matches
"""

from .registry import Expectation, Outcome, Scenario, SCENARIOS, all_scenarios, get_scenario
from .runner import ScenarioRun, run_scenario

__all__ = ["Expectation", "Outcome", "Scenario", "SCENARIOS", "ScenarioRun", "all_scenarios",
           "get_scenario", "run_scenario"]
