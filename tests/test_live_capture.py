"""The live capture holds exactly the segments tcpdump saw during the same
run: nothing missed, nothing twice."""

import pytest

from conftest import tool_or_skip
from tcpteardown.capture.tcpdump import TcpdumpCapture
from tcpteardown.scenarios import run_scenario

pytestmark = pytest.mark.needs_capture


def _key(seg):
    return (str(seg.src), str(seg.dst), seg.flags.render(), seg.seq, seg.ack, seg.payload_len)


def _tcpdump_segments(path, ports):
    from scapy.utils import rdpcap
    from scapy_dissect import segments_from_frames
    from tcpteardown.model import Frame

    frames = [Frame(int(p.time * 1_000_000_000), 1, bytes(p), len(p)) for p in rdpcap(str(path))]
    return [s for s in segments_from_frames(frames) if s.src.port in ports or s.dst.port in ports]


@pytest.mark.parametrize("name", ["broken-pipe", "reset-by-peer", "graceful-close", "refused"])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_same_segments_as_tcpdump(tmp_path, name, family):
    tool_or_skip("tcpdump")
    pcap = tmp_path / "tcpdump.pcap"
    run = run_scenario(name, family=family, observers=[lambda ports: TcpdumpCapture(pcap, ports)])
    ours = [_key(s) for s in run.recording.segments]
    ports = {int(p) for p in run.recording.metadata.get("ports").split(",")}
    theirs = [_key(s) for s in _tcpdump_segments(pcap, ports)]
    assert ours == theirs
    assert len(set(ours)) == len(ours), "a segment was captured twice"


def test_frames_are_numbered_in_capture_order_with_kernel_timestamps():
    run = run_scenario("broken-pipe")
    assert [s.frame for s in run.recording.segments] == list(range(1, len(run.recording.frames) + 1))
    times = [f.time_ns for f in run.recording.frames]
    assert times == sorted(times)
    assert all(t % 1000 != 0 for t in times[:3]) or len(set(t % 1000 for t in times)) > 1, \
        "timestamps look truncated to microseconds"


def test_capture_says_where_it_filtered_and_deduplicated():
    run = run_scenario("graceful-close")
    capture = run.recording.metadata.capture
    assert "filter in kernel" in capture or "filter in Python" in capture
    assert "outgoing copies dropped in" in capture


def test_python_side_filter_and_dedup_without_kernel_help(monkeypatch):
    """Without libpcap and without PACKET_IGNORE_OUTGOING the capture still
    keeps each segment once: filter and duplicate drop happen in Python."""
    import scapy.config
    from tcpteardown.capture import live

    real_listen = None

    def no_bpf(*args, **kwargs):
        if "filter" in kwargs:
            from scapy.error import Scapy_Exception
            raise Scapy_Exception("Cannot set filter: libpcap is not available")
        return real_listen(*args, **kwargs)

    import scapy.arch  # noqa: F401
    real_listen = scapy.config.conf.L2listen
    monkeypatch.setattr(scapy.config.conf, "L2listen", no_bpf)
    monkeypatch.setattr(live, "PACKET_IGNORE_OUTGOING", -1)  # an option the kernel rejects
    run = run_scenario("broken-pipe")
    assert "filter in Python" in run.recording.metadata.capture
    assert "dropped in Python" in run.recording.metadata.capture
    assert run.matches, run.mismatches
    keys = [_key(s) for s in run.recording.segments]
    assert len(keys) == len(set(keys))
