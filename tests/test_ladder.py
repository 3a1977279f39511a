"""The ladder figure, checked through matplotlib's artists (not pixels).

Recordings are built by hand from a real loopback broken-pipe run (times
relative to its first SYN), then from real scenario runs and from a real
tcpdump capture of real sockets.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
from dataclasses import replace
from typing import Optional

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.text import Text

from conftest import tool_or_skip
from tcpteardown.analysis.correlate import correlate
from tcpteardown.errors import UserError
from tcpteardown.model import (
    CauseKind, Endpoint, Link, Metadata, Recording, Segment, SocketCall, TcpFlags,
)
from tcpteardown.views import style
from tcpteardown.views.ladder import call_label, draw_ladder, segment_label, wrap_phrase

T0 = 1_795_290_060_811_428_549
CLIENT, SERVER = Endpoint.parse("127.0.0.1:54496"), Endpoint.parse("127.0.0.1:48579")

# (time after the SYN, src, dst, flags, seq, ack, payload) from a real broken-pipe run.
BROKEN_PIPE_SEGMENTS = (
    (0, CLIENT, SERVER, "SYN", 777085357, 0, 0),
    (16445, SERVER, CLIENT, "SYN,ACK", 1322587729, 777085358, 0),
    (33132, CLIENT, SERVER, "ACK", 777085358, 1322587730, 0),
    (290522, CLIENT, SERVER, "PSH,ACK", 777085358, 1322587730, 1),
    (299039, SERVER, CLIENT, "ACK", 1322587730, 777085359, 0),
    (373535, SERVER, CLIENT, "FIN,ACK", 1322587730, 777085359, 0),
    (604370, CLIENT, SERVER, "PSH,ACK", 777085359, 1322587731, 9),
    (619368, SERVER, CLIENT, "RST", 1322587731, 0, 0),
)
BROKEN_PIPE_CALLS = (
    ("client", "connect", -32896, 133139, 0, None),
    ("server", "accept", 200698, 244646, 7, None),
    ("client", "send", 278514, 305693, 1, None),
    ("server", "recv", 338167, 346028, 1, None),
    ("server", "close", 364490, 438411, 0, None),
    ("client", "send", 596745, 663108, 9, None),
    ("client", "send", 765613, 773182, -1, "EPIPE"),
    ("client", "close", 800477, 811824, 0, None),
)
METADATA = Metadata(scenario="broken-pipe", os="Linux", kernel="6.18.44-fc-v657", started_ns=T0 - 338_000_000)


def segments(rows, t0=T0, first_frame=1):
    return tuple(Segment(first_frame + i, t0 + dt, src, dst, TcpFlags.parse(flags), seq, ack, 65483, length)
                 for i, (dt, src, dst, flags, seq, ack, length) in enumerate(rows))


def calls(rows, client=CLIENT, server=SERVER, t0=T0, pid=6553):
    made = []
    for role, op, start, end, result, errno in rows:
        local, remote = (client, server) if role == "client" else (server, client)
        made.append(SocketCall(role, op, t0 + start, t0 + end, result, errno, pid, 6 if role == "client" else 7,
                               local, remote, text=f"{op}() -> {errno or result}"))
    return tuple(made)


def broken_pipe(**metadata) -> Recording:
    return Recording(segments(BROKEN_PIPE_SEGMENTS), calls(BROKEN_PIPE_CALLS), metadata=replace(METADATA, **metadata))


# -- reading a figure back ------------------------------------------------------

def the_axes(figure: Figure):
    (ax,) = figure.axes
    return ax


def by_gid(artists, prefix):
    return [a for a in artists if (a.get_gid() or "").startswith(prefix)]


def patches(figure_or_axes, prefix, kind=FancyArrowPatch):
    ax = figure_or_axes if not isinstance(figure_or_axes, Figure) else the_axes(figure_or_axes)
    return [a for a in by_gid(ax.get_children(), prefix) if isinstance(a, kind)]


def arrows(figure):
    return patches(figure, "segment-")


def connectors(figure):
    return patches(figure, "connector-")


def failure_marks(figure):
    return by_gid(the_axes(figure).lines, "call-failed-")


def texts(figure) -> list[Text]:
    ax = the_axes(figure)
    found = list(ax.texts) + [c for c in ax.get_children() if isinstance(c, Text) and c not in ax.texts]
    return [t for t in found if t.get_text() and t.get_visible()]


def text_by_gid(figure, prefix):
    return [t.get_text() for t in texts(figure) if (t.get_gid() or "").startswith(prefix)]


# -- structure -------------------------------------------------------------------

def test_one_arrow_per_segment_coloured_by_kind():
    recording = broken_pipe()
    figure = draw_ladder(recording, correlate(recording))
    drawn = arrows(figure)
    assert sorted(a.get_gid() for a in drawn) == sorted(f"segment-{s.frame}" for s in recording.segments)
    colour = {a.get_gid(): to_hex(a.get_edgecolor()) for a in drawn}
    assert colour["segment-1"] == style.SYN
    assert colour["segment-2"] == style.SYN
    assert colour["segment-4"] == style.DATA
    assert colour["segment-6"] == style.FIN
    assert colour["segment-8"] == style.RST


def test_arrows_go_from_sender_to_receiver_and_are_flat_on_loopback():
    figure = draw_ladder(broken_pipe())
    client_x, server_x = (the_axes(figure).lines[0].get_xdata()[0], None)
    for arrow in arrows(figure):
        (xa, ya), (xb, yb) = arrow._posA_posB
        assert ya == yb  # one timestamp, no delay: horizontal
        frame = int(arrow.get_gid().split("-")[1])
        sender = BROKEN_PIPE_SEGMENTS[frame - 1][1]
        assert (xa < xb) == (sender == CLIENT)


def test_segment_labels_use_relative_numbers():
    recording = broken_pipe()
    labels = text_by_gid(draw_ladder(recording), "segment-label-")
    assert "#1 SYN seq=0" in labels
    assert "#2 SYN,ACK seq=0 ack=1" in labels
    assert "#7 PSH,ACK seq=2 ack=2 len=9" in labels
    assert any(label.startswith("#8 RST seq=2\n") for label in labels)  # and its reason, inferred
    assert segment_label(recording.segments[3], {}) == "#4 PSH,ACK seq=777085358 ack=1322587730 len=1"


def test_failed_calls_are_red_marks_with_the_errno():
    recording = broken_pipe()
    figure = draw_ladder(recording)
    (mark,) = failure_marks(figure)
    assert to_hex(mark.get_color()) == style.FAILURE
    red_labels = [t.get_text() for t in texts(figure) if (t.get_gid() or "").startswith("call-label-")
                  and to_hex(t.get_color()) == style.FAILURE]
    assert red_labels == ["send() → EPIPE"]
    assert len(patches(figure, "call-", Rectangle)) == len(recording.calls)


def test_call_labels():
    ok, failed, eof = calls([("client", "send", 0, 1, 9, None), ("client", "send", 2, 3, -1, "EPIPE"),
                             ("client", "recv", 4, 5, 0, None)])
    assert [call_label(c) for c in (ok, failed, eof)] == ["send() = 9", "send() → EPIPE", "recv() → EOF"]


def test_one_connector_per_link():
    recording = broken_pipe()
    links = correlate(recording)
    assert len(links) == 1
    assert len(connectors(draw_ladder(recording, links))) == 1
    assert connectors(draw_ladder(recording)) == []  # no links, no connectors
    # A local-close link connects to our own close; a link with no cause has nothing to connect.
    epipe, close = recording.calls[6], recording.calls[7]
    late = replace(epipe, start_ns=close.end_ns + 10, end_ns=close.end_ns + 20)
    recording = replace(recording, calls=recording.calls + (late,))
    made = [Link(epipe, CauseKind.RST, "send-epipe-after-rst", "x", cause=recording.segments[7]),
            Link(late, CauseKind.LOCAL_CLOSE, "closed-descriptor", "x", local_call=close),
            Link(late, CauseKind.NONE, "no-rule", "x")]
    drawn = connectors(draw_ladder(recording, made))
    assert len(drawn) == 2
    assert all(to_hex(c.get_edgecolor()) == style.CONNECTOR and c.get_linestyle() != "-" for c in drawn)


def test_connector_runs_from_the_cause_to_the_failing_call():
    recording = broken_pipe()
    figure = draw_ladder(recording, correlate(recording))
    (connector,) = connectors(figure)
    (mark,) = failure_marks(figure)
    (xa, ya), (xb, yb) = connector._posA_posB
    rst = next(a for a in arrows(figure) if a.get_gid() == "segment-8")
    assert (xb, yb) == (mark.get_xdata()[0], mark.get_ydata()[0])
    assert ya == rst._posA_posB[1][1]  # where the RST reached the client


def test_lifelines_are_labelled_with_the_endpoints():
    labels = text_by_gid(draw_ladder(broken_pipe()), "lifeline-label-")
    assert sorted(labels) == [f"client {CLIENT}", f"server {SERVER}"]


def test_roles_come_from_the_syn_even_when_the_calls_say_nothing():
    recording = Recording(segments(BROKEN_PIPE_SEGMENTS), metadata=METADATA)
    labels = text_by_gid(draw_ladder(recording), "lifeline-label-")
    assert f"client {CLIENT}" in labels


def test_title_has_scenario_os_kernel_and_date():
    figure = draw_ladder(broken_pipe())
    title = next(t.get_text() for t in texts(figure) if t.get_text().startswith("broken-pipe"))
    assert "Linux 6.18.44-fc-v657" in title and "2026-11-21" in title and "UTC" in title


def test_tcp_states_along_each_lifeline():
    figure = draw_ladder(broken_pipe())
    client = text_by_gid(figure, "state-client-")
    server = text_by_gid(figure, "state-server-")
    assert client[:2] == ["SYN_SENT", "ESTABLISHED"] and "CLOSE_WAIT" in client and client[-1] == "CLOSE"
    assert "FIN_WAIT1" in server


def test_language_phrase_under_the_failure():
    figure = draw_ladder(broken_pipe(), lang="Go")
    (phrase,) = text_by_gid(figure, "call-phrase-")
    assert phrase.startswith("Go: write tcp") and phrase.replace("\n", " ").endswith("write: broken pipe")
    (phrase,) = text_by_gid(draw_ladder(broken_pipe(), lang="python"), "call-phrase-")
    assert "BrokenPipeError" in phrase
    assert text_by_gid(draw_ladder(broken_pipe()), "call-phrase-") == []
    with pytest.raises(ValueError, match="unknown language"):
        draw_ladder(broken_pipe(), lang="cobol")


# Bulk transfer both ways: big relative numbers make long labels.
BULK = [(0, CLIENT, SERVER, "SYN", 0, 0, 0), (10, SERVER, CLIENT, "SYN,ACK", 0, 1, 0),
        (20, CLIENT, SERVER, "ACK", 1, 1, 0), (30, CLIENT, SERVER, "PSH,ACK", 1, 1, 65483),
        (40, SERVER, CLIENT, "PSH,ACK", 1, 65484, 65483), (50, SERVER, CLIENT, "PSH,ACK", 65484, 65484, 65483),
        (60, CLIENT, SERVER, "ACK", 65484, 130967, 0)]


def test_long_segment_labels_break_after_the_flags():
    from tcpteardown.views.ladder import fit_segment_label

    assert fit_segment_label("#7 PSH,ACK seq=2 ack=2 len=9") == "#7 PSH,ACK seq=2 ack=2 len=9"
    assert fit_segment_label("#8 PSH,ACK seq=16480 ack=44 len=16392") == "#8 PSH,ACK\nseq=16480 ack=44 len=16392"
    assert fit_segment_label("#8 RST,ACK seq=4294967295 ack=4294967295\nNO_SOCKET") == \
        "#8 RST,ACK\nseq=4294967295 ack=4294967295\nNO_SOCKET"
    figure = draw_ladder(Recording(segments(BULK), metadata=METADATA))
    assert "#6 PSH,ACK\nseq=65484 ack=65484 len=65483" in text_by_gid(figure, "segment-label-")
    assert_legible(figure)


def test_wrap_phrase_breaks_after_arrows():
    assert wrap_phrase("Go: write tcp 127.0.0.1:54496->127.0.0.1:48579: write: broken pipe", 38) == [
        "Go: write tcp 127.0.0.1:54496->", "127.0.0.1:48579: write: broken pipe"]


def test_legend_lists_what_is_drawn_and_the_rules_used():
    recording = broken_pipe()
    ax = the_axes(draw_ladder(recording, correlate(recording)))
    entries = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"SYN (opening)", "FIN (orderly close)", "RST (reset)", "failed call (errno)"} <= set(entries)
    assert "end-of-file (recv → 0)" not in entries  # nothing in this recording reached EOF
    rules = text_by_gid(draw_ladder(recording, correlate(recording)), "rules")
    assert rules and rules[0].startswith("send-epipe-after-rst: ")


# -- time ------------------------------------------------------------------------

def paused(ms: int) -> Recording:
    """broken-pipe with the server's close `ms` later (an idle pause)."""
    shift = ms * 1_000_000
    rows = [(dt + shift if dt >= 373535 else dt, *rest) for dt, *rest in BROKEN_PIPE_SEGMENTS]
    call_rows = [(role, op, start + shift if start >= 364490 else start, end + shift if end >= 364490 else end,
                  result, errno) for role, op, start, end, result, errno in BROKEN_PIPE_CALLS]
    return Recording(segments(rows), calls(call_rows), metadata=METADATA)


