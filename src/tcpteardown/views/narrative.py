"""Links told for people: one short paragraph per link (its JSON is `views.contracts.links`).

`paragraph(link, recording)` is the sentence an engineer pastes into an
incident write-up and the line a student reads under the ladder:

    17:26:02.140166 client write() failed with EPIPE (Go: write: broken pipe)
    because the server sent RST (frame 9, 0.201 ms earlier) when data arrived
    on a socket it had already closed (inferred from the packets: TCP_ABORT_ON_DATA).

A link predicted from the packets alone (`analysis.predict`) is told as such:

    20:33:23.072784 *predicted from the packets* (Linux rules): the client
    (127.0.0.1:54516) will have seen its next read() fail with ECONNRESET
    (errno 104 on Linux: Connection reset by peer) because the server ...
    sent RST,ACK (frame 7) because ... Rule linux-rst-read (...): ...

with that OS's errno numbers, and for Darwin where XNU decides it.

When the recording holds the kernel's `sock:inet_sk_error_report` for that
socket, the paragraph bridges RST and errno with it ("...which set
ECONNRESET on the client socket; this recv() returned it").

The JSON contract built from these paragraphs is `views.contracts.links`.

Times print in UTC unless a zone is given. Never does I/O.
"""

from __future__ import annotations

import datetime as _dt
from typing import Iterable, Optional

from .. import errnos
from ..analysis.predict import PREDICTED, RST_WHY, bytes_text, citation, frames_text, rule_named, rules_os
from ..analysis.reasons import reason_evidence, reason_phrase, reset_reason
from ..analysis.tcpstate import connection_of
from ..model import CauseKind, Endpoint, KernelEvent, Link, Recording, Segment, SocketCall
from ..units import format_duration

__all__ = ["paragraph", "predicted_paragraph", "narrate", "timestamp", "outcome_text", "cause_text", "wakeup_text",
           "sources_text", "source_where", "source_words"]

ERROR_REPORT = "sock:inet_sk_error_report"

# Rules whose correlate sentence adds something the first sentence lacks.
# For the first two only what follows the first "; " is new (the rest
# restates the cause).
_DETAIL_AFTER_SEMICOLON = frozenset({"send-reset", "send-epipe-after-rst", "not-connected-after-rst"})
_DETAIL_RULES = _DETAIL_AFTER_SEMICOLON


def timestamp(time_ns: int, tz: Optional[_dt.tzinfo] = None) -> str:
    """``17:26:02.140166`` in `tz` (UTC when None): `units.clock_text` without its zone."""
    from ..units import clock_text

    return clock_text(time_ns, tz, zone=False)


def _ago(ns: int) -> str:
    if ns < 0:
        return f"{format_duration(-ns)} later"
    return f"{format_duration(ns)} earlier"


def _language_phrase(link: Link, lang: Optional[str], os_name: str) -> str:
    call = link.call
    name = call.outcome
    try:
        if lang:
            text = errnos.phrase(name, lang, op=call.op, local=call.local, remote=call.remote, os=os_name)
            label = {"go": "Go", "python": "Python", "java": "Java", "node": "Node", "curl": "curl"}.get(
                lang.lower(), lang)
            return f" ({label}: {text})" if text else ""
        text = errnos.strerror(name, os_name)
    except ValueError:  # an errno the Rosetta does not know
        return ""
    return f" ({text})" if text else ""


def outcome_text(link: Link, lang: Optional[str] = None, os_name: str = "Linux") -> str:
    """``write() failed with EPIPE (Go: write: broken pipe)`` / ``recv() returned end-of-file``."""
    call = link.call
    if call.is_eof:
        tail = f" (Go: {errnos.phrase('EOF', lang, op=call.op)})" if lang and lang.lower() == "go" else ""
        return f"{call.op}() returned end-of-file (0 bytes){tail}"
    if call.op == "getsockopt":  # a non-blocking connect's outcome, read by the loop
        to = f" to {call.remote}" if call.remote is not None else ""
        return (f"non-blocking connect(){to} failed with {call.outcome}{_language_phrase(link, lang, os_name)}, "
                "reported through getsockopt(SO_ERROR)")
    text = f"{call.op}() failed with {call.outcome}{_language_phrase(link, lang, os_name)}"
    if link.rule.startswith("connect-") and call.op not in ("connect", "dial"):
        text += ", the outcome of its non-blocking connect()"
    return text


