"""The clean endings, summarised: a big capture is mostly connections that closed with a FIN and no RST.

`explain` predicts an end-of-file for every side a FIN reached
(`analysis.predict`); told one paragraph each, 100,000 clean closes would
drown the few failures. `split_clean(links, recording)` keeps every link of a
connection with anything else to tell, and folds the connections whose every
link is a clean ending (`predict.is_clean_ending`) into one paragraph per OS's
rules once there are more than `IN_FULL` of them:

    118,402 connections closed cleanly (FIN, no RST): each side's next read()
    returned EOF (0 bytes) at its peer's FIN (236,804 predictions from the
    packets, Linux rules linux-fin-read ...). `--conn N` tells one in full
    (connections 1, 5, 9, ...); `--json` holds every prediction.

Pure: no I/O; the JSON keeps every link (`views.contracts.links`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..analysis import tcpstate
from ..analysis.connections import ending
from ..analysis.predict import citation, is_clean_ending, rule_named, rules_os
from ..analysis.tcpstate import connection_of
from ..model import Link, Recording

__all__ = ["split_clean", "IN_FULL"]

# Up to this many clean connections are told in full, each link a paragraph.
IN_FULL = 3
_EXAMPLES = 5  # connection numbers named for --conn


def split_clean(links: Iterable[Link], recording: Recording, *, in_full: int = IN_FULL
                ) -> tuple[tuple[Link, ...], tuple[str, ...]]:
    """(links to tell one by one, summary paragraphs of the clean closes).

    Clean: a connection that ended with FIN (no RST) whose links, if any, are
    all predicted clean endings; one with no link at all had both sides closed
    before the peer's FIN reached them (FINs crossed), and is counted too."""
    links = tuple(links)
    by_conn: dict[int, list[Link]] = {}
    for link in links:
        conn = connection_of(recording, link.cause) if link.cause is not None else None
        if conn is not None:
            by_conn.setdefault(conn.index, []).append(link)
    clean = [conn.index for conn in tcpstate.connections(recording)
             if ending(conn.segments, conn.client) == "fin"
             and all(is_clean_ending(link) for link in by_conn.get(conn.index, ()))]
    if sum(1 for index in clean if index in by_conn) <= in_full:
        return links, ()
    told = tuple(link for link in links if not _in(link, recording, set(clean)))
    by_os: dict[str, list[int]] = {}
    for index in clean:
        group = by_conn.get(index)
        by_os.setdefault((rules_os(group[0]) if group else None) or "", []).append(index)
    fallback = next((name for name in by_os if name), recording.metadata.os or "Linux")
    for silent in by_os.pop("", []):  # no link to say whose rules: counted with the first OS's
        by_os.setdefault(fallback, []).append(silent)
    return told, tuple(_summary(sorted(indices), by_conn, os_name) for os_name, indices in by_os.items())


def _in(link: Link, recording: Recording, indices: set) -> bool:
    conn = connection_of(recording, link.cause) if link.cause is not None else None
    return conn is not None and conn.index in indices


def _summary(indices: Sequence[int], by_conn: dict, os_name: str) -> str:
    count = len(indices)
    links = [link for index in indices for link in by_conn.get(index, ())]
    rules = sorted({link.rule for link in links})
    cited = "; ".join(f"{name}: {citation(rule_named(name), os_name)}" for name in rules)
    queued = sum(1 for link in links if link.related)
    parts = [f"{count:,} connections closed cleanly (FIN, no RST): each side a FIN reached before it had "
             f"closed read EOF (0 bytes) next, at that FIN ({len(links):,} read() predictions from the packets, "
             f"{os_name} rules {cited})."]
    if queued:
        parts.append(f"{queued:,} of those reads first got the data still in flight with the FIN.")
    closed = 2 * count - len(links)
    if closed:
        parts.append(f"The other {closed:,} sides had closed before the peer's FIN reached them (their own FIN "
                     "went first, or the two crossed): nothing read there.")
    with_link = [index for index in indices if index in by_conn]  # --conn N shows a prediction there
    shown = ", ".join(str(index + 1) for index in with_link[:_EXAMPLES])
    more = ", ..." if len(with_link) > _EXAMPLES else ""
    parts.append(f"`--conn N` tells one in full (connections {shown}{more}); `--json` holds every prediction.")
    return " ".join(parts)
