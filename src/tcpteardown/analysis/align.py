"""Edit-distance alignment of two sequences of steps: pure, generic, deterministic.

`analysis.diff` aligns segments and socket calls with it; nothing here
knows what a segment is. A match costs 0 (or `NEAR` when only the fine
detail differs), a deletion or insertion `indel(step)` (default `INDEL`),
a substitution `SUBSTITUTE`, allowed only where `same_slot` says so.
Substitution costs more than one deletion and less than two, so one
missing step is one gap, and two steps that stand for each other (a FIN
and an RST) are one pair, not a gap on each side.

Never imports socket or scapy; never looks at what the steps are.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

__all__ = ["align", "INDEL", "SUBSTITUTE", "NEAR"]

# A step whose key matches but whose fine detail (relative seq/ack) does not
# costs NEAR: so among equal-looking steps the exact one is paired.
INDEL, SUBSTITUTE, NEAR = 4, 6, 1
# Above this many DP cells the middle of the alignment is cut into blocks
# by difflib first (long captures), each block aligned on its own.
DP_CELLS = 250_000


def align(a: Sequence, b: Sequence, *, key, same_slot, anchor=None, indel=None,
          fine=None) -> list[tuple[Optional[int], Optional[int]]]:
    """Edit-distance alignment of two step lists: pairs of indexes, None for a gap.

    `key(step)` decides equality (cost 0, or 1 when `fine(step)` differs:
    among several equal-looking steps the exact one pairs); `same_slot(x, y)`
    says whether two unequal steps may stand for each other (a substitution,
    cost 6) or must be a deletion plus an insertion (cost `indel(step)` each,
    default 4). Ties go to the diagonal, then to A's step first, so the
    result is deterministic.

    With `anchor(step)`, the anchor steps (for segments: SYNs, FINs and
    RSTs) are aligned first, among themselves, and the steps between two
    paired anchors are aligned within that stretch only: so the server's FIN
    in A pairs with its RST in B even when the data before them differs.
    """
    scoring = _Scoring(key, same_slot, indel or (lambda step: INDEL), fine or (lambda step: None))
    if anchor is None:
        return _align_plain(a, b, scoring)
    anchors_a = [i for i, x in enumerate(a) if anchor(x)]
    anchors_b = [j for j, y in enumerate(b) if anchor(y)]
    paired = [(anchors_a[i], anchors_b[j]) for i, j in
              _align_plain([a[i] for i in anchors_a], [b[j] for j in anchors_b], scoring)
              if i is not None and j is not None]
    pairs: list[tuple[Optional[int], Optional[int]]] = []
    start_a = start_b = 0
    for end_a, end_b in (*paired, (len(a), len(b))):
        stretch = _align_plain(a[start_a:end_a], b[start_b:end_b], scoring)
        pairs += [(None if i is None else i + start_a, None if j is None else j + start_b) for i, j in stretch]
        if end_a < len(a):
            pairs.append((end_a, end_b))
        start_a, start_b = end_a + 1, end_b + 1
    return pairs


@dataclass(frozen=True)
class _Scoring:
    key: Callable
    same_slot: Callable
    indel: Callable
    fine: Callable


def _align_plain(a: Sequence, b: Sequence, scoring: _Scoring) -> list[tuple[Optional[int], Optional[int]]]:
    ka, kb = [scoring.key(x) for x in a], [scoring.key(y) for y in b]
    exact_a = [(k, scoring.fine(x)) for k, x in zip(ka, a)]
    exact_b = [(k, scoring.fine(y)) for k, y in zip(kb, b)]
    start = 0
    while start < len(ka) and start < len(kb) and exact_a[start] == exact_b[start]:
        start += 1
    end_a, end_b = len(ka), len(kb)
    while end_a > start and end_b > start and exact_a[end_a - 1] == exact_b[end_b - 1]:
        end_a, end_b = end_a - 1, end_b - 1
    pairs = [(i, i) for i in range(start)]
    pairs += _align_middle(a, b, ka, kb, start, end_a, start, end_b, scoring)
    pairs += [(end_a + k, end_b + k) for k in range(len(ka) - end_a)]
    return pairs


def _align_middle(a, b, ka, kb, a0, a1, b0, b1, scoring):
    if (a1 - a0) * (b1 - b0) <= DP_CELLS:
        return _dp(a, b, ka, kb, a0, a1, b0, b1, scoring)
    # Long captures: let difflib find the long equal runs, align what is between.
    out = []
    matcher = difflib.SequenceMatcher(None, ka[a0:a1], kb[b0:b1], autojunk=False)
    for tag, i0, i1, j0, j1 in matcher.get_opcodes():
        i0, i1, j0, j1 = i0 + a0, i1 + a0, j0 + b0, j1 + b0
        if tag == "equal":
            out += [(i0 + k, j0 + k) for k in range(i1 - i0)]
        elif (i1 - i0) * (j1 - j0) <= DP_CELLS:
            out += _dp(a, b, ka, kb, i0, i1, j0, j1, scoring)
        else:
            out += [(i, None) for i in range(i0, i1)] + [(None, j) for j in range(j0, j1)]
    return out


def _dp(a, b, ka, kb, a0, a1, b0, b1, scoring):
    n, m = a1 - a0, b1 - b0
    inf = float("inf")
    del_a = [scoring.indel(a[a0 + i]) for i in range(n)]
    ins_b = [scoring.indel(b[b0 + j]) for j in range(m)]

    def diagonal_cost(i, j):  # 1-based within the block
        if ka[a0 + i - 1] == kb[b0 + j - 1]:
            return 0 if scoring.fine(a[a0 + i - 1]) == scoring.fine(b[b0 + j - 1]) else NEAR
        if scoring.same_slot(a[a0 + i - 1], b[b0 + j - 1]):
            return SUBSTITUTE
        return inf

    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = cost[i - 1][0] + del_a[i - 1]
    for j in range(1, m + 1):
        cost[0][j] = cost[0][j - 1] + ins_b[j - 1]
    for i in range(1, n + 1):
        row, prev, deletion = cost[i], cost[i - 1], del_a[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + diagonal_cost(i, j), prev[j] + deletion, row[j - 1] + ins_b[j - 1])
    pairs = []
    i, j = n, m
    while i > 0 or j > 0:
        here = cost[i][j]
        if i > 0 and j > 0 and here == cost[i - 1][j - 1] + diagonal_cost(i, j):
            pairs.append((a0 + i - 1, b0 + j - 1))
            i, j = i - 1, j - 1
        elif j > 0 and here == cost[i][j - 1] + ins_b[j - 1]:
            pairs.append((None, b0 + j - 1))
            j -= 1
        else:
            pairs.append((a0 + i - 1, None))
            i -= 1
    pairs.reverse()
    return pairs