def _who(endpoint: Endpoint, seg: Segment, recording: Recording) -> str:
    conn = connection_of(recording, seg)
    if conn is None or not conn.roles_known:
        return f"the peer {endpoint}"
    return f"the {conn.role_of(endpoint)} ({endpoint})"


def cause_text(link: Link, recording: Recording) -> str:
    """The because-clause: what caused the outcome, with frame and timing."""
    call, seg = link.call, link.cause
    if link.kind is CauseKind.LOCAL_CLOSE:
        own = link.local_call
        if own is None:
            return "this side had closed the socket itself (no packet caused it)"
        return (f"this side had called {own.op}() on the socket itself ({_ago(call.end_ns - own.end_ns)}); "
                "no packet caused it")
    if link.rule == "no-rule":
        return f"of nothing the correlation rules can name: no rule covers {call.op}() -> {call.outcome}"
    if link.kind is CauseKind.NONE or seg is None:
        if link.kind in (CauseKind.RST, CauseKind.FIN):
            what = "an RST" if link.kind is CauseKind.RST else "a FIN"
            return f"{what} reached the socket, but the capture does not show it"
        return link.explanation.split(": ", 1)[-1]
    when = f"frame {seg.frame}, {_ago(call.end_ns - seg.time_ns)}"
    if link.rule == "connect-unreachable-icmp":  # answered, by ICMP: correlate's sentence says how
        return link.explanation.split(": ", 1)[-1]
    if link.kind is CauseKind.SYN_UNANSWERED:
        tries = 1 + len(link.related)
        return (f"its SYN to {seg.dst} (frame {seg.frame}) went unanswered"
                + (f" through {tries} tries" if tries > 1 else ""))
    sender = _who(seg.src, seg, recording)
    if link.kind is CauseKind.FIN:
        return f"{sender} sent FIN ({when}): it will send no more data"
    text = f"{sender} sent {'RST/ACK' if link.rule == 'connect-refused' else 'RST'} ({when})"
    reason, inferred = reset_reason(seg, recording)
    phrase = reason_phrase(reason)
    if reason and phrase:
        if inferred:
            evidence = reason_evidence(seg, recording) or "the packets"
            text += f" because {phrase} (inferred from {evidence}: {reason})"
        else:
            text += f"; its kernel said {reason}: {phrase}"
    elif reason:
        text += f" (kernel reason {reason})"
    return text


def source_where(call: SocketCall) -> str:
    """Where a source told the failure: ``strace line 9787``, ``app.log:1``,
    ``the program's stderr (kept by record), line 1``."""
    if call.where is None:
        return f"the {call.source}" if call.source != "scenario" else "the scenario's recorder"
    path, _, line = call.where.rpartition(":")
    if path == "the program's stderr":
        return f"{path} (kept by record), line {line}"
    if call.source in ("strace", "ebpf") and path in ("strace", "bpftrace"):
        return f"{path}, line {line}"
    return call.where


def source_words(call: SocketCall) -> str:
    """The most specific text a source has: the syscall as strace printed it,
    the application's own words (timestamps aside)."""
    from ..formats.stamps import message_words

    if call.source == "log":
        return message_words(call.text)
    text = call.text.split(None, 2)[-1] if call.source == "strace" and call.text[:1].isdigit() else call.text
    return text.strip()


