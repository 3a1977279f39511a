"""views/contracts/rows.py: the compiled engine and the Python one write the same bytes,
and the compiled one refuses a malformed layout with an exception, never a crash."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tcpteardown import speedups
from tcpteardown.views.contracts.rows import (INT, INT_LIST, LITERAL, SECONDS, TEXT, TEXT_LIST, format_rows_compiled,
                                              format_rows_python, seconds_text)

needs_compiled = pytest.mark.skipif(speedups.compiled() is None,
                                    reason="tcpteardown._speedups is not built (no C compiler at install) "
                                           "or TCPTEARDOWN_PURE_PYTHON is set")

INT64 = st.integers(-2**63, 2**63 - 1)
WORDS = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6), min_size=1, max_size=5)


@st.composite
def layouts(draw):
    count = draw(st.integers(0, 12))
    layout = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from((LITERAL, INT, SECONDS, TEXT, INT_LIST, TEXT_LIST)))
        if kind == LITERAL:
            layout.append((kind, draw(st.text(max_size=8))))  # "%" included: the Python template escapes it
        elif kind in (INT, SECONDS):
            values = np.array(draw(st.lists(INT64, min_size=count, max_size=count)), dtype=np.int64)
            mask = draw(st.none() | st.lists(st.booleans(), min_size=count, max_size=count))
            layout.append((kind, values, None if mask is None else np.array(mask, dtype=bool)))
        else:
            lengths = draw(st.lists(st.integers(0, 11), min_size=count, max_size=count))
            offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))).astype(np.int64)
            words = draw(WORDS)
            separator = draw(st.sampled_from((",", ", ", "")))
            if kind == TEXT:
                index = draw(st.lists(st.integers(0, len(words) - 1), min_size=count, max_size=count))
                layout.append((kind, np.array(index, dtype=np.int64), words))
            elif kind == INT_LIST:
                values = draw(st.lists(INT64, min_size=int(offsets[-1]), max_size=int(offsets[-1])))
                layout.append((kind, offsets, np.array(values, dtype=np.int64), separator))
            else:
                index = draw(st.lists(st.integers(0, len(words) - 1), min_size=int(offsets[-1]),
                                      max_size=int(offsets[-1])))
                layout.append((kind, offsets, np.array(index, dtype=np.int64), words, separator))
    return layout, count


def expected_row(layout, row) -> str:
    """One row, written the slow obvious way, as the reference for both engines."""
    parts = []
    for piece in layout:
        kind = piece[0]
        if kind == LITERAL:
            parts.append(piece[1])
        elif kind in (INT, SECONDS):
            if piece[2] is not None and piece[2][row]:
                parts.append("null")
            else:
                value = int(piece[1][row])
                parts.append(str(value) if kind == INT else seconds_text(value))
        elif kind == TEXT:
            parts.append(piece[2][piece[1][row]])
        elif kind == INT_LIST:
            offsets, values, separator = piece[1:]
            parts.append(separator.join(str(int(v)) for v in values[offsets[row]:offsets[row + 1]]))
        else:
            offsets, index, words, separator = piece[1:]
            parts.append(separator.join(words[i] for i in index[offsets[row]:offsets[row + 1]]))
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(layouts(), st.sampled_from((",\n", "\n", "")))
def test_the_python_engine_writes_each_row_as_its_pieces_say(drawn, separator):
    layout, count = drawn
    expected = separator.join(expected_row(layout, row) for row in range(count)).encode()
    assert format_rows_python(layout, count, separator) == expected


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(layouts(), st.sampled_from((",\n", "\n", "")))
def test_the_compiled_engine_writes_the_same_bytes_as_the_python_one(drawn, separator):
    layout, count = drawn
    assert format_rows_compiled(layout, count, separator) == format_rows_python(layout, count, separator)


@needs_compiled
@pytest.mark.parametrize("layout, count, error", [
    ([(TEXT, np.array([0, 3]), ["a", "b"])], 2, "outside a vocabulary"),
    ([(TEXT, np.array([-1]), ["a"])], 1, "outside a vocabulary"),
    ([(INT, np.array([1, 2, 3]), None)], 2, "expected 2 items"),
    ([(INT, np.array([1, 2], dtype=np.int32), None)], 2, None),  # widened by the wrapper, so it works
    ([(INT_LIST, np.array([0, 2, 1]), np.array([5, 6]), ",")], 2, "offsets must rise"),
    ([(INT_LIST, np.array([0, 1, 3]), np.array([5, 6]), ",")], 2, "offsets must rise"),
    ([(TEXT_LIST, np.array([0, 1]), np.array([4]), ["x"], ",")], 1, "outside a vocabulary"),
    ([(9, "x")], 1, "unknown piece kind"),
])
def test_the_compiled_engine_refuses_a_malformed_layout(layout, count, error):
    if error is None:
        assert format_rows_compiled(layout, count, ",") == b"1,2"
        return
    with pytest.raises(ValueError, match=error):
        format_rows_compiled(layout, count, ",")


@needs_compiled
def test_the_compiled_engine_checks_the_raw_buffers_too():
    """Below the wrapper, arrays of the wrong item size or shape are a ValueError."""
    raw = speedups.compiled().format_rows
    with pytest.raises(ValueError, match="items of 8 bytes"):
        raw(((INT, np.zeros(2, dtype=np.int32), None),), 2, b",")
    with pytest.raises(ValueError, match="items of 1 bytes"):
        raw(((INT, np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64)),), 2, b",")
    with pytest.raises(TypeError):
        raw(((TEXT, np.zeros(1, dtype=np.int64), ("not bytes",)),), 1, b",")
    with pytest.raises(ValueError):
        raw(((INT, np.zeros((2, 2), dtype=np.int64), None),), 2, b",")


@needs_compiled
def test_census_json_is_the_same_document_from_either_engine(corpus, monkeypatch):
    """The whole census --json of every real capture in the corpus is byte for byte the
    same through both engines, and parses."""
    from tcpteardown.commands.census import census_file
    from tcpteardown.errors import CaptureFileError
    from tcpteardown.views.contracts.census import write_census_json
    from test_pcapread_corpus import ROWS

    compared = 0
    for row in ROWS:
        path = str(corpus / row["relpath"])
        try:
            result = census_file(path)
        except CaptureFileError:
            continue  # refused alike whatever the engine: the reader's tests cover it
        documents = []
        for pure in ("", "1"):
            monkeypatch.setenv("TCPTEARDOWN_PURE_PYTHON", pure)
            out = io.StringIO()
            write_census_json(result, path, [], None, out)
            documents.append(out.getvalue())
        assert documents[0] == documents[1], path
        assert len(json.loads(documents[0])["connections"]) == len(result)
        compared += len(result)
    assert compared > 100
