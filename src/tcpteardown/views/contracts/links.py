"""The explain JSON contract: `{"links": [{"call", "cause", "rule", "explanation"}], "os", "unlinked"}`.

`links_to_json(links, recording)` is DESIGN.md's `tcpteardown explain --json`
contract, each link told by `views.narrative.paragraph`. Choices the contract leaves open:

- `call.time` is when the call *returned* (its outcome became visible);
  the ladder draws the whole call, the contract needs one instant;
- `cause.reason` is the kernel's reason name (``"NO_SOCKET"``) when the
  witness saw the RST, and the inferred one with a suffix
  (``"NO_SOCKET (inferred)"``) otherwise, so a reader of the JSON can never
  mistake a guess for the kernel's word; null when neither is known or the
  cause is no RST;
- for `local-close`, `cause.time` is when our own close()/shutdown()
  returned, `src` our local endpoint, and `frame`/`dst`/`flags` null;
- for `syn-unanswered`, the cause is the first SYN (its retransmissions are
  in `Link.related`, not in the JSON);
- one link per failure however many sources saw it (`analysis.sources`):
  `sources` lists each (`source`, `where` as file:line, `text`, `time`,
  `process`), the link's own call first; `call.process` names the process
  as every view does (``python3 (pid 4242)``).

Never does I/O.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from ...analysis.reasons import render_reason, reset_reason
from ...model import CauseKind, Endpoint, Link, Recording
from ...schemas import tag
from ..narrative import paragraph

if TYPE_CHECKING:
    from ...formats.os_guess import OsGuess

__all__ = ["links_to_json", "os_json", "would_block_json"]


def _endpoint(endpoint: Optional[Endpoint]) -> Optional[str]:
    return str(endpoint) if endpoint is not None else None


def _seconds(ns: Optional[int]) -> Optional[float]:
    return ns / 1e9 if ns is not None else None


def _cause_json(link: Link, recording: Recording) -> dict:
    seg = link.cause
    if seg is not None:
        reason = None
        if seg.is_rst:
            reason = render_reason(*reset_reason(seg, recording))
        return {"kind": link.kind.value, "frame": seg.frame, "time": _seconds(seg.time_ns),
                "src": _endpoint(seg.src), "dst": _endpoint(seg.dst), "flags": seg.flags.render(),
                "reason": reason}
    own = link.local_call
    return {"kind": link.kind.value, "frame": None, "time": _seconds(own.end_ns) if own else None,
            "src": _endpoint(link.call.local) if link.kind is CauseKind.LOCAL_CLOSE else None,
            "dst": None, "flags": None, "reason": None}


def _source_json(call) -> dict:
    """One source that saw the failure (the call itself first): where it said so and how."""
    return {"source": call.source, "where": call.where, "text": call.text, "time": _seconds(call.end_ns),
            "process": call.process}


def _wakeup_json(link: Link) -> Optional[dict]:
    """When the event loop was told (epoll_wait/poll/select), or null."""
    event = link.wakeup
    if event is None:
        return None
    return {"op": event.op, "time": _seconds(event.end_ns), "fd": event.fd, "pid": event.pid,
            "events": event.events, "where": event.where}


def would_block_json(recording: Recording) -> list[dict]:
    """The "would block" calls (SocketCall.would_block: not failures), one entry per
    socket, op and errno: how many, first and last, and the first one's file:line."""
    groups: dict[tuple, dict] = {}
    for call in recording.calls:
        if not call.would_block:
            continue
        key = (call.source, call.pid, call.fd, call.op, call.errno)
        entry = groups.get(key)
        if entry is None:
            groups[key] = {"source": call.source, "op": call.op, "errno": call.errno, "pid": call.pid,
                           "fd": call.fd, "local": _endpoint(call.local), "remote": _endpoint(call.remote),
                           "count": 1, "first": _seconds(call.end_ns), "last": _seconds(call.end_ns),
                           "where": call.where}
        else:
            entry["count"] += 1
            entry["last"] = _seconds(call.end_ns)
    return list(groups.values())


def links_to_json(links: Iterable[Link], recording: Recording, *, lang: Optional[str] = None,
                  tz: Optional[_dt.tzinfo] = None, os_guess: Optional[OsGuess] = None,
                  unread: Sequence[str] = ()) -> dict:
    """DESIGN.md's contract: ``{"links": [{"call", "cause", "rule", "explanation"}], "os": {...},
    "unlinked": [...]}`` (`os`: the OS named from the packets with its evidence; `explain` passes
    its `os_guess`, which honours --os; `unlinked`: the log/strace calls nothing explains,
    analysis.correlate.unlinked, then the evidence lines the importers could not read, `unread`)."""
    from ...analysis.correlate import unlinked
    from ...formats.evidence import PREDICTIONS_LIMITED

    links = tuple(links)
    out = []
    for link in links:
        call = link.call
        out.append({
            "call": {"source": call.source, "time": _seconds(call.end_ns), "op": call.op,
                     "errno": call.outcome, "pid": call.pid, "fd": call.fd,
                     "local": _endpoint(call.local), "remote": _endpoint(call.remote), "text": call.text,
                     "process": call.process},
            "cause": _cause_json(link, recording),
            "sources": [_source_json(source) for source in link.sources],
            "wakeup": _wakeup_json(link),
            "rule": link.rule,
            "explanation": paragraph(link, recording, lang=lang, tz=tz),
        })
    if os_guess is None:
        from ...formats.os_guess import guess_os

        os_guess = guess_os(recording)
    document = {"schema": tag("explain"), "links": out, "os": os_json(os_guess),
                "unlinked": [*unlinked(links), *unread], "would_block": would_block_json(recording)}
    limited = dict(recording.metadata.extra).get(PREDICTIONS_LIMITED)
    if limited is not None:  # only on a big capture read for calls naming no 4-tuple
        document["predictions_limited"] = limited
    return document


def os_json(guess: OsGuess) -> dict:
    """The "os" member: the OS named from the packets (or by --os), with its evidence."""
    return {"name": guess.name, "evidence": list(guess.evidence), "capturing_host": guess.capturing_host,
            "endpoints": dict(sorted(guess.hosts.items())), "overridden": guess.overridden}
