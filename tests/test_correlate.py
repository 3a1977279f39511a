"""correlate(): each rule of the table over hand-built recordings, the
ambiguities it must admit, then every seed scenario on real loopback sockets."""

from __future__ import annotations

import pytest

from tcpteardown.analysis import rules
from tcpteardown.analysis.correlate import _RULES, correlate
from tcpteardown.model import CauseKind, Endpoint, Recording, Segment, SocketCall, TcpFlags

C = Endpoint("127.0.0.1", 50000)
S = Endpoint("127.0.0.1", 8080)
C2 = Endpoint("127.0.0.1", 50001)
T0 = 1_700_000_000_000_000_000
US = 1_000


def seg(frame, t_us, src, dst, flags, seq=0, ack=0, payload=0, reason=None) -> Segment:
    return Segment(frame, T0 + t_us * US, src, dst, TcpFlags.parse(flags), seq, ack, 65535, payload,
                   reset_reason=reason)


def call(op, t0_us, t1_us, errno=None, result=None, *, local=C, remote=S, role="client", source="scenario",
         fd=3, pid=100) -> SocketCall:
    if result is None:
        result = -1 if errno else 0
    return SocketCall(role, op, T0 + t0_us * US, T0 + t1_us * US, result, errno, pid, fd, local, remote, source)


def handshake(client=C, server=S, start=0, first=1):
    return [seg(first, start, client, server, "SYN", 1000),
            seg(first + 1, start + 1, server, client, "SYN,ACK", 5000, 1001),
            seg(first + 2, start + 2, client, server, "ACK", 1001, 5001)]


HS = handshake()
# The peer closes with our 10 bytes unread: RST/ACK from its socket.
RESET = HS + [seg(4, 10, C, S, "PSH,ACK", 1001, 5001, 10), seg(5, 11, S, C, "ACK", 5001, 1011),
              seg(6, 20, S, C, "RST,ACK", 5001, 1011)]
# The peer reads and closes (FIN); our write draws an RST (in CLOSE_WAIT).
BROKEN = HS + [seg(4, 10, S, C, "FIN,ACK", 5001, 1001), seg(5, 20, C, S, "PSH,ACK", 1001, 5002, 9),
               seg(6, 21, S, C, "RST", 5002, 0)]
REFUSED = [seg(1, 0, C, S, "SYN", 1000), seg(2, 1, S, C, "RST,ACK", 0, 1001)]
NO_ANSWER = [seg(1, 0, C, S, "SYN", 1000), seg(2, 1_000_000, C, S, "SYN", 1000), seg(3, 3_000_000, C, S, "SYN", 1000)]
GRACEFUL = HS + [seg(4, 10, S, C, "FIN,ACK", 5001, 1001), seg(5, 30, C, S, "FIN,ACK", 1001, 5002),
                 seg(6, 31, S, C, "ACK", 5002, 1002)]
OUR_FIN = HS + [seg(4, 11, C, S, "FIN,ACK", 1001, 5001), seg(5, 12, S, C, "ACK", 5001, 1002)]

