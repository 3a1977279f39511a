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


# One connection's object, with its fields in two kinds: the "shape" (handshake, ended,
# ended_by, conn_state, history: few distinct values, formatted once per value) and the
# numbers. Times go in as (whole seconds, nanoseconds) when the chunk has no negative
# time and every connection in it ended (half the work of formatting them apart),
# else as text.
_OBJECT = ('{"stream":%%d,"client":"%%s:%%d","server":"%%s:%%d",%%s,%s,"packets":%%d,'
           '"bytes":{"client_to_server":%%d,"server_to_client":%%d},'
           '"frames":{"first":%%d,"last":%%d,"end":%%s,"rst":[%%s],"fin":[%%s],"syn_retransmissions":[%%s]},'
           '"rst_by":[%%s],"predicted":%%s}')
_WITH_TIME_NUMBERS = _OBJECT % '"start":%d.%09d,"end":%d.%09d,"end_time":%d.%09d,"duration":%d.%09d'
_WITH_TIME_TEXTS = _OBJECT % '"start":%s,"end":%s,"end_time":%s,"duration":%s'
_SHAPE = '"handshake":"%s","ended":"%s","ended_by":%s,"conn_state":"%s","history":"%s"'
_HANDSHAKES = ("complete", "syn-only", "midstream")
_ENDS = ("fin", "rst", "refused", "open")
_OPEN = 3


def _seconds_texts(ns: np.ndarray) -> list:
    """Exact decimal seconds of integer nanoseconds, as `seconds_text`, for a column."""
    whole, fraction = np.divmod(np.abs(ns), 1_000_000_000)
    texts = list(map("%d.%09d".__mod__, zip(whole.tolist(), fraction.tolist())))
    for row in np.flatnonzero(ns < 0).tolist():
        texts[row] = "-" + texts[row]
    return texts


def _joined(owners: np.ndarray, texts: np.ndarray, count: int, separator: str = ",") -> list:
    """For each of `count` connections, its `texts` (in order, `owners` sorted) joined with
    `separator`; "" for a connection without any. Built a rank at a time over all owners
    (most connections have one or two events), then one by one for the few with many."""
    from numpy.dtypes import StringDType

    joined = np.full(count, "", dtype=StringDType())
    if not len(owners):
        return joined.tolist()
    starts = np.ones(len(owners), dtype=bool)
    starts[1:] = owners[1:] != owners[:-1]
    rank = np.arange(len(owners)) - np.maximum.accumulate(np.where(starts, np.arange(len(owners)), 0))
    texts = texts.astype(StringDType())
    first = rank == 0
    joined[owners[first]] = texts[first]
    for k in range(1, 8):
        at = rank == k
        if not at.any():
            return joined.tolist()
        joined[owners[at]] = np.strings.add(np.strings.add(joined[owners[at]], separator), texts[at])
    result = joined.tolist()
    for owner, text in zip(owners[rank >= 8].tolist(), texts[rank >= 8].tolist()):
        result[owner] = result[owner] + separator + text
    return result


def _event_lists(events, count: int) -> tuple[list, list, list, list]:
    """Per connection: its RST, FIN and SYN-retransmission frames and the RST senders, each
    as the inside of a JSON list (events sorted by connection and frame)."""
    frames, codes, offsets = events
    owners = np.repeat(np.arange(count), np.diff(offsets))
    rst = (codes == 1) | (codes == 2)
    lists = []
    for mask in (rst, codes == 0, codes == 3):
        lists.append(_joined(owners[mask], frames[mask], count))
    lists.append(_joined(owners[rst], np.where(codes[rst] == 1, '"client"', '"server"'), count))
    return tuple(lists)


