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


def _number(value) -> str:
    return "null" if value is None else repr(value)


def _line(c) -> str:
    """connection_json(c) as compact JSON, formatted directly (json.dumps per connection is the slow part).
    Endpoints, history and the vocabulary hold no character JSON would escape."""
    ended_by = "null" if c.ended_by is None else f'"{c.ended_by}"'
    end_time = "null" if c.end_time_ns is None else repr(c.end_time_ns / 1e9)
    rst_by = ",".join(f'"{side}"' for side in c.rst_by)
    return (f'{{"stream":{c.stream},"client":"{c.client}","server":"{c.server}","handshake":"{c.handshake}",'
            f'"ended":"{c.end}","ended_by":{ended_by},"conn_state":"{c.conn_state}","history":"{c.history}",'
            f'"start":{c.start_ns / 1e9!r},"end":{c.end_ns / 1e9!r},"end_time":{end_time},'
            f'"duration":{(c.end_ns - c.start_ns) / 1e9!r},"packets":{c.packets},'
            f'"bytes":{{"client_to_server":{c.bytes_client},"server_to_client":{c.bytes_server}}},'
            f'"frames":{{"first":{c.first_frame},"last":{c.last_frame},"end":{_number(c.end_frame)},'
            f'"rst":[{",".join(map(str, c.rst_frames))}],"fin":[{",".join(map(str, c.fin_frames))}],'
            f'"syn_retransmissions":[{",".join(map(str, c.syn_retransmissions))}]}},"rst_by":[{rst_by}]}}')


def write_census_json(result, path: str, problems: Sequence[str], indices: Optional[list], out: TextIO) -> None:
    """The whole document to `out`, one connection at a time (`indices`: which, None for all)."""
    listed = len(result) if indices is None else len(indices)
    head = {"file": path, "packets": result.packets, "problems": list(problems), "summary": result.summary(),
            "listed": listed}
    out.write(json.dumps(head)[:-1] + ',\n"connections":[')
    separator = "\n"
    chunk = []
    for connection in result.iter_connections(indices):
        chunk.append(separator + _line(connection))
        separator = ",\n"
        if len(chunk) >= 1000:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk) + "\n]}\n")
