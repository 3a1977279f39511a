"""After a run nothing is left behind: file descriptors, threads, child processes."""

import os
import threading

import pytest

from tcpteardown.scenarios import run_scenario
from leftovers import children as _children, open_fds as _open_fds

pytestmark = pytest.mark.needs_capture




@pytest.mark.parametrize("name", ["graceful-close", "reset-by-peer", "broken-pipe",
                                  "write-after-reset", "refused", "use-after-close"])
def test_run_leaves_nothing_behind(name):
    run_scenario(name)  # warm up: scapy opens its own long-lived files on first use
    fds, threads, children = _open_fds(), threading.active_count(), _children()
    for _ in range(3):
        run_scenario(name)
    assert _open_fds() - fds == set(), "file descriptors leaked"
    assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
    assert _children() == children


def test_failure_inside_a_scenario_still_cleans_up(monkeypatch):
    from tcpteardown.scenarios import get_scenario

    scenario = get_scenario("broken-pipe")
    run_scenario("broken-pipe")
    fds, threads = _open_fds(), threading.active_count()

    def explode(stage):
        stage.socket()
        raise RuntimeError("scenario failed half-way")

    monkeypatch.setattr(type(scenario), "play", property(lambda self: explode), raising=False)
    with pytest.raises(RuntimeError, match="half-way"):
        run_scenario("broken-pipe")
    assert _open_fds() - fds == set()
    assert threading.active_count() == threads
