"""Each seed scenario, on real loopback sockets with a real capture, does
what it says it does, 20 runs in a row."""

import pytest

from tcpteardown.scenarios import all_scenarios, get_scenario, run_scenario

SEED = [s.name for s in all_scenarios() if s.family_group == "basics"]
RUNS = 20

pytestmark = pytest.mark.needs_capture


@pytest.mark.parametrize("name", SEED)
def test_observed_equals_expected_twenty_times(name):
    failures = []
    for attempt in range(RUNS):
        run = run_scenario(name)
        if not run.matches:
            failures.append(f"run {attempt + 1}: {'; '.join(run.mismatches)}")
    assert not failures, f"{name} differed from its expectation:\n" + "\n".join(failures)


def test_write_after_reset_shows_both_writes_in_order():
    run = run_scenario("write-after-reset")
    failing = [(c.op, c.errno) for c in run.recording.calls if c.failed]
    assert failing == [("send", "ECONNRESET"), ("send", "EPIPE")]
    assert "first write" in get_scenario("write-after-reset").expected["Linux"].why


def test_refused_has_the_syn_and_its_rst_only():
    run = run_scenario("refused")
    flags = [s.flags.render() for s in run.recording.segments]
    assert flags == ["SYN", "RST,ACK"]


def test_a_mismatch_is_reported_not_hidden():
    """Judge a real recording against another scenario's expectation."""
    from tcpteardown.analysis.connections import declared_server_ports
    from tcpteardown.scenarios.runner import judge

    run = run_scenario("graceful-close")
    other = get_scenario("reset-by-peer")
    verdict = judge(other, "ipv4", run.recording, declared_server_ports(run.recording))
    assert not verdict.matches
    assert any("ECONNRESET" in m for m in verdict.mismatches)
