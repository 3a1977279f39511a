"""Under load the capture keeps every SYN and RST, or the recording says how
many may be missing: 5,000 loopback connections at 2,500 a second, captured
with the tcpdump backend, written as a bundle and read back.

Other programs may use loopback TCP at the same time (the whole suite runs
in parallel on this host), so the expectation is our own per-connection
accounting, restricted to our listener's port; the kernel's host-wide
counters (/proc/net/snmp) are only an upper bound.
"""

import pytest

from conftest import tool_or_skip
from tcpteardown.analysis.completeness import completeness
from tcpteardown.capture.backends import open_backend
from tcpteardown.capture.burst import Listener, connections_seen, play_burst
from tcpteardown.formats.bundle import load_recording, write_bundle
from tcpteardown.model import Metadata, Recording

pytestmark = pytest.mark.needs_capture

CONNECTIONS = 5000
RATE = 2500  # connections a second: a 2-second burst


def test_burst_of_5000_connections_loses_nothing_or_says_how_much(tmp_path):
    tool_or_skip("tcpdump")
    with Listener() as listener:
        backend = open_backend("tcpdump", [listener.port])
        with backend:
            burst = play_burst(listener, CONNECTIONS, RATE)
        captured = backend.stop()
    assert len(burst.client_ports) == CONNECTIONS
    recording = Recording(segments=captured.segments, frames=captured.frames,
                          metadata=Metadata(scenario="load", capture=captured.description,
                                            extra=captured.loss_extra()))
    bundle = load_recording(write_bundle(tmp_path / "load.pcapng", recording))
    meta = bundle.metadata

    # Each connection's client sends one SYN and at least one RST (capture.burst).
    found = connections_seen(burst, bundle.segments)
    assert len(found) <= CONNECTIONS, "a connection was captured twice"
    syns = sum("SYN" in kinds for kinds in found)
    rsts = sum("RST" in kinds for kinds in found)
    missing = (CONNECTIONS - syns) + (CONNECTIONS - rsts)
    verdict = completeness(bundle)

    # The kernel's counters grew by at least what we did (other programs only add).
    assert int(meta.get("kernel_active_opens")) >= CONNECTIONS
    assert int(meta.get("kernel_out_rsts")) >= CONNECTIONS
    if missing == 0:
        assert verdict.complete is True, verdict.warnings
        assert meta.get("kernel_drops") == "0"
        assert meta.get("captured_syns") == str(CONNECTIONS)
        assert int(meta.get("captured_rsts")) >= CONNECTIONS
    else:  # lost under load: the bundle must say so, with a count covering the loss
        assert verdict.complete is False
        assert verdict.dropped is not None and verdict.dropped >= missing, (verdict, missing)
        assert f"dropped {verdict.dropped} packets" in verdict.warnings[0]


PROGRAM = """
import json, sys
from tcpteardown.capture.burst import Listener, play_burst
with Listener() as listener:
    burst = play_burst(listener, int(sys.argv[1]), float(sys.argv[2]))
print(json.dumps({"port": listener.port, "clients": burst.client_ports, "seconds": burst.seconds}))
"""


def test_tcpteardown_record_of_a_burst_keeps_every_syn_and_rst_or_says_so(tmp_path):
    """The same through `tcpteardown record` (strace slows the program to a
    few hundred connections a second, so fewer connections)."""
    import json
    import subprocess
    import sys

    from tcpteardown.capture.burst import Burst

    tool_or_skip("tcpdump")
    tool_or_skip("strace")
    count, bundle_path = 600, tmp_path / "record.pcapng"
    done = subprocess.run([sys.executable, "-m", "tcpteardown", "record", "--calls", "strace", "--capture", "tcpdump", "-o",
                           str(bundle_path), "--", sys.executable, "-c", PROGRAM, str(count), str(RATE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.splitlines()[-1])
    burst = Burst(told["port"], tuple(told["clients"]), RATE, told["seconds"])
    bundle = load_recording(bundle_path)
    meta = bundle.metadata
    found = connections_seen(burst, bundle.segments)
    syns = sum("SYN" in kinds for kinds in found)
    rsts = sum("RST" in kinds for kinds in found)
    assert meta.get("capture_backend") == "tcpdump"
    assert int(meta.get("kernel_active_opens")) >= count and int(meta.get("kernel_out_rsts")) >= count
    verdict = completeness(bundle)
    if syns == rsts == count:
        assert verdict.complete is True, verdict.warnings
    else:
        assert verdict.complete is False
        assert verdict.dropped >= 2 * count - syns - rsts
