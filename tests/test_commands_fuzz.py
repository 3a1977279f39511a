"""Bit flips in bundles, through the commands a user runs on them.

One property: explain, plot and diff on a damaged bundle give a result or
the tool's own one-line error, exit 0, 1 or 2, never a traceback. The
flips are seeded (the same files every run); `bench/fuzz_commands.py`
runs the same property on many more, as separate processes.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import REPO
from tcpteardown.cli import main

STORED = sorted((REPO / "captures" / "linux").glob("*.pcapng"))
SEED = 19
FLIPS = 12


def flipped(source: Path, rng: random.Random, bits: int = 1) -> bytes:
    """`source` with `bits` random bits flipped; half the time inside the tcpteardown block."""
    data = bytearray(source.read_bytes())
    block = data.rfind(b"tcpteardown-bundle/1\n")
    for _ in range(bits):
        start = block if block >= 0 and rng.random() < 0.5 else 0
        where = rng.randrange(start, len(data))
        data[where] ^= 1 << rng.randrange(8)
    return bytes(data)


def command_lines(path: Path, tmp_path: Path) -> list[list[str]]:
    other = REPO / "captures" / "linux" / "broken-pipe.pcapng"
    return [["explain", str(path)], ["explain", "--json", str(path)],
            ["plot", str(path), "-o", str(tmp_path / "ladder.svg")], ["diff", str(path), str(other)]]


def _cases():
    rng = random.Random(SEED)
    return [(rng.choice(STORED), rng.randrange(1 << 30), 1 + rng.randrange(3)) for _ in range(FLIPS)]


@pytest.mark.parametrize("source, seed, bits", _cases(), ids=lambda v: getattr(v, "stem", str(v)))
def test_a_damaged_bundle_gives_a_result_or_one_error_line(source, seed, bits, tmp_path, capsys):
    path = tmp_path / f"flipped-{source.name}"
    path.write_bytes(flipped(source, random.Random(seed), bits))
    for argv in command_lines(path, tmp_path):
        status = main(argv)  # anything but UserError would escape here as the test's failure
        out, err = capsys.readouterr()
        assert status in (0, 1, 2), (argv, status, err)
        if status == 2:
            errors = [line for line in err.splitlines() if ": error: " in line]
            assert len(errors) == 1, (argv, err)


def test_a_damaged_tcpteardown_block_falls_back_to_the_packets(tmp_path, capsys):
    source = REPO / "captures" / "linux" / "broken-pipe.pcapng"
    data = bytearray(source.read_bytes())
    data[data.rfind(b"tcpteardown-bundle/1\n") + 30] ^= 0x20  # a control character inside the JSON
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(bytes(data))
    assert main(["explain", "--json", str(path)]) == 0
    _, err = capsys.readouterr()
    assert "the tcpteardown block is damaged" in err and "using the packets alone" in err
    assert main(["plot", str(path), "-o", str(tmp_path / "ladder.png")]) == 0
    assert (tmp_path / "ladder.png").stat().st_size > 0
