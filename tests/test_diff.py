"""analysis.diff on real recordings: the corpus's macOS captures and scenarios run on loopback.

Where a test changes a recording (one segment removed, one flag changed,
one step delayed), it changes a real one, so that exactly that change must
come back as exactly that difference.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tcpteardown.analysis.align import align
from tcpteardown.analysis.diff import (
    DEFAULT_TOLERANCE_NS, FlagDifference, OnlyIn, OptionDifference, OutcomeDifference, PayloadDifference,
    TimingDifference, diff, normalise, pick_connection,
)
from tcpteardown.formats.bundle import load_recording
from tcpteardown.model import Recording, SocketCall, TcpFlags


@pytest.fixture(scope="session")
def attr(corpus) -> Recording:
    """macOS lo0 (DLT_NULL): two refused IPv6 SYNs, two graceful IPv4 redis connections."""
    return load_recording(corpus / "zeek" / "attr.pcap")


@pytest.fixture(scope="session")
def almost_resp(corpus) -> Recording:
    """macOS lo0: a refused IPv6 SYN, then an IPv4 connection the server resets."""
    return load_recording(corpus / "zeek" / "almost-resp.pcap")


def only_connection(recording: Recording, number: int) -> Recording:
    """The recording cut down to its connection `number` (1-based), segments only."""
    conn = pick_connection(recording, number)
    return replace(recording, segments=conn.segments, frames=())


def kinds(result) -> list[str]:
    return [d.kind for d in result.differences]


# -- a recording against itself ----------------------------------------------------

def test_a_capture_against_itself_matches(attr):
    result = diff(attr, attr, connection_a=2, connection_b=2)
    assert result.matches and result.differences == ()
    assert all(row.a is not None and row.b is not None for row in result.aligned_rows)
    assert [row.a.frame for row in result.aligned_rows] == [s.frame for s in pick_connection(attr, 2).segments]


def test_normalising_abstracts_addresses_ports_numbers_and_time(attr):
    ipv6_refused = normalise(attr, 1)
    ipv6_refused_again = normalise(attr, 3)
    assert ipv6_refused.summary.client != ipv6_refused_again.summary.client  # other ports
    assert [(s.sender, s.flags, s.rel_seq, s.rel_ack) for s in ipv6_refused.segments] == \
        [(s.sender, s.flags, s.rel_seq, s.rel_ack) for s in ipv6_refused_again.segments] == \
        [("client", TcpFlags.SYN, 0, 0), ("server", TcpFlags.RST | TcpFlags.ACK, 0, 1)]
    assert ipv6_refused.segments[0].time_ns == 0
    assert diff(attr, attr, connection_a=1, connection_b=3).matches


def test_every_single_removed_segment_is_exactly_that_difference(attr):
    conn = pick_connection(attr, 2)
    whole = only_connection(attr, 2)
    for index, removed in enumerate(conn.segments):
        cut = replace(whole, segments=conn.segments[:index] + conn.segments[index + 1:])
        result = diff(whole, cut)
        assert len(result.differences) == 1, (index, [d.describe() for d in result.differences])
        (difference,) = result.differences
        assert isinstance(difference, OnlyIn) and difference.side == "A"
        bare_ack = removed.flags == TcpFlags.ACK and not removed.payload_len
        assert difference.counts is not bare_ack and result.matches is bare_ack
        assert diff(whole, cut, count_bare_acks=True).matches is False
        # Even among equal-looking neighbours (two bare ACKs in a row) it is this frame:
        # relative seq/ack break the tie.
        assert difference.step.frame == removed.frame
        assert f"(frame {removed.frame}) only in A" in difference.describe()


def test_server_fin_replaced_by_rst_is_named_fin_versus_rst(attr):
    conn = pick_connection(attr, 2)
    fin = next(s for s in conn.segments if s.is_fin and s.src == conn.server)
    rst = replace(fin, flags=TcpFlags.RST | TcpFlags.ACK)
    changed = replace(attr, segments=tuple(rst if s is fin else s for s in attr.segments))
    result = diff(attr, changed, connection_a=2, connection_b=2)
    flags = [d for d in result.differences if isinstance(d, FlagDifference)]
    assert len(flags) == 1 and flags[0].fin_vs_rst
    assert flags[0].a.frame == flags[0].b.frame == fin.frame
    assert "A closes with FIN, B with RST" in flags[0].describe()
    assert kinds(result) == ["flags"]  # the states that follow are explained by it, not repeated


def test_real_fin_close_against_real_rst_close_from_macos(attr, almost_resp):
    result = diff(attr, almost_resp, connection_a=2, connection_b=2)
    assert not result.matches
    flags = [d for d in result.differences if isinstance(d, FlagDifference)]
    assert any(d.fin_vs_rst and d.a.sender == "server" for d in flags)
    assert any(isinstance(d, PayloadDifference) for d in result.differences)  # other requests


# -- options ----------------------------------------------------------------------

def test_mss_of_ipv4_and_ipv6_on_the_same_link_is_no_difference(attr):
    # connection 1: IPv6 SYN with MSS 16324; connection 2: IPv4 SYN with MSS 16344 (lo0 MTU 16384).
    v6, v4 = normalise(attr, 1).segments[0], normalise(attr, 2).segments[0]
    assert dict(v6.options)["MSS"] == 16324 and dict(v4.options)["MSS"] == 16344
    result = diff(attr, attr, connection_a=1, connection_b=2)
    syn_rows = [row for row in result.aligned_rows if row.a is not None and row.a.flags == TcpFlags.SYN]
    assert syn_rows and not syn_rows[0].differences


def test_option_values_that_differ_are_named(attr):
    conn = pick_connection(attr, 2)
    syn = conn.segments[0]
    linux_like = replace(syn, options=(("MSS", 65495), ("SACK_PERM", None), ("TS", (1, 0)), ("WS", 7)))
    changed = replace(attr, segments=tuple(linux_like if s is syn else s for s in attr.segments))
    result = diff(attr, changed, connection_a=2, connection_b=2)
    options = {d.option: d for d in result.differences if isinstance(d, OptionDifference)}
    assert set(options) == {"MSS", "WS"}  # SACK_PERM and TS present in both: presence is what counts
    assert "MSS 16344 in A, 65495 in B" in options["MSS"].describe()
    assert "WS 6 in A, 7 in B" in options["WS"].describe()
    (order,) = [d for d in result.differences if d.kind == "option-order"]  # XNU's order against Linux's
    assert order.a_order == ("MSS", "WS", "TS", "SACK_PERM") and order.b_order == ("MSS", "SACK_PERM", "TS", "WS")
    assert len(result.differences) == 3 and {d.category for d in result.differences} == {"stack"}


def test_an_option_present_only_in_one_is_named(attr):
    conn = pick_connection(attr, 2)
    syn = conn.segments[0]
    no_ts = replace(syn, options=tuple(o for o in syn.options if o[0] != "TS"))
    changed = replace(attr, segments=tuple(no_ts if s is syn else s for s in attr.segments))
    (difference,) = diff(attr, changed, connection_a=2, connection_b=2).differences
    assert isinstance(difference, OptionDifference) and difference.option == "TS"
    assert (difference.a_present, difference.b_present) == (True, False)
    assert "present in A, absent in B" in difference.describe()


# -- timing -----------------------------------------------------------------------

def test_a_late_step_is_one_timing_difference_not_a_cascade(attr):
    conn = pick_connection(attr, 2)
    fin = next(s for s in conn.segments if s.is_fin)
    delay = 400_000_000  # 0.4 s: beyond the default tolerance, like an RTO
    later = tuple(replace(s, time_ns=s.time_ns + delay) if s.time_ns >= fin.time_ns else s for s in attr.segments)
    changed = replace(attr, segments=later)
    result = diff(attr, changed, connection_a=2, connection_b=2)
    (difference,) = result.differences
    assert isinstance(difference, TimingDifference) and difference.what == "gap"
    assert difference.b_ns - difference.a_ns == delay
    assert difference.step.frame == fin.frame
    assert diff(attr, changed, connection_a=2, connection_b=2, tolerance=delay + 1).matches
    assert DEFAULT_TOLERANCE_NS < delay


# -- socket calls -------------------------------------------------------------------

def _call(role, op, start, errno=None, result=0):
    return SocketCall(role, op, start, start + 1000, result=-1 if errno else result, errno=errno)


def test_errno_names_that_differ_are_named():
    a = Recording(calls=(_call("client", "connect", 0), _call("client", "send", 10_000, "ECONNRESET"),
                         _call("client", "send", 20_000, "EPIPE")))
    b = Recording(calls=(_call("client", "connect", 0), _call("client", "write", 10_000, "EPIPE"),
                         _call("client", "send", 20_000, "EPIPE")))
    result = diff(a, b)
    (difference,) = result.differences
    assert isinstance(difference, OutcomeDifference)
    assert difference.describe() == "client send(): ECONNRESET in A, EPIPE in B"


def test_calls_against_a_plain_capture_are_shown_not_compared(attr):
    with_calls = replace(only_connection(attr, 2), calls=(_call("client", "recv", attr.segments[0].time_ns),))
    result = diff(with_calls, only_connection(attr, 2))
    assert result.matches
    assert result.notes == ("B has no socket calls (a plain capture): calls are shown, not compared",)
    assert any(row.kind == "call" for row in result.aligned_rows)


# -- picking the connection -------------------------------------------------------------

def test_pick_connection_by_number_endpoint_and_port(attr):
    assert pick_connection(attr).index == 0  # no calls: the first
    assert pick_connection(attr, 2).index == 1
    assert pick_connection(attr, "127.0.0.1:62286").index == 3
    assert pick_connection(attr, "[::1]:62285").index == 2
    assert pick_connection(attr, ":62283").index == 1
    with pytest.raises(ValueError, match="2: 127.0.0.1:62283 -> 127.0.0.1:6379"):
        pick_connection(attr, 9)
    with pytest.raises(ValueError, match="no connection"):
        pick_connection(attr, "not-an-endpoint")


def test_pick_connection_follows_the_first_failing_call(attr):
    conn = pick_connection(attr, 4)
    failing = SocketCall("client", "recv", conn.start_ns, conn.start_ns + 1, result=-1, errno="ECONNRESET",
                         local=conn.client, remote=conn.server)
    assert pick_connection(replace(attr, calls=(failing,))).index == 3


# -- the alignment itself ----------------------------------------------------------------

@pytest.mark.parametrize("a,b,expected", [
    ("abc", "abc", [(0, 0), (1, 1), (2, 2)]),
    ("abc", "ac", [(0, 0), (1, None), (2, 1)]),
    ("ac", "abc", [(0, 0), (None, 1), (1, 2)]),
    ("aXc", "aYc", [(0, 0), (1, 1), (2, 2)]),  # X and Y may stand for each other
    ("aXc", "a1c", [(0, 0), (1, None), (None, 1), (2, 2)]),  # X and 1 may not
    ("", "ab", [(None, 0), (None, 1)]),
])
def test_align_table(a, b, expected):
    letters = set("XY")
    assert align(a, b, key=lambda c: c, same_slot=lambda x, y: {x, y} <= letters) == expected


def test_align_with_anchors_pairs_the_closes_first():
    # Upper case are anchors (F = FIN, R = RST, both "closing"); lower case data.
    a, b = "SaF", "SabcR"
    closing = set("FR")
    pairs = align(a, b, key=lambda c: c, same_slot=lambda x, y: {x, y} <= closing, anchor=str.isupper)
    assert pairs == [(0, 0), (1, 1), (None, 2), (None, 3), (2, 4)]


def test_align_long_sequences_stays_exact():
    a = list(range(3000))
    b = a[:1000] + a[1001:]
    pairs = align(a, b, key=lambda v: v, same_slot=lambda x, y: False)
    assert (1000, None) in pairs and len(pairs) == 3000


# -- scenarios on real sockets ---------------------------------------------------------------

@pytest.fixture(scope="module")
def runs():
    from tcpteardown.scenarios import run_scenario

    cache = {}

    def get(name, family="ipv4"):
        if (name, family) not in cache:
            cache[(name, family)] = run_scenario(name, family=family).recording
        return cache[(name, family)]
    return get


@pytest.mark.needs_capture
@pytest.mark.parametrize("name", ["graceful-close", "reset-by-peer", "write-after-reset", "refused"])
def test_same_scenario_over_ipv4_and_ipv6_has_no_teardown_difference(runs, name):
    result = diff(runs(name, "ipv4"), runs(name, "ipv6"))
    assert result.matches, [d.describe() for d in result.differences]


@pytest.mark.needs_capture
def test_broken_pipe_against_write_after_reset(runs):
    result = diff(runs("broken-pipe"), runs("write-after-reset"))
    assert not result.matches
    outcomes = [d for d in result.differences if isinstance(d, OutcomeDifference)]
    assert [(d.a.outcome, d.b.outcome) for d in outcomes] == [("ok", "ECONNRESET")]
    assert outcomes[0].a.op == outcomes[0].b.op == "send" and outcomes[0].a.side == "client"
    # broken-pipe: the server closes with FIN, then answers the late write with a bare RST;
    # write-after-reset: RST,ACK at close, no FIN at all.
    only_a = [d.step for d in result.differences if isinstance(d, OnlyIn) and d.side == "A"]
    assert any(getattr(s, "flags", None) == TcpFlags.FIN | TcpFlags.ACK and s.sender == "server" for s in only_a)
    flags = [d for d in result.differences if isinstance(d, FlagDifference)]
    assert [(d.a.flags.render(), d.b.flags.render()) for d in flags] == [("RST", "RST,ACK")]
    # The final EPIPE is common to both: no difference on it.
    epipe_rows = [row for row in result.aligned_rows if row.kind == "call" and row.a is not None
                  and row.a.outcome == "EPIPE"]
    assert epipe_rows and epipe_rows[0].b.outcome == "EPIPE" and not epipe_rows[0].differences


@pytest.mark.needs_capture
def test_graceful_close_against_reset_by_peer_names_eof_versus_reset(runs):
    result = diff(runs("graceful-close"), runs("reset-by-peer"))
    flags = [d for d in result.differences if isinstance(d, FlagDifference)]
    assert any(d.fin_vs_rst and d.a.sender == "server" for d in flags)
    outcomes = [(d.a.op, d.a.outcome, d.b.outcome) for d in result.differences if isinstance(d, OutcomeDifference)]
    assert ("recv", "EOF", "ECONNRESET") in outcomes


@pytest.mark.needs_capture
@pytest.mark.needs_tracefs
def test_a_state_the_kernel_reported_differently_is_named(runs):
    from tcpteardown.analysis.diff import StateDifference

    recording = runs("graceful-close")
    if not any(e.name == "sock:inet_sock_set_state" for e in recording.kernel_events):
        pytest.skip("the kernel witness recorded no state changes on this host")
    assert diff(recording, recording).matches
    target = next(e for e in recording.kernel_events
                  if e.name == "sock:inet_sock_set_state" and e.get("newstate") == "TCP_CLOSE_WAIT")
    changed_event = replace(target, fields=tuple(("newstate", "TCP_CLOSING") if k == "newstate" else (k, v)
                                                 for k, v in target.fields))
    changed = replace(recording, kernel_events=tuple(changed_event if e is target else e
                                                     for e in recording.kernel_events))
    result = diff(recording, changed)
    (difference,) = result.differences
    assert isinstance(difference, StateDifference)
    assert (difference.role, difference.before, difference.a_state, difference.b_state) == \
        ("client", "ESTABLISHED", "CLOSE_WAIT", "CLOSING")
    assert difference.near.flags == TcpFlags.FIN | TcpFlags.ACK and difference.near.sender == "server"
    assert "the client went ESTABLISHED -> CLOSE_WAIT in A, ESTABLISHED -> CLOSING in B" in difference.describe()
