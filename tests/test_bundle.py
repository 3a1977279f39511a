"""The bundle: one .pcapng that tshark opens unmodified and that carries a
whole recording, round-tripping exactly."""

import subprocess
from dataclasses import replace

import pytest

from conftest import tool_or_skip
from tcpteardown.errors import UserError
from tcpteardown.formats.bundle import is_bundle, load_recording
from tcpteardown.views.packet_comments import write_annotated_bundle
from tcpteardown.model import Endpoint, KernelEvent, Recording
from tcpteardown.scenarios import run_scenario

capture = pytest.mark.needs_capture


@pytest.fixture(scope="module")
def broken_pipe_run():
    from tcpteardown.capture.platform import capture_problem

    if capture_problem():
        pytest.skip(f"needs_capture: {capture_problem()}")
    return run_scenario("broken-pipe")


def _with_events(recording: Recording) -> Recording:
    """Add kernel events by hand when this host has no witness, so their
    round trip is tested everywhere."""
    if recording.kernel_events:
        return recording
    rst = next(s for s in recording.segments if s.is_rst)
    event = KernelEvent(rst.time_ns - 10, "tcp:tcp_send_reset", rst.src, rst.dst,
                        (("state", "TCP_TIME_WAIT"), ("reason", "TCP_TIMEWAIT_SOCKET")))
    segments = tuple(replace(s, reset_reason="TCP_TIMEWAIT_SOCKET") if s is rst else s for s in recording.segments)
    return replace(recording, kernel_events=(event,), segments=segments)


@capture
def test_round_trip_is_exact(tmp_path, broken_pipe_run):
    original = _with_events(broken_pipe_run.recording)
    path = write_annotated_bundle(tmp_path / "bp.pcapng", original)
    loaded = load_recording(path)
    assert loaded.calls == original.calls
    assert loaded.kernel_events == original.kernel_events
    assert loaded.segments == original.segments
    assert loaded.frames == original.frames
    assert replace(loaded.metadata, source_file=None) == original.metadata
    assert loaded.metadata.source_file == str(path)
    assert is_bundle(path)


@capture
def test_tshark_reads_it_without_warnings(tmp_path, broken_pipe_run):
    tshark = tool_or_skip("tshark")
    path = write_annotated_bundle(tmp_path / "bp.pcapng", broken_pipe_run.recording)
    result = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number",
                             "-e", "tcp.flags.reset", "-e", "frame.comment"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    noise = [line for line in result.stderr.splitlines() if "Running as user" not in line and line.strip()]
    assert noise == []
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    packets = [row for row in rows if row[0] and row[1]]
    assert len(packets) == len(broken_pipe_run.recording.segments)
    # Wireshark's frame numbers are ours: the RST is where we say it is.
    rst_frames = [int(row[0]) for row in packets if row[1] in ("1", "True")]
    assert rst_frames == [s.frame for s in broken_pipe_run.recording.segments if s.is_rst]
    comments = " ".join(row[2] for row in rows if len(row) > 2)
    assert "client send() -> EPIPE" in comments


@capture
def test_fast_reader_and_scapy_agree_on_every_segment(tmp_path, broken_pipe_run):
    path = write_annotated_bundle(tmp_path / "bp.pcapng", broken_pipe_run.recording)
    assert load_recording(path).segments == broken_pipe_run.recording.segments


@capture
def test_plain_pcap_loads_without_calls(tmp_path, broken_pipe_run):
    tcpdump = tool_or_skip("tcpdump")
    bundle = write_annotated_bundle(tmp_path / "bp.pcapng", broken_pipe_run.recording)
    plain = tmp_path / "plain.pcap"
    subprocess.run([tcpdump, "-r", str(bundle), "-w", str(plain)], check=True, capture_output=True)
    loaded = load_recording(plain)
    assert loaded.calls == () and not is_bundle(plain)
    assert [s.flags for s in loaded.segments] == [s.flags for s in broken_pipe_run.recording.segments]


def test_a_recording_without_frames_is_not_invented(tmp_path):
    from tcpteardown.model import Segment, TcpFlags

    seg = Segment(1, 1, Endpoint("127.0.0.1", 1), Endpoint("127.0.0.1", 2), TcpFlags.SYN, 0, 0, 0, 0)
    with pytest.raises(UserError, match="never re-encoded"):
        write_annotated_bundle(tmp_path / "x.pcapng", Recording(segments=(seg,)))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_recording(tmp_path / "absent.pcapng")
