"""The tracefs `trace` file and event `format` files as text: a file format.

Pure: text in, `KernelEvent`s out, on the packets' clock through a
`ClockMapping`; and the filter expression for an event from its `format`
file. `capture.kernel` owns the tracefs instance (the I/O) and measures the
clock mapping; this module never touches the file system.

Errno names cross every boundary, never numbers: the `error` field of
sock:inet_sk_error_report is a Linux errno (the trace is Linux's, wherever
it is parsed), named with Linux's table (`errnos.name_from_number`).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import sys
from dataclasses import dataclass
from typing import Iterable, Optional

from .. import errnos
from ..model import Endpoint, KernelEvent

# The tracepoints we record, as "system:event".
EVENTS = (
    "tcp:tcp_send_reset",
    "tcp:tcp_receive_reset",
    "sock:inet_sock_set_state",
    "sock:inet_sk_error_report",
)
MARKER_EVENT = "ftrace:marker"  # a trace_marker write (only with events(markers=True))
IPPROTO_TCP = 6
MAX_FILTER_PORTS = 64  # beyond this, filter in user space only (filter text has a page limit)

_EVENT_BY_TRACE_NAME = {name.split(":")[1]: name for name in EVENTS}
_ADDRESS_KEYS = frozenset({"src", "dest", "saddr", "daddr", "saddrv6", "daddrv6", "sport", "dport"})
# "   python3-6698    [000] ..s2.  2303.135672: tcp_receive_reset: family=AF_INET ..."
# (with `record-tgid`, a "(  tgid)" column sits between the task and the CPU).
_TRACE_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:\S+\s+)?(?P<secs>\d+)\.(?P<frac>\d+):\s+(?P<event>\w+):\s?(?P<body>.*)$"
)


@dataclass(frozen=True, slots=True)
class ClockMapping:
    """realtime = trace time + `offset_ns`, good to +- `uncertainty_ns`."""

    offset_ns: int
    uncertainty_ns: int

    def to_realtime(self, trace_ns: int) -> int:
        return trace_ns + self.offset_ns

    @staticmethod
    def combine(first: "ClockMapping", second: "ClockMapping") -> "ClockMapping":
        """One mapping for a run measured at its start and at its end."""
        offset = (first.offset_ns + second.offset_ns) // 2
        drift = abs(first.offset_ns - second.offset_ns) // 2
        return ClockMapping(offset, max(first.uncertainty_ns, second.uncertainty_ns) + drift)



# --------------------------------------------------------------------------
# Parsing the `trace` file (pure: text in, KernelEvents out)


def parse_trace(text: str, mapping: ClockMapping, ports: Iterable[int] = (), *,
                markers: bool = False) -> tuple[KernelEvent, ...]:
    """KernelEvents for the lines of an instance's `trace` file, time-sorted.

    Only events touching one of `ports` (either side) are kept, unless
    `ports` is empty. Comment lines and other events are skipped.
    """
    wanted = frozenset(ports)
    events = []
    for line in text.splitlines():
        event = parse_trace_line(line, mapping, markers=markers)
        if event is None:
            continue
        if wanted and event.name != MARKER_EVENT and not touches_ports(event, wanted):
            continue
        events.append(event)
    events.sort(key=lambda e: e.time_ns)  # stable: per-CPU buffers are merged by time already
    return tuple(events)


def parse_trace_line(line: str, mapping: ClockMapping, *, markers: bool = False) -> Optional[KernelEvent]:
    """One line of the `trace` file as a KernelEvent, or None for anything else."""
    if not line or line.startswith("#"):
        return None
    match = _TRACE_LINE.match(line)
    if match is None:
        return None
    trace_ns = int(match["secs"]) * 1_000_000_000 + int(match["frac"].ljust(9, "0")[:9])
    time_ns = mapping.to_realtime(trace_ns)
    context = (("pid", sys.intern(match["pid"])), ("comm", sys.intern(match["comm"].strip())),
               ("cpu", sys.intern(str(int(match["cpu"])))))
    if match["event"] == "tracing_mark_write":
        if not markers:
            return None
        return KernelEvent(time_ns, MARKER_EVENT, fields=(("text", match["body"].rstrip()),) + context)
    name = _EVENT_BY_TRACE_NAME.get(match["event"])
    if name is None:
        return None
    pairs = _key_values(match["body"])
    values = dict(pairs)
    src, dst = _endpoints(values)
    fields = tuple((key, _field_text(key, value)) for key, value in pairs if key not in _ADDRESS_KEYS)
    return KernelEvent(time_ns, name, src, dst, fields + context)


def _key_values(body: str) -> list[tuple[str, str]]:
    pairs = []
    intern = sys.intern  # a watch keeps thousands of events: one copy of "family", "AF_INET", ...
    for word in body.split():
        key, sep, value = word.partition("=")
        if sep:
            pairs.append((intern(key), intern(value)))
    return pairs


def _field_text(key: str, value: str) -> str:
    if key == "error":  # errno names cross every boundary, never numbers
        return errno_name(value)
    return value


def errno_name(text: str) -> str:
    """``"104"`` -> ``"ECONNRESET"`` (Linux numbering: the trace is Linux's);
    ``"0"`` -> ``"none"``; a number errnos does not know -> ``"errno N (Linux)"``;
    text that is no number stays as it came."""
    try:
        number = abs(int(text))
    except ValueError:
        return text
    if number == 0:
        return "none"
    # errnos knows the network errnos; any other is said with its OS, never
    # looked up in the host's table (which is macOS's on a Mac).
    return errnos.name_from_number(number, "Linux") or f"errno {number} (Linux)"


def _endpoints(values: dict) -> tuple[Optional[Endpoint], Optional[Endpoint]]:
    """(local, remote) of the socket the event is about.

    tcp_send_reset since 6.10 prints ``src=`` and ``dest=`` (the RST's own
    source and destination); every other event, and tcp_send_reset before,
    prints family, saddr/daddr (IPv4), saddrv6/daddrv6 and sport/dport.
    """
    if "src" in values and "dest" in values:
        return _parse_endpoint(values["src"]), _parse_endpoint(values["dest"])
    if "sport" not in values or "dport" not in values:
        return None, None
    v6 = values.get("family") == "AF_INET6"
    saddr = values.get("saddrv6" if v6 else "saddr")
    daddr = values.get("daddrv6" if v6 else "daddr")
    return _make_endpoint(saddr, values["sport"]), _make_endpoint(daddr, values["dport"])


def _parse_endpoint(text: str) -> Optional[Endpoint]:
    host, _, port = text[1:].partition("]:") if text.startswith("[") else text.rpartition(":")
    try:
        number = int(port)
        return Endpoint(_host_text(host), number) if 0 <= number <= 65535 else None
    except ValueError:
        return None


def _make_endpoint(address: Optional[str], port: str) -> Optional[Endpoint]:
    if address is None:
        return None
    try:
        return Endpoint(_host_text(address), int(port))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _host_text(address: str) -> str:
    """A traced address as the packets print it (parsing it costs more than the rest of the line)."""
    return unmap_host(ipaddress.ip_address(address).compressed)


def unmap_host(host_text: str) -> str:
    """``::ffff:127.0.0.1`` -> ``127.0.0.1``: a dual-stack socket talking IPv4
    is reported with a mapped address, while its packets carry plain IPv4."""
    try:
        address = ipaddress.ip_address(host_text)
    except ValueError:
        return host_text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def touches_ports(event: KernelEvent, ports: "frozenset[int] | set[int]") -> bool:
    """Whether either end of the event is on one of `ports` (a recording keeps only those)."""
    return any(endpoint is not None and endpoint.port in ports for endpoint in (event.src, event.dst))


def port_filter(format_fields: Iterable[str], ports: Iterable[int]) -> Optional[str]:
    """The ftrace filter expression restricting one event to `ports`, or
    None when the event has no fields to filter on (filter in user space)."""
    fields = set(format_fields)
    ports = sorted(set(ports))
    terms = []
    if "protocol" in fields:
        terms.append(f"protocol == {IPPROTO_TCP}")
    if ports and len(ports) <= MAX_FILTER_PORTS and {"sport", "dport"} <= fields:
        either = " || ".join(f"sport == {p} || dport == {p}" for p in ports)
        terms.append(f"({either})")
    return " && ".join(terms) if terms else None


def format_fields(format_text: str) -> tuple[str, ...]:
    """Field names from an event's `format` file (``field:__u16 sport;`` -> sport)."""
    names = []
    for match in re.finditer(r"field:([^;]+);", format_text):
        declaration = match.group(1).strip()
        name = declaration.split()[-1].lstrip("*")
        names.append(name.split("[")[0])
    return tuple(name for name in names if not name.startswith("common_"))
