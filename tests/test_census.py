"""Census on hand-built segment sequences: each end kind, who ended it, SYN
retransmissions, port reuse (tshark 4.0's tcp.stream rule), mid-stream
captures, and independence from how the packets are cut into batches."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from tcpteardown.analysis.census import batch_from_segments, census, census_batches
from tcpteardown.model import Endpoint, Segment, TcpFlags as F

CLIENT = Endpoint("10.1.1.1", 51000)
SERVER = Endpoint("10.1.1.2", 443)
S, A, R, FN, P = F.SYN, F.ACK, F.RST, F.FIN, F.PSH


def story(*steps, client=CLIENT, server=SERVER):
    """steps: (sender 'c'|'s', flags, seq, payload_len); frames 1.. and times 1 ms apart."""
    segments = []
    for number, (sender, flags, seq, size) in enumerate(steps, start=1):
        src, dst = (client, server) if sender == "c" else (server, client)
        segments.append(Segment(frame=number, time_ns=number * 1_000_000, src=src, dst=dst, flags=F(flags),
                                seq=seq, ack=0, window=100, payload_len=size))
    return segments


HANDSHAKE = (("c", S, 100, 0), ("s", S | A, 900, 0), ("c", A, 101, 0))


def only(segments):
    (connection,) = census(segments).connections
    return connection


def test_graceful_close_by_server():
    c = only(story(*HANDSHAKE, ("c", P | A, 101, 10), ("s", P | A, 901, 20), ("s", FN | A, 921, 0),
                   ("c", FN | A, 111, 0), ("s", A, 922, 0)))
    assert (c.end, c.ended_by, c.end_frame, c.fin_frames, c.rst_frames) == ("fin", "server", 6, (6, 7), ())
    assert (c.client, c.server, c.handshake) == (CLIENT, SERVER, "complete")
    assert (c.bytes_client, c.bytes_server, c.packets) == (10, 20, 8)
    assert (c.start_ns, c.end_ns, c.first_frame, c.last_frame) == (1_000_000, 8_000_000, 1, 8)


def test_refused_with_syn_retransmissions():
    c = only(story(("c", S, 100, 0), ("c", S, 100, 0), ("c", S, 100, 0), ("s", R | A, 0, 0)))
    assert (c.end, c.ended_by, c.rst_frames, c.syn_retransmissions) == ("refused", "server", (4,), (2, 3))
    assert c.handshake == "syn-only"


def test_reset_by_server_after_handshake():
    c = only(story(*HANDSHAKE, ("c", P | A, 101, 5), ("s", R | A, 901, 0)))
    assert (c.end, c.ended_by, c.rst_by) == ("rst", "server", ("server",))


def test_fin_then_rst_is_rst_ended_by_the_fin_sender():
    c = only(story(*HANDSHAKE, ("c", FN | A, 101, 0), ("s", A, 901, 0), ("c", R, 102, 0)))
    assert (c.end, c.ended_by, c.end_frame, c.fin_frames, c.rst_frames) == ("rst", "client", 4, (4,), (6,))


def test_fin_before_synack_then_server_rst_is_not_refused():
    c = only(story(("c", S, 100, 0), ("c", FN | A, 101, 0), ("s", R, 0, 0)))
    assert (c.end, c.ended_by) == ("rst", "client")


def test_client_reset_after_synack():  # nmap's half-open scan
    c = only(story(("c", S, 100, 0), ("s", S | A, 900, 0), ("c", R, 101, 0)))
    assert (c.end, c.ended_by, c.handshake) == ("rst", "client", "complete")


def test_open_and_syn_only():
    assert only(story(*HANDSHAKE, ("c", A, 101, 3))).end == "open"
    unanswered = only(story(("c", S, 100, 0), ("c", S, 100, 0)))
    assert (unanswered.end, unanswered.ended_by, unanswered.handshake) == ("open", None, "syn-only")


def test_port_reuse_with_a_new_isn_starts_a_new_connection():
    first = story(*HANDSHAKE, ("c", FN | A, 101, 0), ("s", FN | A, 901, 0), ("c", A, 102, 0))
    second = story(("c", S, 5000, 0), ("s", R | A, 0, 0))
    for number, segment in enumerate(second, start=len(first) + 1):
        second[number - len(first) - 1] = Segment(number, segment.time_ns + 10**9, segment.src, segment.dst,
                                                  segment.flags, segment.seq, 0, 100, 0)
    result = census(first + second)
    assert [(c.stream, c.end, c.first_frame) for c in result.connections] == [(0, "fin", 1), (1, "refused", 7)]
    assert result.by_end() == {"fin": 1, "rst": 0, "refused": 1, "open": 0}
    assert result.by_side()["refused"] == {"client": 0, "server": 1}


def test_same_isn_after_rst_stays_in_the_old_connection():
    # tshark 4.0: a SYN repeating the first SYN's sequence number is a retransmission.
    c = only(story(("c", S, 100, 0), ("s", R | A, 0, 0), ("c", S, 100, 0), ("s", S | A, 7, 0)))
    assert c.syn_retransmissions == (3,) and c.packets == 4 and c.end == "rst"


def test_midstream_guesses_the_higher_port_is_the_client():
    c = only(story(("s", P | A, 900, 50), ("s", R | A, 950, 0)))
    assert (c.client, c.server, c.handshake, c.ended_by) == (CLIENT, SERVER, "midstream", "server")


def test_ipv6_endpoints_and_many_connections():
    v6c, v6s = Endpoint("2001:db8::10", 40000), Endpoint("::1", 80)
    segments = story(("c", S, 1, 0), ("s", R | A, 0, 0), client=v6c, server=v6s)
    segments += [Segment(3, 5, CLIENT, SERVER, F.SYN, 7, 0, 0, 0)]
    result = census(segments)
    assert [(str(c.client), str(c.server), c.end) for c in result.connections] == [
        ("[2001:db8::10]:40000", "[::1]:80", "refused"), ("10.1.1.1:51000", "10.1.1.2:443", "open")]


FLAG_CHOICES = [S, S | A, A, P | A, FN | A, R, R | A, FN | R | A]


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["c", "s"]), st.sampled_from(FLAG_CHOICES),
                                st.sampled_from([100, 200, 900]), st.integers(0, 50)), max_size=40),
       cuts=st.lists(st.integers(1, 40), max_size=5))
def test_batches_do_not_change_the_answer(steps, cuts):
    segments = []
    for number, (pair, sender, flags, seq, size) in enumerate(steps, start=1):
        client = Endpoint("10.0.0.1", 50000 + pair)
        src, dst = (client, SERVER) if sender == "c" else (SERVER, client)
        segments.append(Segment(number, number * 10, src, dst, F(flags), seq, 0, 0, size))
    whole = census(segments)
    bounds = sorted({0, len(segments), *[c for c in cuts if c < len(segments)]})
    pieces = [batch_from_segments(segments[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    assert census_batches(pieces).connections == whole.connections
    assert sum(c.packets for c in whole.connections) == len(segments)
    assert sum(len(c.rst_frames) for c in whole.connections) == sum(1 for s in segments if s.is_rst)


def test_frame_numbers_past_int32_widen_the_columns_and_change_nothing_else():
    """Frame numbers, packet counts and tuple ids are int32 while frames fit: a capture of
    over two billion packets widens them (here the same connections numbered from 2**31)."""
    steps = [*HANDSHAKE, ("c", P | A, 101, 10), ("s", R | A, 901, 0), ("c", S, 500, 0), ("s", S | A, 50, 0)]
    small = story(*steps)
    shift = 2**31 - 3  # the batch after the first crosses the int32 limit
    big = [Segment(s.frame + shift, s.time_ns, s.src, s.dst, s.flags, s.seq, s.ack, s.window, s.payload_len)
           for s in small]
    expected = census_batches([batch_from_segments(small[:3]), batch_from_segments(small[3:])]).connections
    got = census_batches([batch_from_segments(big[:3]), batch_from_segments(big[3:])]).connections
    assert len(got) == 2
    for ours, theirs in zip(got, expected):
        assert (ours.first_frame, ours.last_frame, ours.end_frame) == (
            theirs.first_frame + shift, theirs.last_frame + shift,
            None if theirs.end_frame is None else theirs.end_frame + shift)
        assert ours.rst_frames == tuple(f + shift for f in theirs.rst_frames)
        assert (ours.packets, ours.end, ours.history, ours.conn_state) == (
            theirs.packets, theirs.end, theirs.history, theirs.conn_state)


def test_an_earlier_connections_packets_do_not_count_as_sent_on_the_new_one():
    """Found by the batching property: the server's SYN after a new client SYN
    belongs to the new stream (its side has sent nothing on it yet, as tshark
    counts), whether or not the earlier stream is in the same batch."""
    steps = [("c", 100), ("s", 100), ("c", 100), ("c", 200), ("s", 100)]
    segments = []
    for number, (sender, seq) in enumerate(steps, start=1):
        src, dst = (CLIENT, SERVER) if sender == "c" else (SERVER, CLIENT)
        segments.append(Segment(number, number * 10, src, dst, F.SYN, seq, 0, 0, 0))
    whole = census(segments)
    assert [(c.first_frame, c.last_frame) for c in whole.connections] == [(1, 3), (4, 5)]
    for cut in range(1, len(segments)):
        pieces = [batch_from_segments(segments[:cut]), batch_from_segments(segments[cut:])]
        assert census_batches(pieces).connections == whole.connections, cut


# -- Zeek's conn_state and history (conn.log), from the definitions in Zeek's docs ------------
# history: one letter per packet (update_history in Zeek's TCP analyzer): S SYN, H SYN+ACK,
# A pure ACK, D data, F FIN, R RST, I FIN+RST, Q other multi-flag; upper case from the
# originator (client). A, D, I, Q once per side; S/H, F and R again when the sequence number
# differs from the last one of the kind.

def zeek(*steps):
    c = only(story(*steps))
    return c.conn_state, c.history


ESTABLISH = HANDSHAKE + (("c", P | A, 101, 10), ("s", A, 901, 0), ("s", P | A, 901, 20))


def test_zeek_normal_establishment_and_termination_is_sf():
    assert zeek(*ESTABLISH, ("c", FN | A, 111, 0), ("s", FN | A, 921, 0), ("c", A, 112, 0)) == ("SF", "ShADadFf")


def test_zeek_attempt_without_reply_is_s0_and_retransmissions_add_no_letter():
    assert zeek(("c", S, 100, 0), ("c", S, 100, 0)) == ("S0", "S")


def test_zeek_rejected_attempt_is_rej():
    assert zeek(("c", S, 100, 0), ("s", R | A, 0, 0)) == ("REJ", "Sr")


def test_zeek_established_then_originator_or_responder_reset():
    assert zeek(*ESTABLISH, ("c", R, 111, 0)) == ("RSTO", "ShADadR")
    assert zeek(*ESTABLISH, ("s", R | A, 921, 0)) == ("RSTR", "ShADadr")


def test_zeek_syn_then_own_rst_without_synack_is_rstos0():
    assert zeek(("c", S, 100, 0), ("c", R, 101, 0)) == ("RSTOS0", "SR")


def test_zeek_synack_then_rst_without_syn_is_rstrh_and_flipped():
    assert zeek(("s", S | A, 900, 0), ("s", R, 901, 0)) == ("RSTRH", "^hr")


def test_zeek_half_open_closes_sh_and_shr():
    assert zeek(("c", S, 100, 0), ("c", FN, 101, 0)) == ("SH", "SF")
    assert zeek(("s", S | A, 900, 0), ("s", FN | A, 901, 0)) == ("SHR", "^hf")


def test_zeek_established_not_terminated_or_half_closed():
    assert zeek(*ESTABLISH) == ("S1", "ShADad")
    assert zeek(*ESTABLISH, ("c", FN | A, 111, 0)) == ("S2", "ShADadF")
    assert zeek(*ESTABLISH, ("s", FN | A, 921, 0)) == ("S3", "ShADadf")


def test_zeek_midstream_is_oth():
    assert zeek(("s", P | A, 900, 50), ("c", A, 100, 0)) == ("OTH", "^dA")


def test_zeek_repeats_rst_and_fin_only_when_the_sequence_number_changes():
    assert zeek(*ESTABLISH, ("s", R, 921, 0), ("s", R, 921, 0), ("s", R, 950, 0))[1] == "ShADadrr"
    # a FIN's number is the one after its data: same end, same letter
    assert zeek(*ESTABLISH, ("c", FN | A, 111, 0), ("c", FN | A, 110, 1), ("c", FN | A, 112, 0))[1] == "ShADadFF"


def test_zeek_inconsistent_and_multi_flag_packets():
    assert zeek(*HANDSHAKE, ("c", FN | R, 101, 0), ("c", FN | R, 101, 0))[1] == "ShAI"
    assert zeek(("c", S | FN, 100, 0))[1] == "Q"


def test_zeek_states_on_a_real_capture_from_zeeks_own_tests(corpus):
    """zeek/fin_retransmission.pcap: Zeek's baseline (core.tcp.fin-retransmit) ends with the
    originator CLOSED (state 5) and the responder RESET (6); conn_state() maps that to RSTR."""
    from tcpteardown.commands.census import census_file

    (c,) = census_file(str(corpus / "zeek" / "fin_retransmission.pcap")).connections
    assert c.conn_state == "RSTR"
    assert c.history.startswith("SF") and c.history.endswith("r")
