"""The diff itself: align two normalised recordings step by step (or by
teardown structure) and name every difference.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from typing import Iterable, Optional, Sequence, Union

from ...model import Recording, TcpFlags
from ..align import align
from .vocabulary import (
    ALIGN_CHOICES,
    AlignedRow,
    ApplicationDifference,
    DEFAULT_TOLERANCE_NS,
    DiffResult,
    Difference,
    FlagDifference,
    OnlyIn,
    OptionDifference,
    OptionOrderDifference,
    OutcomeDifference,
    PayloadDifference,
    ReasonDifference,
    SegmentStep,
    StateDifference,
    TimingDifference,
    _MAX_IP_PACKET,
    _OTHER,
    _same_call,
    _same_slot,
    _segment_class,
    _segment_indel,
)
from .normalise import (
    Normalised,
    normalise,
)

# -- the diff ---------------------------------------------------------------------

def diff(a: Recording, b: Recording, *, tolerance: Union[int, float, None] = None,
         connection_a: Union[None, int, str] = None, connection_b: Union[None, int, str] = None,
         label_a: str = "", label_b: str = "", count_bare_acks: bool = False,
         align_by: str = "steps") -> DiffResult:
    """Every difference between the teardown in `a` and the one in `b`.

    `tolerance` is in nanoseconds (default `DEFAULT_TOLERANCE_NS`): timing
    differences at or under it are jitter, not differences. A bare ACK only
    one side sent is reported but does not count unless `count_bare_acks`.
    `align_by` "structure" compares two applications' teardowns by who
    closed, how, and what answered (see the module's docstring).
    """
    if align_by not in ALIGN_CHOICES:
        raise ValueError(f"align_by must be one of {', '.join(ALIGN_CHOICES)}, not {align_by!r}")
    tolerance_ns = DEFAULT_TOLERANCE_NS if tolerance is None else int(tolerance)
    na = normalise(a, connection_a, label=label_a or "A")
    nb = normalise(b, connection_b, label=label_b or "B")
    fins_again = _fins_again(na.segments) | {-frame for frame in _fins_again(nb.segments)}
    whole: list[ApplicationDifference] = []
    if align_by == "structure":
        (na, before_a, closer_a), (nb, before_b, closer_b) = _skeleton(na), _skeleton(nb)
        whole = _application_differences(before_a, closer_a, before_b, closer_b)
    key = (lambda s: s.key) if align_by == "steps" else _structure_key
    seg_pairs = align(na.segments, nb.segments, key=key, same_slot=_same_slot,
                      anchor=lambda s: _segment_class(s) in ("opening", "closing"), indel=_segment_indel,
                      fine=lambda s: (s.rel_seq, s.rel_ack))
    call_pairs = align(na.calls, nb.calls, key=lambda c: c.key, same_slot=_same_call)
    seg_rows = [("segment", _get(na.segments, i), _get(nb.segments, j)) for i, j in seg_pairs]
    call_rows = [("call", _get(na.calls, i), _get(nb.calls, j)) for i, j in call_pairs]
    notes = []
    # A plain capture knows no socket calls: its silence about them is not a difference.
    compare_calls = bool(na.calls) and bool(nb.calls)
    for name, side, other in (("A", na, nb), ("B", nb, na)):
        if not side.calls and other.calls:
            notes.append(f"{name} has no socket calls (a plain capture): calls are shown, not compared")
    rows: list[AlignedRow] = []
    differences: list[Difference] = []
    previous: dict[str, tuple[int, int]] = {}  # kind -> times of the last paired step
    for number, (kind, x, y) in enumerate(_merge_by_time(seg_rows, call_rows)):
        found: list[Difference] = []
        if x is None or y is None:
            if kind == "segment" or compare_calls:
                step = x if x is not None else y
                bare = kind == "segment" and not count_bare_acks and _segment_class(step) == "ack"
                again = kind == "segment" and (step.frame if x is not None else -step.frame) in fins_again
                found.append(OnlyIn(number, "A" if x is not None else "B", step, informational=bare,
                                    fin_again=again))
        elif kind == "segment":
            found += _segment_differences(number, x, y, _same_trigger(rows))
        else:
            if x.outcome != y.outcome:
                found.append(OutcomeDifference(number, x, y))
            if abs(x.duration_ns - y.duration_ns) > tolerance_ns:
                found.append(TimingDifference(number, "duration", x.duration_ns, y.duration_ns, x))
        if x is not None and y is not None:
            before_a, before_b = previous.get(kind, (0, 0))
            gap_a, gap_b = x.time_ns - before_a, y.time_ns - before_b
            if abs(gap_a - gap_b) > tolerance_ns:
                found.append(TimingDifference(number, "gap", gap_a, gap_b, x))
            previous[kind] = (x.time_ns, y.time_ns)
        rows.append(AlignedRow(kind, x, y, tuple(found)))
    # States inferred from packets only restate the segment differences; the
    # kernel's own states (sock:inet_sock_set_state) on both sides are news.
    if _kernel_states(na) and _kernel_states(nb):
        for difference in _state_differences(rows, na, nb):
            row = rows[difference.row]
            rows[difference.row] = replace(row, differences=(*row.differences, difference))
    if whole:  # on the row where the teardown starts
        at = next((n for n, row in enumerate(rows) if row.kind == "segment"
                   and any(s is not None and _segment_class(s) == "closing" for s in (row.a, row.b))), 0)
        if rows:
            rows[at] = replace(rows[at], differences=(*rows[at].differences, *(replace(d, row=at) for d in whole)))
    if align_by == "structure":  # what two applications may differ in: shown, not counted
        rows = [replace(row, differences=tuple(replace(d, shown_only=True) if d.category == "application" else d
                                               for d in row.differences)) for row in rows]
        notes.append("aligned by teardown structure: handshake by who opened (client, server), the rest "
                     "by who closed first (closer, peer); data before the close summed, payload sizes "
                     "and timing shown, not counted")
    differences = [d for row in rows for d in row.differences]
    return DiffResult(na.summary, nb.summary, tuple(rows), tuple(differences), tolerance_ns, tuple(notes),
                      align_by)


# -- aligning by structure ----------------------------------------------------------

def _structure_key(step: SegmentStep) -> tuple:
    """Sender and flags, never payload length (PSH is how data was pushed, not teardown)."""
    return (step.sender, int(step.flags) & ~int(TcpFlags.PSH))


def _skeleton(side: Normalised) -> tuple[Normalised, dict, Optional[str]]:
    """The handshake, every FIN and RST and what was sent after the first of
    them, with senders after the handshake named closer/peer; the data sent
    before the close, per opening role; and who closed first."""
    closer = next((s.sender for s in side.segments if _segment_class(s) == "closing"), None)
    role = {closer: "closer", _OTHER[closer]: "peer"} if closer else {}
    before = {"client": [0, 0], "server": [0, 0]}  # segments, bytes
    kept, closed = [], False
    for step in side.segments:
        kind = _segment_class(step)
        closed = closed or kind == "closing"
        if kind == "opening":
            kept.append(step)
        elif kind == "closing" or (closed and kind == "data"):
            kept.append(replace(step, sender=role.get(step.sender, step.sender)))
        elif kind == "data":
            before[step.sender][0] += 1
            before[step.sender][1] += step.payload_len
    calls = tuple(replace(c, side=role.get(c.side, c.side)) for c in side.calls)
    summary = replace(side.summary, closer=closer)
    return replace(side, segments=tuple(kept), calls=calls, summary=summary), before, closer


def _application_differences(before_a: dict, closer_a: Optional[str], before_b: dict,
                             closer_b: Optional[str]) -> list[ApplicationDifference]:
    found = []
    if closer_a and closer_b and closer_a != closer_b:
        found.append(ApplicationDifference(0, "closer", f"the {closer_a} closed first in A, the {closer_b} in B "
                                                         "(aligned closer to closer)"))
    if before_a != before_b:
        def amounts(before):
            return ", ".join(f"{role} {n_bytes} B in {n} segment{'s' if n != 1 else ''}"
                             for role, (n, n_bytes) in before.items())
        found.append(ApplicationDifference(0, "data", f"data before the close: {amounts(before_a)} in A; "
                                                       f"{amounts(before_b)} in B"))
    return found


def _fins_again(steps: Sequence[SegmentStep]) -> set[int]:
    """Frames of FINs a sender sent again (same seq) after the peer's FIN had
    arrived: the acknowledgment of a FIN from CLOSING, XNU-style."""
    first: dict[str, int] = {}  # sender -> seq of its first FIN
    peer_fin: set[str] = set()  # senders whose peer has sent a FIN since theirs
    again = set()
    for step in steps:
        if not step.flags & TcpFlags.FIN:
            continue
        if step.sender in first and step.sender in peer_fin and step.rel_seq == first[step.sender]:
            again.add(step.frame)
        first.setdefault(step.sender, step.rel_seq)
        other = _OTHER.get(step.sender)
        if other in first:
            peer_fin.add(other)
    return again


def _same_trigger(rows: list[AlignedRow]) -> bool:
    """The last segment rows agree (both sides have them, same sender and class): what comes next answers the same step."""
    for row in reversed(rows):
        if row.kind != "segment":
            continue
        return row.a is not None and row.b is not None and _same_slot(row.a, row.b)
    return False


def _get(steps: Sequence, index: Optional[int]):
    return None if index is None else steps[index]


def _merge_by_time(first: list, second: list) -> Iterable[tuple]:
    """Merge two aligned lists into one, by time, keeping each list's order.

    Rows are placed by A's clock; a step only B has is placed by B's clock
    mapped onto A's between the pairs of partners around it, so it lands
    between the same steps in both ladders.
    """
    anchors = sorted((y.time_ns, x.time_ns) for _, x, y in (*first, *second)
                     if x is not None and y is not None)

    def when(row):
        _, x, y = row
        if x is not None:
            return x.time_ns
        at = bisect.bisect_right(anchors, (y.time_ns, float("inf")))
        if at == 0:
            return y.time_ns - (anchors[0][0] - anchors[0][1]) if anchors else y.time_ns
        b_time, a_time = anchors[at - 1]
        if at == len(anchors):
            return a_time + (y.time_ns - b_time)
        b_next, a_next = anchors[at]  # between two pairs: interpolate, keeping B's order
        return a_time + (y.time_ns - b_time) * max(a_next - a_time, 0) / max(b_next - b_time, 1)

    i = j = 0
    while i < len(first) or j < len(second):
        if j >= len(second) or (i < len(first) and when(first[i]) <= when(second[j])):
            yield first[i]
            i += 1
        else:
            yield second[j]
            j += 1


def _segment_differences(row: int, x: SegmentStep, y: SegmentStep, same_trigger: bool = False) -> list[Difference]:
    found: list[Difference] = []
    if x.flags != y.flags:
        found.append(FlagDifference(row, x, y, same_trigger))
    if x.payload_len != y.payload_len:
        found.append(PayloadDifference(row, x, y))
    if x.reset_reason and y.reset_reason and x.reset_reason != y.reset_reason:
        found.append(ReasonDifference(row, x, y))
    found += _option_differences(row, x, y)
    return found


def _option_differences(row: int, x: SegmentStep, y: SegmentStep) -> list[Difference]:
    ox, oy = _comparable_options(x), _comparable_options(y)
    raw_x, raw_y = dict(x.options), dict(y.options)
    found: list[Difference] = []
    for name in sorted(set(ox) | set(oy), key=_option_order):
        if name in ox and name in oy and ox[name] == oy[name]:
            continue
        found.append(OptionDifference(row, name, raw_x.get(name), raw_y.get(name), name in ox, name in oy, x))
    order_x = tuple(name for name, _ in x.options if name in oy)
    order_y = tuple(name for name, _ in y.options if name in ox)
    if x.flags & TcpFlags.SYN and order_x != order_y and sorted(order_x) == sorted(order_y):
        found.append(OptionOrderDifference(row, order_x, order_y, x))
    return found


_OPTION_ORDER = ("MSS", "WS", "SACK_PERM", "TS", "SACK")


def _option_order(name: str) -> tuple:
    return (_OPTION_ORDER.index(name) if name in _OPTION_ORDER else len(_OPTION_ORDER), name)


def _comparable_options(step: SegmentStep) -> dict[str, object]:
    """Option name -> what is compared: MSS as the IP packet size it implies,
    WS by value, everything else by presence."""
    out: dict[str, object] = {}
    for name, value in step.options:
        if name == "MSS" and isinstance(value, int):
            out[name] = min(value + (60 if step.ipv6 else 40), _MAX_IP_PACKET)
        elif name == "WS":
            out[name] = value
        else:
            out[name] = True
    return out


def _kernel_states(side: Normalised) -> bool:
    return (side.summary.states_source or "").startswith("kernel")


def _state_differences(rows: list[AlignedRow], na: Normalised, nb: Normalised) -> list[Difference]:
    found: list[Difference] = []
    for role in ("client", "server"):
        path_a, path_b = na.path(role), nb.path(role)
        names_a, names_b = [name for _, name in path_a], [name for _, name in path_b]
        if names_a == names_b:
            continue
        k = 0
        while k < min(len(names_a), len(names_b)) and names_a[k] == names_b[k]:
            k += 1
        side, when = ("a", path_a[k][0]) if k < len(path_a) else ("b", path_b[k][0])
        candidates = [(abs(getattr(row, side).time_ns - when), number) for number, row in enumerate(rows)
                      if row.kind == "segment" and getattr(row, side) is not None]
        if not candidates:
            continue
        number = min(candidates)[1]
        found.append(StateDifference(number, role, names_a[k - 1] if k else None,
                                     names_a[k] if k < len(names_a) else None,
                                     names_b[k] if k < len(names_b) else None,
                                     getattr(rows[number], side)))
    return found
