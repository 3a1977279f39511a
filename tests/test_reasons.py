"""reset_reason(): the kernel's word when present, else inferred from packets
(a table of hand-built cases), and inference vs the kernel on real scenarios."""

from __future__ import annotations

import pytest

from tcpteardown.analysis.reasons import (ABORTIVE_CLOSE, REASONS, reason_evidence, reason_phrase, render_reason,
                                          reset_reason)
from tcpteardown.model import Endpoint, Recording, Segment, SocketCall, TcpFlags

C = Endpoint("127.0.0.1", 50000)
S = Endpoint("127.0.0.1", 8080)
T0 = 1_700_000_000_000_000_000


def seg(frame, t, src, dst, flags, seq=0, ack=0, payload=0, reason=None) -> Segment:
    return Segment(frame, T0 + t, src, dst, TcpFlags.parse(flags), seq, ack, 65535, payload, reset_reason=reason)


HS = [seg(1, 1, C, S, "SYN", 1000), seg(2, 2, S, C, "SYN,ACK", 5000, 1001), seg(3, 3, C, S, "ACK", 1001, 5001)]
DATA = [seg(4, 4, C, S, "PSH,ACK", 1001, 5001, 10), seg(5, 5, S, C, "ACK", 5001, 1011)]

CASES = [
    ("nothing-listening", [seg(1, 1, C, S, "SYN", 1000), seg(2, 2, S, C, "RST,ACK", 0, 1001)], (), "NO_SOCKET"),
    # An RST/ACK on its own after data: unread data or SO_LINGER 0? The packets cannot tell (issue 14).
    ("abortive-close-undecided", HS + DATA + [seg(6, 6, S, C, "RST,ACK", 5001, 1011)], (), ABORTIVE_CLOSE),
    ("closed-with-unread-data", HS + DATA + [seg(6, 6, S, C, "RST,ACK", 5001, 1011)],
     (SocketCall("server", "recv", T0 + 5, T0 + 5, 4, None, 1, 4, S, C),), "TCP_ABORT_ON_CLOSE"),
    ("linger-zero-by-strace", HS + DATA + [seg(6, 6, S, C, "RST,ACK", 5001, 1011)],
     (SocketCall("server", "setsockopt", T0 + 5, T0 + 5, 0, None, 1, 4, S, C, "strace",
                 "setsockopt(4<TCP:[127.0.0.1:8080->127.0.0.1:50000]>, SOL_SOCKET, SO_LINGER, "
                 "{l_onoff=1, l_linger=0}, 8) = 0"),), "TCP_STATE"),
    ("linger-zero-nothing-received", HS + [seg(4, 4, S, C, "RST,ACK", 5001, 1001)], (), "TCP_STATE"),
    ("linger-zero-all-read", HS + DATA + [seg(6, 6, S, C, "RST,ACK", 5001, 1011)],
     (SocketCall("server", "recv", T0 + 5, T0 + 5, 10, None, 1, 4, S, C),), "TCP_STATE"),
    ("data-on-closed-socket", HS + [seg(4, 4, S, C, "FIN,ACK", 5001, 1001),
                                    seg(5, 5, C, S, "PSH,ACK", 1001, 5002, 9), seg(6, 6, S, C, "RST", 5002, 0)],
     (), "TCP_ABORT_ON_DATA"),
    ("data-on-time-wait-socket", HS + [seg(4, 4, S, C, "FIN,ACK", 5001, 1001), seg(5, 5, C, S, "ACK", 1001, 5002),
                                       seg(6, 6, C, S, "PSH,ACK", 1001, 5002, 9), seg(7, 7, S, C, "RST", 5002, 0)],
     (), "TCP_TIMEWAIT_SOCKET"),
    ("unknown-connection", [seg(1, 1, C, S, "PSH,ACK", 1001, 5001, 9), seg(2, 2, S, C, "RST", 5001, 0)], (),
     "NO_SOCKET"),
]


@pytest.mark.parametrize("case, segments, calls, expected", CASES, ids=[c[0] for c in CASES])
def test_inferred(case, segments, calls, expected):
    rec = Recording(segments=tuple(segments), calls=tuple(calls))
    rst = [s for s in rec.segments if s.is_rst][-1]
    assert reset_reason(rst, rec) == (expected, True)
    assert reason_phrase(expected)
    assert reason_evidence(rst, rec)