def test_idle_pause_is_a_labelled_break_and_real_time_is_linear():
    recording = paused(201)
    assert text_by_gid(draw_ladder(recording), "break-") == ["⋯ 201 ms ⋯"]
    real = draw_ladder(recording, time_axis="real")
    assert text_by_gid(real, "break-") == []
    rows = {a.get_gid(): a._posA_posB[0][1] for a in arrows(real)}
    # Linear: the 201 ms pause dwarfs the handshake.
    assert rows["segment-6"] - rows["segment-5"] > 50 * (rows["segment-3"] - rows["segment-1"])
    with pytest.raises(ValueError):
        draw_ladder(recording, time_axis="log")


def test_metadata_delay_slants_the_arrows():
    recording = broken_pipe(extra=(("delay_ms", "50"),))
    figure = draw_ladder(recording)
    for arrow in arrows(figure):
        (_, ya), (_, yb) = arrow._posA_posB
        assert yb > ya  # received later than sent: downhill
    assert "one-way delay 50.0 ms" in " ".join(t.get_text() for t in texts(figure))


# -- many connections -------------------------------------------------------------

OTHER = Endpoint.parse("127.0.0.1:54500")


def two_connections() -> Recording:
    """A clean exchange on one connection, then broken-pipe on another."""
    clean = segments([(0, OTHER, SERVER, "SYN", 1, 0, 0), (10, SERVER, OTHER, "SYN,ACK", 5, 2, 0),
                      (20, OTHER, SERVER, "ACK", 2, 6, 0)], t0=T0 - 5_000_000)
    broken = segments(BROKEN_PIPE_SEGMENTS, first_frame=4)
    return Recording(clean + broken, calls(BROKEN_PIPE_CALLS), metadata=METADATA)


