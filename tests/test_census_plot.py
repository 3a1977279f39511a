"""The census plot and the overview stay one readable page at any number of
connections: one dot per connection for a few dozen, the aggregate (ends by
kind and by side over time, failing connections named) above that."""

from __future__ import annotations

import io

from PIL import Image

from tcpteardown.analysis.census import census
from tcpteardown.model import Endpoint, Metadata, Recording, Segment, SocketCall, TcpFlags as F
from tcpteardown.views.census_plot import AGGREGATE_ABOVE, census_figure
from tcpteardown.views.overview import draw_overview

SERVER = Endpoint("10.9.0.1", 443)


def many_connections(count: int) -> list[Segment]:
    """`count` connections, one every 10 µs: refused, reset by the server, or closed with FIN."""
    segments = []
    rst_ack, syn_ack, fin_ack = F.RST | F.ACK, F.SYN | F.ACK, F.FIN | F.ACK  # an IntFlag's | builds a member each time
    for n in range(count):
        client = Endpoint(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 40000 + n % 20000)
        t = 1_700_000_000_000_000_000 + n * 10_000
        frame = len(segments) + 1
        segments.append(Segment(frame, t, client, SERVER, F.SYN, n, 0, 0, 0))
        if n % 3 == 0:
            segments.append(Segment(frame + 1, t + 5, SERVER, client, rst_ack, 0, n + 1, 0, 0))
        elif n % 3 == 1:
            segments.append(Segment(frame + 1, t + 5, SERVER, client, syn_ack, 7, n + 1, 0, 0))
            segments.append(Segment(frame + 2, t + 9, SERVER, client, F.RST, 8, 0, 0, 0))
        else:
            segments.append(Segment(frame + 1, t + 5, client, SERVER, fin_ack, n + 1, 0, 0, 0))
    return segments


def png_size(figure) -> tuple[int, int]:
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return Image.open(io.BytesIO(out.getvalue())).size


def test_the_overview_of_100k_connections_is_one_bounded_page():
    segments = many_connections(100_000)
    failed = SocketCall(role="client", pid=1, fd=3, op="connect", local=None, remote=SERVER,
                        start_ns=segments[0].time_ns, end_ns=segments[1].time_ns, result=-1, errno="ECONNREFUSED")
    recording = Recording(segments=tuple(segments), calls=(failed,), metadata=Metadata(scenario="load"))
    figure = draw_overview(recording, highlight=3)
    width, height = png_size(figure)
    assert width <= 1100 and height <= 800, (width, height)
    text = "\n".join(t.get_text() for t in figure.findobj(match=lambda a: hasattr(a, "get_text")))
    assert "100,000 TCP connections (33,333 fin, 33,333 rst, 33,334 refused)" in text
    assert "stream 0: 10.0.0.0:40000 → 10.9.0.1:443 refused by server" in text
    assert "1 failed socket calls (X)" in text and "connection 3 is drawn as a ladder" in text


def test_the_census_plot_has_the_same_size_for_ten_and_for_thousands():
    few = census(many_connections(10))
    many = census(many_connections(5_000))
    assert len(few) <= AGGREGATE_ABOVE < len(many)
    assert png_size(census_figure(few)) == (1000, 500)
    assert png_size(census_figure(many)) == (1000, 650)
    by_side = many.by_side()
    legends = [a.get_legend() for a in census_figure(many).axes if a.get_legend() is not None]
    labels = {t.get_text() for legend in legends for t in legend.get_texts()}
    assert f"rst by server ({by_side['rst']['server']:,})" in labels
    assert f"refused by server ({by_side['refused']['server']:,})" in labels
