"""The full scenario library on real sockets with a real capture: each
scenario, over IPv4 and IPv6, does what it expects, 20 runs in a row, and
the particular stories some of them tell. What every scenario must do once
(nothing left behind, bundle, tshark, explain) is tests/test_conformance.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcpteardown.scenarios import all_scenarios, get_scenario, run_scenario
from tcpteardown.schemas import validator
from tcpteardown.views.contracts.run import run_json
from tcpteardown.scenarios.needs import can_run

# The scenarios the library issue asked for: each must be registered (the test below).
ISSUE_SCENARIOS = ["linger-abort", "peer-crash-fin", "peer-crash-rst", "half-close", "shutdown-then-write",
                   "simultaneous-close", "http-client-abort", "keepalive-race-eof", "keepalive-race-reset",
                   "connect-timeout", "read-timeout", "accept-overflow", "no-route"]
# Repeated runs cover every registered scenario beyond the seed family (test_seed_scenarios has
# those); leaks, bundles, tshark and explain are checked once per scenario by test_conformance.
LIBRARY = [s.name for s in all_scenarios() if s.family_group != "basics"]
FAMILIES = ["ipv4", "ipv6"]
RUNS = 20
# connect-timeout waits for the kernel's TCP_USER_TIMEOUT (1.2 s) every run:
# 20 runs x 2 families would be 48 s, half this file's budget on 2 cores.
# icmp-unreachable over IPv6 waits for each connect's first SYN retransmission
# (1 s, twice a run) before the ICMPv6 reply ends it: 20 runs were 44 s.
# Three runs still catch a dropped-vs-refused or errno slip.
RUNS_FOR = {("connect-timeout", "ipv4"): 3, ("connect-timeout", "ipv6"): 3, ("icmp-unreachable", "ipv6"): 3}

pytestmark = pytest.mark.needs_capture


def _skip_unless_runnable(name: str) -> None:
    problem = can_run(get_scenario(name))
    if problem:
        pytest.skip(f"{name}: {problem}")





@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", LIBRARY)
def test_observed_equals_expected_every_time(name, family):
    _skip_unless_runnable(name)
    # The kernel witness (tracefs) is checked once below; these repeated runs
    # are about the sockets and the capture, so they skip its setup cost.
    failures = []
    runs = RUNS_FOR.get((name, family), RUNS)
    for attempt in range(runs):
        run = run_scenario(name, family=family, witness=False)
        if not run.matches:
            failures.append(f"run {attempt + 1}: {'; '.join(run.mismatches)}")
    validator("run").validate(run_json(run, None, 0.0))  # `run NAME --json`'s published shape
    assert not failures, f"{name} over {family} differed from its expectation:\n" + "\n".join(failures)


def test_every_scenario_of_the_issue_is_registered_with_an_honest_expectation():
    for name in ISSUE_SCENARIOS:
        scenario = get_scenario(name)
        linux = scenario.expected["Linux"]
        assert linux.observed and linux.why
        darwin = scenario.expected.get("Darwin")
        assert darwin is None or not darwin.observed  # never claimed as seen on a Mac
        assert scenario.family_group != "basics"


def test_connect_timeout_shows_the_syn_retransmission():
    _skip_unless_runnable("connect-timeout")
    run = run_scenario("connect-timeout", witness=False)
    client = next(c for c in run.recording.calls if c.role == "client" and c.op == "connect")
    syns = [s for s in run.recording.segments if s.flags.render() == "SYN" and s.src == client.local]
    assert len(syns) == 2, [s.flags.render() for s in run.recording.segments]
    assert 0.9e9 < syns[1].time_ns - syns[0].time_ns < 1.2e9  # the initial 1 s RTO
    assert client.errno == "ETIMEDOUT" and client.end_ns - client.start_ns < 2e9


def test_read_timeout_is_silent_on_the_wire():
    _skip_unless_runnable("read-timeout")
    run = run_scenario("read-timeout", witness=False)
    recv = next(c for c in run.recording.calls if c.op == "recv")
    assert recv.local and recv.remote
    # the claim is about this connection: its own 4-tuple, not whatever else used the ports
    ours = [s for s in run.recording.segments if {s.src, s.dst} == {recv.local, recv.remote}]
    assert ours, "the capture holds none of the recv's connection"
    during = [s for s in ours if recv.start_ns <= s.time_ns <= recv.end_ns]
    assert during == []
    assert recv.end_ns - recv.start_ns >= 100_000_000


def test_simultaneous_close_passes_closing_on_both_sides_when_the_kernel_tells():
    _skip_unless_runnable("simultaneous-close")
    run = run_scenario("simultaneous-close")
    assert run.matches, run.mismatches
    fins = [s for s in run.recording.segments if s.is_fin]
    assert len(fins) == 2
    # crossed: the second FIN left before any segment acknowledged the first
    between = [s for s in run.recording.segments if fins[0].time_ns < s.time_ns < fins[1].time_ns]
    assert between == []
    closing = [e for e in run.recording.kernel_events
               if e.name.endswith("inet_sock_set_state") and "CLOSING" in (e.get("newstate") or "")]
    if run.recording.kernel_events:
        assert len(closing) == 2, run.recording.kernel_events


def test_peer_crash_reaps_the_server_process():
    _skip_unless_runnable("peer-crash-rst")
    run = run_scenario("peer-crash-rst", witness=False)
    accept = next(c for c in run.recording.calls if c.op == "accept")
    assert accept.pid != os.getpid()
    assert not Path(f"/proc/{accept.pid}").exists()  # killed and reaped, not a zombie


@pytest.mark.needs_netns
def test_delay_shows_the_round_trip():
    from tcpteardown.capture.netns import netem_problem

    problem = netem_problem()
    if problem:
        pytest.skip(problem)
    result = subprocess.run([sys.executable, "-m", "tcpteardown", "run", "graceful-close", "--delay", "20", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    segments = json.loads(result.stdout)["segments"]
    syn = next(s for s in segments if s["flags"] == "SYN")
    synack = next(s for s in segments if s["flags"] == "SYN,ACK")
    assert synack["time"] - syn["time"] >= 0.020


@pytest.mark.needs_netns
def test_a_delay_longer_than_the_witness_tolerance_is_no_disagreement():
    """With --delay 300 the capture sees each RST 300 ms after the kernel's
    tracepoint: the witness still pairs them (tolerance grows by the delay),
    so no disagreement is reported and the RST keeps its kernel reason."""
    from tcpteardown.analysis.completeness import completeness
    from tcpteardown.capture.netns import netem_problem

    problem = netem_problem()
    if problem:
        pytest.skip(problem)
    _skip_unless_runnable("accept-overflow")
    run = run_scenario("accept-overflow", delay_ms=300)
    if run.recording.metadata.get("witness") != "tracefs":
        pytest.skip(f"no kernel witness here: {run.recording.metadata.get('witness_unavailable')}")
    assert run.matches, run.mismatches
    assert not run.recording.metadata.get("witness_disagreement")
    assert not [w for w in completeness(run.recording).warnings if "witness" in w]
    resets = [s for s in run.recording.segments if s.is_rst]
    assert resets and all(s.reset_reason for s in resets)


def test_delay_without_netem_says_so_in_one_line(monkeypatch, capsys):
    """Where neither netem nor the delay line is available, `run --delay`
    refuses in one line (exit 2). Simulated here, where --delay works: the
    probe is replaced, the command and its error path are the real ones."""
    from tcpteardown import cli
    from tcpteardown.capture import netns

    monkeypatch.setattr(netns, "netem_problem",
                        lambda: "this kernel has no netem (sch_netem) and iptables' NFQUEUE is missing")
    assert cli.main(["run", "graceful-close", "--delay", "20"]) == 2
    err = capsys.readouterr().err
    assert "netem" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.needs_netns
def test_every_scenario_tells_the_same_story_with_a_delay():
    """The ordering comes from waiting for events, not from loopback speed:
    with 5 ms on every segment each scenario still matches (connect-timeout
    left out: it only waits longer)."""
    from tcpteardown.capture.netns import netem_problem

    problem = netem_problem()
    if problem:
        pytest.skip(problem)
    failures = []
    for name in ["graceful-close", "reset-by-peer", "broken-pipe", "write-after-reset", "refused",
                 "use-after-close", *LIBRARY]:
        if name == "connect-timeout" or can_run(get_scenario(name)):
            continue
        run = run_scenario(name, delay_ms=5, witness=False)
        assert run.recording.metadata.get("delay_ms") == "5"
        if not run.matches:
            failures.append(f"{name}: {'; '.join(run.mismatches)}")
    assert not failures, "\n".join(failures)


def test_accept_overflow_without_iptables_still_resets(monkeypatch):
    """Where iptables is missing, TCP_DEFER_ACCEPT holds the handshake open
    instead of a packet queue: same outcome, the request meets the full queue."""
    _skip_unless_runnable("accept-overflow")
    from tcpteardown.capture import netns

    monkeypatch.setattr(netns.DelayLine, "problem", staticmethod(lambda: "pretend: no iptables"))
    for family in FAMILIES:
        run = run_scenario("accept-overflow", family=family, witness=False)
        assert run.matches, run.mismatches
        assert any("TCP_DEFER_ACCEPT" in value for key, value in run.recording.metadata.extra if key == "note")
