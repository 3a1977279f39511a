"""A recording as a sequence of steps, for stepping through it in class.

One step per segment or socket call, in time order, each with both sides'
TCP state right after it, what happened, and why (the correlation's
explanation for a failing call, the kernel's reason for an RST). Pure: the
widget in `stepper.py` only shows these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from ..analysis.reasons import reason_phrase, render_reason, reset_reason
from ..analysis.relative import relative_numbers
from ..analysis.sources import told_once
from ..analysis.connections import ConnectionView, connections, select_connection
from ..analysis.tcpstate import Connection, describe_state, infer_states, state_at, time_wait_from_packets
from ..model import Link, Recording, Segment, SocketCall

LOG_NOTE = "Logged at"


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    time_ns: int
    kind: str  # "segment" or "call"
    what: str  # one line: who did what
    why: str  # the explanation, or "" when nothing needs one
    client_state: Optional[str]
    server_state: Optional[str]
    frame: Optional[int] = None  # the segment's frame, for segment steps
    failed: bool = False
    call: Optional[SocketCall] = None  # the socket call, for call steps


def build_steps(recording: Recording, links: Sequence[Link] = (),
                connection: Union[None, int, str, ConnectionView, Connection] = None) -> list[Step]:
    """Every segment and socket call of one connection, in time order: the one
    `connection` names in `analysis.connections`' grammar, by default the
    same as the ladder's (the connection of the first failing call)."""
    recording = told_once(recording, links)  # a failure several sources saw is one step
    found = connections(recording)
    view = select_connection(found, connection) if found else None
    conn = view.connection if view is not None else None
    timelines = infer_states(recording, conn) if conn else {}
    client_line = timelines.get(conn.client, []) if conn else []
    server_line = timelines.get(conn.server, []) if conn else []
    silent = time_wait_from_packets(recording, conn) if conn else {}
    os_name = recording.metadata.os
    relative = relative_numbers(recording.segments)
    why_of = {id(link.call): link.explanation for link in links}
    events = []
    for seg in (conn.segments if conn else ()):
        who = conn.role_of(seg.src)
        rel_seq, rel_ack = relative[seg.frame]
        what = (f"{who} → {'server' if who == 'client' else 'client'}: {seg.flags.render()} "
                f"seq={rel_seq} ack={rel_ack} len={seg.payload_len} (frame {seg.frame})")
        why = ""
        if seg.is_rst:
            reason, inferred = reset_reason(seg, recording)
            phrase = reason_phrase(reason)
            why = f"RST reason: {render_reason(reason, inferred)}" + (f" — {phrase}" if phrase else "")
        events.append((seg.time_ns, 1, "segment", what, why, seg.frame, False, None))
    for call in (view.calls if view is not None else recording.calls):
        result = call.outcome if call.outcome != "ok" else f"= {call.result}"
        events.append((call.end_ns, 0, "call", f"{call.role}: {call.op}() {result}",
                       why_of.get(id(call), ""), None, call.failed, call))
    events.sort(key=lambda e: (e[0], e[1]))
    return [Step(i, t, kind, what, why, _shown(client_line, t, conn and conn.client in silent, os_name),
                 _shown(server_line, t, conn and conn.server in silent, os_name), frame, failed, call)
            for i, (t, _order, kind, what, why, frame, failed, call) in enumerate(events)]


@dataclass(frozen=True, slots=True)
class AfterCause:
    """Where a call stamped by another clock is shown: just after its cause."""

    call: SocketCall
    cause: Segment
    late_ns: int  # how far its stamp may be behind the packets' clock
    early_ns: int  # and ahead of it

    @property
    def logged_ns(self) -> int:
        return self.call.end_ns

    def note(self) -> str:
        """Says where it is drawn and why, with the clock's uncertainty."""
        from .narrative import timestamp

        return (f"{LOG_NOTE} {timestamp(self.logged_ns)} by the application's clock, not the packets' "
                f"(uncertain by about ±{self.late_ns / 1e6:g} ms): shown after frame {self.cause.frame}, the "
                "segment it is linked to; a log line is written after its cause")

    def short_note(self) -> str:
        """The same, for a label on the ladder."""
        from .narrative import timestamp

        return (f"logged at {timestamp(self.logged_ns)} ±{self.late_ns / 1e6:g} ms (another clock): "
                f"drawn after its cause, frame {self.cause.frame}")


def after_cause(call: SocketCall, cause: Optional[Segment]) -> Optional[AfterCause]:
    """The one rule every view follows (the ladder, the stepper): a call
    stamped by another clock (an application's log) whose stamp falls before
    the segment it is linked to is shown just after that segment, never
    before it: a log line is written after its cause, so its stamp says
    nothing about the order, the link does. None when the call keeps its
    own time."""
    from ..analysis.correlate import tolerance

    if cause is None or call.source != "log" or cause.time_ns <= call.end_ns:
        return None
    late, early = tolerance(call)
    return AfterCause(call, cause, late, early)


def _shown(timeline, time_ns: int, time_wait_silent: bool, os_name: Optional[str]) -> Optional[str]:
    """The state at `time_ns` as the panel shows it (TIME_WAIT with its
    duration, marked when only the packets told it)."""
    state = state_at(timeline, time_ns)
    if state is None:
        return None
    return describe_state(state, os_name, from_packets=time_wait_silent and state == "TIME_WAIT")


def step_html(step: Step, total: int, start_ns: int) -> str:
    """The panel under the slider: what happened, both states, why."""
    colour = "#c0392b" if step.failed or "RST" in step.what.split("(")[0] else "#222"
    why = f"<p style='margin:4px 0'><b>Why:</b> {step.why}</p>" if step.why else ""
    return (f"<div style='font-family:sans-serif;font-size:15px;line-height:1.4'>"
            f"<p style='margin:4px 0'>Step {step.index + 1} of {total} · "
            f"+{(step.time_ns - start_ns) / 1e6:.3f} ms</p>"
            f"<p style='margin:4px 0;color:{colour}'><b>{step.what}</b></p>"
            f"<p style='margin:4px 0'>client: <b>{step.client_state or '—'}</b> &nbsp;·&nbsp; "
            f"server: <b>{step.server_state or '—'}</b></p>{why}</div>")