def sources_text(link: Link, tz: Optional[_dt.tzinfo] = None) -> str:
    """``Seen by 3 sources: ...``: each with its line, time and words; the same
    words from two files are quoted once, with both places."""
    groups: dict[tuple[str, str], list[SocketCall]] = {}
    for call in link.sources:
        groups.setdefault((call.source, source_words(call)), []).append(call)
    told = []
    for (source, words), calls in groups.items():
        places = " and ".join(f"{source_where(c)} at {timestamp(c.end_ns, tz)}" for c in calls)
        what = {"strace": "the system call", "ebpf": "the system call (eBPF)", "log": "the program's words", "scenario": "the recorder's call"}.get(
            source, source)
        told.append(f"{what} in {places}" + (f': "{words}"' if words else ""))
    return f"Seen by {len(link.sources)} sources, one failure: " + "; ".join(told) + "."


def wakeup_text(link: Link, tz: Optional[_dt.tzinfo] = None) -> str:
    """The loop's own view: when its epoll_wait/poll/select was told, between the segment and the call."""
    event, call = link.wakeup, link.call
    after = f", {format_duration(event.end_ns - link.cause.time_ns)} after frame {link.cause.frame}" \
        if link.cause is not None and event.end_ns >= link.cause.time_ns else ""
    return (f"The event loop was told at {timestamp(event.end_ns, tz)}: {event.op}() reported {event.events} "
            f"on fd {event.fd}{after}; this {call.op}() followed {format_duration(max(call.end_ns - event.end_ns, 0))} "
            "later.")


def _error_report(link: Link, recording: Recording) -> Optional[KernelEvent]:
    """The kernel's inet_sk_error_report for the socket the RST reached."""
    seg = link.cause
    if seg is None or link.kind is not CauseKind.RST:
        return None
    victim = seg.dst
    candidates = [e for e in recording.kernel_events if e.name == ERROR_REPORT and e.src == victim
                  and (e.dst is None or e.dst == seg.src)
                  and seg.time_ns - 5_000_000 <= e.time_ns <= link.call.end_ns + 1_000_000]
    if not candidates:
        return None
    return min(candidates, key=lambda e: abs(e.time_ns - seg.time_ns))


def _error_name(event: KernelEvent) -> Optional[str]:
    value = event.get("error")
    if value is None:
        return None
    value = value.strip().lstrip("-")
    if value.isdigit():
        return errnos.name_from_number(int(value), "Linux") or f"errno {value}"
    return value


def _bridge(link: Link, recording: Recording) -> str:
    event = _error_report(link, recording)
    if event is None:
        return ""
    name = _error_name(event)
    if not name:
        return ""
    conn = connection_of(recording, link.cause)
    whose = f"the {conn.role_of(event.src)} socket" if conn and conn.roles_known else f"the socket {event.src}"
    call = link.call
    if name == call.outcome:
        then = f"this {call.op}() returned it"
    else:
        then = f"this {call.op}() returned {call.outcome}"
    return f"The kernel saw the RST set {name} on {whose} (sock:inet_sk_error_report); {then}."


def _errno_words(name: str, os_name: str) -> str:
    """``errno 54 on Darwin: Connection reset by peer`` (empty for an OS errnos.py does not know)."""
    try:
        number, text = errnos.number(name, os_name), errnos.strerror(name, os_name)
    except ValueError:
        return ""
    return f"errno {number} on {os_name}: {text}" if number is not None else ""


def _rst_why(seg: Segment, recording: Recording, os_name: str) -> str:
    reason, inferred = reset_reason(seg, recording)
    phrase = reason_phrase(reason)
    if not (reason and phrase):
        return ""
    xnu = RST_WHY.get((os_name, reason))
    where = f"; on XNU: {xnu}" if xnu else ""
    return f" because {phrase} ({'inferred from the packets' if inferred else 'its kernel said'}: {reason}{where})"


