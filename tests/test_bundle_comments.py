"""The story inside the pcapng for stock tshark/Wireshark: packet comments.

Every stored real capture is written again as a bundle (its own packets,
calls and kernel events), and tshark, not our reader, reads the comments
back: each RST's comment names its reason (the kernel's, or inferred and
marked so), each call linked to a segment names that frame, and the JSON
custom block still round-trips exactly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import tool_or_skip
from tcpteardown.analysis.correlate import correlate
from tcpteardown.analysis.reasons import reset_reason
from tcpteardown.formats.bundle import load_recording
from tcpteardown.views.packet_comments import write_annotated_bundle

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "linux"
STORED = sorted(CAPTURES.glob("*.pcapng")) + sorted((CAPTURES / "ipv6").glob("*.pcapng"))


def tshark_comments(path: Path) -> dict[int, list[str]]:
    """frame number -> its comments, as tshark prints them."""
    tshark = tool_or_skip("tshark")
    result = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=\x1f",
                             "-e", "frame.number", "-e", "frame.comment"],
                            capture_output=True, text=True, timeout=60, check=True)
    out = {}
    for line in result.stdout.splitlines():
        number, _, comments = line.partition("\t")
        if number:
            out[int(number)] = [c for c in comments.split("\x1f") if c]
    return out


@pytest.mark.parametrize("capture", STORED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_tshark_shows_every_rst_reason_and_every_cause(capture, tmp_path):
    recording = load_recording(capture)
    path = write_annotated_bundle(tmp_path / capture.name, recording)
    comments = tshark_comments(path)
    # tshark lists the custom block after the packets as one more record.
    assert len(comments) - len(recording.frames) in (0, 1)
    rsts = [s for s in recording.segments if s.is_rst]
    for segment in rsts:
        reason, inferred = reset_reason(segment, recording)
        first = comments[segment.frame][0]
        if reason is None:
            assert first.startswith("tcpteardown: RST reason unknown (inferred: "), first
        elif inferred:
            assert first.startswith(f"tcpteardown: RST reason {reason} (inferred: from the packets"), first
        else:
            assert first.startswith(f"tcpteardown: RST reason {reason} (kernel: tcp:tcp_send_reset)"), first
    # No comment claims a reason for a packet that is no RST.
    reasons = [n for n, texts in comments.items() if any("RST reason" in t for t in texts)]
    assert reasons == sorted(s.frame for s in rsts)
    every = [text for texts in comments.values() for text in texts]
    for link in correlate(recording):
        if link.cause is not None:
            wanted = (f"tcpteardown: {link.call.role} {link.call.op}() -> {link.call.outcome} "
                      f"← frame {link.cause.frame} ({link.cause.flags.render()}, rule {link.rule})")
            assert any(text.startswith(wanted) for text in every), (wanted, every)
    # The exact record is still the JSON block.
    again = load_recording(path)
    assert again.calls == recording.calls and again.segments == recording.segments
    assert again.kernel_events == recording.kernel_events


def test_broken_pipe_reads_in_wireshark_words(tmp_path):
    recording = load_recording(CAPTURES / "broken-pipe.pcapng")
    comments = tshark_comments(write_annotated_bundle(tmp_path / "bp.pcapng", recording))
    assert comments[8][0] == ("tcpteardown: RST reason TCP_ABORT_ON_DATA (kernel: tcp:tcp_send_reset): "
                              "data arrived on a socket it had already closed")
    assert any(text.startswith("tcpteardown: client send() -> EPIPE ← frame 8 (RST, rule send-epipe-after-rst) ")
               for text in comments[8])


def test_a_wireshark_display_filter_finds_the_resets(tmp_path):
    """`frame.comment contains "RST reason"`, the filter the README gives, selects exactly the RSTs."""
    tshark = tool_or_skip("tshark")
    recording = load_recording(CAPTURES / "reset-by-peer.pcapng")
    path = write_annotated_bundle(tmp_path / "rbp.pcapng", recording)
    result = subprocess.run([tshark, "-r", str(path), "-Y", 'frame.comment contains "RST reason"',
                             "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=60,
                            check=True)
    found = [int(n) for n in result.stdout.split()]
    assert found == [s.frame for s in recording.segments if s.is_rst] and found
