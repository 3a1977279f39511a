"""The run JSON contract: `{"scenario", "family", "matches", "mismatches", "expected",
"observed", "calls", "segments", "metadata", "bundle"}`.

`run_json(result, bundle)` is one scenario run as `tcpteardown run NAME --json`
prints it; several names print a list of them, each with the `seconds` it took.
Sequence numbers are relative (`analysis.relative`), times epoch seconds.
"""

from __future__ import annotations

from typing import Optional

from ...analysis.relative import relative_numbers
from ...schemas import tag

__all__ = ["run_json"]


def run_json(result, bundle: Optional[str], seconds: Optional[float] = None) -> dict:
    """One scenario run (a `scenarios.runner` result) and the bundle it was written to, if any."""
    rec = result.recording
    relative = relative_numbers(rec.segments)
    return {
        "schema": tag("run"),
        "scenario": result.scenario.name,
        "family": result.family,
        "matches": result.matches,
        "mismatches": list(result.mismatches),
        "expected": [_outcome(o) for o in (result.expected.outcomes if result.expected else ())],
        "observed": [_outcome(o) for o in result.observed],
        "calls": [{"role": c.role, "op": c.op, "start": c.start_ns / 1e9, "end": c.end_ns / 1e9,
                   "result": c.result, "errno": c.errno if c.errno else ("EOF" if c.is_eof else None),
                   "fd": c.fd, "local": _ep(c.local), "remote": _ep(c.remote)} for c in rec.calls],
        "segments": [{"frame": s.frame, "time": s.time_ns / 1e9, "src": str(s.src), "dst": str(s.dst),
                      "flags": s.flags.render(), "seq": relative[s.frame][0], "ack": relative[s.frame][1],
                      "len": s.payload_len, "reason": s.reset_reason} for s in rec.segments],
        "metadata": {"os": rec.metadata.os, "kernel": rec.metadata.kernel, "capture": rec.metadata.capture},
        "bundle": bundle,
    } | ({} if seconds is None else {"seconds": round(seconds, 3)})


def _outcome(o) -> dict:
    return {"role": o.role, "op": o.op, "outcome": o.outcome, "cause": o.cause}


def _ep(endpoint):
    return None if endpoint is None else str(endpoint)
