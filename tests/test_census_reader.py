"""The census reader's record walk without a Python loop per record
(`pcap_columns._follow_records`), compiled (`speedups`) and vectorised: it is
used on ordinary files, it gives the same packets as the object reader, and
bytes that look like a record header inside a payload, or a record with a
far-away timestamp, do not mislead it (the vectorised walk then hands the
window back to the record-by-record loop; the compiled one is that loop)."""

from __future__ import annotations

import struct

import pytest

import pcapbytes as pb
from tcpteardown import speedups
from tcpteardown.formats import pcap_columns
from test_pcapread import assert_paths_agree

SECONDS = 1_700_000_000


def frames(count, payload=b""):
    return [pb.ethernet(pb.ipv4("10.0.0.1", "10.0.0.2", pb.tcp(40000 + n % 7, 80, seq=n, flags=0x18,
                                                               payload=payload)))
            for n in range(count)]


@pytest.fixture(autouse=True, params=["compiled", "vectorised"])
def walk(request, monkeypatch):
    """Each test runs with the compiled walk and with the vectorised one."""
    if request.param == "compiled" and speedups.compiled() is None:
        pytest.skip("tcpteardown._speedups is not built (no C compiler at install)")
    monkeypatch.setenv("TCPTEARDOWN_PURE_PYTHON", "" if request.param == "compiled" else "1")
    return request.param


def calls(monkeypatch):
    """Record what the fast walk answered for each window."""
    answers = []
    real = pcap_columns._follow_records

    def spy(*args):
        answers.append(real(*args))
        return answers[-1]

    monkeypatch.setattr(pcap_columns, "_follow_records", spy)
    return answers


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_the_fast_walk_is_used_and_agrees(tmp_path, monkeypatch, big_endian, nanoseconds):
    path = tmp_path / "plain.pcap"
    path.write_bytes(pb.pcap([(SECONDS + n // 100, n, f) for n, f in enumerate(frames(600))],
                             big_endian=big_endian, nanoseconds=nanoseconds))
    answers = calls(monkeypatch)
    contents = assert_paths_agree(str(path))
    assert contents.packet_count == 600
    assert any(answer is not None for answer in answers)


def test_a_fake_header_in_a_payload_does_not_mislead_it(tmp_path, monkeypatch):
    # A payload holding what looks like a whole record header (time, caplen, orig_len),
    # and even a second one that the first "points" to.
    fake = struct.pack("<IIII", SECONDS, 5, 20, 20) + bytes(4) + struct.pack("<IIII", SECONDS, 5, 20, 20)
    path = tmp_path / "decoy.pcap"
    path.write_bytes(pb.pcap([(SECONDS, n, f) for n, f in enumerate(frames(400, payload=fake * 3))]))
    answers = calls(monkeypatch)
    contents = assert_paths_agree(str(path))
    assert contents.packet_count == 400


def test_a_far_future_record_falls_back_to_the_walk(tmp_path, monkeypatch, walk):
    times = [SECONDS] * 300
    times[150] = 4_000_000_000  # year 2096
    path = tmp_path / "future.pcap"
    path.write_bytes(pb.pcap([(t, 0, f) for t, f in zip(times, frames(300))]))
    answers = calls(monkeypatch)
    contents = assert_paths_agree(str(path))
    assert contents.packet_count == 300 and contents.frames[150].time_ns == 4_000_000_000 * 10**9
    assert any(answer is None for answer in answers) == (walk == "vectorised")


def test_every_link_type_of_the_table_has_a_decoder_and_an_interface_name():
    from tcpteardown.formats import pcap_links

    for number, link in pcap_links.LINKS.items():
        expected = {"ipv4": 4, "ipv6": 6}.get(link.layout, 0)  # zeros hold no IP unless the link says so
        assert pcap_links.network_offset(number, bytes(64))[1] == expected, link
    assert pcap_links.network_offset(147, bytes(64)) == (0, 0)  # not in the table
    assert [pcap_links.interface_name(n) for n in (0, 1, 113, 276, 101, 147)] == [
        "lo0", "lo", "any", "any", "raw", "linktype147"]
