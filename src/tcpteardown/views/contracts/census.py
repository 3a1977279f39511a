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
from .rows import INT, INT_LIST, LITERAL, SECONDS, TEXT, TEXT_LIST, format_rows, seconds_text

__all__ = ["connection_json", "write_census_json", "seconds_text"]

CHUNK = 16384  # connections formatted at once


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


# One connection's object. The "shape" (handshake, ended, ended_by, conn_state, history:
# few distinct values) is one word per distinct value; "predicted" one per history.
_SHAPE = '"handshake":"%s","ended":"%s","ended_by":%s,"conn_state":"%s","history":"%s",'
_HANDSHAKES = ("complete", "syn-only", "midstream")
_ENDS = ("fin", "rst", "refused", "open")
_OPEN = 3


def _chunk_layout(table: dict, os_name: str = "Linux") -> tuple:
    """The `rows` layout of the JSON object of each connection in `Census.table()`."""
    kind = table["end_kind"]
    count = len(kind)
    ended = kind != _OPEN
    by = np.where(ended, np.where(table["ended_by_client"], 1, 2), 0)
    history_index, histories = table["history"], table["histories"]
    state_index, states = table["conn_state"], table["conn_states"]
    shape_key = (((table["handshake"].astype(np.int64) * 4 + kind) * 3 + by) * len(states) + state_index) \
        * len(histories) + history_index
    keys, shape_index = np.unique(shape_key, return_inverse=True)
    by_texts = ("null", '"client"', '"server"')
    shapes = []
    for key in keys.tolist():
        rest, h = divmod(key, len(histories))
        rest, st = divmod(rest, len(states))
        rest, b = divmod(rest, 3)
        hs, k = divmod(rest, 4)
        shapes.append(_SHAPE % (_HANDSHAKES[hs], _ENDS[k], by_texts[b], states[st], histories[h]))
    frames, codes, offsets = table["events"]
    owners = np.repeat(np.arange(count), np.diff(offsets))
    rst = (codes == 1) | (codes == 2)
    fin, syn = codes == 0, codes == 3

    def offsets_of(mask):
        return np.concatenate(([0], np.cumsum(np.bincount(owners[mask], minlength=count))))

    rst_offsets = offsets_of(rst)
    open_rows = None if ended.all() else ~ended
    return (
        (LITERAL, '{"stream":'), (INT, table["stream"], None),
        (LITERAL, ',"client":"'), (TEXT, table["client_host"], table["hosts"]), (LITERAL, ":"), (INT, table["client_port"], None),
        (LITERAL, '","server":"'), (TEXT, table["server_host"], table["hosts"]), (LITERAL, ":"), (INT, table["server_port"], None),
        (LITERAL, '",'), (TEXT, shape_index.reshape(-1), shapes),
        (LITERAL, '"start":'), (SECONDS, table["start"], None),
        (LITERAL, ',"end":'), (SECONDS, table["end"], None),
        (LITERAL, ',"end_time":'), (SECONDS, table["end_time"], open_rows),
        (LITERAL, ',"duration":'), (SECONDS, table["end"] - table["start"], None),
        (LITERAL, ',"packets":'), (INT, table["packets"], None),
        (LITERAL, ',"bytes":{"client_to_server":'), (INT, table["bytes_client"], None),
        (LITERAL, ',"server_to_client":'), (INT, table["bytes_server"], None),
        (LITERAL, '},"frames":{"first":'), (INT, table["first_frame"], None),
        (LITERAL, ',"last":'), (INT, table["last_frame"], None),
        (LITERAL, ',"end":'), (INT, table["end_frame"], open_rows),
        (LITERAL, ',"rst":['), (INT_LIST, rst_offsets, frames[rst], ","),
        (LITERAL, '],"fin":['), (INT_LIST, offsets_of(fin), frames[fin], ","),
        (LITERAL, '],"syn_retransmissions":['), (INT_LIST, offsets_of(syn), frames[syn], ","),
        (LITERAL, ']},"rst_by":['), (TEXT_LIST, rst_offsets, (codes[rst] == 2).astype(np.int64),
                                     ('"client"', '"server"'), ","),
        (LITERAL, '],"predicted":'), (TEXT, history_index, [_predicted_text(h, os_name) for h in histories]),
        (LITERAL, "}"),
    )


def _chunks(result, indices: Optional[list], os_name: str) -> Iterator[bytes]:
    """The connections' objects, a few thousand at a time, each block's rows joined by ",\n"."""
    if indices is None and result.exact_times:
        for lo in range(0, len(result), CHUNK):
            hi = min(lo + CHUNK, len(result))
            yield format_rows(_chunk_layout(result.table(lo, hi), os_name), hi - lo, ",\n")
    else:  # a --top selection, or garbage times beyond int64: formatted one at a time
        chunk = []
        for row in result.rows(indices):
            chunk.append(_line(row, os_name))
            if len(chunk) >= 4096:
                yield ",\n".join(chunk).encode()
                chunk = []
        yield ",\n".join(chunk).encode()


def write_census_json(result, path: str, problems: Sequence[str], indices: Optional[list], out: TextIO, *,
                      os_name: str = "Linux") -> None:
    """The whole document to `out`, a chunk of connections at a time (`indices`: which, None for all);
    each connection's "predicted" follows `os_name`'s kernel rules. A text stream with a binary
    buffer (stdout, a file) gets the bytes as they are; another (StringIO) gets them decoded."""
    listed = len(result) if indices is None else len(indices)
    head = {"file": path, "packets": result.packets, "problems": list(problems), "summary": result.summary(),
            "listed": listed, "predicted_with": f"{os_name} rules"}
    out.write(json.dumps(head)[:-1] + ',\n"connections":[')
    binary = getattr(out, "buffer", None)
    if binary is not None:
        out.flush()
    separator = b"\n"
    for block in _chunks(result, indices, os_name):
        if block:
            if binary is not None:
                binary.write(separator)
                binary.write(block)
            else:
                out.write((separator + block).decode())
            separator = b",\n"
    if binary is not None:
        binary.flush()
    out.write("\n]}\n")