# (case id, segments, calls, the call that must be linked (index), rule, kind, cause frame, local call op)
RULE_CASES = [
    ("recv-reset", RESET, [call("recv", 30, 31, "ECONNRESET", remote=None)], 0,
     "recv-reset", CauseKind.RST, 6, None),
    ("send-reset", RESET, [call("send", 30, 31, "ECONNRESET", remote=None)], 0,
     "send-reset", CauseKind.RST, 6, None),
    ("epipe-after-econnreset", RESET, [call("send", 30, 31, "ECONNRESET"), call("send", 40, 41, "EPIPE")], 1,
     "send-epipe-after-rst", CauseKind.RST, 6, None),
    ("epipe-rst-in-close-wait", BROKEN, [call("send", 19, 22, result=9), call("send", 40, 41, "EPIPE")], 0,
     "send-epipe-after-rst", CauseKind.RST, 6, None),
    ("epipe-own-shutdown", OUR_FIN, [call("shutdown", 10, 12), call("send", 40, 41, "EPIPE")], 0,
     "send-epipe-local", CauseKind.LOCAL_CLOSE, None, "shutdown"),
    ("refused", REFUSED, [call("connect", 0, 2, "ECONNREFUSED", local=None, remote=None)], 0,
     "connect-refused", CauseKind.RST, 2, None),
    ("refused-remote-only", REFUSED, [call("connect", 0, 2, "ECONNREFUSED", local=None)], 0,
     "connect-refused", CauseKind.RST, 2, None),
    ("connect-timeout", NO_ANSWER, [call("connect", 0, 5_000_000, "ETIMEDOUT")], 0,
     "connect-timeout", CauseKind.SYN_UNANSWERED, 1, None),
    ("connect-eagain", NO_ANSWER, [call("connect", 0, 5_000_000, "EAGAIN")], 0,
     "connect-timeout", CauseKind.SYN_UNANSWERED, 1, None),
    ("recv-eof", GRACEFUL, [call("recv", 20, 21, result=0)], 0, "recv-eof", CauseKind.FIN, 4, None),
    ("read-eof", GRACEFUL, [call("read", 20, 21, result=0)], 0, "recv-eof", CauseKind.FIN, 4, None),
    ("recv-timeout", HS, [call("recv", 10, 1_000_010, "EAGAIN")], 0, "recv-timeout", CauseKind.NONE, None, None),
    ("recv-etimedout", HS, [call("recv", 10, 1_000_010, "ETIMEDOUT")], 0, "recv-timeout", CauseKind.NONE, None, None),
    ("ebadf", OUR_FIN, [call("close", 10, 12), call("recv", 40, 41, "EBADF")], 0,
     "closed-descriptor", CauseKind.LOCAL_CLOSE, None, "close"),
    ("use-of-closed", OUR_FIN, [call("close", 10, 12), call("write", 40, 41, "use of closed network connection")], 0,
     "closed-descriptor", CauseKind.LOCAL_CLOSE, None, "close"),
    ("no-rule", HS, [call("send", 10, 11, "EHOSTUNREACH")], 0, "no-rule", CauseKind.NONE, None, None),
    ("enotconn-after-rst", RESET, [call("shutdown", 30, 31, "ENOTCONN")], 0,
     "not-connected-after-rst", CauseKind.RST, 6, None),
    ("enotconn-never-connected", HS, [call("shutdown", 30, 31, "ENOTCONN")], 0, "no-rule", CauseKind.NONE, None, None),
]


@pytest.mark.parametrize("case, segments, calls, which, rule, kind, frame, local_op", RULE_CASES,
                         ids=[c[0] for c in RULE_CASES])
def test_each_rule(case, segments, calls, which, rule, kind, frame, local_op):
    links = correlate(Recording(segments=tuple(segments), calls=tuple(calls)))
    link = links[which]
    assert link.rule == rule, link
    assert link.kind is kind
    assert (link.cause.frame if link.cause else None) == frame
    assert (link.local_call.op if link.local_call else None) == local_op
    assert link.explanation.startswith(f"{link.call.op}() -> {link.call.outcome}: ")


def test_only_failures_and_eofs_get_links():
    calls = [call("connect", 0, 2, result=0), call("send", 10, 11, result=10), call("recv", 30, 31, "ECONNRESET"),
             call("close", 40, 41)]
    links = correlate(Recording(segments=tuple(RESET), calls=tuple(calls)))
    assert [link.call.op for link in links] == ["recv"]


def test_unambiguous_links_have_no_caveats():
    for case in RULE_CASES:
        if case[4] in ("no-rule",) or case[0].startswith("refused") and "remote" not in case[0]:
            continue
        links = correlate(Recording(segments=tuple(case[1]), calls=tuple(case[2])))
        assert links[case[3]].caveats == (), case[0]


