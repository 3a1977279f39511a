"""TIME_WAIT appears on the side that closed first, in every graceful
teardown (a FIN each way, no RST): stored bundles and live runs.

The kernel's `sock:inet_sock_set_state` never reports it (a time-wait
mini-socket takes the connection over and the full socket is released,
FIN_WAIT2 -> CLOSE); `infer_states` takes it from the packets and says so.
"""

from __future__ import annotations

import pytest

from conftest import REPO
from tcpteardown.analysis.tcpstate import (connections, describe_state, infer_states, states_source,
                                           time_wait_from_packets)
from tcpteardown.formats.bundle import load_recording
from tcpteardown.views.steps import build_steps

STORED = sorted((REPO / "captures" / "linux").glob("*.pcapng")) + sorted(
    (REPO / "captures" / "linux" / "ipv6").glob("*.pcapng"))


def _graceful(recording):
    """Connections that ended with a FIN each way and no RST."""
    for conn in connections(recording):
        fin_senders = {s.src for s in conn.segments if s.is_fin}
        if len(fin_senders) == 2 and not any(s.is_rst for s in conn.segments):
            yield conn


def _closed_first(conn):
    """The side(s) that closed first: the first FIN's sender, and the other
    side too when its FIN did not acknowledge that one (the FINs crossed)."""
    fins = [s for s in conn.segments if s.is_fin]
    first = fins[0]
    reply = next(s for s in fins if s.src != first.src)
    crossed = not (reply.flags & reply.flags.ACK) or reply.ack != first.seq + first.payload_len + 1
    return {first.src, reply.src} if crossed else {first.src}


def _check(recording, conn):
    states = infer_states(recording, conn)
    first = _closed_first(conn)
    for side, line in states.items():
        last = line[-1][1]
        if side in first:
            assert last == "TIME_WAIT", f"{conn.role_of(side)} closed first but ends in {last}: {line}"
        else:
            assert last in ("CLOSE", "LAST_ACK"), f"{conn.role_of(side)} closed second but ends in {last}"
    heard = states_source(recording, conn).startswith("kernel")
    if heard:
        assert set(time_wait_from_packets(recording, conn)) == first
        assert "TIME_WAIT from the packets" in states_source(recording, conn)
    # The slider shows it too, with its duration.
    steps = build_steps(recording, (), conn)
    role = conn.role_of(next(iter(first)))
    shown = steps[-1].client_state if role == "client" else steps[-1].server_state
    assert shown.startswith("TIME_WAIT (60 s)"), shown


def test_stored_graceful_teardowns_end_in_time_wait():
    checked = []
    for path in STORED:
        recording = load_recording(path)
        for conn in _graceful(recording):
            _check(recording, conn)
            checked.append(path.name)
    # graceful-close, half-close, simultaneous-close, shutdown-then-write, ... over IPv4 and IPv6
    assert len(set(checked)) >= 6, checked


def _graceful_scenarios():
    names = set()
    for path in sorted((REPO / "captures" / "linux").glob("*.pcapng")):
        if any(True for _ in _graceful(load_recording(path))):
            names.add(path.stem)
    return sorted(names)


@pytest.mark.needs_capture
@pytest.mark.parametrize("name", _graceful_scenarios())
def test_live_graceful_teardowns_end_in_time_wait(name):
    from tcpteardown.scenarios import get_scenario, run_scenario
    from tcpteardown.scenarios.needs import can_run

    problem = can_run(get_scenario(name))
    if problem:
        pytest.skip(f"{name}: {problem}")
    recording = run_scenario(name).recording
    graceful = list(_graceful(recording))
    assert graceful, f"{name} ended without a FIN each way this time"
    for conn in graceful:
        _check(recording, conn)


def test_time_wait_says_how_long_and_where_it_came_from():
    assert describe_state("TIME_WAIT", "Linux") == "TIME_WAIT (60 s)"
    assert describe_state("TIME_WAIT", None) == "TIME_WAIT (2×MSL)"
    assert describe_state("TIME_WAIT", "Linux", from_packets=True) == "TIME_WAIT (60 s) [from the packets]"
    assert describe_state("FIN_WAIT2", "Linux") == "FIN_WAIT2"
