"""Capture backends: the same segments from scapy and tcpdump, loss counters
in every recording, and no recording claiming to be complete when it is not."""

import pytest

from conftest import tool_or_skip
from tcpteardown.analysis.completeness import completeness
from tcpteardown.capture import live
from tcpteardown.capture.backends import Captured, ScapyBackend, TcpdumpBackend, choose_backend, open_backend, tcp_frames
from tcpteardown.capture.burst import Listener, connection_shares, play_burst
from tcpteardown.errors import MissingTool, UserError
from tcpteardown.model import Frame, Metadata, Recording
from tcpteardown.scenarios import run_scenario


def _key(seg):
    return (str(seg.src), str(seg.dst), seg.flags.render(), seg.seq, seg.ack, seg.payload_len)


# -- choosing ----------------------------------------------------------------------

def test_auto_takes_scapy_for_runs_and_tcpdump_for_record():
    tool_or_skip("tcpdump")
    assert choose_backend("auto", purpose="run") == "scapy"
    assert choose_backend("auto", purpose="record") == "tcpdump"
    assert choose_backend("tcpdump", purpose="run") == "tcpdump"
    assert choose_backend("scapy", purpose="record") == "scapy"


def test_auto_without_tcpdump_falls_back_to_scapy(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no tcpdump on it
    assert choose_backend("auto", purpose="record") == "scapy"
    with pytest.raises(MissingTool, match="tcpdump is not installed"):
        choose_backend("tcpdump")


def test_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="expected one of scapy, tcpdump, auto"):
        choose_backend("dumpcap")
    with pytest.raises(UserError, match="unknown capture backend"):
        open_backend("dumpcap", [80])


def test_tcp_frames_leaves_out_non_tcp_and_renumbers():
    marker = Frame(1, 1, bytes(12) + b"\x08\x00" + bytes(20), 34)  # IPv4 header of zeros: no TCP
    frames, segments = tcp_frames([marker, marker])
    assert frames == () and segments == ()


# -- capturing ---------------------------------------------------------------------


@pytest.mark.needs_capture
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_scapy_and_tcpdump_backends_capture_the_same_segments(family):
    tool_or_skip("tcpdump")
    observers = []

    def tcpdump(ports):
        observers.append(TcpdumpBackend(ports))
        return observers[-1]

    run = run_scenario("reset-by-peer", family=family, observers=[tcpdump])
    theirs = observers[0].captured
    assert [_key(s) for s in run.recording.segments] == [_key(s) for s in theirs.segments]
    assert [s.frame for s in theirs.segments] == list(range(1, len(theirs.frames) + 1)), \
        "marker datagrams must not take frame numbers"
    assert theirs.kernel_drops == 0 and theirs.path is None


@pytest.mark.needs_capture
@pytest.mark.parametrize("backend", ["scapy", "tcpdump"])
def test_every_recording_keeps_its_loss_counters(backend):
    if backend == "tcpdump":
        tool_or_skip("tcpdump")
    run = run_scenario("reset-by-peer", capture_backend=backend)
    meta = run.recording.metadata
    assert run.matches, run.mismatches
    assert meta.get("capture_backend") == backend
    assert meta.get("kernel_drops") == "0"
    assert meta.get("capture_ports") == meta.get("ports")
    rsts = sum(s.is_rst for s in run.recording.segments)
    assert meta.get("captured_rsts") == str(rsts) and rsts >= 1
    assert meta.get("captured_segs") == str(len(run.recording.segments))
    # Host-wide counters: an upper bound for what a port-filtered capture holds.
    assert int(meta.get("kernel_out_rsts")) >= rsts
    assert int(meta.get("kernel_out_segs")) >= len(run.recording.segments)
    assert "host-wide" in meta.get("kernel_counters_scope")
    assert completeness(run.recording).complete is True
    assert [s.frame for s in run.recording.segments] == list(range(1, len(run.recording.frames) + 1))


@pytest.mark.needs_capture
def test_tcpdump_backend_keeps_the_file_when_asked(tmp_path):
    tool_or_skip("tcpdump")
    with Listener() as listener:
        backend = open_backend("tcpdump", [listener.port], path=tmp_path / "kept.pcap")
        with backend:
            burst = play_burst(listener, 20)
        captured = backend.stop()
    assert isinstance(captured, Captured)
    assert captured.path == tmp_path / "kept.pcap" and captured.path.stat().st_size > 0
    assert connection_shares(burst, captured.segments) == {"SYN": 1.0, "FIN": 1.0, "RST": 1.0}


@pytest.mark.needs_capture
def test_scapy_capture_that_drops_says_so(monkeypatch):
    """A receive buffer of a few packets and a reader held still during a
    burst: packets are lost for certain (not only when the machine happens to
    be slow), the kernel counts them, and the recording says it is incomplete."""
    import threading

    monkeypatch.setattr(live, "RCVBUF_FORCE_BYTES", 4096)
    monkeypatch.setattr(live, "RCVBUF_BYTES", 4096)
    bursting, burst_over = threading.Event(), threading.Event()
    real_batch = live.LiveCapture._receive_batch

    def held_during_burst(self, timeout):
        if bursting.is_set():
            burst_over.wait(30)  # the reader stops reading: the buffer must overflow
        return real_batch(self, timeout)

    monkeypatch.setattr(live.LiveCapture, "_receive_batch", held_during_burst)
    with Listener() as listener:
        with ScapyBackend([listener.port]) as backend:
            bursting.set()
            try:
                burst = play_burst(listener, 1500)
            finally:
                bursting.clear()
                burst_over.set()
        captured = backend.stop()
    shares = connection_shares(burst, captured.segments)
    recording = Recording(segments=captured.segments, metadata=Metadata(extra=captured.loss_extra()))
    verdict = completeness(recording)
    assert captured.kernel_drops > 0
    assert min(shares.values()) < 1.0
    assert verdict.complete is False
    assert f"dropped {captured.kernel_drops} packets" in verdict.warnings[0]


@pytest.mark.needs_capture
def test_small_tcpdump_ring_never_claims_completeness_it_lacks():
    tool_or_skip("tcpdump")
    with Listener() as listener:
        with TcpdumpBackend([listener.port], buffer_kib=256) as backend:
            burst = play_burst(listener, 3000)
        captured = backend.stop()
    shares = connection_shares(burst, captured.segments)
    verdict = completeness(Recording(segments=captured.segments, metadata=Metadata(extra=captured.loss_extra())))
    if min(shares.values()) < 1.0:
        assert verdict.complete is False and captured.kernel_drops > 0
    else:
        assert verdict.complete is True


@pytest.mark.needs_capture
def test_scapy_path_is_hardened(is_root):
    """Outgoing copies and the port filter stay in the kernel, the buffer is
    as large as privilege allows, and a burst is captured once, completely."""
    with Listener() as listener:
        with ScapyBackend([listener.port]) as backend:
            burst = play_burst(listener, 300)
        captured = backend.stop()
    capture = backend.live
    assert capture.dedup_location == "kernel (PACKET_IGNORE_OUTGOING)"
    assert capture.filter_location.startswith("kernel")
    if is_root:
        assert capture.rcvbuf_bytes >= live.RCVBUF_FORCE_BYTES
    keys = [_key(s) for s in captured.segments]
    assert len(keys) == len(set(keys)), "a segment was captured twice"
    assert connection_shares(burst, captured.segments) == {"SYN": 1.0, "FIN": 1.0, "RST": 1.0}
    assert captured.kernel_drops == 0
    assert all(s.src.port == listener.port or s.dst.port == listener.port for s in captured.segments)