def _chunk_lines(table: dict, os_name: str = "Linux") -> list[str]:
    """The JSON object of each connection in `Census.table()`: every column is turned into
    a Python list of its final text or number, then one %-format per connection, run by
    `map` (no Python code per connection; a dict and json.dumps each was most of the time)."""
    kind = table["end_kind"]
    count = len(kind)
    ended = kind != _OPEN
    by = np.where(ended, np.where(table["ended_by_client"], 1, 2), 0)
    history = table["history"]
    shape_key = ((table["handshake"].astype(np.int64) * 4 + kind) * 3 + by)
    histories, history_index = np.unique(history, return_inverse=True)
    history_index = history_index.reshape(-1)
    states, state_index = np.unique(table["conn_state"], return_inverse=True)
    keys, shape_index = np.unique((shape_key * len(states) + state_index.reshape(-1)) * len(histories)
                                  + history_index, return_inverse=True)
    history_texts, state_texts = histories.tolist(), states.tolist()
    by_texts = ("null", '"client"', '"server"')
    shapes = []
    for key in keys.tolist():
        rest, h = divmod(key, len(histories))
        rest, st = divmod(rest, len(states))
        rest, b = divmod(rest, 3)
        hs, k = divmod(rest, 4)
        shapes.append(_SHAPE % (_HANDSHAKES[hs], _ENDS[k], by_texts[b], state_texts[st], history_texts[h]))
    shape = np.array(shapes, dtype=object)[shape_index.reshape(-1)].tolist()
    predicted = np.array([_predicted_text(h, os_name) for h in history_texts], dtype=object)[history_index].tolist()
    start, end, end_time = table["start"], table["end"], table["end_time"]
    duration = end - start
    end_frames = table["end_frame"].tolist()
    opened = np.flatnonzero(~ended).tolist()
    for row in opened:
        end_frames[row] = "null"
    if opened or (start < 0).any() or (end < 0).any() or (end_time[ended] < 0).any() or (duration < 0).any():
        template, times = _WITH_TIME_TEXTS, [_seconds_texts(start), _seconds_texts(end), _seconds_texts(end_time),
                                             _seconds_texts(duration)]
        for row in opened:
            times[2][row] = "null"
    else:
        template = _WITH_TIME_NUMBERS
        times = [part.tolist() for ns in (start, end, end_time, duration) for part in np.divmod(ns, 1_000_000_000)]
    rst, fin, syn, rst_by = _event_lists(table["events"], count)
    columns = (table["stream"].tolist(), table["client_host"].tolist(), table["client_port"].tolist(),
               table["server_host"].tolist(), table["server_port"].tolist(), shape, *times,
               table["packets"].tolist(), table["bytes_client"].tolist(), table["bytes_server"].tolist(),
               table["first_frame"].tolist(), table["last_frame"].tolist(), end_frames, rst, fin, syn, rst_by,
               predicted)
    return list(map(template.__mod__, zip(*columns)))


def _chunks(result, indices: Optional[list], os_name: str) -> Iterator[list]:
    """The connections' lines, a few thousand at a time."""
    if indices is None and result.exact_times:
        for lo in range(0, len(result), CHUNK):
            yield _chunk_lines(result.table(lo, min(lo + CHUNK, len(result))), os_name)
    else:  # a --top selection, or garbage times beyond int64: formatted one at a time
        chunk = []
        for row in result.rows(indices):
            chunk.append(_line(row, os_name))
            if len(chunk) >= 4096:
                yield chunk
                chunk = []
        yield chunk


def write_census_json(result, path: str, problems: Sequence[str], indices: Optional[list], out: TextIO, *,
                      os_name: str = "Linux") -> None:
    """The whole document to `out`, a chunk of connections at a time (`indices`: which, None for all);
    each connection's "predicted" follows `os_name`'s kernel rules."""
    listed = len(result) if indices is None else len(indices)
    head = {"file": path, "packets": result.packets, "problems": list(problems), "summary": result.summary(),
            "listed": listed, "predicted_with": f"{os_name} rules"}
    out.write(json.dumps(head)[:-1] + ',\n"connections":[')
    separator = "\n"
    for chunk in _chunks(result, indices, os_name):
        if chunk:
            out.write(separator + ",\n".join(chunk))
            separator = ",\n"
    out.write("\n]}\n")
