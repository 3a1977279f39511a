"""Which OS captured a file, and which OS each endpoint runs: on real captures only.

Linux: every stored scenario bundle (both families) and an SLL2 capture from
the corpus. Darwin: the real Mac loopback captures in ../shared/corpus/macos
and two Apple-tcpdump pcapng files (SHB names Darwin). Windows: zeek's
kerberos_tso.pcapng (SHB "Windows 10", TTL 128, Windows option order).
FreeBSD has no capture in the corpus: its layout row is p0f's word only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpteardown.formats import pcap_links
from tcpteardown.formats.bundle import load_recording
from tcpteardown.formats.os_guess import guess_os

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "linux"
MAC_LOOPBACK = ["bulk-loading.pcap", "http-urldecode-body.pcap", "http2-deflate-case.pcap",
                "smb-length-5770.pcap", "tls-duplicate-hello.pcap", "zip64.pcap"]


@pytest.mark.parametrize("path", sorted(CAPTURES.glob("*.pcapng")) + sorted(CAPTURES.glob("ipv6/*.pcapng")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_stored_linux_bundle_is_linux(path):
    guess = guess_os(load_recording(path))
    assert guess.name == "linux"
    assert guess.capturing_host == "linux"
    assert any(e.startswith("tcpteardown bundle recorded on Linux") for e in guess.evidence)
    if load_recording(path).segments:  # no-route has no packet: only the host's word
        assert any("zero MAC" in e for e in guess.evidence)


def test_linux_syn_layout_and_loopback_mss_are_evidence():
    guess = guess_os(load_recording(CAPTURES / "broken-pipe.pcapng"))
    assert guess.hosts == {"127.0.0.1": "linux"}
    assert any("mss,sok,ts,nop,ws" in e for e in guess.evidence)
    assert any("MSS 65495" in e for e in guess.evidence)
    six = guess_os(load_recording(CAPTURES / "ipv6" / "broken-pipe.pcapng"))
    assert any("MSS 65476" in e for e in six.evidence)


@pytest.mark.parametrize("name", MAC_LOOPBACK)
def test_real_mac_loopback_captures_are_darwin(corpus, name):
    guess = guess_os(load_recording(corpus / "macos" / name))
    assert guess.name == "darwin", guess.evidence
    assert set(guess.hosts.values()) == {"darwin"}
    assert any("mss,nop,ws,nop,nop,ts,sok,eol+1" in e for e in guess.evidence)
    assert any("MSS 16344" in e or "MSS 16324" in e for e in guess.evidence)


def test_mac_lo0_address_family_30_names_the_capturing_host(corpus):
    guess = guess_os(load_recording(corpus / "macos" / "zip64.pcap"))
    assert guess.capturing_host == "darwin"
    assert any("AF_INET6 = 30" in e for e in guess.evidence)
    assert guess.hosts == {"::1": "darwin", "127.0.0.1": "darwin"}


@pytest.mark.parametrize("name", ["macos.pcapng", "macos_pib_trustd.pcapng"])
def test_apple_tcpdump_section_header_names_darwin(corpus, name):
    guess = guess_os(load_recording(corpus / "scapy" / name))
    assert guess.name == "darwin"
    assert guess.capturing_host == "darwin"
    assert any(e.startswith("pcapng section header: shb_os 'Darwin") for e in guess.evidence)


def test_windows_capture_by_header_ttl_and_layout(corpus):
    guess = guess_os(load_recording(corpus / "zeek" / "kerberos_tso.pcapng"))
    assert guess.name == "windows"
    assert guess.hosts["172.16.0.211"] == "windows"
    assert any("initial TTL 128" in e for e in guess.evidence)
    assert any("mss,nop,ws,nop,nop,sok" in e for e in guess.evidence)


def test_sll2_is_linux_and_endpoints_may_differ_from_the_host(corpus):
    assert guess_os(load_recording(corpus / "filesamples" / "simple_http_sll2.pcap")).name == "linux"
    # A Mac (dumpcap, SHB "Mac OS X") talking to a Linux server: each address keeps its own OS.
    guess = guess_os(load_recording(corpus / "PcapPlusPlus" / "many_interfaces-1.pcapng"))
    assert guess.capturing_host == "darwin"
    assert guess.hosts == {"192.168.1.139": "darwin", "74.125.228.227": "linux"}


def test_no_evidence_is_unknown_and_said(corpus):
    guess = guess_os(load_recording(corpus / "tcpdump" / "tfo-5c1fa7f9ae91.pcap"))
    assert guess.name == "unknown"
    assert guess.evidence == ("the packets do not say which OS sent them",)


def test_override_wins_and_says_so(corpus):
    guess = guess_os(load_recording(corpus / "macos" / "zip64.pcap"), override="linux")
    assert guess.name == "linux" and guess.overridden
    assert guess.evidence[0] == "--os linux given: it overrides what the packets say (darwin)"
    with pytest.raises(ValueError, match="unknown OS 'beos'"):
        guess_os(load_recording(corpus / "macos" / "zip64.pcap"), override="beos")


def test_option_layout_reads_nop_and_eol_padding():
    # XNU's SYN options, byte for byte as a Mac sends them (MSS 16344, WS 6, TS, SACK_PERM, EOL EOL).
    xnu = bytes.fromhex("02043fd8" "01030306" "0101080a0000000100000000" "04020000")
    assert pcap_links.option_layout(xnu) == "mss,nop,ws,nop,nop,ts,sok,eol+1"
    linux = bytes.fromhex("0204ffd7" "0402" "080a0000000100000000" "01030307")
    assert pcap_links.option_layout(linux) == "mss,sok,ts,nop,ws"
    assert pcap_links.option_layout(b"\x02") == "?"


def test_layouts_match_exactly_per_direction(corpus):
    """nDPI's rtsp.pcap: a Windows client (TTL 128, SYN mss,nop,ws,nop,nop,sok) and a Linux server
    whose SYN/ACK, answering a SYN without timestamps, is mss,nop,nop,sok,nop,ws: not Windows's."""
    guess = guess_os(load_recording(corpus / "nDPI" / "rtsp.pcap"))
    assert guess.hosts == {"10.1.1.10": "windows", "10.2.2.2": "linux"}
    assert guess.capturing_host == "linux"  # SHB "Linux 4.19.184", SLL


def test_apple_pktap_link_type_names_darwin(corpus):
    guess = guess_os(load_recording(corpus / "macos" / "LINKTYPE_PKTAP.pcap"))
    assert (guess.name, guess.capturing_host) == ("darwin", "darwin")
    assert guess.evidence == ("Apple PKTAP link type (258)",)