def predicted_paragraph(link: Link, recording: Recording, *, lang: Optional[str] = None,
                        tz: Optional[_dt.tzinfo] = None) -> str:
    """A predicted link told for people: marked as such, with the rule and its source."""
    call, seg = link.call, link.cause
    os_name = rules_os(link) or recording.metadata.os or "Linux"
    whose = f"the {call.role} ({call.local})"
    if call.is_eof and link.related and link.kind is CauseKind.FIN:  # the peer's data still queued: read first
        queued = bytes_text(sum(s.payload_len for s in link.related))
        outcome = (f"its next {call.op}() return the {queued} still in flight with the FIN "
                   f"({frames_text([s.frame for s in link.related])}), then end-of-file (0 bytes)")
    elif call.is_eof:
        outcome = f"its next {call.op}() return end-of-file (0 bytes)"
    else:
        words = _errno_words(call.outcome, os_name)
        quoted = _language_phrase(link, lang, os_name) if lang else ""
        which = f"its connect() to {call.remote}" if call.op == "connect" else f"its next {call.op}()"
        outcome = f"{which} fail with {call.outcome}{f' ({words})' if words else ''}{quoted}"
    if link.kind is CauseKind.SYN_UNANSWERED:
        tries = 1 + len(link.related)
        because = (f"its SYN to {seg.dst} (frame {seg.frame}) went unanswered"
                   + (f" through {tries} tries" if tries > 1 else ""))
    elif link.rule == "refused-connect":
        because = (f"{seg.src} answered its SYN with RST/ACK (frame {seg.frame})"
                   + _rst_why(seg, recording, os_name))
    elif link.kind is CauseKind.FIN:
        because = f"{_who(seg.src, seg, recording)} sent FIN (frame {seg.frame})"
    else:
        because = (f"{_who(seg.src, seg, recording)} sent {seg.flags.render()} (frame {seg.frame})"
                   + _rst_why(seg, recording, os_name))
    row = rule_named(link.rule)
    parts = [f"{timestamp(seg.time_ns, tz)} *predicted from the packets* ({os_name} rules): "
             f"{whose} will have seen {outcome} because {because}."]
    if row is not None:
        parts.append(f"Rule {row.name} ({citation(row, os_name)}): {row.rule}.")
    if link.caveats:
        parts.append("Caveat: " + "; ".join(link.caveats) + ".")
    return " ".join(parts)


def paragraph(link: Link, recording: Recording, *, lang: Optional[str] = None,
              tz: Optional[_dt.tzinfo] = None) -> str:
    """One short paragraph telling `link` for people."""
    call = link.call
    if call.source == PREDICTED:
        return predicted_paragraph(link, recording, lang=lang, tz=tz)
    os_name = recording.metadata.os or "Linux"
    head = f"{timestamp(call.end_ns, tz)} {call.process} {outcome_text(link, lang, os_name)}"
    parts = [f"{head} because {cause_text(link, recording)}."]
    if link.seen_by:
        parts.append(sources_text(link, tz))
    if link.wakeup is not None:
        parts.append(wakeup_text(link, tz))
    bridge = _bridge(link, recording)
    if bridge:
        parts.append(bridge)
    if link.rule in _DETAIL_RULES:
        detail = link.explanation.split(": ", 1)[-1]
        if link.rule in _DETAIL_AFTER_SEMICOLON:
            detail = detail.split("; ", 1)[-1]
        parts.append(detail[0].upper() + detail[1:] + ".")
    if link.caveats:
        parts.append("Caveat: " + "; ".join(link.caveats) + ".")
    return " ".join(parts)


def narrate(links: Iterable[Link], recording: Recording, *, lang: Optional[str] = None,
            tz: Optional[_dt.tzinfo] = None, width: Optional[int] = None) -> str:
    """All paragraphs, blank-line separated (the text of `tcpteardown explain`);
    with `width`, each wrapped on word boundaries (never inside a word, an
    errno or an address) to that many columns."""
    paragraphs = [paragraph(link, recording, lang=lang, tz=tz) for link in links]
    if not paragraphs:
        paragraphs = ["No socket call failed or reached end-of-file in this recording."]
    if width:
        import textwrap

        paragraphs = [textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)
                      for text in paragraphs]
    return "\n\n".join(paragraphs)