@pytest.mark.parametrize("calls, evidence", [
    ((), "the packets (nothing else in the evidence decides)"),
    ((SocketCall("server", "recv", T0 + 5, T0 + 5, 10, None, 1, 4, S, C),),
     "the socket calls: it read all 10 bytes it received, then aborted"),
    ((SocketCall("server", "recv", T0 + 5, T0 + 5, 4, None, 1, 4, S, C),),
     "the socket calls: it read 4 of the 10 bytes it received"),
])
def test_which_evidence_decided_an_abortive_close(calls, evidence):
    rec = Recording(segments=tuple(HS + DATA + [seg(6, 6, S, C, "RST,ACK", 5001, 1011)]), calls=calls)
    assert reason_evidence(rec.segments[-1], rec) == evidence


def test_strace_keeps_so_linger_for_the_reason():
    from tcpteardown.formats.strace import parse_strace

    result = parse_strace(["1699999999.999990 setsockopt(4<TCP:[127.0.0.1:8080->127.0.0.1:50000]>, SOL_SOCKET, "
                           "SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0 <0.000004>",
                           "1699999999.999991 setsockopt(4<TCP:[127.0.0.1:8080->127.0.0.1:50000]>, SOL_TCP, "
                           "TCP_NODELAY, [1], 4) = 0 <0.000004>"], path="s")
    (call,) = result.calls
    rec = Recording(segments=tuple(HS + DATA + [seg(6, 6, S, C, "RST,ACK", 5001, 1011)]), calls=(call,))
    assert reset_reason(rec.segments[-1], rec) == ("TCP_STATE", True)
    assert reason_evidence(rec.segments[-1], rec).startswith("strace: setsockopt(SO_LINGER")


def test_kernel_reason_wins():
    rec = Recording(segments=(seg(1, 1, C, S, "SYN", 1000), seg(2, 2, S, C, "RST,ACK", 0, 1001, reason="TCP_STATE")))
    assert reset_reason(rec.segments[1], rec) == ("TCP_STATE", False)


def test_a_fin_has_no_reset_reason():
    rec = Recording(segments=tuple(HS) + (seg(4, 4, S, C, "FIN,ACK", 5001, 1001),))
    assert reset_reason(rec.segments[-1], rec) == (None, True)


def test_rendering_marks_inference():
    assert render_reason("NO_SOCKET", False) == "NO_SOCKET"
    assert render_reason("NO_SOCKET", True) == "NO_SOCKET (inferred)"
    assert render_reason(None, True) is None


def test_every_reason_has_a_phrase():
    assert all(phrase and not phrase.endswith(".") for phrase in REASONS.values())
    assert reason_phrase(ABORTIVE_CLOSE) == REASONS[ABORTIVE_CLOSE]
    assert reason_phrase("tcp_abort_on_close") == REASONS["TCP_ABORT_ON_CLOSE"]
    assert reason_phrase("SOMETHING_NEW") is None


SCENARIO_REASONS = {  # scenario -> the reason of its one RST, as Linux 6.x gives it
    "reset-by-peer": {"TCP_ABORT_ON_CLOSE"},
    "write-after-reset": {"TCP_ABORT_ON_CLOSE"},
    "refused": {"NO_SOCKET"},
    # The FIN is acked by our data segment itself (full socket: ABORT_ON_DATA)
    # or by a separate ACK first (time-wait mini-socket): timing decides.
    "broken-pipe": {"TCP_ABORT_ON_DATA", "TCP_TIMEWAIT_SOCKET"},
    "linger-abort": {"TCP_STATE"},  # SO_LINGER 0, nothing unread
    "peer-crash-rst": {"TCP_ABORT_ON_CLOSE"},
}


@pytest.mark.needs_capture
@pytest.mark.parametrize("name", sorted(SCENARIO_REASONS))
def test_inference_agrees_with_the_kernel(name):
    from dataclasses import replace

    from tcpteardown.scenarios import SCENARIOS, all_scenarios, run_scenario

    all_scenarios()
    if name not in SCENARIOS:
        pytest.skip(f"scenario {name} is not in the library yet")
    rec = run_scenario(name).recording
    (rst,) = [s for s in rec.segments if s.is_rst]
    bare = Recording(segments=tuple(replace(s, reset_reason=None) for s in rec.segments), calls=rec.calls)
    bare_rst = next(s for s in bare.segments if s.is_rst)
    inferred, is_inferred = reset_reason(bare_rst, bare)
    assert is_inferred and inferred in SCENARIO_REASONS[name]
    if rst.reset_reason is not None:  # the witness saw it: the inference must say the same
        assert reset_reason(rst, rec) == (rst.reset_reason, False)
        assert inferred == rst.reset_reason
