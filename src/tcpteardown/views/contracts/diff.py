"""The diff JSON contract: `{"matches", "align_by", "tolerance_ms", "a", "b", "rows",
"differences", "notes", "figure"}`.

`diff_json(result, a_file, b_file, figure)` turns an `analysis.diff.DiffResult`
into DESIGN.md's `tcpteardown diff --json` document: each side also names
the file it was read from, and `figure` the picture drawn (null: none).
Every difference carries kind, category, row, whether it counts, and its
sentence; a few kinds add their own fields (`difference_json`).
"""

from __future__ import annotations

from typing import Optional

from ...analysis.diff import (
    ApplicationDifference,
    DiffResult,
    Difference,
    OptionDifference,
    OptionOrderDifference,
    SegmentStep,
    SideSummary,
    TimingDifference,
)
from ...analysis.diff.vocabulary import Step
from ...schemas import tag

__all__ = ["diff_json", "difference_json", "side_json"]


def diff_json(result: DiffResult, a_file: str, b_file: str, figure: Optional[str]) -> dict:
    return {
        "schema": tag("diff"),
        "matches": result.matches,
        "align_by": result.align_by,
        "tolerance_ms": result.tolerance_ns / 1e6,
        "a": side_json(result.a) | {"file": a_file},
        "b": side_json(result.b) | {"file": b_file},
        "rows": [{"kind": row.kind, "a": _step_json(row.a), "b": _step_json(row.b),
                  "differences": [d.kind for d in row.differences]} for row in result.aligned_rows],
        "differences": [difference_json(d) for d in result.differences],
        "notes": list(result.notes),
        "figure": figure,
    }


def side_json(side: SideSummary) -> dict:
    return {"label": side.label, "os": side.os,
            "client": str(side.client) if side.client else None,
            "server": str(side.server) if side.server else None,
            "connection": side.connection, "connections": side.connections,
            "roles_known": side.roles_known, "states_source": side.states_source,
            "segments": side.segments, "calls": side.calls, "closer": side.closer}


def difference_json(d: Difference) -> dict:
    out = {"kind": d.kind, "category": d.category, "row": d.row, "counts": d.counts, "text": d.describe()}
    if isinstance(d, TimingDifference):
        out |= {"what": d.what, "a_seconds": d.a_ns / 1e9, "b_seconds": d.b_ns / 1e9}
    elif isinstance(d, OptionDifference):
        out |= {"option": d.option, "a": _jsonable(d.a_value) if d.a_present else None,
                "b": _jsonable(d.b_value) if d.b_present else None}
    elif isinstance(d, OptionOrderDifference):
        out |= {"a": list(d.a_order), "b": list(d.b_order)}
    elif isinstance(d, ApplicationDifference):
        out |= {"what": d.what}
    return out


def _step_json(step: Optional[Step]) -> Optional[dict]:
    if step is None:
        return None
    if isinstance(step, SegmentStep):
        return {"frame": step.frame, "time": step.time_ns / 1e9, "sender": step.sender,
                "flags": step.flags.render(), "seq": step.rel_seq, "ack": step.rel_ack,
                "len": step.payload_len, "options": [[n, _jsonable(v)] for n, v in step.options],
                "reset_reason": step.reset_reason,
                "states": {"client": step.states[0], "server": step.states[1]}}
    return {"time": step.time_ns / 1e9, "end": step.end_ns / 1e9, "side": step.side, "op": step.op,
            "outcome": step.outcome, "text": step.text}


def _jsonable(value: object) -> object:
    """Option values as JSON has them: tuples (SACK blocks, timestamps) become lists."""
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
