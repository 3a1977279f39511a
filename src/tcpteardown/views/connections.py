"""The TCP connections of a recording, as the views need them.

`tcpteardown.analysis.tcpstate.connections` groups the segments and names
the client; this module only adds what a picture needs on top: the socket
calls that belong to each connection and how it ended (`fin`, `rst`,
`refused`, `open`, the census vocabulary), and picks one connection by
4-tuple text or index. A connection only socket calls tell of (a connect
that failed before any packet left) ends in `no-packets`.

Pure: no matplotlib, no I/O. It must never grow into a second connection
tracker: grouping and roles stay in analysis/tcpstate.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ..analysis import tcpstate
from ..errors import UserError
from ..model import Endpoint, Recording, Segment, SocketCall, TcpFlags

__all__ = ["ConnectionView", "connections", "select_connection", "ENDINGS"]

ENDINGS = ("fin", "rst", "refused", "open", "no-packets")


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """One TCP connection, its socket calls and its ending.

    `connection` is tcpstate's when packets were seen; None for a connection
    only socket calls tell of (a connect that failed before any packet left:
    no route, no permission). Then `client` may be None (no local address).
    """

    index: int
    client: Optional[Endpoint]
    server: Endpoint
    calls: tuple[SocketCall, ...]
    ending: str  # one of ENDINGS
    connection: Optional[tcpstate.Connection] = None

    @property
    def segments(self) -> tuple[Segment, ...]:
        return self.connection.segments if self.connection is not None else ()

    @property
    def roles_known(self) -> bool:
        return self.connection.roles_known if self.connection is not None else True

    @property
    def key(self) -> frozenset:
        return frozenset(e for e in (self.client, self.server) if e is not None)

    @property
    def first_failure(self) -> Optional[SocketCall]:
        return next((call for call in self.calls if call.failed), None)

    @property
    def start_ns(self) -> int:
        times = [c.start_ns for c in self.calls]
        if self.connection is not None:
            times.append(self.connection.start_ns)
        return min(times)

    @property
    def end_ns(self) -> int:
        times = [c.end_ns for c in self.calls]
        if self.connection is not None:
            times.append(self.connection.end_ns)
        return max(times)

    def side_of(self, call: SocketCall) -> Optional[str]:
        """``client`` or ``server``: whose lifeline a socket call belongs on."""
        if call.local is not None and call.local == self.client:
            return "client"
        if call.local is None and call.remote == self.server:
            return "client"
        if call.local == self.server or (call.local is None and call.remote == self.client):
            return "server"
        if call.role in ("client", "server"):
            return call.role
        return None

    def __str__(self) -> str:
        return f"{self.client or '?'}-{self.server}"


def connections(recording: Recording) -> list[ConnectionView]:
    """Every connection in `recording` with its calls: those the packets show
    (in order of first segment), then those only socket calls show."""
    found = tcpstate.connections(recording)
    calls = _calls_by_connection(recording.calls, found)
    views = [ConnectionView(conn.index, conn.client, conn.server, tuple(calls.get(conn.index, ())),
                            ending(conn.segments), conn) for conn in found]
    attached = {id(call) for group in calls.values() for call in group}
    return views + _call_only(recording.calls, attached, len(views))


def _call_only(calls, attached, first_index: int) -> list[ConnectionView]:
    """Connections no packet shows: unattached calls grouped by (pid, fd, remote)."""
    groups: dict[tuple, list[SocketCall]] = {}
    for call in calls:
        if id(call) in attached or call.remote is None:
            continue
        groups.setdefault((call.pid, call.fd, call.remote), []).append(call)
    views = []
    for (_pid, _fd, remote), group in groups.items():
        local = next((c.local for c in group if c.local is not None), None)
        views.append(ConnectionView(first_index + len(views), local, remote, tuple(group), "no-packets"))
    return views


def select_connection(found: list[ConnectionView], wanted: Union[None, int, str] = None) -> ConnectionView:
    """The connection `wanted` names: an index, ``"a:1-b:2"`` (either order)
    or one endpoint; by default the one with the first failing call, else
    the first. Raises UserError naming the choices."""
    if not found:
        raise UserError("no TCP connection in this recording (no segments and no socket calls with endpoints)")
    if wanted is None:
        failing = [c for c in found if c.first_failure is not None]
        if failing:
            return min(failing, key=lambda c: c.first_failure.end_ns)
        return found[0]
    if isinstance(wanted, str) and wanted.strip().lstrip("-").isdigit():
        wanted = int(wanted)
    if isinstance(wanted, int):
        if -len(found) <= wanted < len(found):
            return found[wanted]
        raise UserError(f"no connection number {wanted}: this recording has {len(found)} "
                        f"(0 to {len(found) - 1})")
    try:
        ends = [Endpoint.parse(part) for part in wanted.split("-")]
    except ValueError as exc:
        raise UserError(f"--conn {wanted!r}: {exc}; expected an index or "
                        "127.0.0.1:5000-127.0.0.1:8080") from None
    if len(ends) > 2:
        raise UserError(f"--conn {wanted!r}: expected one endpoint or two joined by '-'")
    for connection in found:
        if set(ends) <= connection.key:
            return connection
    choices = ", ".join(str(c) for c in found[:5]) + (" ..." if len(found) > 5 else "")
    raise UserError(f"no connection matches --conn {wanted!r}; connections: {choices}")


# -- helpers ---------------------------------------------------------------------

def ending(segments) -> str:
    """How a connection ended: refused (RST answering a SYN that never got a
    SYN/ACK), rst, fin, or open."""
    established = any(s.is_syn and s.flags & TcpFlags.ACK for s in segments)
    saw_syn = any(s.is_syn for s in segments)
    if any(s.is_rst for s in segments):
        return "rst" if established or not saw_syn else "refused"
    if any(s.is_fin for s in segments):
        return "fin"
    return "open"


def _owner(call: SocketCall, found) -> Optional[int]:
    """The connection a call with endpoints belongs to (a reused 4-tuple: by time)."""
    if call.local is not None and call.remote is not None:
        key = frozenset((call.local, call.remote))
        candidates = [c for c in found if c.key == key]
    else:
        end = call.local or call.remote
        candidates = [c for c in found if end is not None and end in c.key]
        if len({c.key for c in candidates}) != 1:
            return None
    for conn in reversed(candidates):
        if call.end_ns >= conn.start_ns or conn is candidates[0]:
            return conn.index
    return None


def _calls_by_connection(calls, found) -> dict[int, list[SocketCall]]:
    """Attach calls by their endpoints; calls without endpoints follow the
    last call on the same (pid, fd) that had them."""
    attached: dict[int, list[SocketCall]] = {}
    last_by_fd: dict[tuple, int] = {}
    for call in sorted(calls, key=lambda c: (c.start_ns, c.end_ns)):
        index = _owner(call, found)
        if index is None and call.fd is not None:
            index = last_by_fd.get((call.pid, call.fd))
        if index is None and len(found) == 1 and call.role in ("client", "server"):
            index = found[0].index
        if index is None:
            continue
        attached.setdefault(index, []).append(call)
        if call.fd is not None and call.op != "accept":
            last_by_fd[(call.pid, call.fd)] = index
    return attached