def test_timeout_retransmissions_are_related():
    link = correlate(Recording(segments=tuple(NO_ANSWER), calls=(call("connect", 0, 5_000_000, "ETIMEDOUT"),)))[0]
    assert [s.frame for s in link.related] == [2, 3]
    assert "3 SYNs" in link.explanation


def test_epipe_explanations_name_the_mechanism():
    after_reset = correlate(Recording(segments=tuple(RESET), calls=(
        call("send", 30, 31, "ECONNRESET"), call("send", 40, 41, "EPIPE"))))[1]
    assert "reported ECONNRESET" in after_reset.explanation
    close_wait = correlate(Recording(segments=tuple(BROKEN), calls=(call("send", 40, 41, "EPIPE"),)))[0]
    assert "CLOSE_WAIT" in close_wait.explanation


def test_econnreset_after_fin_is_flagged():
    """An RST in CLOSE_WAIT leaves EPIPE; a write reporting ECONNRESET then is odd and said so."""
    link = correlate(Recording(segments=tuple(BROKEN), calls=(call("send", 40, 41, "ECONNRESET"),)))[0]
    assert link.cause.frame == 6
    assert any("CLOSE_WAIT" in c for c in link.caveats)


# -- ambiguity: said, never guessed silently --------------------------------------

def test_two_rsts_are_a_caveat_and_the_last_wins():
    segments = RESET + [seg(7, 25, S, C, "RST", 5001, 0)]
    link = correlate(Recording(segments=tuple(segments), calls=(call("recv", 30, 31, "ECONNRESET"),)))[0]
    assert link.cause.frame == 7
    assert any("2 RSTs" in c and "6, 7" in c for c in link.caveats)


def test_rst_after_the_call_returned_is_not_the_cause():
    segments = RESET[:-1] + [seg(6, 50, S, C, "RST,ACK", 5001, 1011)]
    link = correlate(Recording(segments=tuple(segments), calls=(call("recv", 30, 31, "ECONNRESET"),)))[0]
    assert link.kind is CauseKind.RST and link.cause is None
    assert any("no RST toward this socket" in c for c in link.caveats)


def test_missing_packets_are_a_caveat():
    link = correlate(Recording(segments=(), calls=(call("recv", 30, 31, "ECONNRESET"),)))[0]
    assert link.cause is None and link.kind is CauseKind.RST
    assert any("no packets" in c for c in link.caveats)


def test_epipe_after_a_reported_reset_is_the_rst_even_when_the_capture_lost_it():
    """Seen under load: the capture dropped the client's RST; the server's send() had already
    reported ECONNRESET, so its next EPIPE is that RST's, not a close of its own."""
    segments = tuple(HS + [seg(4, 10, C, S, "PSH,ACK", 1001, 5001, 10)])  # the RST is not there
    calls = (call("send", 30, 31, "ECONNRESET"), call("send", 40, 41, "EPIPE"),
             call("close", 50, 51))
    epipe = [link for link in correlate(Recording(segments=segments, calls=calls)) if link.call.errno == "EPIPE"][0]
    assert epipe.kind is CauseKind.RST and epipe.cause is None and epipe.local_call is None
    assert "reported ECONNRESET" in epipe.explanation
    assert any("no RST toward this socket" in c for c in epipe.caveats)


def test_no_four_tuple_two_candidates_is_a_caveat():
    first = RESET
    second = [seg(f + 6, t + 5, *rest) for f, t, *rest in [
        (s.frame, (s.time_ns - T0) // US, s.src if s.src != C else C2, s.dst if s.dst != C else C2,
         s.flags.render(), s.seq, s.ack, s.payload_len) for s in RESET]]
    anonymous = call("recv", 30, 31, "ECONNRESET", local=None, remote=None)
    link = correlate(Recording(segments=tuple(sorted(first + second, key=lambda s: s.time_ns)),
                               calls=(anonymous,)))[0]
    assert link.cause is not None
    assert any("no 4-tuple" in c for c in link.caveats)
    assert any("2 connections hold matching evidence" in c and "closest" in c for c in link.caveats)


