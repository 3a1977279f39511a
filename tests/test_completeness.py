"""completeness(): a recording says when anything may be missing, and never
claims to be complete without a drop counter that says 0."""

import pytest

from tcpteardown.analysis.completeness import banner, caveat_for, completeness
from tcpteardown.model import Endpoint, KernelEvent, Metadata, Recording, Segment, TcpFlags

CLIENT, SERVER = Endpoint("127.0.0.1", 40000), Endpoint("127.0.0.1", 8080)
T0 = 1_700_000_000_000_000_000


def _seg(frame, flags, src=CLIENT, dst=SERVER, at=0):
    return Segment(frame, T0 + at, src, dst, TcpFlags.parse(flags), 1, 1, 100, 0)


def _rec(*extra, segments=(), events=()):
    return Recording(segments=tuple(segments), kernel_events=tuple(events),
                     metadata=Metadata(capture="test", extra=tuple(extra)))


def _send_reset(src, dst, at):
    return KernelEvent(T0 + at, "tcp:tcp_send_reset", src, dst, (("state", "TCP_ESTABLISHED"),))


STORY = (_seg(1, "SYN"), _seg(2, "SYN,ACK", SERVER, CLIENT, 10), _seg(3, "RST,ACK", SERVER, CLIENT, 20))


def test_zero_drops_and_nothing_else_is_complete():
    verdict = completeness(_rec(("kernel_drops", "0"), ("capture_backend", "tcpdump"), segments=STORY))
    assert verdict.complete is True and verdict.warnings == () and verdict.dropped == 0
    assert banner(_rec(("kernel_drops", "0"), segments=STORY)) == ""
    assert caveat_for(_rec(("kernel_drops", "0"), segments=STORY)) is None


def test_a_capture_without_counters_is_not_judged():
    """A pcap from another tool: we cannot tell, so we neither warn nor claim."""
    verdict = completeness(_rec(segments=STORY))
    assert verdict.complete is None and verdict.warnings == ()
    assert caveat_for(_rec(segments=STORY)) is None


@pytest.mark.parametrize("extra, words", [
    ((("kernel_drops", "3"), ("capture_backend", "scapy")), "dropped 3 packets (scapy"),
    ((("kernel_drops", "1"),), "dropped 1 packet "),
    ((("kernel_drops", "unknown"),), "drop count is unknown"),
    ((("kernel_drops", "0"), ("problem", "cap.pcap: offset 96: truncated record")), "damaged: cap.pcap: offset 96"),
    ((("kernel_drops", "0"), ("witness_lost_events", "5")), "lost 5 events"),
])
def test_each_kind_of_evidence_makes_it_incomplete(extra, words):
    recording = _rec(*extra, segments=STORY)
    verdict = completeness(recording)
    assert verdict.complete is False
    assert any(words in w for w in verdict.warnings), verdict.warnings
    assert banner(recording).startswith("WARNING: ")
    assert words in caveat_for(recording)


def test_the_exact_number_dropped_is_kept():
    assert completeness(_rec(("kernel_drops", "1234"))).dropped == 1234


def test_witness_rst_missing_from_the_capture():
    seen = _send_reset(SERVER, CLIENT, 15)  # the captured RST at +20 ns
    lost = _send_reset(Endpoint("127.0.0.1", 8080), Endpoint("127.0.0.1", 40001), 500)
    ok = completeness(_rec(("kernel_drops", "0"), ("capture_ports", "8080"), segments=STORY, events=[seen]))
    assert ok.complete is True
    bad = completeness(_rec(("kernel_drops", "0"), ("capture_ports", "8080"), segments=STORY,
                            events=[seen, lost]))
    assert bad.complete is False
    assert "1 RST sent that the capture does not hold" in bad.warnings[0]
    assert "127.0.0.1:40001" in bad.warnings[0]


def test_witness_rsts_on_ports_not_captured_do_not_count():
    other = _send_reset(Endpoint("127.0.0.1", 9999), Endpoint("127.0.0.1", 40002), 30)
    verdict = completeness(_rec(("kernel_drops", "0"), ("capture_ports", "8080"), segments=STORY, events=[other]))
    assert verdict.complete is True


COUNTERS = (("kernel_out_rsts", "1"), ("kernel_active_opens", "1"), ("kernel_out_segs", "3"))


def test_kernel_counters_prove_a_loss_only_for_a_capture_of_every_port():
    captured = (("captured_rsts", "1"), ("captured_syns", "1"), ("captured_segs", "3"))
    assert completeness(_rec(("kernel_drops", "0"), ("capture_ports", "all"), *COUNTERS, *captured)).complete is True
    short = (("captured_rsts", "0"), ("captured_syns", "1"), ("captured_segs", "2"))
    verdict = completeness(_rec(("kernel_drops", "0"), ("capture_ports", "all"), *COUNTERS, *short))
    assert verdict.complete is False
    assert any("1 RSTs during the capture and 0 were captured: up to 1 may be missing" in w
               for w in verdict.warnings), verdict.warnings
    # A port-filtered capture: host-wide counters are only an upper bound.
    assert completeness(_rec(("kernel_drops", "0"), ("capture_ports", "8080"), *COUNTERS, *short)).complete is True


def test_counted_from_segments_when_the_capture_counts_are_absent():
    verdict = completeness(_rec(("kernel_drops", "0"), ("capture_ports", "all"), ("kernel_out_rsts", "2"),
                                segments=STORY))
    assert verdict.complete is False and "2 RSTs" in verdict.warnings[0]


