"""Apple's capture formats: pcapng with process information (`tcpdump -k`) and PKTAP (258).

Real samples from the shared corpus: `scapy/macos_pib_trustd.pcapng` (Apple
tcpdump on Darwin 23.3, two Process Information Blocks, an EPB pointing at
`trustd`), `scapy/macos.pcapng` (Darwin 19.6, no process information) and
`macos/LINKTYPE_PKTAP.pcap` (tcpdump's PKTAP sample: pid 512, one DNS
query). The PKTAP sample holds no TCP, so one test wraps the real Darwin lo0
TCP frames of `macos/zip64.pcap` in that real PKTAP header and checks the
segments come out as from the original file, and that tshark reads the same
pid and name from it.
"""

from __future__ import annotations

import struct
import subprocess

from conftest import tool_or_skip
from tcpteardown.formats.bundle import load_recording
from tcpteardown.formats.pcap_links import LINK_NAMES, LINKTYPE_PKTAP, network_offset, pktap_process
from tcpteardown.formats.pcapread import iter_packets, read_capture
from tcpteardown.model import Endpoint
from tcpteardown.views.ladder import initial_sequence_numbers, segment_label


def test_apple_pcapng_names_the_process_of_each_packet(corpus):
    contents = read_capture(str(corpus / "scapy/macos_pib_trustd.pcapng"), strict=True)
    (segment,) = contents.segments
    assert (segment.pid, segment.process) == (10020, "trustd")
    assert segment.flags.render() == "FIN,ACK" and segment.dst == Endpoint("192.229.221.95", 80)
    label = segment_label(segment, initial_sequence_numbers(contents.segments))
    assert label.endswith("[trustd 10020]"), label


def test_a_pcapng_without_process_information_names_none(corpus):
    packets = list(iter_packets(str(corpus / "scapy/macos.pcapng"), strict=True))
    assert packets and all(p.process is None for p in packets)
    assert read_capture(str(corpus / "scapy/macos.pcapng"), strict=True).segments == []


def test_pktap_sample_loads_and_names_its_process(corpus):
    path = corpus / "macos/LINKTYPE_PKTAP.pcap"
    (packet,) = list(iter_packets(str(path), strict=True))
    assert packet.linktype == LINKTYPE_PKTAP and LINK_NAMES[LINKTYPE_PKTAP] == "PKTAP"
    offset, version = network_offset(packet.linktype, packet.data)
    assert (offset, version) == (108 + 14, 4)  # PKTAP header, then Ethernet, then IPv4
    assert packet.data[offset + 12:offset + 16] == bytes([10, 32, 4, 27])  # tcpdump: 10.32.4.27.63538 > ...
    assert pktap_process(packet.data) == (512, "")  # tshark: Process ID 512, no command name
    recording = load_recording(path)
    assert recording.segments == () and recording.frames[0].linktype == LINKTYPE_PKTAP


def _pktap_wrapped(corpus, tmp_path, pid: int, name: bytes):
    """zip64.pcap's real lo0 frames, each behind the real PKTAP header (inner DLT_NULL, our pid)."""
    header = bytearray(next(iter_packets(str(corpus / "macos/LINKTYPE_PKTAP.pcap"))).data[:108])
    struct.pack_into("<I", header, 8, 0)  # pkt_dlt: DLT_NULL, as lo0
    struct.pack_into("<i", header, 52, pid)
    header[56:76] = name.ljust(20, b"\0")
    source = corpus / "macos/zip64.pcap"
    raw = source.read_bytes()
    out = bytearray(raw[:20] + struct.pack("<I", LINKTYPE_PKTAP))
    offset = 24
    while offset < len(raw):
        seconds, micros, caplen, orig = struct.unpack_from("<IIII", raw, offset)
        frame = raw[offset + 16:offset + 16 + caplen]
        out += struct.pack("<IIII", seconds, micros, caplen + 108, orig + 108) + header + frame
        offset += 16 + caplen
    path = tmp_path / "zip64-pktap.pcap"
    path.write_bytes(bytes(out))
    return source, path


def test_pktap_tcp_frames_decode_as_the_frames_inside_them(corpus, tmp_path):
    source, wrapped = _pktap_wrapped(corpus, tmp_path, 4242, b"curl")
    plain = read_capture(str(source), strict=True).segments
    tapped = read_capture(str(wrapped), strict=True).segments
    assert len(plain) == len(tapped) == 26
    for a, b in zip(plain, tapped):
        assert (b.pid, b.process) == (4242, "curl")
        assert (a.src, a.dst, a.flags, a.seq, a.ack, a.payload_len, a.options) == \
               (b.src, b.dst, b.flags, b.seq, b.ack, b.payload_len, b.options)
    tshark = tool_or_skip("tshark")
    fields = subprocess.run([tshark, "-r", str(wrapped), "-T", "fields", "-e", "pktap.pid", "-e",
                             "pktap.cmdname", "-e", "tcp.flags.str"], capture_output=True, text=True,
                            check=True, timeout=60).stdout.splitlines()
    assert len(fields) == 26 and all(line.startswith("4242\tcurl\t") for line in fields), fields[:3]


def test_census_reads_pktap_tcp_too(corpus, tmp_path):
    from tcpteardown.commands.census import census_file

    _, wrapped = _pktap_wrapped(corpus, tmp_path, 77, b"nc")
    result = census_file(str(wrapped))
    assert [c.end for c in result.connections] == ["refused", "fin"]