def test_no_four_tuple_single_candidate_links_by_time():
    anonymous = call("recv", 30, 31, "ECONNRESET", local=None, remote=None)
    link = correlate(Recording(segments=tuple(RESET), calls=(anonymous,)))[0]
    assert link.cause.frame == 6
    assert any("no 4-tuple" in c for c in link.caveats)


def test_reused_four_tuple_links_to_the_later_connection():
    again = [seg(7, 100, C, S, "SYN", 9000), seg(8, 101, S, C, "SYN,ACK", 7000, 9001),
             seg(9, 102, C, S, "ACK", 9001, 7001), seg(10, 120, S, C, "RST,ACK", 7001, 9001)]
    link = correlate(Recording(segments=tuple(RESET + again), calls=(call("recv", 130, 131, "ECONNRESET"),)))[0]
    assert link.cause.frame == 10
    assert not any("connections hold" in c for c in link.caveats)


def test_strace_clock_tolerance_is_used_and_said():
    segments = RESET[:-1] + [seg(6, 31 + 400, S, C, "RST,ACK", 5001, 1011)]  # 0.4 ms after the call "returned"
    strace_call = call("read", 30, 31, "ECONNRESET", source="strace")
    link = correlate(Recording(segments=tuple(segments), calls=(strace_call,)))[0]
    assert link.cause.frame == 6
    assert any("different clock" in c for c in link.caveats)
    assert any("after the call returned" in c for c in link.caveats)
    scenario_call = call("read", 30, 31, "ECONNRESET")
    assert correlate(Recording(segments=tuple(segments), calls=(scenario_call,)))[0].cause is None


def test_log_line_connect_timeout_long_after_the_syn():
    logged = call("dial", 30_000_000, 30_000_000, "ETIMEDOUT", local=None, source="log")
    link = correlate(Recording(segments=tuple(NO_ANSWER), calls=(logged,)))[0]
    assert link.rule == "connect-timeout" and link.cause.frame == 1


def test_unknown_local_side_is_said():
    stranger = call("recv", 30, 31, "ECONNRESET", local=None, remote=None, role="curl")
    link = correlate(Recording(segments=tuple(RESET), calls=(stranger,)))[0]
    assert link.cause.frame == 6
    assert any("which end" in c for c in link.caveats)


# -- the table itself ------------------------------------------------------------

def test_every_rule_row_is_implemented_and_named_once():
    names = [rule.name for rule in rules.RULES]
    assert len(names) == len(set(names))
    assert set(names) == set(_RULES)


@pytest.mark.parametrize("op, outcome, first", [
    ("recv", "ECONNRESET", "recv-reset"), ("read", "EOF", "recv-eof"), ("write", "EPIPE", "send-epipe-after-rst"),
    ("sendto", "ECONNRESET", "send-reset"), ("connect", "ECONNREFUSED", "connect-refused"),
    ("connect", "ETIMEDOUT", "connect-timeout"), ("recv", "EAGAIN", "recv-timeout"),
    ("send", "EBADF", "closed-descriptor"), ("getsockopt", "ECONNREFUSED", "connect-refused"),
    ("connect", "EHOSTUNREACH", "connect-unreachable-icmp"), ("connect", "ENETUNREACH", "connect-unreachable-icmp"),
])
def test_rule_lookup(op, outcome, first):
    errno, result = (None, 0) if outcome == "EOF" else (outcome, -1)
    found = rules.rule_for(call(op, 0, 1, errno, result))
    assert found[0].name == first


def test_design_table_rows_are_all_present():
    """One row per line of DESIGN.md's table (EPIPE has two: RST or our own close)."""
    kinds = {rule.name: rule.kind.value for rule in rules.RULES}
    assert kinds == {
        "closed-descriptor": "local-close", "recv-reset": "rst", "send-reset": "rst",
        "send-epipe-after-rst": "rst", "send-epipe-local": "local-close", "connect-refused": "rst",
        "connect-timeout": "syn-unanswered", "recv-eof": "fin", "recv-timeout": "none",
        "not-connected-after-rst": "rst",  # beyond DESIGN.md's table: shutdown() on a reset socket
        # beyond it too: connect() with no way there (tests/test_unreachable.py)
        "connect-unreachable-icmp": "syn-unanswered", "connect-no-route": "none",
    }


