"""The connections of a recording: calls per connection, sides, endings, and the one selector.

`tcpstate.connections` groups the segments (4-tuple, reuse after a finished
connection) and names the client; this module adds everything else every
consumer asks of "a connection": which socket calls belong to it, which side
made a call (`side_of`; `side_by_port` for a segment of a scenario recording,
whose server ports are declared), how it ended in the census vocabulary (`ending`),
and which connection a user means (`parse_conn` + `select_connection`, the
one selection grammar of `plot --conn`, `explain --conn`, `diff --conn-a`,
the step-through and the notebooks).

Selection grammar (`--conn`):

| text                        | means                                                 |
| --------------------------- | ----------------------------------------------------- |
| `3`                         | the third connection, in order of first packet (1-based) |
| `127.0.0.1:8080`, `[::1]:80`| the first connection with this endpoint on either side |
| `:8080`                     | the first connection with this port on either side    |
| `10.0.0.1:5000-10.0.0.2:80` | the connection of this 4-tuple (either order)         |
| nothing                     | the connection of the first failing call (by start), else the first |

Anything else, 0, a negative number or a number past the end is a UserError
naming what was expected. Pure: no I/O, no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from ..errors import UserError
from ..model import Endpoint, Recording, Segment, SocketCall, TcpFlags
from . import tcpstate

__all__ = ["ConnectionView", "Selector", "connections", "select_connection", "parse_conn", "side_of",
           "side_by_port", "declared_server_ports", "ending", "ENDINGS", "CONN_HELP"]

ENDINGS = ("fin", "rst", "refused", "open", "no-packets")

CONN_HELP = "its number in order of first packet (1 = first), ADDR:PORT, :PORT, or a 4-tuple ADDR:PORT-ADDR:PORT"

# Calls that only the opening side makes.
_CLIENT_OPS = frozenset({"connect", "dial", "getsockopt"})  # getsockopt: SO_ERROR after a non-blocking connect


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """One TCP connection, its socket calls and its ending.

    `connection` is tcpstate's when packets were seen; None for a connection
    only socket calls tell of (a connect that failed before any packet left:
    no route, no permission). Then `client` may be None (no local address).
    `index` is 0-based; users count from 1 (`number`).
    """

    index: int
    client: Optional[Endpoint]
    server: Endpoint
    calls: tuple[SocketCall, ...]
    ending: str  # one of ENDINGS
    connection: Optional[tcpstate.Connection] = None

    @property
    def number(self) -> int:
        return self.index + 1

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
        return min(self._times("start_ns"))

    @property
    def end_ns(self) -> int:
        return max(self._times("end_ns"))

    def _times(self, which: str) -> list[int]:
        """The calls' and the packets' `start_ns` or `end_ns`: a connection spans both."""
        times = [getattr(c, which) for c in self.calls]
        if self.connection is not None:
            times.append(getattr(self.connection, which))
        return times

    def side_of(self, call: SocketCall) -> Optional[str]:
        """``client`` or ``server``: whose lifeline a socket call belongs on."""
        return side_of(call, self.client, self.server, roles_known=self.roles_known)

    def __str__(self) -> str:
        return f"{self.client or '?'}-{self.server}"


def side_of(call: SocketCall, client: Optional[Endpoint], server: Optional[Endpoint], *,
            roles_known: bool = True) -> Optional[str]:
    """``client`` or ``server``: which end of the connection (client, server)
    made `call`, from its local endpoint, else its remote one, else what the
    call is (only a client connects), else the role it was recorded with.
    None when nothing tells."""
    if call.local is not None and call.local in (client, server):
        return "client" if call.local == client else "server"
    if call.remote is not None and call.remote in (client, server):
        return "server" if call.remote == client else "client"
    if call.op in _CLIENT_OPS:
        return "client"
    if roles_known and call.role in ("client", "server"):
        return call.role
    return None


def declared_server_ports(recording: Recording) -> set[int]:
    """The ports a scenario recording declares as its servers' (metadata "ports":
    its listeners, known before any packet); empty for any other recording."""
    return {int(p) for p in (recording.metadata.get("ports") or "").split(",") if p}


def side_by_port(endpoint: Optional[Endpoint], server_ports: set[int]) -> str:
    """``server`` when `endpoint`'s port is a declared server port, else ``client``:
    the rule for a scenario recording's segments, whose servers are declared
    (`declared_server_ports`), so a connection that never showed its SYN
    still gets its sides right. `run`'s timeline and the judge's teardown use it."""
    return "server" if endpoint is not None and endpoint.port in server_ports else "client"


def ending(segments: Sequence[Segment], client: Optional[Endpoint]) -> str:
    """How a connection ended, as `analysis.census` says it: ``refused`` (the
    first FIN/RST is the server's RST, the client sent a SYN and the server
    never sent SYN+ACK), ``rst`` (any other RST), ``fin``, or ``open``."""
    closing = next((s for s in segments if s.flags & (TcpFlags.FIN | TcpFlags.RST)), None)
    if closing is None:
        return "open"
    if not any(s.is_rst for s in segments):
        return "fin"
    client_syn = any(s.is_syn and not s.flags & TcpFlags.ACK and s.src == client for s in segments)
    server_synack = any(s.is_syn and s.flags & TcpFlags.ACK and s.src != client for s in segments)
    refused = closing.is_rst and closing.src != client and client_syn and not server_synack
    return "refused" if refused else "rst"


def connections(recording: Recording) -> list[ConnectionView]:
    """Every connection in `recording` with its calls: those the packets show
    (in order of first segment), then those only socket calls show."""
    found = tcpstate.connections(recording)
    calls = _calls_by_connection(recording.calls, found)
    views = [ConnectionView(conn.index, conn.client, conn.server, tuple(calls.get(conn.index, ())),
                            ending(conn.segments, conn.client), conn) for conn in found]
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


# -- the selection grammar -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Selector:
    """What `--conn` said: exactly one of a 1-based number, endpoints (one or
    two, all on the connection) or a port; all None: the default."""

    text: Optional[str] = None
    number: Optional[int] = None
    endpoints: tuple[Endpoint, ...] = ()
    port: Optional[int] = None

    @property
    def is_default(self) -> bool:
        return self.number is None and not self.endpoints and self.port is None

    def matches(self, key: frozenset) -> bool:
        """Whether a connection with these endpoints is one this selector names
        (a number matches any: it is decided by position)."""
        if self.endpoints:
            return set(self.endpoints) <= key
        if self.port is not None:
            return any(end.port == self.port for end in key)
        return True


def parse_conn(text: Union[None, int, str, Selector]) -> Selector:
    """`--conn` text (or a 1-based int) as a Selector; UserError naming the grammar."""
    if text is None or isinstance(text, Selector):
        return text or Selector()
    expected = "expected a connection number (1 = first), ADDR:PORT, :PORT or ADDR:PORT-ADDR:PORT"
    if isinstance(text, bool):
        raise UserError(f"connection {text!r}: {expected}")
    if isinstance(text, int):
        number = text
    else:
        raw = text.strip()
        if raw.lstrip("+-").isdigit():
            number = int(raw)
        elif raw.startswith(":"):
            port = raw[1:]
            if not port.isdigit() or not 0 <= int(port) <= 65535:
                raise UserError(f"connection {text!r}: the port must be a number from 0 to 65535; {expected}")
            return Selector(text=raw, port=int(port))
        else:
            try:
                ends = tuple(Endpoint.parse(part) for part in raw.split("-"))
            except ValueError as exc:
                raise UserError(f"connection {text!r}: {exc}; {expected}") from None
            if len(ends) > 2:
                raise UserError(f"connection {text!r}: at most two endpoints joined by '-'; {expected}")
            return Selector(text=raw, endpoints=ends)
    if number < 1:
        raise UserError(f"connection {text!r}: connections are numbered from 1; {expected}")
    return Selector(text=str(text), number=number)


def select_connection(found: Sequence[ConnectionView],
                      wanted: Union[None, int, str, Selector, ConnectionView, tcpstate.Connection] = None
                      ) -> ConnectionView:
    """The connection `wanted` names (see the grammar above), or the default:
    the connection of the first failing call by start time, else the first.
    A ConnectionView (or tcpstate's Connection) is found's own. Raises UserError naming the
    choices."""
    if not found:
        raise UserError("no TCP connection in this recording (no segments and no socket calls with endpoints)")
    if isinstance(wanted, (ConnectionView, tcpstate.Connection)):  # one already chosen
        same = next((c for c in found if c.index == wanted.index and c.key == wanted.key), None)
        if same is None:
            raise UserError(f"connection {wanted} is not one of this recording's: {_listing(found)}")
        return same
    selector = parse_conn(wanted)
    if selector.is_default:
        return _default(found)
    if selector.number is not None:
        if selector.number <= len(found):
            return found[selector.number - 1]
        raise UserError(f"no connection number {selector.number}: this recording has {len(found)} "
                        f"(1 to {len(found)}): {_listing(found)}")
    for connection in found:
        if selector.matches(connection.key):
            return connection
    raise UserError(f"no connection matches {selector.text!r}; connections: {_listing(found)}")


def _default(found: Sequence[ConnectionView]) -> ConnectionView:
    failing = [(c.first_failure.start_ns, c.first_failure.end_ns, c.index, c)
               for c in found if c.first_failure is not None]
    return min(failing, key=lambda row: row[:3])[3] if failing else found[0]


def _listing(found: Sequence[ConnectionView], shown: int = 5) -> str:
    text = "; ".join(f"{c.number}: {c.client or '?'} -> {c.server}" for c in found[:shown])
    return text + (f"; ... ({len(found)} in all)" if len(found) > shown else "")
