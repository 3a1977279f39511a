"""TCP state inference: the transition table over hand-built conversations,
connection grouping, the kernel's own states when present, real scenarios."""

from __future__ import annotations

import pytest

from tcpteardown.analysis.tcpstate import (STATES, TRANSITIONS, connections, infer_states, state_at,
                                           states_source)
from tcpteardown.model import Endpoint, KernelEvent, Recording, Segment, TcpFlags

C = Endpoint("127.0.0.1", 50000)
S = Endpoint("127.0.0.1", 8080)
T0 = 1_700_000_000_000_000_000


def seg(frame, t, src, dst, flags, seq=0, ack=0, payload=0) -> Segment:
    return Segment(frame, T0 + t, src, dst, TcpFlags.parse(flags), seq, ack, 65535, payload)


HS = [seg(1, 1, C, S, "SYN", 1000), seg(2, 2, S, C, "SYN,ACK", 5000, 1001), seg(3, 3, C, S, "ACK", 1001, 5001)]

# (id, segments after the handshake, client states, server states) -- states after the handshake.
CASES = [
    ("server-closes-first", [seg(4, 4, S, C, "FIN,ACK", 5001, 1001), seg(5, 5, C, S, "ACK", 1001, 5002),
                             seg(6, 6, C, S, "FIN,ACK", 1001, 5002), seg(7, 7, S, C, "ACK", 5002, 1002)],
     ["CLOSE_WAIT", "LAST_ACK", "CLOSE"], ["FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"]),
    ("fin-acked-by-fin", [seg(4, 4, C, S, "FIN,ACK", 1001, 5001), seg(5, 5, S, C, "FIN,ACK", 5001, 1002),
                          seg(6, 6, C, S, "ACK", 1002, 5002)],
     ["FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"], ["CLOSE_WAIT", "LAST_ACK", "CLOSE"]),
    ("simultaneous-close", [seg(4, 4, C, S, "FIN,ACK", 1001, 5001), seg(5, 5, S, C, "FIN,ACK", 5001, 1001),
                            seg(6, 6, C, S, "ACK", 1002, 5002), seg(7, 7, S, C, "ACK", 5002, 1002)],
     # The capture saw the client's FIN first; the server's FIN does not ack it: it crossed.
     ["FIN_WAIT1", "CLOSING", "TIME_WAIT"], ["CLOSE_WAIT", "CLOSING", "TIME_WAIT"]),
    ("reset", [seg(4, 4, C, S, "PSH,ACK", 1001, 5001, 10), seg(5, 5, S, C, "RST,ACK", 5001, 1011)],
     ["CLOSE"], ["CLOSE"]),
    ("data-after-fin", [seg(4, 4, S, C, "FIN,ACK", 5001, 1001), seg(5, 5, C, S, "PSH,ACK", 1001, 5002, 9),
                        seg(6, 6, S, C, "RST", 5002, 0)],
     ["CLOSE_WAIT", "CLOSE"], ["FIN_WAIT1", "FIN_WAIT2", "CLOSE"]),
]


def _after_handshake(timeline):
    names = [state for _, state in timeline]
    return names[names.index("ESTABLISHED") + 1:]


@pytest.mark.parametrize("case, rest, client, server", CASES, ids=[c[0] for c in CASES])
def test_transitions(case, rest, client, server):
    rec = Recording(segments=tuple(HS + rest))
    (conn,) = connections(rec)
    states = infer_states(rec, conn)
    assert [s for _, s in states[C]][:3] == ["CLOSE", "SYN_SENT", "ESTABLISHED"]
    assert [s for _, s in states[S]][:3] == ["LISTEN", "SYN_RECV", "ESTABLISHED"]
    assert _after_handshake(states[C]) == client
    assert _after_handshake(states[S]) == server
    assert states_source(rec, conn).startswith("packets")


def test_refused_connect():
    rec = Recording(segments=(seg(1, 1, C, S, "SYN", 1000), seg(2, 2, S, C, "RST,ACK", 0, 1001)))
    (conn,) = connections(rec)
    assert (conn.client, conn.server, conn.roles_known) == (C, S, True)
    states = infer_states(rec, conn)
    assert [s for _, s in states[C]] == ["CLOSE", "SYN_SENT", "CLOSE"]


def test_state_at():
    rec = Recording(segments=tuple(HS + CASES[0][1]))
    states = infer_states(rec, connections(rec)[0])
    assert state_at(states[C], T0 + 4) == "CLOSE_WAIT"
    assert state_at(states[C], T0 + 3) == "ESTABLISHED"
    assert state_at(states[C], T0 - 1) is None


def test_table_uses_linux_state_names_only():
    for (state, event), new in TRANSITIONS.items():
        assert state in STATES and new in STATES
        assert event.split("_", 1)[0] in ("send", "recv")


def test_connections_split_on_reuse_and_keep_retransmitted_syn():
    again = [seg(4, 10, C, S, "SYN", 1000), seg(5, 11, S, C, "RST,ACK", 0, 1001),  # retransmission? no: RST ends it
             seg(6, 20, C, S, "SYN", 7000), seg(7, 21, C, S, "SYN", 7000)]
    rec = Recording(segments=tuple(HS + again))
    conns = connections(rec)
    assert [[s.frame for s in c.segments] for c in conns] == [[1, 2, 3, 4, 5], [6, 7]]
    assert conns[0].next_start_ns == T0 + 20


def test_roles_without_syn_are_a_guess():
    rec = Recording(segments=(seg(1, 1, S, C, "PSH,ACK", 5001, 1001, 5),))
    (conn,) = connections(rec)
    assert conn.roles_known is False
    assert conn.client == C  # the higher (ephemeral) port


def test_kernel_states_win_and_say_so():
    def ev(t, src, dst, old, new):
        return KernelEvent(T0 + t, "sock:inet_sock_set_state", src, dst,
                           (("oldstate", old), ("newstate", new)))

    events = (ev(0, Endpoint("127.0.0.1", 0), S, "TCP_CLOSE", "TCP_SYN_SENT"),
              ev(3, C, S, "TCP_SYN_SENT", "TCP_ESTABLISHED"),
              ev(5, C, S, "TCP_ESTABLISHED", "TCP_CLOSE"))
    rec = Recording(segments=tuple(HS), kernel_events=events)
    conn = connections(rec)[0]
    assert states_source(rec, conn).startswith("kernel")
    assert [s for _, s in infer_states(rec, conn)[C]] == ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE"]


EXPECTED_FINAL = {  # scenario -> (client's last state, server's last state), from packets
    "graceful-close": ("CLOSE", "TIME_WAIT"),  # the server closed first
    "reset-by-peer": ("CLOSE", "CLOSE"),
    "broken-pipe": ("CLOSE", "CLOSE"),
    "refused": ("CLOSE", "CLOSE"),  # nothing listening
}


@pytest.mark.needs_capture
@pytest.mark.parametrize("name", sorted(EXPECTED_FINAL))
def test_scenarios_packets_and_kernel_agree(name):
    from tcpteardown.scenarios import run_scenario

    rec = run_scenario(name).recording
    (conn,) = connections(rec)
    packets = infer_states(Recording(segments=rec.segments), conn)
    assert (packets[conn.client][-1][1], packets[conn.server][-1][1]) == EXPECTED_FINAL[name]
    if any(e.name == "sock:inet_sock_set_state" for e in rec.kernel_events):
        kernel = infer_states(rec, conn)
        # The kernel's client went through the same states the packets show.
        assert [s for _, s in kernel[conn.client]] == [s for _, s in packets[conn.client]]
