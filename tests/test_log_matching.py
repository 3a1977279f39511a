"""How correlate() links application-log lines (issues 14 and 19): words
that leave FIN or RST open, errors a runtime made up, a log clock far from
the capture's, and the "unlinked" list; then the same through the CLI with a
log whose lines carry 4-tuples."""

from __future__ import annotations

import datetime as dt

from test_correlate import BROKEN, C, GRACEFUL, RESET, S, T0, US

from tcpteardown.analysis.correlate import correlate, unlinked
from tcpteardown.formats.applog import parse_log
from tcpteardown.model import Recording


def stamp(t_us: int, offset_s: float = 0.0) -> str:
    moment = dt.datetime.fromtimestamp((T0 + t_us * US) / 1e9 + offset_s, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def links_for(segments, *lines):
    calls = parse_log(lines, path="app.log").calls
    recording = Recording(segments=tuple(segments), calls=calls)
    return correlate(recording)


def test_socket_hang_up_with_an_rst_is_read_as_a_reset():
    (link,) = links_for(RESET, f"{stamp(40)} Error: socket hang up")
    assert (link.call.outcome, link.cause.frame) == ("ECONNRESET", 6)
    assert any("do not tell end-of-file from a reset; the capture shows an RST" in c for c in link.caveats)
    assert any("Node made this error itself, not the kernel" in c for c in link.caveats)


def test_socket_hang_up_with_a_fin_stays_end_of_file():
    (link,) = links_for(GRACEFUL, f"{stamp(40)} Error: socket hang up")
    assert (link.call.outcome, link.cause.frame) == ("EOF", 4)


def test_node_epipe_after_the_peers_fin_links_to_the_fin_and_says_who_made_it():
    (link,) = links_for(BROKEN, f"{stamp(15)} Error: This socket has been ended by the other party")
    assert (link.call.outcome, link.cause.frame) == ("EOF", 4)
    (runtime,) = [c for c in link.caveats if "made this error itself" in c]
    assert "no system call returned it" in runtime and "FIN" in runtime


def test_kernel_errors_carry_no_runtime_caveat():
    (link,) = links_for(RESET, f"{stamp(40)} Error: read ECONNRESET")
    assert link.cause.frame == 6
    assert not any("made this error itself" in c for c in link.caveats)


def test_a_log_clock_two_hours_behind_is_named_and_corrected():
    line = f"{stamp(40, -7200)} read tcp {C}->{S}: read: connection reset by peer"
    (link,) = links_for(RESET, line)
    assert link.cause.frame == 6  # its 4-tuple names the connection: linked there
    assert link.call.end_ns == T0 + 40 * US - 7200 * 10**9  # the line keeps its own time
    (caveat,) = [c for c in link.caveats if "clock" in c and "behind" in c]
    assert caveat.startswith("the log's clock is about 2 h 0 min 0.000 s behind the capture's"), caveat


def test_a_line_without_a_4tuple_far_from_the_capture_is_unlinked_with_why():
    (link,) = links_for(RESET, f"{stamp(40, -7200)} Error: read ECONNRESET")
    assert link.cause is None
    (entry,) = unlinked([link])
    assert entry["where"] == "app.log:1" and entry["source"] == "log"
    assert "no RST toward this socket" in entry["why"] or "no connection" in entry["why"], entry


def test_linked_lines_are_not_listed_as_unlinked():
    assert unlinked(links_for(RESET, f"{stamp(40)} Error: read ECONNRESET")) == ()