# -- real recordings of every seed scenario ----------------------------------------

# scenario -> [(role, op, outcome, rule, kind, flags of the cause or None)]
SCENARIO_LINKS = {
    "graceful-close": [("client", "recv", "EOF", "recv-eof", "fin", "FIN,ACK")],
    "reset-by-peer": [("client", "recv", "ECONNRESET", "recv-reset", "rst", "RST,ACK")],
    "broken-pipe": [("client", "send", "EPIPE", "send-epipe-after-rst", "rst", "RST")],
    "write-after-reset": [("client", "send", "ECONNRESET", "send-reset", "rst", "RST,ACK"),
                          ("client", "send", "EPIPE", "send-epipe-after-rst", "rst", "RST,ACK")],
    "refused": [("client", "connect", "ECONNREFUSED", "connect-refused", "rst", "RST,ACK")],
    "use-after-close": [("client", "recv", "EBADF", "closed-descriptor", "local-close", None)],
    # The abort family (skipped while not in the library).
    "linger-abort": [("client", "recv", "ECONNRESET", "recv-reset", "rst", "RST,ACK")],
    "peer-crash-fin": [("client", "recv", "EOF", "recv-eof", "fin", "FIN,ACK")],
    "peer-crash-rst": [("client", "recv", "ECONNRESET", "recv-reset", "rst", "RST,ACK")],
}


def _expected_frame(recording, kind):
    """The cause frame found without correlate: the only RST, or the first FIN toward the client."""
    if kind == "rst":
        rsts = [s.frame for s in recording.segments if s.is_rst]
        assert len(rsts) == 1
        return rsts[0]
    if kind == "fin":
        client = next(c for c in recording.calls if c.role == "client" and c.local).local
        return next(s.frame for s in recording.segments if s.is_fin and s.dst == client)
    return None


@pytest.mark.needs_capture
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("name", sorted(SCENARIO_LINKS))
def test_seed_scenarios(name, family):
    from tcpteardown.scenarios import SCENARIOS, all_scenarios, run_scenario

    all_scenarios()
    if name not in SCENARIOS:
        pytest.skip(f"scenario {name} is not in the library yet")
    run = run_scenario(name, family=family)
    links = correlate(run.recording)
    got = [(l.call.role, l.call.op, l.call.outcome, l.rule, l.kind.value,
            l.cause.flags.render() if l.cause else None) for l in links]
    assert got == SCENARIO_LINKS[name], run.recording
    for link in links:
        assert link.caveats == ()
        assert (link.cause.frame if link.cause else None) == _expected_frame(run.recording, link.kind.value)
    assert run.matches, run.mismatches


def test_einprogress_is_not_an_outcome():
    pending = call("connect", 0, 1, "EINPROGRESS", source="strace")
    assert correlate(Recording(segments=tuple(HS), calls=(pending,))) == ()


def test_log_precision_sets_the_tolerance():
    """A line stamped to the whole second may trail the packets by up to a second;
    one stamped to the microsecond may not."""
    segments = RESET[:-1] + [seg(6, 500_000, S, C, "RST,ACK", 5001, 1011)]  # RST at T0 + 0.5 s
    syslog = call("read", 0, 0, "ECONNRESET", source="log")  # "…:00" while the RST came at .5
    assert correlate(Recording(segments=tuple(segments), calls=(syslog,)))[0].cause.frame == 6
    precise = call("read", 1, 1, "ECONNRESET", source="log")  # stamped 1 us: the RST is 0.5 s later
    assert correlate(Recording(segments=tuple(segments), calls=(precise,)))[0].cause is None


