"""A Teardown as one line of text or one JSON object, with the errno its owner will see.

The prediction is the same rule table `explain` uses (analysis.predict): the
receiver's TCP state names the situation (SYN_SENT -> refused, ESTABLISHED
-> rst-established, CLOSE_WAIT -> rst-close-wait, FIN_WAIT1/2 ->
rst-fin-wait, a FIN in ESTABLISHED -> fin) and `rules_for` gives the
outcome of each call. The errno the kernel itself left on the socket
(inet_sk_error_report) is shown beside it; a disagreement is said, never
hidden.

Pure: Teardown in, str / dict out.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from ...analysis.predict import Prediction, rules_for
from ...schemas import tag
from ...units import clock_text
from .teardowns import Teardown

__all__ = ["SCHEMA", "predictions", "prediction_text", "render_line", "to_json", "sender_words", "receiver_words"]

SCHEMA = tag("watch")  # the published shape, src/tcpteardown/schemas/watch-1.json
OS_NAME = "Linux"  # watch reads Linux's tracepoints: the rules are Linux's
# linux-rst-write: ECONNRESET is reported once, then SEND_SHUTDOWN (tcp_done) makes writes EPIPE.
_AFTER_ONCE = "write() after it -> EPIPE"
_NO_CALL = {
    "SYN_RECV": "no call fails (the connection was not accepted yet)",
    "LAST_ACK": "no call fails (its owner had already closed it)",
    "CLOSING": "no call fails (its owner had already closed it)",
    "TIME_WAIT": "no call fails (a TIME_WAIT mini-socket: its owner had closed it)",
    "CLOSE": "no call fails (the socket was already closed)",
}


def predictions(teardown: Teardown) -> tuple[Prediction, ...]:
    situation = teardown.situation
    return rules_for(OS_NAME, situation) if situation else ()


def prediction_text(teardown: Teardown) -> str:
    """``next read()/write() -> ECONNRESET (once); write() after it -> EPIPE`` and the like."""
    rows = predictions(teardown)
    if not rows:
        if not teardown.received:
            return "the peer is not on this host: its state (and so its errno) is not visible here"
        if teardown.state is None:
            return "its state is unknown (the socket was not seen before), so no prediction"
        return _NO_CALL.get(teardown.state, f"no rule for an {teardown.kind.upper()} in {teardown.state}")
    by_op = {row.op: row.outcome for row in rows}
    if "connect" in by_op and teardown.kind == "refused":
        return f"connect() -> {by_op['connect']}"
    read, write = by_op.get("read"), by_op.get("write")
    if read is not None and read == write:
        text = f"next read()/write() -> {read} (once); {_AFTER_ONCE}" if read == "ECONNRESET" else \
            f"next read()/write() -> {read}"
    else:
        parts = [f"next read() -> {read}" if read else None, f"write() -> {write}" if write else None]
        text = "; ".join(part for part in parts if part)
    if teardown.kind == "fin":
        text += " (once the data before it is read)"
    return text


def _kernel_disagrees(teardown: Teardown) -> Optional[str]:
    """The kernel's own errno, when the prediction does not name it."""
    error = teardown.error
    if error in (None, "none"):
        return None
    outcomes = {row.outcome for row in predictions(teardown)}
    if error in outcomes or (error == "EPIPE" and teardown.situation == "rst-close-wait"):
        return None
    return f"the kernel left {error} on the socket"


def _who(pid: Optional[int], comm: Optional[str], note: Optional[str]) -> str:
    if pid is not None:
        return f"{comm or '?'}[{pid}]" + (f" ({note})" if note else "")
    return f"({note})" if note else "(owner unknown)"


def sender_words(teardown: Teardown) -> str:
    if not teardown.sent_here:
        return "(the remote peer)" if not _is_loopback(teardown.remote.host) else "(sender not seen)"
    return _who(teardown.sender_pid, teardown.sender_comm, teardown.sender_note)


def receiver_words(teardown: Teardown) -> str:
    if not teardown.received:
        return "(the remote peer)" if not _is_loopback(teardown.local.host) else "(receiver not seen)"
    return _who(teardown.receiver_pid, teardown.receiver_comm, teardown.owner_note)


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


def render_line(teardown: Teardown, tz: Optional[dt.tzinfo] = None) -> str:
    """``04:20:01.123456 UTC RST  127.0.0.1:80 nginx[812] -> 127.0.0.1:5102 curl[9001]  reason
    TCP_ABORT_ON_CLOSE  hit ESTABLISHED  next read()/write() -> ECONNRESET (once); ...``
    (the clock time every view prints, with its zone: `tz`, UTC when None)."""
    words = [clock_text(teardown.time_ns, tz), f"{teardown.kind.upper():7}",
             f"{teardown.remote} {sender_words(teardown)} -> {teardown.local} {receiver_words(teardown)}"]
    if teardown.reason:
        words.append(f" reason {teardown.reason}")
    elif teardown.kind != "fin" and not teardown.sent_here:
        words.append(" reason not seen (sent by another host)")
    if teardown.received:
        words.append(f" hit {teardown.state or 'an unknown state'}")
    elif teardown.sender_state:
        words.append(f" sent from {teardown.sender_state}")
    words.append(f" {prediction_text(teardown)}")
    disagreement = _kernel_disagrees(teardown)
    if disagreement:
        words.append(f" ({disagreement})")
    return " ".join(words)


def to_json(teardown: Teardown, tz: Optional[dt.tzinfo] = None) -> dict:
    """One JSON line: names as in explain's JSON (src/dst endpoints, pid, errno, reason, rule);
    `time` in epoch seconds for programs, `clock` as the text line prints it."""
    return {
        "schema": SCHEMA,
        "time": teardown.time_ns / 1e9,
        "clock": clock_text(teardown.time_ns, tz),
        "kind": teardown.kind,
        "src": str(teardown.remote),
        "dst": str(teardown.local),
        "reason": teardown.reason,
        "sender": {"here": teardown.sent_here, "pid": teardown.sender_pid, "comm": teardown.sender_comm,
                   "state": teardown.sender_state, "note": teardown.sender_note},
        "receiver": {"here": teardown.received, "pid": teardown.receiver_pid, "comm": teardown.receiver_comm,
                     "state": teardown.state, "errno": teardown.error, "note": teardown.owner_note},
        "predicted": [{"op": row.op, "errno": row.outcome, "rule": row.name} for row in predictions(teardown)],
        "prediction": prediction_text(teardown),
    }
