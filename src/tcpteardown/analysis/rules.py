"""The correlation rule table: which segment (or local act) explains which call outcome.

Everything that decides *which rule applies to a socket call* lives here, as
data, in the spirit of h11's state table: one `Rule` row per line of the table
in DESIGN.md ("Correlation rules"). `analysis/correlate.py` implements each
row by name; the ladder legend, the notebooks and the docs read this table
instead of restating it, so the picture and the code cannot drift.

Rows are tried in order; the first whose op family and outcome match a call
decides it. This module holds no logic beyond that lookup and must never
import socket, scapy or anything that touches the system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..model import IN_PROGRESS_ERRNOS, RECEIVE_OPS, SEND_OPS, CauseKind, SocketCall

__all__ = ["Rule", "RULES", "OP_FAMILIES", "op_family", "rule_for", "rule_named", "is_interesting",
           "TIMEOUT_ERRNOS", "CLOSED_ERRNOS", "NOT_OUTCOMES", "UNREACHABLE_ERRNOS"]

# Which ops count as which family. Application logs speak of `dial`, `read`
# and `write`; a non-blocking connect reports its result through
# getsockopt(SO_ERROR) (Go does this), so that counts as a connect too.
OP_FAMILIES: dict[str, frozenset[str]] = {
    "recv": frozenset(RECEIVE_OPS),
    "send": frozenset(SEND_OPS),
    "connect": frozenset({"connect", "dial", "getsockopt"}),
}

# "The call gave up waiting": SO_RCVTIMEO/SO_SNDTIMEO and non-blocking sockets
# (EAGAIN, same number as EWOULDBLOCK on Linux), connect(2)'s own ETIMEDOUT,
# Python's socket.timeout and Go's "i/o timeout" (importers name it ETIMEDOUT,
# or leave the word "timeout").
TIMEOUT_ERRNOS = frozenset({"ETIMEDOUT", "EAGAIN", "EWOULDBLOCK", "timeout"})

# "No way there": the host's routing table (no SYN leaves) or an ICMP
# host/network unreachable answering the SYN. ENETUNREACH when no route
# matches at all, EHOSTUNREACH for an `unreachable` route or the ICMP reply.
UNREACHABLE_ERRNOS = frozenset({"EHOSTUNREACH", "ENETUNREACH"})

# Not outcomes: a non-blocking connect says EINPROGRESS and reports its real
# result later (getsockopt SO_ERROR, or the next read/write); SocketCall.would_block.
NOT_OUTCOMES = IN_PROGRESS_ERRNOS

# "The descriptor is gone": our own close; Go says "use of closed network
# connection" (importers name it EBADF; some leave the words).
CLOSED_ERRNOS = frozenset({"EBADF", "ENOTSOCK", "use of closed network connection"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the correlation table."""

    name: str  # stable identifier: goes into Link.rule and the JSON "rule"
    ops: str  # op family ("recv", "send", "connect") or "any"
    outcomes: frozenset[str]  # errno names, or "EOF"
    kind: CauseKind  # what kind of cause the rule links to
    description: str  # one line for legends and docs

    def applies_to(self, call: SocketCall) -> bool:
        if call.outcome not in self.outcomes:
            return False
        return self.ops == "any" or call.op in OP_FAMILIES[self.ops]


def _r(name: str, ops: str, outcomes, kind: CauseKind, description: str) -> Rule:
    return Rule(name, ops, frozenset(outcomes), kind, description)


RULES: tuple[Rule, ...] = (
    _r("closed-descriptor", "any", CLOSED_ERRNOS, CauseKind.LOCAL_CLOSE,
       "any op -> EBADF / use of closed network connection: our own close; no packet caused it"),
    _r("recv-reset", "recv", {"ECONNRESET"}, CauseKind.RST,
       "recv/read -> ECONNRESET: the last RST that reached this socket before the call returned"),
    _r("send-reset", "send", {"ECONNRESET"}, CauseKind.RST,
       "send/write -> ECONNRESET: the RST that reached this socket while it was established; "
       "the first call after it reports the error the RST left"),
    _r("send-epipe-after-rst", "send", {"EPIPE"}, CauseKind.RST,
       "send/write -> EPIPE: the RST received earlier (an RST in CLOSE_WAIT leaves EPIPE itself; "
       "after ECONNRESET was reported, later writes get EPIPE)"),
    _r("send-epipe-local", "send", {"EPIPE"}, CauseKind.LOCAL_CLOSE,
       "send/write -> EPIPE with no RST: our own shutdown(SHUT_WR) or close"),
    _r("connect-refused", "connect", {"ECONNREFUSED"}, CauseKind.RST,
       "connect -> ECONNREFUSED: the RST/ACK answering our SYN (nothing listening)"),
    _r("connect-timeout", "connect", TIMEOUT_ERRNOS, CauseKind.SYN_UNANSWERED,
       "connect -> timeout: the unanswered SYN and its retransmissions"),
    _r("connect-unreachable-icmp", "connect", UNREACHABLE_ERRNOS, CauseKind.SYN_UNANSWERED,
       "connect -> EHOSTUNREACH/ENETUNREACH after our SYN left: a router or the destination host answered "
       "it with ICMP host/network unreachable (ICMP is not in a TCP capture)"),
    _r("connect-no-route", "connect", UNREACHABLE_ERRNOS, CauseKind.NONE,
       "connect -> EHOSTUNREACH/ENETUNREACH and no SYN left: this host's route lookup failed "
       "(an unreachable route, or none); the cause is local routing"),
    _r("recv-eof", "recv", {"EOF"}, CauseKind.FIN,
       "recv/read -> 0 (EOF): the FIN from the peer"),
    _r("recv-timeout", "recv", TIMEOUT_ERRNOS, CauseKind.NONE,
       "recv/read -> timeout/EAGAIN: nothing arrived in the interval"),
    _r("not-connected-after-rst", "any", {"ENOTCONN"}, CauseKind.RST,
       "any op -> ENOTCONN after a reset: the RST that tore the connection down "
       "(e.g. shutdown() on a reset socket)"),
)

# The catch-all for outcomes the table has no row for (EHOSTUNREACH on a
# send, ECONNABORTED on accept...): linked to nothing, and the link says so.
UNMATCHED = _r("no-rule", "any", (), CauseKind.NONE,
               "an outcome the rule table has no row for: linked to nothing")

_BY_NAME = {rule.name: rule for rule in (*RULES, UNMATCHED)}


def op_family(op: str) -> Optional[str]:
    for family, ops in OP_FAMILIES.items():
        if op in ops:
            return family
    return None


def is_interesting(call: SocketCall) -> bool:
    """Calls that get a Link: every failure, every end-of-file (not a
    "would block": SocketCall.would_block, e.g. the EINPROGRESS of a
    non-blocking connect, whose outcome comes later)."""
    return call.failed or call.is_eof


def rule_for(call: SocketCall) -> tuple[Rule, ...]:
    """The rows that apply to `call`, in table order (empty: no row)."""
    return tuple(rule for rule in RULES if rule.applies_to(call))


def rule_named(name: str) -> Rule:
    return _BY_NAME[name]
