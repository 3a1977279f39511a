"""The flight recorder's bundles: RSTs grouped by kind, port and second, written as `record` writes.

A group is the RSTs of one kind ("rst", "refused") on one port (for a
refused connect the port that refused; else the lower of the two, a
service's) within one wall-clock second. It keeps the first SAMPLE_RSTS of
them (their connections claimed from the ring, ring.Claim); the rest of a
burst are lines, counted in the bundle's metadata and in the summary, and
their packets are let go at once. A group is due SETTLE_NS after its second
ended (late lines of a busy worker still join it), once every RST of its sample is claimed (at the end of the run, at
once). One RST alone is a bundle named
``<kind>-<UTC time>-<sender port>-<receiver port>.pcapng``; a group of many is
``<kind>-<UTC time of the first>-port<P>-<N>rsts.pcapng``.

Writing decodes nothing twice (the claims' Segments are renumbered) and takes
the one path every bundle takes (capture.session.assemble: the witness's
reasons and its agreement check; views.packet_comments.write_annotated_bundle:
comments, ``.part`` then rename).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Iterable, Optional

from .ring import Claim

__all__ = ["SAMPLE_RSTS", "Group", "Groups", "write", "group_key"]

SAMPLE_RSTS = 100  # RSTs one bundle keeps of a burst (one kind, one port, one second); the rest are counted
SETTLE_NS = 2_000_000_000  # late RST lines (a busy worker) still join their second's bundle
OWNERS_NAMED = 5  # a group's metadata names this many owners, then counts the rest


def group_key(line) -> tuple[str, int, int]:
    """(kind, port, second): a refused connect's port is the one that refused; an RST's, the
    lower of its two (a service's, below the ephemeral range)."""
    port = line.remote.port if line.kind == "refused" else min(line.local.port, line.remote.port)
    return line.kind, port, line.time_ns // 1_000_000_000


def _stamp(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass
class Group:
    kind: str
    port: int
    second: int
    claims: list[Claim] = field(default_factory=list)
    expected: int = 0  # RSTs of its sample whose connection is not claimed yet
    skipped: int = 0  # RSTs beyond its sample: lines, counted, not kept

    @property
    def name(self) -> str:
        first = self.claims[0].teardown if self.claims else None
        if first is None:
            return f"{self.kind}-port{self.port}-second{self.second}"
        if len(self.claims) == 1 and not self.skipped:
            return f"{self.kind}-{_stamp(first.time_ns)}-{first.remote.port}-{first.local.port}.pcapng"
        return f"{self.kind}-{_stamp(first.time_ns)}-port{self.port}-{len(self.claims)}rsts.pcapng"


class Groups:
    """RST lines in (`slot`), their claims (`add`), groups out once due (`due`): when their
    second has ended (SETTLE_NS after) and every RST of their sample is claimed."""

    def __init__(self, sample: int = SAMPLE_RSTS):
        self.sample = sample
        self._open: dict[tuple, Group] = {}
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._open)

    def slot(self, line) -> Optional[Group]:
        """Its group when the sample has room (reserved), else None (counted as not kept)."""
        key = group_key(line)
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = Group(*key)
        if len(group.claims) + group.expected >= self.sample:
            group.skipped += 1
            self.skipped += 1
            return None
        group.expected += 1
        return group

    @staticmethod
    def add(group: Group, claim: Claim) -> None:
        group.expected -= 1
        group.claims.append(claim)

    def due(self, now_ns: int, *, everything: bool = False) -> list[Group]:
        out = []
        for key in [key for key, group in self._open.items() if not group.expected and (
                everything or now_ns >= (group.second + 1) * 1_000_000_000 + SETTLE_NS)]:
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
             ("ports", ",".join(map(str, sorted(set().union(*map(_service_ports, claims))))))]
    if group.skipped:
        extra.append(("watch_rsts_not_kept", f"{group.skipped} more RSTs of this kind on port {group.port} "
                                             f"in this second: watch printed them, a bundle keeps "
                                             f"{len(claims)} of a burst"))
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


def _service_ports(claim: Claim) -> set[int]:
    """The listening port: where its SYN went; for a refused connect the port that refused;
    else both (nothing says which end listened)."""
    teardown = claim.teardown
    if claim.from_syn and claim.packets:
        return {claim.packets[0][1].dst.port}
    if teardown.kind == "refused":
        return {teardown.remote.port}
    return {teardown.local.port, teardown.remote.port}


def _free_path(path: Path) -> Path:
    if not path.exists():
        return path
    number = 2
    while (candidate := path.with_name(f"{path.stem}-{number}{path.suffix}")).exists():
        number += 1
    return candidate

