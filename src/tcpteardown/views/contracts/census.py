"""The census JSON contract (DESIGN.md): `{"file", "packets", "problems", "summary", "listed", "connections"}`.

`connection_json` is the definition of a connection's object, as a dict;
`write_census_json` streams the whole document, one connection per line, so
a census of 100,000 connections never holds its JSON in memory. It writes
the same object from columns, a few thousand connections at a time, through
one row layout (`_chunk_layout`, written by `rows.format_rows`); only times
beyond int64 (garbage timestamps) go through the dict, one at a time. A test
checks on the corpus that both give the dict's objects. Times are seconds
written exactly from integer nanoseconds ("1700000000.123456789").
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Iterator, Optional, Sequence, TextIO

import numpy as np

from ...analysis.census import END_KINDS, HANDSHAKES
from ...analysis.predict import predicted_from_history
from ...prefetch import prefetched
from ...schemas import tag
from .rows import INT, INT_LIST, LITERAL, SECONDS, TEXT, TEXT_LIST, format_rows, seconds_text

__all__ = ["census_json", "connection_json", "write_census_json", "seconds_text"]

CHUNK = 4096  # connections formatted at once: see _chunks


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


# One connection's object. The "shape" (handshake, ended, ended_by, conn_state, history:
# few distinct values) is one word per distinct value; "predicted" one per history.
_SHAPE = '"handshake":"%s","ended":"%s","ended_by":%s,"conn_state":"%s","history":"%s",'
_OPEN = END_KINDS.index("open")


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
        shapes.append(_SHAPE % (HANDSHAKES[hs], END_KINDS[k], by_texts[b], states[st], histories[h]))
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
    """The connections' objects, a few thousand at a time, each block's rows joined by ",\n".

    CHUNK keeps a block near 2 MB: malloc then reuses the freed blocks' memory, where
    blocks of 8 MB were each mapped afresh (16,000 page faults, ~0.1 s, on 130,000
    connections; fresh pages are dear on a VM)."""
    if result.exact_times:
        count = len(result) if indices is None else len(indices)
        for lo in range(0, count, CHUNK):
            hi = min(lo + CHUNK, count)
            rows = slice(lo, hi) if indices is None else np.asarray(indices[lo:hi], dtype=np.int64)
            yield format_rows(_chunk_layout(result.table(rows), os_name), hi - lo, ",\n")
    else:  # garbage times beyond int64 (Python ints): the dict, one connection at a time
        for connection in result.iter_connections(indices):
            yield json.dumps(connection_json(connection, os_name), separators=(",", ":")).encode()


def _head(result, path: str, problems: Sequence[str], indices: Optional[list], os_name: str) -> dict:
    listed = len(result) if indices is None else len(indices)
    return {"schema": tag("census"), "file": path, "packets": result.packets, "problems": list(problems),
            "summary": result.summary(), "listed": listed, "predicted_with": f"{os_name} rules"}


def census_json(result, path: str, problems: Sequence[str], indices: Optional[list], *,
                os_name: str = "Linux") -> dict:
    """The whole document as a dict (the Python API's; the CLI streams it with write_census_json)."""
    return {**_head(result, path, problems, indices, os_name),
            "connections": [connection_json(c, os_name) for c in result.iter_connections(indices)]}


def write_census_json(result, path: str, problems: Sequence[str], indices: Optional[list], out: TextIO, *,
                      os_name: str = "Linux") -> None:
    """The whole document to `out`, a chunk of connections at a time (`indices`: which, None for all);
    each connection's "predicted" follows `os_name`'s kernel rules. A text stream with a binary
    buffer (stdout, a file) gets the bytes as they are; another (StringIO) gets them decoded."""
    head = _head(result, path, problems, indices, os_name)
    out.write(json.dumps(head)[:-1] + ',\n"connections":[')
    binary = getattr(out, "buffer", None)
    if binary is not None:
        out.flush()
    separator = b"\n"
    for block in prefetched(_chunks(result, indices, os_name), name="tcpteardown-json"):
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