def test_ambiguous_eof_prefers_the_fin_closest_before_the_call():
    # C2 opened later than C, but its FIN came earlier: closeness, not recency, decides.
    older = handshake(C2, S, start=3, first=7) + [seg(10, 6, S, C2, "FIN,ACK", 5001, 1001)]
    logged = call("recv", 25, 25, result=0, local=None, remote=None, source="log")
    rec = Recording(segments=tuple(sorted(GRACEFUL + older, key=lambda s: s.time_ns)), calls=(logged,))
    link = correlate(rec)[0]
    assert link.cause.frame == 4  # the FIN toward C at 10 us, not the one toward C2 at 6 us
    assert any("closest" in c for c in link.caveats)


def test_analysis_modules_never_touch_the_system():
    """analysis/ and the narrative are pure: no socket, no scapy, no subprocess."""
    import ast
    from pathlib import Path

    import tcpteardown

    root = Path(tcpteardown.__file__).parent
    for relative in ("analysis/rules.py", "analysis/correlate.py", "analysis/tcpstate.py",
                     "analysis/reasons.py", "views/narrative.py"):
        tree = ast.parse((root / relative).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        assert not imported & {"socket", "scapy", "subprocess", "os"}, (relative, imported)


def test_a_log_line_echoing_an_strace_call_is_the_same_failure():
    traced = call("read", 30, 31, "ECONNRESET", source="strace")
    logged = call("read", 40, 40, "ECONNRESET", source="log", fd=None, pid=None)
    links = correlate(Recording(segments=tuple(RESET), calls=(traced, logged)))
    assert len(links) == 1  # one failure, told by the syscall, citing the log line
    assert links[0].call is traced and links[0].seen_by == (logged,) and links[0].cause.frame == 6
    assert links[0].sources == (traced, logged)


# -- real captures from public projects (every link type the corpus has) ---------------

def _corpus_rst_files(corpus):
    import csv

    with open(corpus / "MANIFEST.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [corpus / row["relpath"] for row in rows if int(row["rst_segments"] or 0) > 0]


def test_corpus_resets_link_to_the_frames_tshark_counts(corpus):
    """For every RST in every corpus capture, a recv() on the socket it reached,
    made just after it, links to that RST's frame: the frame tshark numbers it."""
    from conftest import tool_or_skip
    from tcpteardown.formats.bundle import load_recording

    from parallel import run_all

    tshark = tool_or_skip("tshark")
    checked = 0
    paths = _corpus_rst_files(corpus)
    counted = run_all([tshark, "-r", str(path), "-Y", "tcp.flags.reset==1", "-T", "fields", "-e", "frame.number"]
                      for path in paths)
    for path, done in zip(paths, counted):
        assert done.returncode == 0, (path, done.stderr)
        recording = load_recording(path)
        tshark_rsts = [int(n) for n in done.stdout.split()]
        ours = [s for s in recording.segments if s.is_rst]
        assert set(s.frame for s in ours) <= set(tshark_rsts), path
        for rst in ours[:20]:
            probe = SocketCall("client", "recv", rst.time_ns + 1, rst.time_ns + 1, -1, "ECONNRESET",
                               local=rst.dst, remote=rst.src)
            (link,) = correlate(Recording(segments=recording.segments, calls=(probe,)))
            same_time = {s.frame for s in ours if s.dst == rst.dst and s.src == rst.src and s.time_ns == rst.time_ns}
            assert link.kind is CauseKind.RST and link.cause is not None, (path, rst)
            assert link.cause.frame in same_time | {rst.frame} or link.cause.time_ns == rst.time_ns, (path, rst.frame)
            checked += 1
    assert checked > 0


@pytest.mark.needs_capture
def test_connect_timeout_on_a_full_backlog(tmp_path):
    """A listener whose accept queue is full drops SYNs: the connect times out,
    linked to the unanswered SYN and its retransmission."""
    import socket
    import time

    from conftest import tool_or_skip
    from tcpteardown.capture.tcpdump import TcpdumpCapture
    from tcpteardown.formats.bundle import load_recording

    tool_or_skip("tcpdump")
    pcap = tmp_path / "backlog.pcap"
    with socket.socket() as listener, socket.socket() as first, socket.socket() as second, \
            socket.socket() as third:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        server = listener.getsockname()
        first.connect(server)  # fills the queue (backlog 0 holds one)
        second.settimeout(0.2)
        try:
            second.connect(server)  # may still fit: Linux accepts backlog + 1
        except OSError:
            pass
        third.bind(("127.0.0.1", 0))
        third.settimeout(1.5)  # one retransmission at ~1 s
        with TcpdumpCapture(pcap, ports=[server[1]]):
            # tcpdump says "listening" a moment before it really captures:
            # wait until a segment of ours is in the file before the SYN.
            first.send(b"x")
            deadline = time.monotonic() + 10
            while pcap.stat().st_size <= 24 and time.monotonic() < deadline:
                time.sleep(0.01)  # wait-ok: polling the file for the first captured packet
            start = time.time_ns()
            try:
                third.connect(server)
                outcome = None
            except OSError as exc:
                outcome = "ETIMEDOUT" if isinstance(exc, socket.timeout) else exc
            end = time.time_ns()
        local = Endpoint(*third.getsockname()[:2])
    if outcome != "ETIMEDOUT":
        pytest.skip(f"the kernel accepted or refused instead of dropping the SYN ({outcome!r})")
    probe = SocketCall("client", "connect", start, end, -1, "ETIMEDOUT", local=local,
                       remote=Endpoint(*server))
    recording = load_recording(pcap).with_calls([probe])
    (link,) = correlate(recording)
    syns = [s for s in recording.segments if s.is_syn and s.src == local]
    assert syns and syns[0].time_ns - start < 100_000_000, "the first SYN was not captured"
    assert link.rule == "connect-timeout" and link.kind is CauseKind.SYN_UNANSWERED
    assert link.cause == syns[0] and link.related == tuple(syns[1:]) and len(syns) >= 2


@pytest.mark.needs_capture
def test_write_after_our_own_shutdown_is_local(tmp_path):
    """shutdown(SHUT_WR) then send(): EPIPE with no RST, linked to our own shutdown and its FIN."""
    import errno
    import socket
    import time

    from conftest import tool_or_skip
    from tcpteardown.capture.tcpdump import TcpdumpCapture
    from tcpteardown.formats.bundle import load_recording

    tool_or_skip("tcpdump")
    pcap = tmp_path / "shutdown.pcap"

    def timed(op, fn, sock):
        start = time.time_ns()
        try:
            fn()
            err, result = None, 0
        except OSError as exc:
            err, result = errno.errorcode[exc.errno], -1
        local = Endpoint(*sock.getsockname()[:2])
        return SocketCall("client", op, start, time.time_ns(), result, err, 1, sock.fileno(), local, None)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        with TcpdumpCapture(pcap, ports=[listener.getsockname()[1]]):
            with socket.create_connection(listener.getsockname()) as client:
                server, _ = listener.accept()
                with server:
                    shut = timed("shutdown", lambda: client.shutdown(socket.SHUT_WR), client)
                    assert select_readable(server)  # our FIN reached the peer
                    failed = timed("send", lambda: client.send(b"too late", getattr(socket, "MSG_NOSIGNAL", 0)),
                                   client)
    assert failed.errno == "EPIPE"
    recording = load_recording(pcap).with_calls([shut, failed])
    (link,) = correlate(recording)
    our_fin = next(s for s in recording.segments if s.is_fin and s.src == failed.local)
    assert link.rule == "send-epipe-local" and link.kind is CauseKind.LOCAL_CLOSE
    assert link.local_call == shut and link.related == (our_fin,) and link.cause is None
    assert not any(s.is_rst for s in recording.segments)


def select_readable(sock, timeout=10.0) -> bool:
    import select

    return bool(select.select([sock], [], [], timeout)[0])
