"""Fuzzing the reader. One property: it returns, or raises CaptureFileError, never
anything else; and the census column path agrees with the object path on
whatever it accepts. `bench/fuzz_reader.py` runs the same property for longer."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, example, given, settings, strategies as st

import pcapbytes as pb
from tcpteardown.analysis.census import census, census_batches
from tcpteardown.errors import CaptureFileError
from tcpteardown.formats.pcap_columns import iter_tcp_batches
from tcpteardown.formats.pcapread import read_capture

SEEDS = [
    pb.pcap([(1, 0, pb.syn_frame()), (1, 5, pb.ethernet(pb.ipv4(payload=pb.tcp(flags=0x12)))),
             (2, 0, pb.ethernet(pb.ipv6(payload=pb.tcp(flags=0x04)), 0x86DD, vlans=[(0x8100, 3)]))]),
    pb.pcap([(1, 0, struct.pack("<I", 30) + pb.ipv6(payload=pb.tcp(flags=0x11)))], linktype=0, big_endian=True,
            nanoseconds=True),
    pb.shb(comment="c") + pb.idb(1) + pb.idb(101, tsresol=9) + pb.epb(0, 5, pb.syn_frame(), comments=("x",))
    + pb.epb(1, 6, pb.ipv4(payload=pb.tcp(flags=0x14))) + pb.spb(pb.syn_frame()) + pb.custom(1, b"abc"),
    pb.shb(">") + pb.idb(276, ">") + pb.epb(0, 1, b"\x08\x00" + b"\0" * 18 + pb.ipv4(payload=pb.tcp()), ">"),
]


def _check(data: bytes, path) -> None:
    path.write_bytes(data)
    try:
        contents = read_capture(str(path))
    except CaptureFileError:
        try:
            list(iter_tcp_batches(str(path)))
        except CaptureFileError:
            return
        raise AssertionError("column path accepted what the object path refused")
    result = census_batches(iter_tcp_batches(str(path)))
    assert result.packets == contents.packet_count
    assert result.connections == census(contents.segments, contents.packet_count).connections


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "word"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at:at + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 12, 28, 4096])))
    return bytes(data)


# Found by bench/fuzz_reader.py: an SPB inherits the time of an EPB that overflows int64.
OVERFLOWING_TIME = (pb.shb() + pb.idb(1, tsresol=9) + pb.epb(0, 0xFFFFFFFF << 32, pb.syn_frame())
                    + pb.spb(pb.syn_frame()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
@example(data=OVERFLOWING_TIME)
def test_mutated_captures(tmp_path, data):
    _check(data, tmp_path / "fuzz.bin")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), magic=st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b""]))
def test_random_bytes(tmp_path, data, magic):
    _check(magic + data, tmp_path / "random.bin")
