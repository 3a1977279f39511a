"""The census JSON contract (DESIGN.md): `{"file", "packets", "problems", "summary", "listed", "connections"}`.

`connection_json` is the one definition of a connection's object;
`write_census_json` streams the whole document, one connection per line,
so a census of 100,000 connections never holds its JSON in memory: it
formats a few thousand connections at a time from numpy columns turned
into lists (a dict and json.dumps per connection was most of the time),
or one by one for a --top selection. All three give the same objects (a test checks
it on the corpus). Times are seconds written exactly from integer
nanoseconds ("1700000000.123456789"), so every path gives the same number.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Iterator, Optional, Sequence, TextIO

import numpy as np

from ...analysis.predict import predicted_from_history

__all__ = ["connection_json", "write_census_json", "seconds_text"]



CHUNK = 16384  # connections formatted at once


def seconds_text(ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds."""
    sign = "-" if ns < 0 else ""
    whole, fraction = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{whole}.{fraction:09d}"


def _seconds(ns: Optional[int]) -> Optional[float]:
    return None if ns is None else float(seconds_text(ns))


@lru_cache(maxsize=4096)
def _predicted_text(history: str, os_name: str) -> str:
    """The "predicted" member for a history: what each side's next read, write or
    connect returned (`analysis.predict.predicted_from_history`), as JSON text."""
    return json.dumps({side: dict(rows) for side, rows in predicted_from_history(history, os_name)},
                      separators=(",", ":"))


def connection_json(connection, os_name: str = "Linux") -> dict:
    return {
        "stream": connection.stream,
        "client": str(connection.client),
        "server": str(connection.server),
        "handshake": connection.handshake,
        "ended": connection.end,
        "ended_by": connection.ended_by,
        "conn_state": connection.conn_state,
        "history": connection.history,
        "start": _seconds(connection.start_ns),
        "end": _seconds(connection.end_ns),
        "end_time": _seconds(connection.end_time_ns),
        "duration": _seconds(connection.duration_ns),
        "packets": connection.packets,
        "bytes": {"client_to_server": connection.bytes_client, "server_to_client": connection.bytes_server},
        "frames": {
            "first": connection.first_frame,
            "last": connection.last_frame,
            "end": connection.end_frame,
            "rst": list(connection.rst_frames),
            "fin": list(connection.fin_frames),
            "syn_retransmissions": list(connection.syn_retransmissions),
        },
        "rst_by": list(connection.rst_by),
        "predicted": json.loads(_predicted_text(connection.history, os_name)),
    }


def _line(row, os_name: str = "Linux") -> str:
    """connection_json of one `Census.rows()` tuple as compact JSON, formatted directly
    (a dict and json.dumps per connection are most of the time on 100,000 connections).
    Endpoints, history and the vocabulary hold no character JSON would escape."""
    (stream, client, server, handshake, start, end, first, last, packets, bytes_client, bytes_server, ended,
     ended_by, end_frame, end_time, rsts, fins, rst_by, retransmissions, conn_state, history) = row
    return (f'{{"stream":{stream},"client":"{client}","server":"{server}","handshake":"{handshake}",'
            f'"ended":"{ended}","ended_by":{"null" if ended_by is None else chr(34) + ended_by + chr(34)},'
            f'"conn_state":"{conn_state}","history":"{history}","start":{seconds_text(start)},'
            f'"end":{seconds_text(end)},"end_time":{"null" if end_time is None else seconds_text(end_time)},'
            f'"duration":{seconds_text(end - start)},"packets":{packets},'
            f'"bytes":{{"client_to_server":{bytes_client},"server_to_client":{bytes_server}}},'
            f'"frames":{{"first":{first},"last":{last},"end":{"null" if end_frame is None else end_frame},'
            f'"rst":[{",".join(map(str, rsts))}],"fin":[{",".join(map(str, fins))}],'
            f'"syn_retransmissions":[{",".join(map(str, retransmissions))}]}},'
            f'"rst_by":[{",".join(chr(34) + side + chr(34) for side in rst_by)}],'
            f'"predicted":{_predicted_text(history, os_name)}}}')


_TEMPLATE = ('{"stream":%d,"client":"%s","server":"%s","handshake":"%s","ended":"%s","ended_by":%s,'
             '"conn_state":"%s","history":"%s","start":%s%d.%09d,"end":%s%d.%09d,"end_time":%s,'
             '"duration":%s%d.%09d,"packets":%d,"bytes":{"client_to_server":%d,"server_to_client":%d},'
             '"frames":{"first":%d,"last":%d,"end":%s,"rst":[%s],"fin":[%s],"syn_retransmissions":[%s]},'
             '"rst_by":[%s],"predicted":%s}')
