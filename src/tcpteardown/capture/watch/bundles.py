"""The flight recorder's bundles: RSTs grouped by kind, service port and second, written as `record` writes.

A group is the claims (ring.Claim) of RSTs of one kind ("rst",
"refused") on one service port (the port the connection's SYN went to;
for a refused connect the port that refused; else the lower of the two)
within one wall-clock second, at most GROUP_RSTS of them and at most a
share of the memory bound (the recorder gives a quarter). It is due
SETTLE_NS after its second ended (or at once when full, or at the end of
the run). One RST alone is a bundle named as before,
``<kind>-<UTC time>-<sender port>-<receiver port>.pcapng``; a group of many is
``<kind>-<UTC time of the first>-port<P>-<N>rsts.pcapng``.

Writing reuses the packets the reader already decoded (their Segments are
renumbered, never re-parsed) and the one path every bundle takes
(capture.session.assemble: the witness's reasons and its agreement check;
views.packet_comments.write_annotated_bundle: comments, ``.part`` then
rename).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Iterable

from .ring import Claim

__all__ = ["GROUP_RSTS", "Group", "Groups", "write", "service_port"]

GROUP_RSTS = 1_000
SETTLE_NS = 500_000_000
OWNERS_NAMED = 5  # a group's metadata names this many owners, then counts the rest


def service_port(claim: Claim) -> int:
    teardown = claim.teardown
    if claim.from_syn and claim.packets:
        return claim.packets[0][1].dst.port
    if teardown.kind == "refused":
        return teardown.remote.port
    return min(teardown.local.port, teardown.remote.port)


def _stamp(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass
class Group:
    kind: str
    port: int
    second: int
    claims: list[Claim] = field(default_factory=list)
    cost: int = 0  # bytes its claims hold

    @property
    def name(self) -> str:
        first = self.claims[0].teardown
        if len(self.claims) == 1:
            return f"{self.kind}-{_stamp(first.time_ns)}-{first.remote.port}-{first.local.port}.pcapng"
        return f"{self.kind}-{_stamp(first.time_ns)}-port{self.port}-{len(self.claims)}rsts.pcapng"


class Groups:
    """Claims in, groups out once due (oldest first). A group is full at GROUP_RSTS claims or
    `group_bytes` of them (what it holds counts against the recorder's bound until written)."""

    def __init__(self, group_bytes: int = 1 << 62):
        self.group_bytes = group_bytes
        self._open: dict[tuple, Group] = {}
        self._full: list[Group] = []

    def __len__(self) -> int:
        return len(self._open) + len(self._full)

    def add(self, claim: Claim) -> None:
        teardown = claim.teardown
        key = (teardown.kind, service_port(claim), teardown.time_ns // 1_000_000_000)
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = Group(*key)
        group.claims.append(claim)
        group.cost += claim.cost
        if len(group.claims) >= GROUP_RSTS or group.cost >= self.group_bytes:
            self._full.append(self._open.pop(key))

    def due(self, now_ns: int, *, everything: bool = False) -> list[Group]:
        out, self._full = self._full, []
        for key in [key for key, group in self._open.items()
                    if everything or now_ns >= (group.second + 1) * 1_000_000_000 + SETTLE_NS]:
            out.append(self._open.pop(key))
        return out


def _owners(claims: Iterable[Claim]) -> str:
    names = list(dict.fromkeys(
        f"{c.teardown.receiver_comm}[{c.teardown.receiver_pid}]" if c.teardown.receiver_pid else "unknown"
        for c in claims))
    more = len(names) - OWNERS_NAMED
    return ", ".join(names[:OWNERS_NAMED]) + (f" and {more} more" if more > 0 else "")


def write(directory: Path, group: Group, *, witness=None, ports: tuple[int, ...] = ()) -> Path:
    """The group's bundle in `directory`; its path."""
    from ...views.packet_comments import write_annotated_bundle
    from ..backends import Captured
    from ..session import assemble

    claims = group.claims
    packets = list(chain.from_iterable(c.packets for c in claims))
    if len(claims) > 1:
        packets.sort(key=lambda packet: packet[0].time_ns)
    if not packets:
        raise ValueError("no packet of its connection was in the ring")
    frames = tuple(frame for frame, _ in packets)
    segments = tuple(replace(segment, frame=number) for number, (_, segment) in enumerate(packets, start=1))
    events = sorted(chain.from_iterable(c.events for c in claims), key=lambda event: event.time_ns)
    captured = Captured(backend="tcpdump", description="tcpdump -i any (watch --keep flight recorder)",
                        frames=frames, segments=segments, ports=ports, kernel_drops=None)
    extra = [("watch_kind", group.kind), ("watch_rsts", str(len(claims))), ("watch_owner", _owners(claims)),
             ("ports", str(group.port) if _port_known(claims) else _both_ports(claims[0]))]
    truncated = sum(not c.from_syn for c in claims)
    if truncated:
        extra.append(("watch_start_dropped", f"{truncated} connection(s) begin after their SYN: the ring "
                                              "had dropped their first packets, or they began before watch"))
    missing = sum(not c.rst_captured for c in claims)
    if missing:
        extra.append(("watch_rst_not_captured", f"{missing} RST(s) the kernel sent are not among the packets"))
    recording, _ = assemble(captured=captured, calls=(), events=events, witness=witness,
                            window=(frames[0].time_ns, frames[-1].time_ns), started_ns=frames[0].time_ns,
                            extra=extra)
    return write_annotated_bundle(_free_path(directory / group.name), recording)


def _port_known(claims: list[Claim]) -> bool:
    return all(c.from_syn or c.teardown.kind == "refused" for c in claims)


def _both_ports(claim: Claim) -> str:
    return ",".join(map(str, sorted({claim.teardown.local.port, claim.teardown.remote.port})))


def _free_path(path: Path) -> Path:
    if not path.exists():
        return path
    number = 2
    while (candidate := path.with_name(f"{path.stem}-{number}{path.suffix}")).exists():
        number += 1
    return candidate

