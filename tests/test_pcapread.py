"""The fast reader on byte literals: every container, link type and header quirk,
and bad input. Each case also runs through the census column path, which must
agree with the object path field for field."""

from __future__ import annotations

import ipaddress
import struct

import pytest

import pcapbytes as pb
from tcpteardown.errors import CaptureFileError
from tcpteardown.formats.pcap_columns import IPV4_MARK, iter_tcp_batches
from tcpteardown.formats.pcapread import decode_segment, iter_packets, read_capture
from tcpteardown.model import Endpoint, TcpFlags


def write(tmp_path, data, name="capture.pcap"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _host(hi, lo):
    if hi == int(IPV4_MARK):
        return str(ipaddress.IPv4Address(lo))
    return ipaddress.IPv6Address((hi << 64) | lo).compressed


def column_rows(path, window_bytes=64):
    rows, packets, problems = [], 0, []
    for batch in iter_tcp_batches(path, on_problem=problems.append, window_bytes=window_bytes):
        packets += batch.packets
        for i in range(len(batch)):
            rows.append((int(batch.frame[i]), int(batch.time_ns[i]), int(batch.flags[i]), int(batch.seq[i]),
                         int(batch.payload_len[i]), _host(int(batch.src_hi[i]), int(batch.src_lo[i])),
                         int(batch.sport[i]), _host(int(batch.dst_hi[i]), int(batch.dst_lo[i])),
                         int(batch.dport[i])))
    return rows, packets, problems


def assert_paths_agree(path):
    contents = read_capture(path)
    expected = [(s.frame, s.time_ns, int(s.flags), s.seq, s.payload_len, s.src.host, s.src.port, s.dst.host,
                 s.dst.port) for s in contents.segments]
    for window in (64, 1 << 20):
        rows, packets, problems = column_rows(path, window)
        assert rows == expected
        assert packets == contents.packet_count
        assert problems == contents.problems
    return contents


# -- pcap containers ----------------------------------------------------------------

@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_times_and_byte_orders(tmp_path, big_endian, nanoseconds):
    frame = pb.syn_frame()
    data = pb.pcap([(1700000000, 123456, frame), (1700000001, 7, frame)], nanoseconds=nanoseconds,
                   big_endian=big_endian)
    contents = assert_paths_agree(write(tmp_path, data))
    scale = 1 if nanoseconds else 1000
    assert [f.time_ns for f in contents.frames] == [1700000000_000000000 + 123456 * scale,
                                                    1700000001_000000000 + 7 * scale]
    assert [s.frame for s in contents.segments] == [1, 2]
    assert contents.linktypes == {1}
    assert contents.problems == []


def test_segment_fields_and_options(tmp_path):
    options = (b"\x02\x04\xff\xd7" b"\x04\x02" b"\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02" b"\x01"
               b"\x03\x03\x07")
    frame = pb.ethernet(pb.ipv4("127.0.0.1", "127.0.0.2",
                                pb.tcp(5555, 8080, seq=0xFFFFFFF0, ack=7, flags=0x12, window=1234,
                                       options=options, payload=b"hello")))
    contents = assert_paths_agree(write(tmp_path, pb.pcap([(1, 0, frame)])))
    (segment,) = contents.segments
    assert segment.src == Endpoint("127.0.0.1", 5555) and segment.dst == Endpoint("127.0.0.2", 8080)
    assert segment.flags == TcpFlags.SYN | TcpFlags.ACK
    assert (segment.seq, segment.ack, segment.window, segment.payload_len) == (0xFFFFFFF0, 7, 1234, 5)
    assert segment.options == (("MSS", 65495), ("SACK_PERM", None), ("TS", (1, 2)), ("WS", 7))


def test_sack_option():
    option = b"\x01\x01\x05\x12" + struct.pack("!IIII", 10, 20, 30, 40)
    frame = pb.ethernet(pb.ipv4(payload=pb.tcp(flags=0x10, options=option)))
    segment = decode_segment(3, 99, 1, frame)
    assert segment.frame == 3 and segment.time_ns == 99
    assert segment.options == (("SACK", ((10, 20), (30, 40))),)


# -- link types ---------------------------------------------------------------------

SEGMENT4 = pb.ipv4("192.0.2.1", "192.0.2.2", pb.tcp(1234, 80, flags=0x04, payload=b"xy"))
SEGMENT6 = pb.ipv6("2001:db8::1", "2001:db8::2", pb.tcp(1234, 80, flags=0x04, payload=b"xy"))


def _nflog(family, packet, big_endian=False):
    order = ">" if big_endian else "<"
    prefix = struct.pack(order + "HH", 8, 1) + b"\x08\x00\x00\x00"  # NFULA_PACKET_HDR
    body = struct.pack(order + "HH", 4 + len(packet), 9) + packet + b"\0" * (-len(packet) % 4)
    return bytes([family, 0]) + b"\x00\x00" + prefix + body


LINK_CASES = {
    "ethernet": (1, pb.ethernet(SEGMENT4)),
    "ethernet-ipv6": (1, pb.ethernet(SEGMENT6, 0x86DD)),
    "vlan": (1, pb.ethernet(SEGMENT4, vlans=[(0x8100, 5)])),
    "qinq": (1, pb.ethernet(SEGMENT6, 0x86DD, vlans=[(0x88A8, 1), (0x8100, 2)])),
    "null-le-inet": (0, struct.pack("<I", 2) + SEGMENT4),
    "null-be-inet": (0, struct.pack(">I", 2) + SEGMENT4),
    "null-macos-inet6": (0, struct.pack("<I", 30) + SEGMENT6),
    "null-freebsd-inet6": (0, struct.pack(">I", 28) + SEGMENT6),
    "null-openbsd-inet6": (0, struct.pack("<I", 24) + SEGMENT6),
    "loop": (108, struct.pack(">I", 2) + SEGMENT4),
    "raw101-v4": (101, SEGMENT4),
    "raw101-v6": (101, SEGMENT6),
    "raw12": (12, SEGMENT4),
    "raw14": (14, SEGMENT6),
    "ipv4": (228, SEGMENT4),
    "ipv6": (229, SEGMENT6),
    "sll": (113, b"\x00\x00\x03\x04\x00\x06" + b"\x01" * 6 + b"\x00\x00" + b"\x08\x00" + SEGMENT4),
    "sll2": (276, b"\x86\xdd\x00\x00" + b"\x00\x00\x00\x01" + b"\x03\x04\x00\x06" + b"\x01" * 8 + SEGMENT6),
    "nflog": (239, _nflog(2, SEGMENT4)),
    "nflog-v6": (239, _nflog(10, SEGMENT6)),
    "fddi": (10, b"\x50" + b"\x01" * 6 + b"\x02" * 6 + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + SEGMENT4),
}


@pytest.mark.parametrize("name", sorted(LINK_CASES))
def test_link_types(tmp_path, name):
    linktype, frame = LINK_CASES[name]
    contents = assert_paths_agree(write(tmp_path, pb.pcap([(10, 0, frame)], linktype=linktype)))
    (segment,) = contents.segments
    assert segment.flags == TcpFlags.RST
    assert segment.payload_len == 2
    assert (segment.src.port, segment.dst.port) == (1234, 80)
    assert segment.src.host in ("192.0.2.1", "2001:db8::1")


def test_linktype_field_upper_bits_are_masked(tmp_path):
    # FCS-length flags in the upper bits (tcpdump's tcp_header_heapoverflow.pcap)
    data = pb.pcap([(1, 0, pb.syn_frame())], network=0x30000001)
    assert read_capture(write(tmp_path, data)).linktypes == {1}


def test_not_ip_and_not_tcp_are_counted_not_decoded(tmp_path):
    arp = pb.ethernet(b"\x00" * 28, 0x0806)
    udp = pb.ethernet(pb.ipv4(payload=b"\x00" * 8, proto=17))
    contents = assert_paths_agree(write(tmp_path, pb.pcap([(1, 0, arp), (1, 1, udp), (1, 2, pb.syn_frame())])))
    assert contents.packet_count == 3 and len(contents.frames) == 3
    assert [s.frame for s in contents.segments] == [3]


# -- IP and TCP quirks ----------------------------------------------------------------

def test_ipv4_options(tmp_path):
    frame = pb.ethernet(pb.ipv4(payload=pb.tcp(flags=0x11, payload=b"abc"), options=b"\x94\x04\x00\x00"))
    (segment,) = assert_paths_agree(write(tmp_path, pb.pcap([(1, 0, frame)]))).segments
    assert segment.flags == TcpFlags.FIN | TcpFlags.ACK and segment.payload_len == 3


def test_ipv4_fragments_counted_not_decoded(tmp_path):
    first = pb.ethernet(pb.ipv4(payload=pb.tcp(payload=b"a" * 16), flags_fragment=0x2000))  # MF
    later = pb.ethernet(pb.ipv4(payload=b"b" * 16, flags_fragment=0x0003))  # offset 24
    contents = assert_paths_agree(write(tmp_path, pb.pcap([(1, 0, first), (1, 1, later), (1, 2, pb.syn_frame())])))
    assert contents.packet_count == 3
    assert [s.frame for s in contents.segments] == [3]


def test_ipv6_extension_headers(tmp_path):
    packet = pb.ipv6(payload=pb.tcp(flags=0x14, payload=b"zz"),
                     extensions=[(0, b"\x01\x04\x00\x00\x00\x00"), (60, b"\x01\x04\x00\x00\x00\x00" + b"\0" * 8)])
    fragment = pb.ipv6(payload=pb.tcp(), extensions=[(44, b"\x00\x01\x00\x00\x00\x07")])  # M flag set
    contents = assert_paths_agree(write(tmp_path, pb.pcap([(1, 0, packet), (1, 1, packet[:0] + fragment)],
                                                          linktype=229)))
    (segment,) = contents.segments
    assert segment.flags == TcpFlags.RST | TcpFlags.ACK and segment.payload_len == 2


def test_frames_cut_by_snaplen(tmp_path):
    full = pb.ethernet(pb.ipv4(payload=pb.tcp(flags=0x18, options=b"\x01" * 12, payload=b"p" * 100)))
    cut_in_options = full[:14 + 20 + 24]
    cut_in_header = full[:14 + 20 + 10]
    data = pb.pcap([(1, 0, cut_in_options, len(full)), (1, 1, cut_in_header, len(full))], snaplen=58)
    contents = assert_paths_agree(write(tmp_path, data))
    (segment,) = contents.segments  # the second has no TCP flags captured: counted only
    assert segment.payload_len == 100  # from the IP header, not from what was captured
    assert contents.frames[0].orig_len == len(full)
    assert contents.packet_count == 2


def test_tso_total_length_zero(tmp_path):
    segment = pb.tcp(flags=0x10, payload=b"q" * 3000)
    frame = pb.ethernet(pb.ipv4(payload=segment, total=0))
    (decoded,) = assert_paths_agree(write(tmp_path, pb.pcap([(1, 0, frame)]))).segments
    assert decoded.payload_len == 3000


# -- pcapng ---------------------------------------------------------------------------

def test_pcapng_sections_interfaces_resolutions(tmp_path):
    data = (
        pb.shb(comment="first section")
        + pb.idb(1)  # microseconds by default
        + pb.idb(113, tsresol=9, tsoffset=100)  # nanoseconds, 100 s offset
        + pb.epb(0, 1_700_000_000_000_001, pb.syn_frame(), comments=("call: connect",))
        + pb.epb(1, 5, LINK_CASES["sll"][1])
        + pb.custom(32473, b'{"x":1}')
        + pb.shb(">", comment="second, big endian")
        + pb.idb(0, ">", tsresol=0x80 | 10)  # 2^-10 s
        + pb.epb(0, 1024 * 3, LINK_CASES["null-be-inet"][1], ">")
        + pb.spb(LINK_CASES["null-be-inet"][1], ">")
        + pb.opb(0, 2048, LINK_CASES["null-le-inet"][1], ">")
    )
    contents = assert_paths_agree(write(tmp_path, data, "x.pcapng"))
    assert contents.problems == []
    assert contents.packet_count == 5
    assert [f.time_ns for f in contents.frames] == [1_700_000_000_000_001_000, 100_000_000_005,
                                                    3_000_000_000, 3_000_000_000, 2_000_000_000]
    assert [f.linktype for f in contents.frames] == [1, 113, 0, 0, 0]
    assert contents.section_comments == ["first section", "second, big endian"]
    assert contents.packet_comments == {1: ("call: connect",)}
    assert contents.custom_blocks == [(32473, b'{"x":1}')]
    assert contents.linktypes == {0, 1, 113}
    assert [s.frame for s in contents.segments] == [1, 2, 3, 4, 5]


def test_iter_packets_streams_raw_packets(tmp_path):
    data = pb.shb() + pb.idb(1) + pb.epb(0, 1, b"abc", comments=("hi",)) + pb.epb(0, 2, pb.syn_frame())
    packets = list(iter_packets(write(tmp_path, data, "y.pcapng")))
    assert [(p.frame, p.time_ns, p.linktype, p.data, p.orig_len, p.comments) for p in packets][0] == \
        (1, 1000, 1, b"abc", 3, ("hi",))
    assert packets[1].frame == 2


# -- bad input ----------------------------------------------------------------------

def test_wrong_magic_raises_at_offset_zero(tmp_path):
    path = write(tmp_path, b"GET / HTTP/1.1\r\n" * 4)
    with pytest.raises(CaptureFileError) as caught:
        read_capture(path)
    assert caught.value.offset == 0 and "magic" in str(caught.value) and path in str(caught.value)
    with pytest.raises(CaptureFileError):
        list(iter_tcp_batches(path))


def test_empty_file(tmp_path):
    with pytest.raises(CaptureFileError, match="only 0 bytes"):
        read_capture(write(tmp_path, b""))


def test_unknown_link_type_raises(tmp_path):
    path = write(tmp_path, pb.pcap([(1, 0, b"\x00" * 40)], linktype=147))
    with pytest.raises(CaptureFileError, match="unknown link type 147"):
        read_capture(path)
    with pytest.raises(CaptureFileError, match="unknown link type 147"):
        list(iter_tcp_batches(path))


def test_truncated_last_record_keeps_what_was_read(tmp_path):
    data = pb.pcap([(1, 0, pb.syn_frame()), (2, 0, pb.syn_frame(seq=5))])
    path = write(tmp_path, data[:-10])
    contents = assert_paths_agree(path)
    assert [s.frame for s in contents.segments] == [1]
    (problem,) = contents.problems
    second = 24 + 16 + len(pb.syn_frame())
    assert f"byte offset {second}" in problem and "truncated record" in problem
    with pytest.raises(CaptureFileError) as caught:
        read_capture(path, strict=True)
    assert caught.value.offset == second
    assert [s.frame for s in caught.value.partial.segments] == [1]


def test_record_claiming_gigabytes(tmp_path):
    data = pb.pcap([(1, 0, pb.syn_frame())]) + struct.pack("<IIII", 1, 0, 0x7FFFFFF0, 0x7FFFFFF0) + b"x" * 64
    contents = assert_paths_agree(write(tmp_path, data))
    assert len(contents.segments) == 1
    assert "claims 2147483632 bytes" in contents.problems[0]


def test_garbage_after_header(tmp_path):
    data = pb.pcap([]) + bytes(range(256)) * 4
    contents = assert_paths_agree(write(tmp_path, data))
    assert contents.packet_count == 0 and "byte offset 24" in contents.problems[0]


def test_pcapng_block_lengths_disagree(tmp_path):
    good = pb.shb() + pb.idb(1) + pb.epb(0, 1, pb.syn_frame())
    bad = pb.block(6, struct.pack("<IIIII", 0, 0, 2, 4, 4) + b"abcd", trailer=999)
    path = write(tmp_path, good + bad + pb.epb(0, 3, pb.syn_frame()), "z.pcapng")
    contents = assert_paths_agree(path)
    assert len(contents.segments) == 1
    assert f"byte offset {len(good)}" in contents.problems[0] and "lengths disagree" in contents.problems[0]
    with pytest.raises(CaptureFileError, match="lengths disagree"):
        read_capture(path, strict=True)


def test_pcapng_packet_on_undeclared_interface(tmp_path):
    data = pb.shb() + pb.idb(1) + pb.epb(3, 1, pb.syn_frame())
    contents = assert_paths_agree(write(tmp_path, data, "w.pcapng"))
    assert contents.packet_count == 0 and "interface 3" in contents.problems[0]


def test_pcapng_truncated_block(tmp_path):
    data = pb.shb() + pb.idb(1) + pb.epb(0, 1, pb.syn_frame()) + pb.epb(0, 2, pb.syn_frame())
    contents = assert_paths_agree(write(tmp_path, data[:-8], "t.pcapng"))
    assert contents.packet_count == 1 and "truncated block" in contents.problems[0]
