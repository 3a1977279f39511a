"""The census JSON contract (DESIGN.md): `{"file", "packets", "problems", "summary", "listed", "connections"}`.

`connection_json` is the one definition of a connection's object;
`write_census_json` streams the whole document, one connection per line,
so a census of 100,000 connections never holds its JSON in memory. Both
give the same objects (a test checks it on the corpus).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence, TextIO

__all__ = ["connection_json", "write_census_json"]


def _seconds(ns: Optional[int]) -> Optional[float]:
    return None if ns is None else ns / 1e9


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
        "duration": connection.duration_ns / 1e9,
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
            f'"conn_state":"{conn_state}","history":"{history}","start":{start / 1e9!r},"end":{end / 1e9!r},'
            f'"end_time":{"null" if end_time is None else repr(end_time / 1e9)},'
            f'"duration":{(end - start) / 1e9!r},"packets":{packets},'
            f'"bytes":{{"client_to_server":{bytes_client},"server_to_client":{bytes_server}}},'
            f'"frames":{{"first":{first},"last":{last},"end":{"null" if end_frame is None else end_frame},'
            f'"rst":[{",".join(map(str, rsts))}],"fin":[{",".join(map(str, fins))}],'
            f'"syn_retransmissions":[{",".join(map(str, retransmissions))}]}},'
            f'"rst_by":[{",".join(chr(34) + side + chr(34) for side in rst_by)}]}}')


def write_census_json(result, path: str, problems: Sequence[str], indices: Optional[list], out: TextIO) -> None:
    """The whole document to `out`, one connection at a time (`indices`: which, None for all)."""
    listed = len(result) if indices is None else len(indices)
    head = {"file": path, "packets": result.packets, "problems": list(problems), "summary": result.summary(),
            "listed": listed}
    out.write(json.dumps(head)[:-1] + ',\n"connections":[')
    separator = "\n"
    chunk = []
    for row in result.rows(indices):
        chunk.append(separator + _line(row))
        separator = ",\n"
        if len(chunk) >= 1000:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk) + "\n]}\n")
