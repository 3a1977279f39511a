"""The reader on every real capture in ../shared/corpus: MANIFEST facts, tshark's
own dissection of the same file, and agreement of the object and column paths."""

from __future__ import annotations

import csv
import subprocess

import pytest

from conftest import CORPUS, tool_or_skip
from tcpteardown.formats.pcapread import read_capture
from test_pcapread import assert_paths_agree


def manifest_rows():
    path = CORPUS / "MANIFEST.tsv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = manifest_rows()
IDS = [row["relpath"] for row in ROWS]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_corpus_file_reads_cleanly(corpus, row):
    path = str(corpus / row["relpath"])
    contents = assert_paths_agree(path)
    assert contents.packet_count == int(row["packets"])
    assert contents.problems == []
    assert len(contents.frames) == contents.packet_count


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_corpus_segments_match_tshark(corpus, row):
    tool_or_skip("tshark")
    path = str(corpus / row["relpath"])
    out = subprocess.run(
        ["tshark", "-r", path, "-Y", "tcp", "-T", "fields", "-e", "frame.number", "-e", "tcp.srcport",
         "-e", "tcp.dstport", "-e", "tcp.flags", "-e", "tcp.seq_raw", "-e", "tcp.len", "-e", "frame.time_epoch"],
        capture_output=True, text=True, check=True).stdout
    theirs = []
    for line in out.splitlines():
        frame, sport, dport, flags, seq, length, epoch = line.split("\t")
        if not flags:  # tshark saw a TCP header too short to hold the flags: we skip those
            continue
        theirs.append((int(frame), int(sport), int(dport), int(flags, 16) & 0xFF, int(seq), int(length), epoch))
    contents = read_capture(path)
    ours = [(s.frame, s.src.port, s.dst.port, int(s.flags), s.seq, s.payload_len,
             f"{s.time_ns // 1_000_000_000}.{s.time_ns % 1_000_000_000:09d}") for s in contents.segments]
    assert ours == theirs
