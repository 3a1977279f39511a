"""Durations as people read them: an offset of hours reads in hours."""

import pytest

from tcpteardown.units import format_duration


@pytest.mark.parametrize("ns, text", [
    (1_500, "2 us"),
    (12_345_678, "12.346 ms"),
    (59_999_000_000, "59.999 s"),
    (60_000_000_000, "1 min 0.000 s"),
    (125_000_000_000, "2 min 5.000 s"),
    (3_599_999_600_000, "1 h 0 min 0.000 s"),  # rounded before it is split: never "59 min 60.000 s"
    (85_560_952_000_000, "23 h 46 min 0.952 s"),
])
def test_durations_read_in_the_largest_units_that_fit(ns, text):
    assert format_duration(ns) == text
