"""Held out: what the packets alone predict, against what real programs' kernels returned (issue 31).

Each program runs once under `tcpteardown record` (strace and tcpdump): the
Go teardowns (refused, reset, broken pipe, EOF, use of closed, timeout),
Node.js (read reset, write after the peer's FIN, half-open write, hang-up,
refused) against this process's misbehaving peers, and nginx as a reverse
proxy whose upstream closes, resets or does not listen (curl as its client).
The bundle's packets, stripped of calls, kernel events and witnessed
reasons, are what `explain` has on a plain capture; its predictions must
equal strace's ground truth: for every prediction strace can check (the
first call of that op family on that socket that returned an EOF or an
errno at or after the cause), the same outcome; and every EOF, ECONNRESET,
EPIPE and ECONNREFUSED strace saw on a socket the packets show is predicted.
Would-block and timeout results are no outcome the packets decide (EAGAIN
from a non-blocking socket), and are left out of both directions.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import REPO, tool_or_skip
from test_program_logs import HERE as LOG_PROGRAMS
from ports import closed_port, closed_ports
from test_program_logs import nginx_proxy_conf, peer
from test_record import go_teardowns  # noqa: F401  (the module fixture that builds the Go program)
from tcpteardown.analysis.predict import predict, rule_named
from tcpteardown.analysis.rules import NOT_OUTCOMES, TIMEOUT_ERRNOS, op_family
from tcpteardown.formats.bundle import load_recording
from tcpteardown.model import Metadata

pytestmark = pytest.mark.needs_capture

_FAMILY = {"recv": "read", "send": "write", "connect": "connect"}
DECIDED_BY_PACKETS = frozenset({"EOF", "ECONNRESET", "EPIPE", "ECONNREFUSED"})


def _record(tmp_path: Path, *command: str) -> Path:
    tool_or_skip("strace")
    tool_or_skip("tcpdump")
    bundle = tmp_path / "program.pcapng"
    result = subprocess.run([sys.executable, "-m", "tcpteardown", "record", "--calls", "strace", "-o", str(bundle), "--", *command],
                            capture_output=True, text=True, timeout=180)
    assert bundle.exists(), result.stderr
    return bundle


def _plain(recording):
    segments = tuple(replace(s, reset_reason=None) for s in recording.segments)
    return replace(recording, calls=(), kernel_events=(), segments=segments, metadata=Metadata())


def _outcome_calls(recording):
    """strace's calls with an outcome the packets decide or could (not ok, not would-block)."""
    return [c for c in recording.calls if c.source == "strace" and (c.local or c.remote) is not None
            and c.outcome not in ("ok", *TIMEOUT_ERRNOS, *NOT_OUTCOMES) and op_family(c.op) in _FAMILY]


def _same_socket(call, link) -> bool:
    """A failed connect's socket shows no local address in strace (-yy): its remote names it."""
    if call.local is not None:
        return call.local == link.call.local
    return link.call.op == "connect" and call.remote == link.call.remote


def compare(bundle: Path) -> tuple[list, list, list]:
    """(checked (rule, outcome) pairs, disagreements, strace outcomes no prediction names)."""
    recording = load_recording(bundle)
    real = _outcome_calls(recording)
    links = predict(_plain(recording), "Linux")
    checked, wrong = [], []
    for link in links:
        later = [c for c in real if _same_socket(c, link) and _FAMILY[op_family(c.op)] == link.call.op
                 and c.end_ns >= link.cause.time_ns]
        if not later:
            continue  # the program made no such call after the cause: nothing to check
        got = min(later, key=lambda c: c.end_ns)
        checked.append((link.rule, got.outcome))
        if got.outcome != link.call.outcome and got.outcome not in rule_named(link.rule).alternatives:
            wrong.append(f"{link.rule}: {link.call.local} predicted {link.call.op} -> {link.call.outcome}, "
                         f"strace saw {got.op}() -> {got.outcome}")
    shown = {end for s in recording.segments for end in (s.src, s.dst)}
    missed = [f"{c.op}() -> {c.outcome} on {c.local}" for c in real
              if c.outcome in DECIDED_BY_PACKETS and (c.local in shown or c.remote in shown)
              and not any(_same_socket(c, l) and l.call.op == _FAMILY[op_family(c.op)] for l in links)]
    return checked, wrong, missed


def test_go_teardowns(go_teardowns, tmp_path):  # noqa: F811
    checked, wrong, missed = compare(_record(tmp_path, str(go_teardowns)))
    assert wrong == [] and missed == []
    outcomes = {outcome for _rule, outcome in checked}
    assert {"ECONNREFUSED", "ECONNRESET", "EPIPE", "EOF"} <= outcomes, checked


NODE_MODES = {"read-reset": "read-rst", "ended": "fin", "write-epipe": "fin", "hang-up": "read-fin",
              "refused": None}


def test_nodejs(tmp_path):
    node = tool_or_skip("node")
    with contextlib.ExitStack() as stack:
        ports = {mode: stack.enter_context(peer(server)).port if server else closed_port()
                 for mode, server in NODE_MODES.items()}
        script = "; ".join(f"{node} {LOG_PROGRAMS / 'fail.js'} {mode} {port}" for mode, port in ports.items())
        checked, wrong, missed = compare(_record(tmp_path, "sh", "-c", script))
    assert wrong == [] and missed == []
    assert {"ECONNREFUSED", "ECONNRESET", "EPIPE", "EOF"} <= {outcome for _rule, outcome in checked}, checked


NGINX_SCRIPT = """
set -u
"$1" -p "$2" -c "$2/nginx.conf" &
nginx=$!
tries=0
until curl -s -o /dev/null "http://127.0.0.1:$3/"; do   # bounded wait for the listener
    tries=$((tries + 1)); [ $tries -gt 200 ] && break; sleep 0.05
done
for path in eof reset refused; do curl -s -o /dev/null "http://127.0.0.1:$3/$path"; done
kill $nginx; wait $nginx
exit 0
"""


def test_nginx_reverse_proxy(tmp_path):
    binary = tool_or_skip("nginx")
    tool_or_skip("curl")
    root = tmp_path / "nginx"
    root.mkdir()
    refused, port = closed_ports(2)
    with peer("read-fin") as eof, peer("read-rst") as reset:
        nginx_proxy_conf(root, port, {"eof": eof.port, "reset": reset.port, "refused": refused})
        script = tmp_path / "nginx.sh"
        script.write_text(NGINX_SCRIPT)
        checked, wrong, missed = compare(_record(tmp_path, "sh", str(script), binary, str(root), str(port)))
    assert wrong == [] and missed == []
    assert {"ECONNREFUSED", "ECONNRESET", "EOF"} <= {outcome for _rule, outcome in checked}, checked
