"""The pcapng writer at the limits of the format: options hold at most 65,535 bytes."""

from __future__ import annotations

import subprocess

import pytest

from conftest import REPO, tool_or_skip
from tcpteardown.formats import pcapng_write as pcapng
from tcpteardown.formats.pcapread import read_capture

STORED = REPO / "captures" / "linux" / "broken-pipe.pcapng"


def _long_comment(size: int) -> str:
    # Multi-byte characters straddle every 65,535-byte boundary somewhere.
    return ("frame ← RST · ECONNRESET ✗ " * (size // 20))[:size]


def _write(path, comment: str) -> None:
    frame = read_capture(str(STORED)).frames[0]
    with open(path, "wb") as out:
        pcapng.write_all(out, [
            pcapng.section_header("x86_64", "Linux", "test", comment),
            pcapng.interface(frame.linktype, "lo"),
            pcapng.enhanced_packet(0, frame.time_ns, frame.data, frame.orig_len, [comment]),
        ])


def test_a_comment_longer_than_an_option_is_split_never_dropped(tmp_path):
    comment = _long_comment(200_000)
    path = tmp_path / "long.pcapng"
    _write(path, comment)
    contents = read_capture(str(path))
    assert not contents.problems
    assert "".join(contents.section_comments) == comment
    assert "".join(contents.packet_comments[1]) == comment
    assert all(len(piece.encode()) <= pcapng.OPTION_MAX for piece in contents.packet_comments[1])


def test_tshark_reads_the_split_comment_whole(tmp_path):
    tshark = tool_or_skip("tshark")
    comment = _long_comment(100_000)
    path = tmp_path / "long.pcapng"
    _write(path, comment)
    result = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.comment"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace(",", "").replace("\n", "") == comment.replace(",", "")


def test_an_option_that_may_not_repeat_is_refused_not_truncated():
    with pytest.raises(ValueError, match="at most 65535"):
        pcapng.options([(pcapng.SHB_OS, b"x" * 70_000)])