def lifeline_names(figure):
    return sorted(text_by_gid(figure, "lifeline-label-"))


def test_default_connection_is_the_one_with_the_first_failing_call():
    recording = two_connections()
    assert f"client {CLIENT}" in lifeline_names(draw_ladder(recording))
    assert f"client {OTHER}" in lifeline_names(draw_ladder(recording, conn=1))
    assert f"client {OTHER}" in lifeline_names(draw_ladder(recording, conn="1"))
    assert f"client {OTHER}" in lifeline_names(draw_ladder(recording, conn=f"{SERVER}-{OTHER}"))
    assert f"client {CLIENT}" in lifeline_names(draw_ladder(recording, conn=f"{CLIENT}-{SERVER}"))
    assert len(arrows(draw_ladder(recording, conn=1))) == 3


@pytest.mark.parametrize("wanted, message", [
    (7, "no connection number 7"), ("10.0.0.1:1-10.0.0.2:2", "no connection matches"),
    ("nonsense", "expected a connection number"), (0, "numbered from 1"),
])
def test_bad_connection_choice_names_the_choices(wanted, message):
    with pytest.raises(UserError, match=message):
        draw_ladder(two_connections(), conn=wanted)
    with pytest.raises(UserError, match="no TCP connection"):
        draw_ladder(Recording())


