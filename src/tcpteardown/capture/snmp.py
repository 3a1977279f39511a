"""The kernel's own TCP counters (`/proc/net/snmp`), read before and after a capture.

What they are good for: a second opinion on what a capture should hold.
Between two readings the kernel says how many TCP segments it sent
(OutSegs), how many of them were RSTs (OutRsts), how many connects it began
(ActiveOpens) and how many segments it received (InSegs). On loopback every
segment sent is also received, so on a quiet host OutSegs and InSegs grow
together and a capture of `lo` with the outgoing copy dropped should hold
exactly that many.

What they are not: per port or per interface. They count every TCP socket of
this network namespace (IPv4 and IPv6 alike), so another program talking
over loopback or the network at the same time adds to them; they are an
upper bound for a port-filtered capture, never an exact expectation. OutSegs
leaves out retransmissions of data (RetransSegs counts those).

Beside them, the packets every *other* interface sent (`/proc/net/dev`,
all protocols): when a deficit between the kernel's TCP counters and a
capture of every port on `lo` exceeds that, the capture lost something.

Never: write anything, or be imported where there is no /proc (callers get
None from `read_tcp_counters` on macOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["TcpCounters", "read_tcp_counters", "parse_snmp", "parse_dev_tx_packets", "SNMP_PATH"]

SNMP_PATH = Path("/proc/net/snmp")
DEV_PATH = Path("/proc/net/dev")

# The /proc/net/snmp "Tcp:" columns we keep, by their kernel names.
_FIELDS = {
    "ActiveOpens": "active_opens",  # connects begun: SYNs first sent
    "PassiveOpens": "passive_opens",  # connections accepted from a SYN
    "AttemptFails": "attempt_fails",
    "EstabResets": "estab_resets",
    "InSegs": "in_segs",
    "OutSegs": "out_segs",  # excluding retransmitted data segments
    "RetransSegs": "retrans_segs",
    "OutRsts": "out_rsts",  # RSTs sent, with or without a socket
}


_NAMES = (*_FIELDS.values(), "tx_packets_elsewhere")


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """One reading of the TCP MIB (or, from `delta`, the growth between two)."""

    active_opens: int = 0
    passive_opens: int = 0
    attempt_fails: int = 0
    estab_resets: int = 0
    in_segs: int = 0
    out_segs: int = 0
    retrans_segs: int = 0
    out_rsts: int = 0
    # Not the TCP MIB: packets sent by every interface but loopback (/proc/net/dev).
    tx_packets_elsewhere: Optional[int] = None  # None: unknown

    def delta(self, later: "TcpCounters") -> "TcpCounters":
        """How much each counter grew from this reading to `later` (a 32-bit wrap allowed)."""
        return TcpCounters(**{name: _grown(getattr(self, name), getattr(later, name)) for name in _NAMES})

    def as_extra(self) -> tuple[tuple[str, str], ...]:
        """The metadata pairs a recording keeps (``kernel_out_segs``...)."""
        return tuple((f"kernel_{name}", "unknown" if getattr(self, name) is None else str(getattr(self, name)))
                     for name in _NAMES)


def _grown(before: Optional[int], after: Optional[int]) -> Optional[int]:
    """Growth of a counter; a 32-bit counter may have wrapped once in between."""
    if before is None or after is None:
        return None
    grown = after - before
    return grown if grown >= 0 else grown + (1 << 32)


def parse_snmp(text: str) -> Optional[TcpCounters]:
    """The Tcp counters in the text of /proc/net/snmp, or None when absent."""
    rows = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    if len(rows) < 2 or len(rows[0]) != len(rows[1]):
        return None
    values = dict(zip(rows[0][1:], rows[1][1:]))
    try:
        return TcpCounters(**{ours: int(values[theirs]) for theirs, ours in _FIELDS.items()})
    except (KeyError, ValueError):
        return None


def parse_dev_tx_packets(text: str, loopback: str = "lo") -> Optional[int]:
    """Packets sent by every interface but `loopback`, from /proc/net/dev text."""
    total = 0
    for line in text.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        fields = numbers.split()
        if name.strip() == loopback or len(fields) < 10:
            continue
        try:
            total += int(fields[9])  # transmit packets
        except ValueError:
            return None
    return total


def read_tcp_counters(path: Path = SNMP_PATH, dev_path: Path = DEV_PATH) -> Optional[TcpCounters]:
    """The kernel's TCP counters now, or None where there is no /proc/net/snmp."""
    from dataclasses import replace

    try:
        counters = parse_snmp(path.read_text())
    except OSError:
        return None
    try:
        elsewhere = parse_dev_tx_packets(dev_path.read_text())
    except OSError:
        elsewhere = None
    if counters is not None and elsewhere is not None:
        counters = replace(counters, tx_packets_elsewhere=elsewhere)
    return counters
