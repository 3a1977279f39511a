"""Each seed scenario, on real loopback sockets with a real capture, does
what it says it does, 20 runs in a row."""

import pytest

from tcpteardown.scenarios import get_scenario, run_scenario

SEED = ["graceful-close", "reset-by-peer", "broken-pipe", "write-after-reset", "refused", "use-after-close"]
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


@pytest.mark.parametrize("name", SEED)
def test_every_call_is_timed_and_errnos_are_names(name):
    run = run_scenario(name)
    assert run.recording.calls
    for call in run.recording.calls:
        assert call.start_ns <= call.end_ns
        assert call.errno is None or (call.errno.isupper() and call.errno.startswith("E")), call
    first_segment = run.recording.segments[0].time_ns if run.recording.segments else None
    if first_segment is not None:
        # the clocks agree: the first packet falls inside the run, not hours away
        assert abs(first_segment - run.recording.calls[0].start_ns) < 1_000_000_000


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
    from tcpteardown.scenarios.runner import judge, server_ports_of

    run = run_scenario("graceful-close")
    other = get_scenario("reset-by-peer")
    verdict = judge(other, "ipv4", run.recording, server_ports_of(run.recording))
    assert not verdict.matches
    assert any("ECONNRESET" in m for m in verdict.mismatches)