def test_overview_one_row_per_connection_coloured_by_ending():
    from tcpteardown.views.overview import draw_overview

    figure = draw_overview(two_connections())
    bars = by_gid(figure.axes[0].patches, "connection-")
    assert [b.get_gid() for b in bars] == ["connection-0", "connection-1"]
    assert [to_hex(b.get_facecolor()) for b in bars] == [style.ENDING_COLOURS["open"], style.ENDING_COLOURS["rst"]]


# -- legibility and reproducibility -------------------------------------------------

def assert_legible(figure):
    """Every text at least 9 pt; no two texts overlap on the page; segment
    labels stay between the lifelines."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    shown = texts(figure)
    assert all(t.get_fontsize() >= 9 for t in shown)
    lifelines = [line for line in figure.axes[0].lines if (line.get_gid() or "").startswith("lifeline-")]
    if lifelines:
        xs = sorted({figure.axes[0].transData.transform((line.get_xdata()[0], 0))[0] for line in lifelines})
        for text in shown:
            if (text.get_gid() or "").startswith("segment-label-"):
                box = text.get_window_extent(renderer)
                assert xs[0] < box.x0 and box.x1 < xs[-1], f"{text.get_text()!r} crosses a lifeline"
    boxes = [(t.get_text(), t.get_window_extent(renderer).shrunk(0.97, 0.9)) for t in shown]
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1:]:
            assert not a.overlaps(b), f"labels overlap: {text_a!r} and {text_b!r}"


def crowded() -> Recording:
    """broken-pipe after an idle pause, plus a recv that reached end-of-file:
    every legend entry at once (the most rows), and a rule footnote."""
    recording = paused(201)
    eof = calls([("client", "recv", 500_000_000, 500_010_000, 0, None)])
    return replace(recording, calls=tuple(sorted(recording.calls + eof, key=lambda c: c.start_ns)))


def page_boxes(figure):
    renderer = FigureCanvasAgg(figure).get_renderer()
    ax = the_axes(figure)
    (rules,) = [t for t in texts(figure) if t.get_gid() == "rules"]
    return renderer, ax.get_legend().get_window_extent(renderer), rules.get_window_extent(renderer)


def assert_legend_clear_of_footnote(figure):
    renderer, legend, rules = page_boxes(figure)
    assert not legend.overlaps(rules), f"legend {legend} overprints the rule footnote {rules}"
    assert rules.y1 < legend.y0
    page = figure.bbox
    for text in texts(figure):  # nothing runs off the page either
        box = text.get_window_extent(renderer)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
            f"{text.get_text()!r} leaves the page"


@pytest.mark.parametrize("lang", [None, "go"])
def test_legend_never_overprints_the_rule_footnote(lang):
    for recording in (broken_pipe(), crowded()):
        figure = draw_ladder(recording, correlate(recording), lang=lang)
        assert len(the_axes(figure).get_legend().get_texts()) >= 7
        assert_legend_clear_of_footnote(figure)
    assert len(the_axes(draw_ladder(crowded(), correlate(crowded()))).get_legend().get_texts()) == 10


@pytest.mark.parametrize("make", [broken_pipe, crowded, lambda: long_connection(300)])
def test_text_is_at_least_11_px_on_a_1024_px_projector(make):
    from tcpteardown.views.ladder import min_text_px

    recording = make()
    figure = draw_ladder(recording, correlate(recording), lang="java")
    width_px = figure.get_size_inches()[0] * style.PNG_DPI
    smallest = min(t.get_fontsize() for t in texts(figure)) / 72 * style.PNG_DPI * 1024 / width_px
    assert smallest >= 11, f"{smallest:.1f} px"
    assert min_text_px(figure) == pytest.approx(smallest)


def test_states_sit_beside_their_lifelines_not_at_the_edges():
    figure = draw_ladder(broken_pipe())
    ax = the_axes(figure)
    lifeline_x = {side: ax.transData.transform((line.get_xdata()[0], 0))[0]
                  for side in ("client", "server") for line in by_gid(ax.lines, f"lifeline-{side}-0")}
    renderer = FigureCanvasAgg(figure).get_renderer()
    inch = figure.dpi
    for text in texts(figure):
        gid = text.get_gid() or ""
        if gid.startswith("state-"):
            side = gid.split("-")[1]
            box = text.get_window_extent(renderer)
            gap = lifeline_x[side] - box.x1 if side == "client" else box.x0 - lifeline_x[side]
            assert 0 < gap < 0.4 * inch, f"{text.get_text()} is {gap / inch:.2f} in from its lifeline"
    lifelines_apart = lifeline_x["server"] - lifeline_x["client"]
    assert lifelines_apart < 0.3 * figure.bbox.width


def test_alt_text_says_what_the_ladder_shows(tmp_path):
    from PIL import Image

    from tcpteardown.views.ladder import ladder_alt_text

    recording = broken_pipe()
    figure = draw_ladder(recording, correlate(recording))
    alt = ladder_alt_text(figure)
    assert alt.startswith("Ladder diagram of broken-pipe, connection 1 of 1: client 127.0.0.1:54496 on the left")
    assert "the client's send() failed with EPIPE, caused by the server's RST (frame 8)" in alt
    assert alt.endswith(".") and alt.count(".") == alt.count("127.0.0.1") * 3 + 1  # one sentence
    assert alt in style.save_figure(figure, tmp_path / "l.svg").read_text().replace("&#x27;", "'")
    assert Image.open(style.save_figure(figure, tmp_path / "l.png")).text["Description"] == alt
    folded = ladder_alt_text(draw_ladder(long_connection(300)))
    assert "folded into 1 labelled band" in folded and "ending with the server's RST" in folded


@pytest.mark.parametrize("lang", [None, "go", "java"])
def test_labels_never_overlap(lang):
    recording = broken_pipe()
    assert_legible(draw_ladder(recording, correlate(recording), lang=lang))
    assert_legible(draw_ladder(paused(201), lang=lang))


def test_draws_into_a_given_axes():
    figure = Figure(figsize=(12, 8))
    ax = figure.add_subplot()
    assert draw_ladder(broken_pipe(), ax=ax) is figure
    assert len(patches(ax, "segment-")) == len(BROKEN_PIPE_SEGMENTS)


def test_same_input_same_svg_and_pdf_bytes(tmp_path):
    recording = broken_pipe()
    for suffix in (".svg", ".pdf", ".png"):
        first = style.save_figure(draw_ladder(recording, correlate(recording), lang="go"), tmp_path / f"a{suffix}")
        second = style.save_figure(draw_ladder(recording, correlate(recording), lang="go"), tmp_path / f"b{suffix}")
        assert first.read_bytes() == second.read_bytes(), suffix
    svg = (tmp_path / "a.svg").read_text()
    assert "<dc:date>" not in svg
    ids = re.findall(r' id="([^"]+)"', svg)
    assert len(ids) == len(set(ids)), "artist gids become SVG ids: they must be unique"


def test_save_figure_refuses_unknown_formats(tmp_path):
    with pytest.raises(UserError, match=r"\.png, \.svg or \.pdf"):
        style.save_figure(draw_ladder(broken_pipe()), tmp_path / "ladder.jpg")


MAGIC = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}


def render_all_formats(recording, tmp_path, name):
    links = correlate(recording)
    for suffix, magic in MAGIC.items():
        path = style.save_figure(draw_ladder(recording, links, lang="go"), tmp_path / f"{name}{suffix}")
        assert path.read_bytes().startswith(magic)
    return links


# -- real recordings -------------------------------------------------------------------

SEED_SCENARIOS = ("graceful-close", "reset-by-peer", "broken-pipe", "write-after-reset", "refused",
                  "use-after-close")


def check_scenario_figure(name, tmp_path, recording=None, **options):
    from tcpteardown.scenarios import run_scenario

    recording = recording or run_scenario(name, **options).recording
    links = render_all_formats(recording, tmp_path, name)
    figure = draw_ladder(recording, links, lang="go")
    from tcpteardown.analysis.connections import connections, select_connection

    drawn = select_connection(connections(recording))
    from tcpteardown.analysis.elide import elide

    assert len(arrows(figure)) == len(elide(drawn.segments, drawn.calls).kept)
    assert len(failure_marks(figure)) == sum(1 for c in drawn.calls if c.failed)
    assert len(connectors(figure)) == sum(1 for l in links if l.call in drawn.calls
                                          and (l.cause is not None or l.local_call is not None))
    assert_legible(figure)
    if text_by_gid(figure, "rules"):  # the live broken-pipe ladder's legend once overprinted its footnote
        assert_legend_clear_of_footnote(figure)


@pytest.mark.needs_capture
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("name", SEED_SCENARIOS)
def test_seed_scenarios_render_to_png_svg_and_pdf(name, family, tmp_path):
    check_scenario_figure(name, tmp_path, family=family)


# Every registered scenario's ladder, both families: tests/test_conformance.py.


@contextlib.contextmanager
def loopback_listener():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield listener
    finally:
        listener.close()


def play_three_teardowns(listener, closed_port):
    """Real sockets: one orderly close, one abortive close (RST), one refused connect."""
    address = listener.getsockname()
    with socket.create_connection(address) as client:
        server, _ = listener.accept()
        with server:
            server.shutdown(socket.SHUT_WR)
            assert client.recv(10) == b""  # the server's FIN
    with socket.create_connection(address) as client:
        server, _ = listener.accept()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # linger 0: RST
        with server, pytest.raises(ConnectionResetError):
            server.recv(10)
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", closed_port))


@pytest.mark.needs_capture
def test_real_tcpdump_capture_of_real_sockets(tmp_path):
    tool_or_skip("tcpdump")
    from tcpteardown.capture.tcpdump import TcpdumpCapture
    from tcpteardown.formats.bundle import load_recording
    from tcpteardown.views.overview import draw_overview

    with loopback_listener() as listener, socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        ports = [listener.getsockname()[1], reserved.getsockname()[1]]
        with TcpdumpCapture(tmp_path / "three.pcap", ports) as capture:
            play_three_teardowns(listener, ports[1])
        pcap = capture.stop()
    recording = load_recording(pcap)
    for number in (1, 2, 3):
        figure = draw_ladder(recording, correlate(recording), conn=number)
        assert arrows(figure)
        assert_legible(figure)
    overview = draw_overview(recording)
    bars = by_gid(overview.axes[0].patches, "connection-")
    assert [to_hex(b.get_facecolor()) for b in bars] == [style.ENDING_COLOURS[e] for e in ("fin", "rst", "refused")]
    render_all_formats(recording, tmp_path, "three")


def long_connection(pairs: int) -> Recording:
    """Handshake, `pairs` request/ACK pairs 12 µs apart, then an RST."""
    rows = [(0, CLIENT, SERVER, "SYN", 0, 0, 0), (12_000, SERVER, CLIENT, "SYN,ACK", 0, 1, 0),
            (24_000, CLIENT, SERVER, "ACK", 1, 1, 0)]
    for i in range(pairs):
        t = 36_000 + 24_000 * i
        rows.append((t, CLIENT, SERVER, "PSH,ACK", 1 + 10 * i, 1, 10))
        rows.append((t + 12_000, SERVER, CLIENT, "ACK", 1, 11 + 10 * i, 0))
    rows.append((rows[-1][0] + 12_000, SERVER, CLIENT, "RST", 1, 0, 0))
    return Recording(segments(rows), metadata=METADATA)


def test_a_long_connection_is_folded_into_one_labelled_band():
    recording = long_connection(200)  # 404 segments
    figure = draw_ladder(recording)
    frames = sorted(int(a.get_gid().split("-")[1]) for a in arrows(figure))
    assert frames[:3] == [1, 2, 3] and frames[-1] == len(recording.segments)
    left_out = len(recording.segments) - len(frames)
    assert left_out > 350
    (label,) = text_by_gid(figure, "break-")
    assert label.replace("\n", " ").startswith(f"… {left_out // 2} data segments, {left_out - left_out // 2} ACKs, ")
    (real,) = text_by_gid(draw_ladder(recording, time_axis="real"), "band-")  # no breaks there, still said
    assert real == label
    full = draw_ladder(recording, full=True)
    assert len(arrows(full)) == len(recording.segments) and not text_by_gid(full, "break-")
    assert_legible(figure)


def test_a_long_ladder_has_bounded_height():
    # 604 and 1,984 segments; seq numbers of as many digits, so labels wrap alike
    heights = [draw_ladder(long_connection(pairs)).get_size_inches()[1] for pairs in (300, 990)]
    assert heights[1] == pytest.approx(heights[0], abs=0.01), heights
    assert draw_ladder(long_connection(60), full=True).get_size_inches()[1] > 3 * heights[0]


def test_overview_cuts_idle_hours_and_marks_the_drawn_connection(tmp_path):
    from tcpteardown.views.overview import draw_overview

    later = 2 * 3600 * 1_000_000_000
    early = segments([(0, OTHER, SERVER, "SYN", 1, 0, 0), (10, SERVER, OTHER, "RST,ACK", 0, 2, 0)], t0=T0 - later)
    recording = Recording(early + segments(BROKEN_PIPE_SEGMENTS, first_frame=3), calls(BROKEN_PIPE_CALLS),
                          metadata=METADATA)
    figure = draw_overview(recording, highlight=1)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("break-")] == ["2 h 00 min"]
    rows = [t.get_text() for t in ax.texts if "→" in t.get_text()]
    assert rows[0].startswith("  0  127.0.0.1:54500 → 127.0.0.1:48579  refused")
    assert rows[1].startswith("▶ 1  127.0.0.1:54496 → 127.0.0.1:48579  rst")
    (marks,) = by_gid(ax.lines, "failures-1")
    assert to_hex(marks.get_color()) == style.FAILURE
    assert_legible(figure)
    ids = re.findall(r' id="([^"]+)"', style.save_figure(figure, tmp_path / "overview.svg").read_text())
    assert len(ids) == len(set(ids))


def test_a_connect_that_sent_no_packet_still_gets_a_ladder():
    from tcpteardown.views.overview import draw_overview

    nowhere = Endpoint.parse("192.0.2.1:80")
    connect = SocketCall("client", "connect", T0, T0 + 40_000, -1, "EHOSTUNREACH", 7, 3, None, nowhere)
    close = SocketCall("client", "close", T0 + 50_000, T0 + 52_000, 0, None, 7, 3, None, nowhere)
    recording = Recording(calls=(connect, close), metadata=replace(METADATA, scenario="no-route"))
    figure = draw_ladder(recording, correlate(recording), lang="go")
    assert arrows(figure) == [] and len(failure_marks(figure)) == 1
    assert lifeline_names(figure) == ["client (address unknown)", f"server {nowhere}"]
    assert "no route to host" in " ".join(text_by_gid(figure, "call-phrase-")).replace("\n", " ")
    assert_legible(figure)
    (bar,) = by_gid(draw_overview(recording).axes[0].patches, "connection-")
    assert to_hex(bar.get_facecolor()) == style.ENDING_COLOURS["no-packets"]


# -- one projector screen: every stored capture the notebooks show -----------------

def _notebook_ladders() -> list[tuple[str, Optional[str]]]:
    """(capture, lang) of every ladder the notebooks draw: each stored capture
    without a language (the stepper's), and each `tt.ladder(x, lang=...)` call
    on a `tt.record_or_load("name")` (read from the notebooks' code cells)."""
    import json

    from conftest import REPO

    found = {(path.stem, None) for path in (REPO / "captures" / "linux").glob("*.pcapng")} | {("incident", None)}
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"]
                         if cell["cell_type"] == "code")
        names = dict(re.findall(r'(\w+) = tt\.record_or_load\("([\w-]+)"\)', code))
        for variable, lang in re.findall(r'tt\.ladder\((\w+), lang="(\w+)"\)', code):
            found.add((names[variable], lang))
    return sorted(found, key=lambda pair: (pair[0], pair[1] or ""))


def _stored(name: str) -> Recording:
    from conftest import REPO
    from tcpteardown.formats.bundle import load_recording
    from tcpteardown.formats.evidence import load_evidence

    if name == "incident":  # the capture and the client's log, as notebook 08 loads them
        folder = REPO / "captures" / "linux" / "incident"
        return load_evidence(folder / "capture.pcap", logs=[folder / "client.log"], warn=lambda problem: None)
    return load_recording(REPO / "captures" / "linux" / f"{name}.pcapng")


@pytest.mark.parametrize("name,lang", _notebook_ladders())
def test_a_notebook_ladder_fits_one_projector_screen(name, lang):
    """At 1024x768 a notebook shows about 1000 px across and 700 px under its
    toolbars: the ladder drawn for it is at most that tall there, its text at
    least 11 px, nothing overlapping; what had to be folded is said, and
    full=True still draws every segment."""
    from tcpteardown.views.ladder import (SCREEN_HEIGHT_PX, SCREEN_WIDTH_PX, draw_ladder_on_screen, min_text_px,
                                          shown_height_px)

    recording = _stored(name)
    links = correlate(recording)
    figure = draw_ladder_on_screen(recording, links, lang=lang)
    assert shown_height_px(figure, SCREEN_WIDTH_PX) <= SCREEN_HEIGHT_PX, \
        f"{name} ({lang}): {shown_height_px(figure, SCREEN_WIDTH_PX):.0f} px tall"
    assert min_text_px(figure, SCREEN_WIDTH_PX) >= 11
    assert_legible(figure)
    drawn = len(arrows(figure))
    everything = draw_ladder_on_screen(recording, links, lang=lang, full=True)
    assert len(arrows(everything)) >= drawn
    if len(arrows(everything)) > drawn:
        assert any("folded into" in text for text in text_by_gid(figure, "details"))
        assert text_by_gid(figure, "break-")  # the band, labelled with what it holds


def test_a_log_line_is_drawn_after_its_cause_with_its_clock_as_a_band():
    """Notebook 08's incident: the client's log says recv() failed with
    ECONNRESET, stamped to the millisecond by the application's clock, before
    the RST (frame 7) it is linked to. The ladder draws it just after frame 7
    (as the stepper steps it), its own stamp ± its clock shaded, and says so."""
    recording = _stored("incident")
    links = correlate(recording)
    (link,) = [link for link in links if link.call.source == "log" and link.cause is not None]
    assert link.call.end_ns < link.cause.time_ns and link.cause.frame == 7  # stamped before its cause
    figure = draw_ladder(recording, links)
    ax = the_axes(figure)
    (rst,) = [arrow for arrow in arrows(figure) if arrow.get_gid() == "segment-7"]
    rst_row = rst._posA_posB[0][1]
    (bar,) = [bar for bar in patches(figure, "call-", Rectangle)]
    assert bar.get_y() > rst_row, f"the log call (row {bar.get_y():.2f}) is drawn above its cause ({rst_row:.2f})"
    (band,) = patches(figure, "clock-band-", Rectangle)
    assert band.get_height() > 0 and band.get_y() < rst_row  # its own stamp lies before the RST
    (note,) = text_by_gid(figure, "call-clock-")
    assert "another clock" in note and "frame 7" in note.replace("\n", " ") and "±1 ms" in note
    assert any("another clock" in text for text in text_by_gid(figure, "details"))
    (connector,) = connectors(figure)
    start, end = connector._posA_posB
    assert start[1] < end[1]  # from the cause down to the call, never up
    assert_legible(figure)
    assert ax.get_legend() is not None