_HANDSHAKES = ("complete", "syn-only", "midstream")
_ENDS = ("fin", "rst", "refused", "open")


def _split_seconds(ns: np.ndarray) -> tuple[list, list, list]:
    """(sign, whole seconds, nanoseconds) lists of integer nanoseconds, for "%s%d.%09d"."""
    whole, fraction = np.divmod(np.abs(ns), 1_000_000_000)
    return np.where(ns < 0, "-", "").tolist(), whole.tolist(), fraction.tolist()


def _event_lists(events, count: int) -> tuple[list, list, list, list]:
    """Per connection: its RST, FIN and SYN-retransmission frames and the RST senders, each
    as the inside of a JSON list; one pass over the events (sorted by connection and frame)."""
    frames, codes, offsets = events
    owners = np.repeat(np.arange(count), np.diff(offsets)).tolist()
    lists = ([""] * count, [""] * count, [""] * count, [""] * count)  # rst, fin, syn, rst_by
    rst, fin, syn, by = lists
    for owner, code, frame in zip(owners, codes.tolist(), frames.astype(str).tolist()):
        target = fin if code == 0 else syn if code == 3 else rst
        target[owner] = f"{target[owner]},{frame}" if target[owner] else frame
        if code in (1, 2):
            side = '"client"' if code == 1 else '"server"'
            by[owner] = f"{by[owner]},{side}" if by[owner] else side
    return lists


def _chunk_lines(table: dict, os_name: str = "Linux") -> list[str]:
    """The JSON object of each connection in `Census.table()`: the columns are turned into
    Python lists once, then one %-format per connection (numpy string concatenation of
    some thirty columns was three times slower)."""
    start, end, end_time = table["start"], table["end"], table["end_time"]
    columns = [table[name].tolist() for name in (
        "stream", "client", "server", "handshake", "end_kind", "ended_by_client", "conn_state", "history",
        "packets", "bytes_client", "bytes_server", "first_frame", "last_frame", "end_frame")]
    times = [*_split_seconds(start), *_split_seconds(end), *_split_seconds(end - start)]
    end_sign, end_whole, end_fraction = _split_seconds(end_time)
    rst, fin, syn, by = _event_lists(table["events"], len(columns[0]))
    lines = []
    for k, ((stream, client, server, handshake, kind, by_client, state, history, packets, bytes_client,
             bytes_server, first, last, end_frame),
            (s_sign, s_whole, s_frac, e_sign, e_whole, e_frac, d_sign, d_whole, d_frac)) in enumerate(
            zip(zip(*columns), zip(*times))):
        ended = kind != 3
        lines.append(_TEMPLATE % (
            stream, client, server, _HANDSHAKES[handshake], _ENDS[kind],
            ('"client"' if by_client else '"server"') if ended else "null", state, history,
            s_sign, s_whole, s_frac, e_sign, e_whole, e_frac,
            f"{end_sign[k]}{end_whole[k]}.{end_fraction[k]:09d}" if ended else "null",
            d_sign, d_whole, d_frac, packets, bytes_client, bytes_server, first, last,
            end_frame if ended else "null", rst[k], fin[k], syn[k], by[k], _predicted_text(history, os_name)))
    return lines


def _lines(result, indices: Optional[list], os_name: str) -> Iterator[str]:
    if indices is None and result.exact_times:
        for lo in range(0, len(result), CHUNK):
            yield from _chunk_lines(result.table(lo, min(lo + CHUNK, len(result))), os_name)
    else:  # a --top selection, or garbage times beyond int64: one at a time
        for row in result.rows(indices):
            yield _line(row, os_name)


def write_census_json(result, path: str, problems: Sequence[str], indices: Optional[list], out: TextIO, *,
                      os_name: str = "Linux") -> None:
    """The whole document to `out`, a chunk of connections at a time (`indices`: which, None for all);
    each connection's "predicted" follows `os_name`'s kernel rules."""
    listed = len(result) if indices is None else len(indices)
    head = {"file": path, "packets": result.packets, "problems": list(problems), "summary": result.summary(),
            "listed": listed, "predicted_with": f"{os_name} rules"}
    out.write(json.dumps(head)[:-1] + ',\n"connections":[')
    separator = "\n"
    chunk = []
    for line in _lines(result, indices, os_name):
        chunk.append(separator + line)
        separator = ",\n"
        if len(chunk) >= 4096:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk) + "\n]}\n")
