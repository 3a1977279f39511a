"""One recording reduced to what a diff compares: the chosen connection, roles,
relative numbers, times from the first SYN, the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ...model import Recording, SocketCall, TcpFlags

from ..relative import relative_numbers

from ..tcpstate import Connection, connections, infer_states, state_at
from .vocabulary import (
    CallStep,
    SegmentStep,
    SideSummary,
    _LAST_STATE_NS,
)

# -- normalising one recording ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Normalised:
    segments: tuple[SegmentStep, ...]
    calls: tuple[CallStep, ...]
    summary: SideSummary
    # role -> the states it went through, consecutive repeats removed, with relative times.
    state_paths: tuple[tuple[str, tuple[tuple[int, str], ...]], ...] = ()

    def path(self, role: str) -> tuple[tuple[int, str], ...]:
        return dict(self.state_paths).get(role, ())


def pick_connection(recording: Recording, choice: Union[None, int, str] = None) -> Optional[Connection]:
    """The connection to diff, chosen by `analysis.connections.select_connection`
    (a 1-based number, ADDR:PORT, :PORT or a 4-tuple; by default the connection
    of the first failing call, else the first). None when the recording has no
    segments; UserError, listing the connections, when `choice` names none."""
    from ...errors import UserError
    from ..connections import connections as views, parse_conn, select_connection

    with_packets = [view for view in views(recording) if view.connection is not None]
    if not with_packets:
        if choice is not None:
            parse_conn(choice)  # a malformed choice is said as such
            raise UserError(f"cannot pick connection {choice}: the recording has no TCP segments")
        return None
    return select_connection(with_packets, choice).connection


def _in_time(conn: Connection, call: SocketCall) -> bool:
    return conn.next_start_ns is None or call.start_ns < conn.next_start_ns


def _calls_of(recording: Recording, conn: Optional[Connection], all_conns: int) -> list[tuple[int, SocketCall]]:
    chosen = []
    for index, call in enumerate(recording.calls):
        ends = {e for e in (call.local, call.remote) if e is not None}
        if conn is None or (not ends and all_conns <= 1):
            chosen.append((index, call))
        elif ends and ends <= conn.key and _in_time(conn, call):
            chosen.append((index, call))
    return chosen


def normalise(recording: Recording, connection: Union[None, int, str] = None, *, label: str = "") -> Normalised:
    """Steps of one recording with roles, numbers and times made relative."""
    conn = pick_connection(recording, connection)
    all_conns = len(connections(recording)) if recording.segments else 0
    calls = _calls_of(recording, conn, all_conns)
    origin = _origin(conn, calls)
    segments: tuple[SegmentStep, ...] = ()
    states_source = None
    paths: tuple = ()
    if conn is not None:
        segments, states_source, paths = _segment_steps(recording, conn, origin)
    call_steps = tuple(
        CallStep(index=index, time_ns=call.start_ns - origin, end_ns=call.end_ns - origin,
                 side=_side_of(call, conn), op=call.op, outcome=call.outcome, text=call.text)
        for index, call in sorted(calls, key=lambda pair: (pair[1].start_ns, pair[1].end_ns)))
    summary = SideSummary(
        label=label or recording.metadata.scenario or recording.metadata.source_file or "",
        os=recording.metadata.os,
        client=conn.client if conn else None, server=conn.server if conn else None,
        connection=conn.index + 1 if conn else None, connections=all_conns,
        roles_known=conn.roles_known if conn else True, states_source=states_source,
        segments=len(segments), calls=len(call_steps))
    return Normalised(segments, call_steps, summary, paths)


def _origin(conn: Optional[Connection], calls) -> int:
    from ..origin import time_origin  # every view's zero: the first SYN

    origin = time_origin(conn.segments if conn is not None else (), [call for _, call in calls])
    return origin if origin is not None else 0


def _segment_steps(recording: Recording, conn: Connection, origin: int) -> tuple:
    from ..tcpstate import states_source

    numbers = relative_numbers(conn.segments)
    timelines = infer_states(recording, conn)
    client_line = timelines.get(conn.client, ())
    server_line = timelines.get(conn.server, ())
    steps = []
    for index, seg in enumerate(conn.segments):
        rel_seq, rel_ack = numbers[seg.frame]
        # "The state this segment left": sampled halfway to the next segment,
        # so a kernel event stamped a little before or after its packet reads
        # the same in every run.
        later = conn.segments[index + 1].time_ns if index + 1 < len(conn.segments) else seg.time_ns + _LAST_STATE_NS
        after = seg.time_ns + max(later - seg.time_ns, 0) // 2
        steps.append(SegmentStep(
            frame=seg.frame, time_ns=seg.time_ns - origin,
            sender="client" if seg.src == conn.client else "server",
            flags=TcpFlags(int(seg.flags)), payload_len=seg.payload_len, rel_seq=rel_seq, rel_ack=rel_ack,
            options=tuple(seg.options), ipv6=seg.src.is_ipv6, reset_reason=seg.reset_reason,
            states=(state_at(client_line, after), state_at(server_line, after))))
    paths = tuple((role, _path(line, origin)) for role, line in (("client", client_line), ("server", server_line)))
    return tuple(steps), states_source(recording, conn), paths


def _path(timeline, origin: int) -> tuple[tuple[int, str], ...]:
    path: list[tuple[int, str]] = []
    for when, state in timeline:
        if not path or path[-1][1] != state:
            path.append((when - origin, state))
    return tuple(path)


def _side_of(call: SocketCall, conn: Optional[Connection]) -> str:
    """The call's side by the one rule (`analysis.connections.side_of`), else its recorded role."""
    from ..connections import side_of

    found = side_of(call, conn.client, conn.server) if conn is not None else None
    return found or call.role