def test_drops_come_first():
    verdict = completeness(_rec(("kernel_drops", "2"), ("witness_lost_events", "1"), segments=STORY))
    assert "dropped 2" in verdict.warnings[0]
    assert banner(_rec(("kernel_drops", "2"))).splitlines()[0].startswith("WARNING: the capture dropped 2")


# -- the commands say it first -------------------------------------------------------

def _bundle_with_drops(tmp_path, drops):
    from dataclasses import replace

    from tcpteardown.formats.bundle import write_bundle
    from tcpteardown.scenarios import run_scenario

    run = run_scenario("reset-by-peer", witness=False)
    meta = run.recording.metadata
    extra = tuple(pair for pair in meta.extra if pair[0] != "kernel_drops") + (("kernel_drops", str(drops)),)
    return write_bundle(tmp_path / f"drops{drops}.pcapng", replace(run.recording, metadata=replace(meta, extra=extra)))


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tcpteardown", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.needs_capture
@pytest.mark.parametrize("command", [("explain",), ("explain", "--json"), ("plot",), ("census",)])
def test_commands_warn_first_when_packets_were_dropped(tmp_path, command):
    bundle = _bundle_with_drops(tmp_path, 3)
    extra = ("-o", tmp_path / "out.png") if command[0] == "plot" else ()
    done = _cli(*command, bundle, *extra)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("WARNING: the capture dropped 3 packets"), done.stderr
    if "--json" in command:
        import json

        assert "links" in json.loads(done.stdout)  # stdout stays one JSON object


@pytest.mark.needs_capture
@pytest.mark.parametrize("command", ["explain", "census"])
def test_commands_say_nothing_when_nothing_was_dropped(tmp_path, command):
    done = _cli(command, _bundle_with_drops(tmp_path, 0))
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr


def test_traffic_on_other_interfaces_may_explain_a_deficit_but_not_more():
    short = (("captured_rsts", "0"), ("captured_syns", "1"), ("captured_segs", "3"))
    explained = completeness(_rec(("kernel_drops", "0"), ("capture_ports", "all"), *COUNTERS, *short,
                                  ("kernel_tx_packets_elsewhere", "1")))
    assert explained.complete is True
    proven = completeness(_rec(("kernel_drops", "0"), ("capture_ports", "all"), ("kernel_out_rsts", "5"),
                               ("captured_rsts", "1"), ("kernel_tx_packets_elsewhere", "2")))
    assert proven.complete is False
    assert "at least 2 are missing" in proven.warnings[0]


def test_snmp_and_dev_parsing():
    from tcpteardown.capture.snmp import TcpCounters, parse_dev_tx_packets, parse_snmp

    snmp = ("Ip: Forwarding\nIp: 1\n"
            "Tcp: RtoAlgorithm ActiveOpens PassiveOpens AttemptFails EstabResets InSegs OutSegs RetransSegs OutRsts\n"
            "Tcp: 1 10 9 1 2 100 98 3 4\n")
    counters = parse_snmp(snmp)
    assert counters == TcpCounters(10, 9, 1, 2, 100, 98, 3, 4)
    later = TcpCounters(12, 9, 1, 2, 110, 108, 3, 5, tx_packets_elsewhere=7)
    grown = counters.delta(later)
    assert (grown.active_opens, grown.out_segs, grown.out_rsts) == (2, 10, 1)
    assert grown.tx_packets_elsewhere is None  # unknown before: unknown growth
    assert ("kernel_tx_packets_elsewhere", "unknown") in grown.as_extra()
    assert TcpCounters(out_rsts=(1 << 32) - 1).delta(TcpCounters(out_rsts=2)).out_rsts == 3  # wrapped
    assert parse_snmp("Udp: a\nUdp: 1\n") is None
    dev = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
           "    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n"
           "  eth0: 9 9 0 0 0 0 0 0 500 40 0 0 0 0 0 0\n"
           "  eth1: 9 9 0 0 0 0 0 0 500 2 0 0 0 0 0 0\n")
    assert parse_dev_tx_packets(dev) == 42


def test_thousands_of_witnessed_rsts_are_checked_per_connection():
    """Every RST matched to its own event; one event without its RST is found."""
    segments, events = [], []
    for n in range(3000):
        client = Endpoint("127.0.0.1", 20000 + n)
        segments.append(_seg(n + 1, "RST", client, SERVER, at=n * 1000))
        events.append(_send_reset(client, SERVER, n * 1000 - 5))
    events.append(_send_reset(Endpoint("127.0.0.1", 19999), SERVER, 10))
    verdict = completeness(_rec(("kernel_drops", "0"), segments=segments, events=events))
    assert verdict.complete is False
    assert "saw 1 RST sent that the capture does not hold (first: 127.0.0.1:19999" in verdict.warnings[0]


@pytest.mark.needs_capture
def test_links_made_on_incomplete_evidence_say_so(tmp_path):
    from tcpteardown.analysis.correlate import correlate
    from tcpteardown.formats.bundle import load_recording

    incomplete = correlate(load_recording(_bundle_with_drops(tmp_path, 3)))
    complete = correlate(load_recording(_bundle_with_drops(tmp_path, 0)))
    assert incomplete and all(any("the evidence may be incomplete" in c and "dropped 3 packets" in c
                                  for c in link.caveats) for link in incomplete)
    assert not any("evidence may be incomplete" in c for link in complete for c in link.caveats)
