"""Event-loop programs under `record` (issue 32): "would block" is not a failure,
a non-blocking connect's outcome comes through SO_ERROR, and the loop's wake-up
sits between the segment and the failing call.

One `tcpteardown record` runs three real event-loop programs against this
process's misbehaving peers: Python's asyncio (refused, reset, EOF, and an
accept() tried before anyone connected), Node.js
(read reset, hang-up, refused) and nginx as a reverse proxy (upstream closes,
resets, does not listen; curl is its client). `explain BUNDLE --json` on that
bundle is checked against strace's own lines in it: no EAGAIN, EWOULDBLOCK,
EINPROGRESS or EALREADY result is a link or an "unlinked" warning, they are all
in "would_block"; every ECONNRESET, EPIPE, ECONNREFUSED and EOF strace saw on a
socket the capture holds is linked exactly once; and a wake-up (epoll_wait)
is named for an RST and for a FIN.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tool_or_skip
from test_program_logs import HERE as LOG_PROGRAMS
from ports import closed_port, closed_ports
from test_program_logs import nginx_proxy_conf, peer
from test_predict_programs import NGINX_SCRIPT
from tcpteardown.formats.bundle import load_recording

pytestmark = pytest.mark.needs_capture

LOOPS = Path(__file__).parent / "programs" / "loops"
WOULD_BLOCK = {"EAGAIN", "EWOULDBLOCK", "EINPROGRESS", "EALREADY"}
DECIDED_BY_PACKETS = {"EOF", "ECONNRESET", "EPIPE", "ECONNREFUSED"}

SCRIPT = """
set -u
"$PYTHON" "$LOOPS/asyncio_client.py" "$REFUSED" "$RESET" "$EOF"
for mode in read-reset hang-up; do "$NODE" "$LOGS/fail.js" $mode "$RESET"; done
"$NODE" "$LOGS/fail.js" refused "$REFUSED"
sh "$NGINX_SH" "$NGINX" "$ROOT" "$PORT"  # nginx as a proxy, curl through it (test_predict_programs)
exit 0
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(bundle, explain's JSON, the strace calls in the bundle): one record for the module."""
    for tool in ("strace", "tcpdump", "curl"):
        tool_or_skip(tool)
    node, nginx = tool_or_skip("node"), tool_or_skip("nginx")
    tmp = tmp_path_factory.mktemp("loops")
    root = tmp / "nginx"
    root.mkdir()
    port, refused = closed_ports(2)
    with peer("read-fin") as eof, peer("read-rst") as reset:
        nginx_proxy_conf(root, port, {"eof": eof.port, "reset": reset.port, "refused": refused})
        (tmp / "loops.sh").write_text(SCRIPT)
        (tmp / "nginx.sh").write_text(NGINX_SCRIPT)
        env = {"PYTHON": sys.executable, "LOOPS": str(LOOPS), "LOGS": str(LOG_PROGRAMS), "NODE": node,
               "NGINX": nginx, "ROOT": str(root), "PORT": str(port), "REFUSED": str(refused),
               "RESET": str(reset.port), "EOF": str(eof.port), "NGINX_SH": str(tmp / "nginx.sh")}
        bundle = tmp / "loops.pcapng"
        result = subprocess.run([sys.executable, "-m", "tcpteardown", "record", "--calls", "strace", "-o", str(bundle), "--",
                                 "env", *(f"{k}={v}" for k, v in env.items()), "sh", str(tmp / "loops.sh")],
                                capture_output=True, text=True, timeout=180)
        assert bundle.exists(), result.stderr
    explained = subprocess.run([sys.executable, "-m", "tcpteardown", "explain", str(bundle), "--json"],
                               capture_output=True, text=True, timeout=120)
    assert explained.returncode == 0, explained.stderr
    recording = load_recording(bundle)
    calls = [c for c in recording.calls if c.source == "strace"]
    return bundle, json.loads(explained.stdout), calls, recording


def test_would_block_is_never_a_failure(recorded):
    _bundle, document, calls, _recording = recorded
    assert not [link["call"] for link in document["links"] if link["call"]["errno"] in WOULD_BLOCK]
    assert not [entry for entry in document["unlinked"] if any(e in entry["text"] for e in WOULD_BLOCK)]
    # ... yet they are in the recording and the JSON: the loops did ask "anything yet?"
    seen = [c for c in calls if c.errno in WOULD_BLOCK]
    assert seen and all(c.would_block and not c.failed for c in seen)
    assert sum(entry["count"] for entry in document["would_block"]) == len(seen)
    kinds = {(entry["op"], entry["errno"]) for entry in document["would_block"]}
    assert {("accept", "EAGAIN"), ("connect", "EINPROGRESS")} <= kinds, kinds


def _sockets_in_capture(recording) -> set:
    return {end for s in recording.segments for end in (s.src, s.dst)}


def test_every_real_failure_is_linked_once(recorded):
    _bundle, document, calls, recording = recorded
    shown = _sockets_in_capture(recording)
    real = [c for c in calls if c.outcome in DECIDED_BY_PACKETS and (c.local in shown or c.remote in shown)]
    assert {"ECONNRESET", "ECONNREFUSED", "EOF"} <= {c.outcome for c in real}
    strace_links = [link["call"] for link in document["links"] if link["call"]["source"] == "strace"]
    for call in real:
        same = [link for link in strace_links if link["pid"] == call.pid and link["fd"] == call.fd
                and link["op"] == call.op and link["errno"] == call.outcome
                and abs(link["time"] - call.end_ns / 1e9) < 1e-5]
        assert len(same) == 1, (call.text, same)


def test_a_refused_non_blocking_connect_is_told_through_so_error(recorded):
    _bundle, document, _calls, _recording = recorded
    through = [link for link in document["links"]
               if link["call"]["op"] == "getsockopt" and link["call"]["errno"] == "ECONNREFUSED"]
    assert through, "asyncio and nginx read a refused connect's outcome with getsockopt(SO_ERROR)"
    for link in through:
        assert link["cause"]["kind"] == "rst" and link["cause"]["frame"] is not None
        assert "SO_ERROR" in link["explanation"]


def test_the_loops_wake_up_sits_between_the_segment_and_the_call(recorded):
    _bundle, document, _calls, _recording = recorded
    told = {}
    for link in document["links"]:
        wakeup = link["wakeup"]
        if wakeup is None or link["cause"]["frame"] is None:
            continue
        assert link["cause"]["time"] <= wakeup["time"] + 1e-3 and wakeup["time"] <= link["call"]["time"] + 1e-3
        assert wakeup["fd"] == link["call"]["fd"] and wakeup["events"]
        told.setdefault(link["cause"]["kind"], link)
    assert {"rst", "fin"} <= set(told), [l["call"] for l in document["links"]]
    for link in told.values():
        assert link["wakeup"]["op"] in link["explanation"]


def test_the_ladder_draws_would_block_grey_and_labels_it(recorded):
    from tcpteardown.views.ladder import call_label

    *_, calls, _recording = recorded
    waits = [c for c in calls if c.would_block]
    assert all(call_label(c).endswith("(would block)") for c in waits)
    ready = [c for c in calls if c.is_readiness]
    assert ready and all(c.events in call_label(c) for c in ready)
