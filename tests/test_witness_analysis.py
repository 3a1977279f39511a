"""attach_reset_reasons and check_agreement on hand-made segments and events.

The real-socket versions (events from tracefs, packets from tcpdump) are in
test_kernel_witness.py; these pin the matching rules one by one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tcpteardown.analysis import witness
from tcpteardown.analysis.witness import attach_reset_reasons, check_agreement, match_resets
from tcpteardown.model import Endpoint, KernelEvent, Segment, TcpFlags

CLIENT = Endpoint("127.0.0.1", 40000)
SERVER = Endpoint("127.0.0.1", 8080)
T0 = 1_700_000_000_000_000_000
US = 1_000


def segment(frame, time_ns, src, dst, flags, seq=1000):
    return Segment(frame, time_ns, src, dst, TcpFlags.parse(flags), seq, 0, 512, 0)


def send_reset(time_ns, src, dst, reason="TCP_ABORT_ON_CLOSE", state="TCP_CLOSE", **extra):
    fields = [("state", state)]
    if reason is not None:
        fields.append(("reason", reason))
    fields.extend(extra.items())
    return KernelEvent(time_ns, "tcp:tcp_send_reset", src, dst, tuple(fields))


def receive_reset(time_ns, local, remote):
    return KernelEvent(time_ns, "tcp:tcp_receive_reset", local, remote, (("family", "AF_INET"),))


def error_report(time_ns, local, remote, error="ECONNRESET"):
    return KernelEvent(time_ns, "sock:inet_sk_error_report", local, remote, (("error", error),))


def test_rst_gets_the_reason_of_the_reset_its_source_sent():
    segments = (
        segment(1, T0, CLIENT, SERVER, "PSH,ACK"),
        segment(2, T0 + 30 * US, SERVER, CLIENT, "RST,ACK"),
    )
    # Loopback order: the receiver's events are stamped before the sender's reset.
    events = (
        receive_reset(T0 + 20 * US, CLIENT, SERVER),
        error_report(T0 + 21 * US, CLIENT, SERVER),
        send_reset(T0 + 22 * US, SERVER, CLIENT),
    )
    labelled = attach_reset_reasons(segments, events)
    assert labelled[0] == segments[0]
    assert labelled[1].reset_reason == "TCP_ABORT_ON_CLOSE"
    assert check_agreement(segments, events) == ()


def test_never_matched_against_the_wrong_direction():
    segments = (segment(1, T0, SERVER, CLIENT, "RST"),)
    events = (send_reset(T0, CLIENT, SERVER),)  # the client sent one, the capture holds the server's
    assert attach_reset_reasons(segments, events)[0].reset_reason is None
    problems = check_agreement(segments, events)
    assert len(problems) == 2
    assert "kernel sent an RST from 127.0.0.1:40000 to 127.0.0.1:8080" in problems[0]
    assert "frame 1: the captured RST from 127.0.0.1:8080 to 127.0.0.1:40000" in problems[1]


def test_two_resets_on_one_connection_are_joined_by_time_not_order():
    # Two RSTs from a time-wait socket; the events arrive listed in the other order.
    segments = (
        segment(1, T0 + 10 * US, SERVER, CLIENT, "RST", seq=1),
        segment(2, T0 + 5_000 * US, SERVER, CLIENT, "RST", seq=2),
    )
    events = (
        send_reset(T0 + 4_990 * US, SERVER, CLIENT, reason="TCP_STATE"),
        send_reset(T0 + 2 * US, SERVER, CLIENT, reason="TCP_TIMEWAIT_SOCKET"),
    )
    labelled = attach_reset_reasons(segments, events)
    assert [s.reset_reason for s in labelled] == ["TCP_TIMEWAIT_SOCKET", "TCP_STATE"]


def test_sequence_number_decides_when_the_event_has_one():
    segments = (
        segment(1, T0 + 10 * US, SERVER, CLIENT, "RST", seq=500),
        segment(2, T0 + 11 * US, SERVER, CLIENT, "RST", seq=900),
    )
    events = (
        send_reset(T0 + 10 * US, SERVER, CLIENT, reason="TCP_STATE", seq="900"),
        send_reset(T0 + 11 * US, SERVER, CLIENT, reason="NO_SOCKET", seq="500"),
    )
    labelled = attach_reset_reasons(segments, events)
    assert [s.reset_reason for s in labelled] == ["NO_SOCKET", "TCP_STATE"]


def test_too_far_apart_in_time_is_no_match():
    segments = (segment(1, T0, SERVER, CLIENT, "RST"),)
    events = (send_reset(T0 + 5_000_000_000, SERVER, CLIENT),)
    assert match_resets(segments, events) == ()
    assert match_resets(segments, events, tolerance_ns=10_000_000_000) != ()
    assert len(check_agreement(segments, events)) == 2


def test_ipv4_mapped_addresses_match_plain_ipv4():
    mapped_server = Endpoint("::ffff:127.0.0.1", 8080)
    mapped_client = Endpoint("::ffff:127.0.0.1", 40000)
    segments = (segment(1, T0, SERVER, CLIENT, "RST"),)
    events = (send_reset(T0, mapped_server, mapped_client, reason="NO_SOCKET", state="UNKNOWN"),)
    assert attach_reset_reasons(segments, events)[0].reset_reason == "NO_SOCKET"


def test_ipv6_endpoints():
    server, client = Endpoint("::1", 8080), Endpoint("::1", 40000)
    segments = (segment(1, T0, server, client, "RST,ACK"),)
    events = (send_reset(T0 - US, server, client, reason="TCP_STATE"),)
    assert attach_reset_reasons(segments, events)[0].reset_reason == "TCP_STATE"
    assert check_agreement(segments, events) == ()


def test_kernel_without_reason_field_leaves_reason_unset_but_still_agrees():
    segments = (segment(1, T0, SERVER, CLIENT, "RST"),)
    events = (send_reset(T0, SERVER, CLIENT, reason=None),)
    assert attach_reset_reasons(segments, events)[0].reset_reason is None
    assert check_agreement(segments, events) == ()


def test_reset_missing_from_capture_is_reported_with_its_reason():
    events = (send_reset(T0, SERVER, CLIENT, reason="TCP_ABORT_ON_DATA"),)
    (problem,) = check_agreement((), events)
    assert "reason TCP_ABORT_ON_DATA" in problem
    assert "capture has no such RST" in problem


def test_window_limits_the_check_to_what_both_watched():
    segments = (
        segment(1, T0 - 10_000_000_000, SERVER, CLIENT, "RST"),  # before the witness started
        segment(2, T0, SERVER, CLIENT, "RST"),
    )
    events = (send_reset(T0, SERVER, CLIENT),)
    assert len(check_agreement(segments, events)) == 1
    assert check_agreement(segments, events, window=(T0 - 1_000_000, T0 + 1_000_000)) == ()


def test_other_events_and_segments_are_ignored():
    segments = (segment(1, T0, CLIENT, SERVER, "FIN,ACK"), segment(2, T0, SERVER, CLIENT, "ACK"))
    events = (receive_reset(T0, CLIENT, SERVER), error_report(T0, CLIENT, SERVER, "EPIPE"))
    assert attach_reset_reasons(segments, events) == segments
    assert check_agreement(segments, events) == ()


def test_module_imports_neither_socket_nor_scapy():
    tree = ast.parse(Path(witness.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "scapy", "subprocess", "os"}


def test_a_listener_reset_matches_its_rst_despite_the_wildcard_destination():
    """tcp_abort_on_overflow: the listener sends the RST and the tracepoint
    reports the listener's own socket, whose destination is 0.0.0.0:0."""
    from tcpteardown.model import Endpoint, KernelEvent, Segment, TcpFlags

    server, client = Endpoint("127.0.0.1", 8080), Endpoint("127.0.0.1", 40000)
    rst = Segment(7, 1_000_000, server, client, TcpFlags.RST, 1, 0, 0, 0)
    event = KernelEvent(1_000_100, "tcp:tcp_send_reset", server, Endpoint("0.0.0.0", 0),
                        (("state", "TCP_LISTEN"), ("reason", "INVALID_SYN")))
    other = Segment(8, 1_000_200, Endpoint("127.0.0.1", 9090), client, TcpFlags.RST, 1, 0, 0, 0)
    assert check_agreement((rst,), (event,)) == ()
    assert attach_reset_reasons((rst,), (event,))[0].reset_reason == "INVALID_SYN"
    assert len(check_agreement((rst, other), (event,))) == 1, "another port's RST must not match"
