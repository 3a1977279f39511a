"""connect() -> EHOSTUNREACH / ENETUNREACH: a rule for each way there is no
way there. No SYN left (this host's route lookup failed: the cause is local,
and the explanation names the route), or a SYN left and an ICMP unreachable
answered it (the first SYN is the cause; ICMP itself is not in a TCP capture).
"""

from __future__ import annotations

import pytest

from conftest import REPO
from tcpteardown.analysis.correlate import correlate
from tcpteardown.formats.bundle import load_recording
from tcpteardown.model import CauseKind, Endpoint, Recording, Segment, SocketCall, TcpFlags

T0 = 1_700_000_000_000_000_000
C = Endpoint("10.0.0.2", 40000)
S = Endpoint("198.51.100.7", 443)


def _no_route_link(recording):
    (link,) = [link for link in correlate(recording) if link.call.op == "connect"]
    assert (link.rule, link.kind, link.cause) == ("connect-no-route", CauseKind.NONE, None)
    assert "no SYN left" in link.explanation and "local routing" in link.explanation
    return link


def test_stored_no_route_capture_is_explained():
    recording = load_recording(REPO / "captures" / "linux" / "no-route.pcapng")
    link = _no_route_link(recording)
    assert "ip route get 192.0.2.1" in link.explanation
    assert "no rule covers" not in link.explanation


@pytest.mark.needs_netns
@pytest.mark.needs_capture
@pytest.mark.parametrize("family, host, prefix", [("ipv4", "192.0.2.1", "192.0.2.0/24"),
                                                  ("ipv6", "2001:db8::1", "2001:db8::/32")])
def test_live_no_route_names_the_route(family, host, prefix):
    from tcpteardown.scenarios import run_scenario

    run = run_scenario("no-route", family=family)
    assert run.matches
    link = _no_route_link(run.recording)
    assert f"the route `unreachable {prefix}`" in link.explanation
    assert f"ip route get {host}" in link.explanation


def test_an_answered_by_icmp_connect_links_its_syn():
    """The SYN (and its retransmission) left; ICMP host unreachable came back."""
    syns = (Segment(1, T0 + 10, C, S, TcpFlags.SYN, 1000, 0, 64240, 0),
            Segment(2, T0 + 1_000_010, C, S, TcpFlags.SYN, 1000, 0, 64240, 0))
    connect = SocketCall("client", "connect", T0, T0 + 3_000_000, -1, "EHOSTUNREACH", 7, 3, C, S)
    (link,) = correlate(Recording(segments=syns, calls=(connect,)))
    assert (link.rule, link.kind, link.cause.frame) == ("connect-unreachable-icmp", CauseKind.SYN_UNANSWERED, 1)
    assert "ICMP host unreachable" in link.explanation
    assert any("ICMP is not in a TCP capture" in caveat for caveat in link.caveats)


def test_enetunreach_without_a_route_says_no_route_covers_it():
    connect = SocketCall("client", "connect", T0, T0 + 20_000, -1, "ENETUNREACH", 7, 3, None, S)
    (link,) = correlate(Recording(calls=(connect,)))
    assert link.rule == "connect-no-route" and "no route covers it" in link.explanation


@pytest.mark.needs_netns
@pytest.mark.needs_capture
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_live_syns_answered_by_icmp_link_their_syn(family):
    """iptables in the scenario's own namespace answers each SYN with ICMP
    host unreachable (EHOSTUNREACH) and network unreachable (ENETUNREACH)."""
    from tcpteardown.scenarios import get_scenario, run_scenario
    from tcpteardown.scenarios.needs import can_run

    problem = can_run(get_scenario("icmp-unreachable"))
    if problem:
        pytest.skip(f"icmp-unreachable: {problem}")
    run = run_scenario("icmp-unreachable", family=family)
    assert run.matches, run.mismatches
    links = {link.call.role: link for link in correlate(run.recording) if link.call.op == "connect"}
    for role, errno, kind in (("client", "EHOSTUNREACH", "host"), ("client2", "ENETUNREACH", "network")):
        link = links[role]
        assert (link.call.errno, link.rule, link.kind) == (errno, "connect-unreachable-icmp", CauseKind.SYN_UNANSWERED)
        assert link.cause.is_syn and link.cause.dst == link.call.remote
        assert f"ICMP {kind} unreachable" in link.explanation
