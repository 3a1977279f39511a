"""The census JSON contract (DESIGN.md): `{"file", "packets", "problems", "summary", "listed", "connections"}`.

`connection_json` is the one definition of a connection's object;
`write_census_json` streams the whole document, one connection per line,
so a census of 100,000 connections never holds its JSON in memory: it
formats a few thousand connections at a time with numpy string operations
(a dict and json.dumps per connection was most of the time), or one by
one for a --top selection. All three give the same objects (a test checks
it on the corpus). Times are seconds written exactly from integer
nanoseconds ("1700000000.123456789"), so every path gives the same number.
"""

from __future__ import annotations

import json
from typing import Iterator, Optional, Sequence, TextIO

import numpy as np
from numpy.dtypes import StringDType

__all__ = ["connection_json", "write_census_json", "seconds_text"]

STRING = StringDType()


CHUNK = 16384  # connections formatted at once


def seconds_text(ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds."""
    sign = "-" if ns < 0 else ""
    whole, fraction = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{whole}.{fraction:09d}"


def _seconds(ns: Optional[int]) -> Optional[float]:
    return None if ns is None else float(seconds_text(ns))


def connection_json(connection) -> dict:
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
    }


def _line(row) -> str:
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
            f'"rst_by":[{",".join(chr(34) + side + chr(34) for side in rst_by)}]}}')


def _seconds_texts(ns: np.ndarray) -> np.ndarray:
    whole, fraction = np.divmod(np.abs(ns), 1_000_000_000)
    text = whole.astype(STRING) + "." + np.strings.zfill(fraction.astype(STRING), 9)
    return np.where(ns < 0, "-" + text, text)


def _joined(owner: np.ndarray, texts: np.ndarray, count: int) -> np.ndarray:
    """Per connection 0..count-1, its `texts` joined by commas (`owner`: each text's connection, ascending)."""
    joined = np.full(count, "", dtype=STRING)
    if not len(owner):
        return joined
    rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
    many = np.unique(owner[rank >= 64])  # a few connections with very many RSTs: joined one by one
    if len(many):
        for conn in many.tolist():
            joined[conn] = ",".join(texts[owner == conn].tolist())
        keep = ~np.isin(owner, many)
        owner, texts, rank = owner[keep], texts[keep], rank[keep]
    for k in range(int(rank.max()) + 1 if len(rank) else 0):
        pick = rank == k
        who = owner[pick]
        joined[who] = (joined[who] + ",") + texts[pick] if k else texts[pick]
    return joined


def _chunk_lines(table: dict) -> np.ndarray:
    """The JSON object of each connection in `Census.table()` (StringDType array)."""
    count = len(table["stream"])
    text = {name: table[name].astype(STRING) for name in (
        "stream", "packets", "bytes_client", "bytes_server", "first_frame", "last_frame")}
    ended = table["end_kind"] != 3
    handshake = np.array(['"complete"', '"syn-only"', '"midstream"'], dtype=STRING)[table["handshake"]]
    kind = np.array(['"fin"', '"rst"', '"refused"', '"open"'], dtype=STRING)[table["end_kind"]]
    by = np.where(ended, np.where(table["ended_by_client"], '"client"', '"server"'), "null")
    end_frame = np.where(ended, table["end_frame"].astype(STRING), "null")
    end_time = np.where(ended, _seconds_texts(table["end_time"]), "null")
    frames, codes, offsets = table["events"]
    owner = np.repeat(np.arange(count), np.diff(offsets))
    frame_text = frames.astype(STRING)
    lists = {}
    for name, mask in (("fin", codes == 0), ("rst", (codes == 1) | (codes == 2)), ("syn", codes == 3)):
        lists[name] = _joined(owner[mask], frame_text[mask], count)
    rst = (codes == 1) | (codes == 2)
    sides = np.where(codes[rst] == 1, '"client"', '"server"').astype(STRING)
    lists["rst_by"] = _joined(owner[rst], sides, count)
    return ('{"stream":' + text["stream"] + ',"client":"' + table["client"] + '","server":"' + table["server"]
            + '","handshake":' + handshake + ',"ended":' + kind + ',"ended_by":' + by
            + ',"conn_state":"' + table["conn_state"] + '","history":"' + table["history"]
            + '","start":' + _seconds_texts(table["start"]) + ',"end":' + _seconds_texts(table["end"])
            + ',"end_time":' + end_time + ',"duration":' + _seconds_texts(table["end"] - table["start"])
            + ',"packets":' + text["packets"] + ',"bytes":{"client_to_server":' + text["bytes_client"]
            + ',"server_to_client":' + text["bytes_server"] + '},"frames":{"first":' + text["first_frame"]
            + ',"last":' + text["last_frame"] + ',"end":' + end_frame + ',"rst":[' + lists["rst"]
            + '],"fin":[' + lists["fin"] + '],"syn_retransmissions":[' + lists["syn"] + ']},"rst_by":['
            + lists["rst_by"] + "]}")


def _lines(result, indices: Optional[list]) -> Iterator[str]:
    if indices is None and result.exact_times:
        for lo in range(0, len(result), CHUNK):
            yield from _chunk_lines(result.table(lo, min(lo + CHUNK, len(result)))).tolist()
    else:  # a --top selection, or garbage times beyond int64: one at a time
        for row in result.rows(indices):
            yield _line(row)


def write_census_json(result, path: str, problems: Sequence[str], indices: Optional[list], out: TextIO) -> None:
    """The whole document to `out`, a chunk of connections at a time (`indices`: which, None for all)."""
    listed = len(result) if indices is None else len(indices)
    head = {"file": path, "packets": result.packets, "problems": list(problems), "summary": result.summary(),
            "listed": listed}
    out.write(json.dumps(head)[:-1] + ',\n"connections":[')
    separator = "\n"
    chunk = []
    for line in _lines(result, indices):
        chunk.append(separator + line)
        separator = ",\n"
        if len(chunk) >= 4096:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk) + "\n]}\n")
