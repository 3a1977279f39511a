"""The text timeline `tcpteardown run` prints: socket calls and segments
merged on one time axis, then expected against observed.

Pure: takes a ScenarioRun (or a Recording) and returns lines of text.
"""

from __future__ import annotations

from typing import Optional

from ..analysis.connections import declared_server_ports, side_by_port
from ..analysis.origin import time_origin
from ..analysis.relative import relative_numbers
from ..model import Recording, Segment, SocketCall


def timeline_lines(recording: Recording, server_ports: set) -> list[str]:
    """Calls and segments in time order, timed from the first SYN (as every view is)."""
    start = time_origin(recording.segments, recording.calls) or 0
    relative = relative_numbers(recording.segments)
    rows: list[tuple[int, int, str]] = []
    for seg in recording.segments:
        rows.append((seg.time_ns, 1, _segment_line(seg, relative, server_ports)))
    for call in recording.calls:
        rows.append((call.start_ns, 0, _call_line(call)))
    lines = [f"{'time (ms)':>10}  {'who':<16} what"]
    for time_ns, _order, text in sorted(rows, key=lambda row: (row[0], row[1])):
        lines.append(f"{(time_ns - start) / 1e6:>+10.3f}  {text}")
    return lines


def _segment_line(seg: Segment, relative: dict, server_ports: set) -> str:
    sender = side_by_port(seg.src, server_ports)
    receiver = "client" if sender == "server" else "server"
    rel_seq, rel_ack = relative[seg.frame]
    reason = f"  reason={seg.reset_reason}" if seg.reset_reason else ""
    return (f"{sender + ' → ' + receiver:<16} #{seg.frame:<3} {seg.flags.render():<8} "
            f"seq={rel_seq} ack={rel_ack} len={seg.payload_len}{reason}")


def _call_line(call: SocketCall) -> str:
    result = call.outcome if call.outcome != "ok" else f"= {call.result}"
    mark = "  ✗" if call.failed else ("  ⏎" if call.is_eof else "")
    took = (call.end_ns - call.start_ns) / 1e3
    return f"{call.role:<16} {call.op}() {result}{mark}  [fd {call.fd}, {took:.0f} µs]"


def verdict_lines(run) -> list[str]:
    """Expected vs observed for a ScenarioRun."""
    lines = []
    expected = run.expected
    if expected is None:
        return [f"expected: nothing is known for {run.recording.metadata.os}"]
    lines.append("expected: " + ("; ".join(map(str, expected.outcomes)) or "no failing call"))
    lines.append("observed: " + ("; ".join(map(str, run.observed)) or "no failing call"))
    lines.append("teardown: " + ", ".join(f"{r} {f}" for r, f in run.observed_teardown))
    if run.matches:
        lines.append("result:   as expected ✓")
    else:
        lines.append("result:   DIFFERS from expected ✗")
        lines.extend(f"  - {m}" for m in run.mismatches)
    if expected.why:
        lines.append("")
        lines.append("why: " + expected.why)
    if not expected.observed:
        lines.append(f"note: this expectation is {expected.status}, not yet observed on a real host of this OS:")
        lines.extend(f"  - {e}" for e in expected.evidence)
    return lines


def _outcomes(outcomes) -> str:
    return "; ".join(f"{o.role} {o.op}() -> {o.outcome} ({o.cause})" for o in outcomes) or "no failing call"


def summary_line(run, seconds: float) -> str:
    """One line for `run A B C` / `run --all`: verdict, name, duration, expected vs observed."""
    head = f"{'✓' if run.matches else '✗'} {run.scenario.name:<22} {seconds:6.2f} s  "
    if run.matches:
        return head + "as expected: " + _outcomes(run.observed)
    expected = _outcomes(run.expected.outcomes) if run.expected else f"nothing known for {run.recording.metadata.os}"
    return head + f"DIFFERS: expected {expected}; observed {_outcomes(run.observed)} · " + "; ".join(run.mismatches)


def unplayable_line(name: str, why: str) -> str:
    """The summary line of a scenario that did not play to the end."""
    return f"- {name:<22} {'':>8}  {why}"


def header_lines(run) -> list[str]:
    """Warnings first (anything the capture may have missed), then what ran where."""
    from ..analysis.completeness import banner

    meta = run.recording.metadata
    warnings = banner(run.recording).splitlines()
    warnings += [f"WARNING: {text}" for name, text in meta.extra if name == "witness_disagreement"
                 and f"WARNING: {text}" not in warnings]
    return warnings + [
        f"{run.scenario.name}: {run.scenario.summary}",
        f"{meta.os} {meta.kernel} · {run.family} · {len(run.recording.segments)} segments, "
        f"{len(run.recording.calls)} socket calls · {meta.capture}",
    ]


def describe_run(run, bundle_path: Optional[str] = None) -> str:
    timeline = timeline_lines(run.recording, declared_server_ports(run.recording))
    out = header_lines(run) + [""] + timeline + [""] + verdict_lines(run)
    if bundle_path:
        out += ["", f"bundle: {bundle_path} (open it in Wireshark; socket calls are packet comments)"]
    return "\n".join(out)
