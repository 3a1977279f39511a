"""The ladder's time axis: pure, no matplotlib."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from tcpteardown.views.timeaxis import (
    BREAK_ROWS, DEFAULT_BREAK_NS, IDLE_BREAK_ROWS, MIN_ROWS, adaptive_break_ns, build_time_axis, format_elapsed,
)

MS = 1_000_000
US = 1_000


@pytest.mark.parametrize("ns, text", [
    (0, "0 ns"), (999, "999 ns"), (1_000, "1.00 µs"), (16_300, "16.3 µs"), (650 * US, "650 µs"),
    (999_700, "1.00 ms"), (201 * MS, "201 ms"), (3_000 * MS, "3.00 s"), (63_000 * MS, "63.0 s"),
    (1_200_000 * MS, "20 min 00 s"), (7_230_000 * MS, "2 h 00 min"), (3 * 86400_000 * MS, "3.0 days"),
    (56 * 365 * 86400_000 * MS, "56.0 years"), (-5 * MS, "-5.00 ms"),
])
def test_format_elapsed(ns, text):
    assert format_elapsed(ns) == text


def test_loopback_exchange_gets_one_row_per_event_and_no_break():
    axis = build_time_axis([(0, 1.0), (16 * US, 1.0), (33 * US, 1.0), (290 * US, 1.0)])
    assert axis.breaks == ()
    assert [axis.y(t) for t in (0, 16 * US, 33 * US, 290 * US)] == [0.0, 1.0, 2.0, 3.0]


def test_idle_gap_becomes_a_break_labelled_with_real_time():
    axis = build_time_axis([(0, 1.0), (20 * US, 1.0), (20 * US + 201 * MS, 1.0), (20 * US + 201 * MS + 9 * US, 1.0)])
    (cut,) = axis.breaks
    assert cut.elapsed_ns == 201 * MS
    assert cut.label == "⋯ 201 ms ⋯"
    assert axis.y(20 * US) < cut.top < cut.bottom < axis.y(20 * US + 201 * MS)
    assert cut.bottom - cut.top == pytest.approx(IDLE_BREAK_ROWS)  # one line of label: less room
    # The exchanges on both sides of the break keep their one-row spacing.
    assert axis.y(20 * US + 201 * MS + 9 * US) - axis.y(20 * US + 201 * MS) == pytest.approx(1.0)


def test_break_threshold_is_a_parameter():
    events = [(0, 1.0), (300 * US, 1.0)]
    assert build_time_axis(events).breaks == ()
    assert len(build_time_axis(events, break_ns=100 * US).breaks) == 1
    assert DEFAULT_BREAK_NS == 1 * MS


def test_idle_is_relative_to_the_recording():
    """Packets 5 ms apart (a WAN capture) are not idle; a pause 40x longer is."""
    times = [i * 5 * MS for i in range(10)]
    assert adaptive_break_ns(times) == 20 * 5 * MS
    axis = build_time_axis([(t, 1.0) for t in times] + [(times[-1] + 200 * MS, 1.0)])
    assert [cut.elapsed_ns for cut in axis.breaks] == [200 * MS]
    assert adaptive_break_ns([0, 10 * US, 20 * US]) == DEFAULT_BREAK_NS
    assert adaptive_break_ns([]) == DEFAULT_BREAK_NS


def test_weights_make_room_for_labels_and_small_events_still_move_the_axis():
    axis = build_time_axis([(0, 1.0), (10, 2.5), (20, 0.0)])
    assert axis.y(10) == 2.5
    assert axis.y(20) == 2.5 + MIN_ROWS


def test_same_instant_takes_the_largest_weight():
    axis = build_time_axis([(0, 1.0), (5, 0.3), (5, 1.7)])
    assert axis.y(5) == 1.7


def test_between_knots_interpolates_outside_clamps():
    axis = build_time_axis([(100, 1.0), (200, 1.0)])
    assert axis.y(150) == pytest.approx(0.5)
    assert axis.y(0) == 0.0 and axis.y(10_000) == 1.0


def test_real_axis_is_linear_and_as_tall_as_the_compressed_one():
    events = [(0, 1.0), (10 * US, 1.0), (500 * MS, 1.0)]
    compressed = build_time_axis(events)
    real = build_time_axis(events, "real")
    assert real.mode == "real" and real.breaks == ()
    assert real.height == pytest.approx(compressed.height)
    assert real.y(250 * MS) == pytest.approx(real.height / 2)
    labels = [label for _, label in real.ticks()]
    assert labels[0] == "0" and "+100 ms" in labels


def test_compressed_ticks_never_share_a_row():
    axis = build_time_axis([(t * US, 0.25) for t in range(40)])
    rows = [row for row, _ in axis.ticks()]
    assert all(b - a >= 0.9 for a, b in zip(rows, rows[1:]))
    assert axis.ticks()[0] == (0.0, "0")


def test_unknown_mode_and_empty_input():
    with pytest.raises(ValueError, match="compressed, real"):
        build_time_axis([(0, 1.0)], "log")
    empty = build_time_axis([])
    assert empty.height == 0.0 and empty.y(123) == 0.0 and empty.ticks() == []
    single = build_time_axis([(42, 1.0)], "real")
    assert single.y(42) == 0.0


@given(st.lists(st.tuples(st.integers(0, 10**10), st.floats(0, 3)), min_size=1, max_size=60),
       st.sampled_from(["compressed", "real"]))
def test_time_never_flows_upward(events, mode):
    axis = build_time_axis(events, mode)
    times = sorted({t for t, _ in events})
    rows = [axis.y(t) for t in times]
    assert all(b >= a for a, b in zip(rows, rows[1:]))
    if mode == "compressed":
        assert all(b > a for a, b in zip(rows, rows[1:]))  # every event its own row
        for cut in axis.breaks:
            assert cut.elapsed_ns >= adaptive_break_ns(times) >= DEFAULT_BREAK_NS


def test_a_cut_breaks_the_gap_that_holds_it_and_its_text_is_the_label():
    events = [(0, 1.0), (10 * US, 1.0), (20 * US, 1.0), (30 * US, 1.0)]
    axis = build_time_axis(events, cuts=[(15 * US, "… 180 data segments, 1.2 MB, 3.400 s …")])
    (cut,) = axis.breaks
    assert (cut.start_ns, cut.end_ns) == (10 * US, 20 * US)  # the gap that held the left-out segments
    assert cut.label == "… 180 data segments, 1.2 MB, 3.400 s …"
    assert cut.bottom - cut.top == pytest.approx(BREAK_ROWS)  # room for that label on two lines
    assert build_time_axis(events).breaks == ()


def test_labels_in_different_lanes_share_rows_and_in_one_lane_stack():
    # A segment's two-line label in the middle, a call's label beside the lifeline:
    # side by side they need the room of the taller one only.
    apart = build_time_axis([(0, 1.0, "segments"), (10 * US, 1.2, "calls"), (20 * US, 1.6, "segments")])
    assert [apart.y(t) for t in (0, 10 * US, 20 * US)] == pytest.approx([0.0, 1.2, 1.6])
    stacked = build_time_axis([(0, 1.0, "segments"), (10 * US, 1.2, "segments"), (20 * US, 1.6, "segments")])
    assert [stacked.y(t) for t in (0, 10 * US, 20 * US)] == pytest.approx([0.0, 1.2, 2.8])
    # Events without a lane share one: the same axis as before lanes existed.
    assert build_time_axis([(0, 1.0), (10 * US, 1.2), (20 * US, 1.6)]).knots == stacked.knots


def test_ticks_count_from_the_origin_given_and_say_before_it():
    from tcpteardown.views.timeaxis import signed_elapsed

    axis = build_time_axis([(0, 1.0), (34 * US, 1.0), (50 * US, 1.0)], origin_ns=34 * US)
    assert [label for _, label in axis.ticks()] == ["-34.0 µs", "0", "+16.0 µs"]
    assert (signed_elapsed(0), signed_elapsed(-5 * MS), signed_elapsed(5 * MS)) == ("0", "-5.00 ms", "+5.00 ms")
