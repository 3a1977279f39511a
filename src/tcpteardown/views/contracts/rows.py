"""Many rows of text from numpy columns: one layout, two engines that give the same bytes.

A layout is a tuple of pieces, each a tuple whose first member says its kind:

    (LITERAL, text)                               the same text in every row
    (INT, values, null_mask or None)              a decimal integer, or null
    (SECONDS, ns, null_mask or None)              exact seconds "1700000000.123456789", or null
    (TEXT, word_index, words)                     words[word_index[row]]
    (INT_LIST, offsets, values, separator)        values[offsets[row]:offsets[row + 1]] joined
    (TEXT_LIST, offsets, word_index, words, separator)

Arrays are int64 (masks bool); `offsets` has one more item than there are rows.
`format_rows(layout, count, separator)` returns the rows as bytes, joined by
`separator`. The compiled engine (`format_rows` in `_speedups.c`, see
`speedups`) writes 68 MB of census JSON in a few hundredths of a second; the
Python one, used where it is not built, takes about half a second for the
same. `speedups.ENGINE` says which one runs; tests compare both byte for byte.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import speedups

__all__ = ["LITERAL", "INT", "SECONDS", "TEXT", "INT_LIST", "TEXT_LIST", "format_rows", "format_rows_python",
           "format_rows_compiled", "seconds_text"]

LITERAL, INT, SECONDS, TEXT, INT_LIST, TEXT_LIST = range(6)


def seconds_text(ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds."""
    sign = "-" if ns < 0 else ""
    whole, fraction = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{whole}.{fraction:09d}"


# -- the Python engine -------------------------------------------------------------------

def _with_nulls(texts: list, mask) -> list:
    if mask is not None:
        for row in np.flatnonzero(mask).tolist():
            texts[row] = "null"
    return texts


def _seconds_texts(ns: np.ndarray) -> list:
    whole, fraction = np.divmod(np.abs(ns), 1_000_000_000)  # abs(INT64_MIN) wraps: seconds_text below
    texts = list(map("%d.%09d".__mod__, zip(whole.tolist(), fraction.tolist())))
    for row in np.flatnonzero(ns < 0).tolist():
        texts[row] = seconds_text(int(ns[row]))
    return texts


def _joined(offsets: np.ndarray, texts: list, separator: str) -> list:
    """For each row, its slice of `texts` joined: a rank at a time over every row (most rows
    hold none, one or two items), then one by one for the few with many."""
    count = len(offsets) - 1
    lengths = np.diff(offsets)
    joined = [""] * count
    if not len(texts):
        return joined
    texts = np.array(texts, dtype=object)
    joined = np.array(joined, dtype=object)
    for rank in range(8):
        rows = np.flatnonzero(lengths > rank)
        if not len(rows):
            break
        items = texts[offsets[rows] + rank]
        joined[rows] = items if rank == 0 else joined[rows] + separator + items
    result = joined.tolist()
    for row in np.flatnonzero(lengths > 8).tolist():
        result[row] = separator.join(texts[offsets[row]:offsets[row + 1]].tolist())
    return result


def _column(piece: tuple) -> list:
    """One piece's text in every row."""
    kind = piece[0]
    if kind == INT:
        return _with_nulls(list(map(str, piece[1].tolist())), piece[2])
    if kind == SECONDS:
        return _with_nulls(_seconds_texts(piece[1]), piece[2])
    if kind == TEXT:
        return np.array(piece[2], dtype=object)[piece[1]].tolist()
    if kind == INT_LIST:
        return _joined(piece[1], list(map(str, piece[2].tolist())), piece[3])
    if kind == TEXT_LIST:
        return _joined(piece[1], np.array(piece[3], dtype=object)[piece[2]].tolist(), piece[4])
    raise ValueError(f"unknown piece kind {kind}")


def format_rows_python(layout: Sequence[tuple], count: int, separator: str) -> bytes:
    """`format_rows` in the interpreter: each piece becomes a list of its texts, then one
    %-template per row, run by `map`."""
    template, columns = [], []
    for piece in layout:
        if piece[0] == LITERAL:
            template.append(piece[1].replace("%", "%%"))
        else:
            template.append("%s")
            columns.append(_column(piece))
    rows = map("".join(template).__mod__, zip(*columns)) if columns else ["".join(template)] * count
    return separator.join(rows).encode()


# -- the compiled engine ------------------------------------------------------------------

def _as_bytes(piece: tuple) -> tuple:
    kind = piece[0]
    if kind == LITERAL:
        return (kind, piece[1].encode())
    if kind in (INT, SECONDS):
        mask = None if piece[2] is None else np.ascontiguousarray(piece[2], dtype=bool)
        return (kind, np.ascontiguousarray(piece[1], dtype=np.int64), mask)
    if kind == TEXT:
        return (kind, np.ascontiguousarray(piece[1], dtype=np.int64), tuple(w.encode() for w in piece[2]))
    if kind == INT_LIST:
        return (kind, np.ascontiguousarray(piece[1], dtype=np.int64), np.ascontiguousarray(piece[2], dtype=np.int64),
                piece[3].encode())
    if kind == TEXT_LIST:
        return (kind, np.ascontiguousarray(piece[1], dtype=np.int64), np.ascontiguousarray(piece[2], dtype=np.int64),
                tuple(w.encode() for w in piece[3]), piece[4].encode())
    raise ValueError(f"unknown piece kind {kind}")


def format_rows_compiled(layout: Sequence[tuple], count: int, separator: str) -> bytes:
    """`format_rows` by `_speedups.format_rows` (ImportError where it was not built)."""
    fast = speedups.compiled()
    if fast is None:
        raise ImportError("tcpteardown._speedups is not built (no C compiler at install time) "
                          "or TCPTEARDOWN_PURE_PYTHON is set")
    return fast.format_rows(tuple(_as_bytes(p) for p in layout), count, separator.encode())


def format_rows(layout: Sequence[tuple], count: int, separator: str) -> bytes:
    """The rows of `layout` as bytes joined by `separator`, by the compiled engine when built."""
    if speedups.compiled() is None:
        return format_rows_python(layout, count, separator)
    return format_rows_compiled(layout, count, separator)
