"""Predictions from the packets alone, verified by the scenario library.

Every scenario is stored as a bundle recorded on Linux, over IPv4 and IPv6
(captures/linux/*.pcapng, captures/linux/ipv6/*.pcapng): the kernel's own
socket calls next to its own packets. The agreement test strips the calls,
the kernel events and the witnessed RST reasons (what is left is a plain
capture), predicts, and checks every prediction against the call that really
failed (or read end-of-file) first on that socket for that op: the clean
closes too (graceful-close, peer-crash-fin: each FIN's receiver reads EOF). All must agree; and the rows the
table marks `exercised` must be exactly the rows some scenario checks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tcpteardown.analysis import predict as P
from tcpteardown.analysis.rules import op_family
from tcpteardown.formats.bundle import load_recording
from tcpteardown.formats.os_guess import guess_os
from tcpteardown.model import CauseKind, Metadata

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "linux"
BUNDLES = sorted(CAPTURES.glob("*.pcapng")) + sorted(CAPTURES.glob("ipv6/*.pcapng"))
_FAMILY = {"recv": "read", "send": "write", "connect": "connect"}

# Real failures no prediction is made for, and why (the rest must all be predicted).
NOT_PREDICTED = {
    "read-timeout": "EAGAIN: nothing arrived, so no segment tells it",
    "shutdown-then-write": "EPIPE after our own shutdown: no segment after it tells a write happened",
    "use-after-close": "EBADF: our own close, no packet",
    "no-route": "EHOSTUNREACH: no packet at all",
    "simultaneous-close": "no call fails: both sides close at once",
}


def _plain(recording):
    """The capture inside a bundle: packets only (no calls, kernel events,
    witnessed reasons, nor the bundle's word on its OS)."""
    segments = tuple(replace(s, reset_reason=None) for s in recording.segments)
    return replace(recording, calls=(), kernel_events=(), segments=segments, metadata=Metadata())


def _first_failure(recording, local, op):
    for call in sorted(recording.calls, key=lambda c: c.end_ns):
        if call.local == local and _FAMILY.get(op_family(call.op) or "") == op and call.outcome != "ok":
            return call
    return None


def _check(path):
    """(checked rule names, disagreements, real failures left unpredicted)."""
    recording = load_recording(path)
    plain = _plain(recording)
    guess = guess_os(plain)  # the OS from the packets alone, as explain would name it
    assert guess.name == ("linux" if plain.segments else "unknown")
    links = P.predict(plain, guess.display or "unknown")
    checked, wrong = set(), []
    for link in links:
        real = _first_failure(recording, link.call.local, link.call.op)
        if real is None:
            continue  # the application never made that call: nothing to check
        checked.add(link.rule)
        row = P.rule_named(link.rule)
        if real.outcome != link.call.outcome and real.outcome not in row.alternatives:
            wrong.append(f"{path.name}: {link.rule} predicted {link.call.op} -> {link.call.outcome}, "
                         f"the real {real.op}() returned {real.outcome}")
    predicted = {(l.call.local, l.call.op) for l in links}
    missed = [f"{c.role} {c.op}() -> {c.outcome}" for c in recording.calls
              if c.outcome != "ok" and (c.local, _FAMILY.get(op_family(c.op) or "")) not in predicted]
    return checked, wrong, missed


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_scenario_agrees_with_its_prediction(path):
    checked, wrong, missed = _check(path)
    assert wrong == []
    if path.stem in NOT_PREDICTED:
        assert not checked
    else:
        assert missed == [], f"real failures without a prediction: {missed}"
        assert checked, "the scenario checks no prediction"


def test_exercised_marks_are_exactly_what_the_library_checks():
    checked = set()
    for path in BUNDLES:
        checked |= _check(path)[0]
    marked = {row.name for row in P.PREDICTIONS if row.exercised}
    assert checked == marked
    for row in P.PREDICTIONS:
        if not row.exercised:
            assert row.status.startswith("no scenario exercises it") or row.status == P.DARWIN_STATUS
    assert len(BUNDLES) == 2 * len(list(CAPTURES.glob("*.pcapng")))  # both families


def test_every_scenario_of_the_registry_has_both_stored_bundles():
    from tcpteardown.scenarios.registry import all_scenarios

    for scenario in all_scenarios():
        assert (CAPTURES / f"{scenario.name}.pcapng").exists()
        assert (CAPTURES / "ipv6" / f"{scenario.name}.pcapng").exists()


def test_real_calls_win_over_predictions():
    recording = load_recording(CAPTURES / "write-after-reset.pcapng")
    assert P.predict(recording, "Linux") == ()  # the bundle's own calls cover the client
    assert len(P.predict(_plain(recording), "Linux")) == 2


def test_darwin_rules_differ_where_xnu_does():
    plain = _plain(load_recording(CAPTURES / "write-after-reset.pcapng"))
    darwin = {l.call.op: l for l in P.predict(plain, "Darwin")}
    assert darwin["write"].call.errno == "EPIPE"  # sosendcheck: SS_CANTSENDMORE before so_error
    assert darwin["read"].call.errno == "ECONNRESET"
    assert all("from source, not yet observed on a Mac" in c for l in darwin.values() for c in l.caveats)
    broken = {l.call.op: l for l in P.predict(_plain(load_recording(CAPTURES / "broken-pipe.pcapng")), "Darwin")}
    assert broken["read"].call.errno == "ECONNRESET"  # Linux says EOF
    assert broken["read"].kind is CauseKind.RST


def test_an_os_without_a_table_gets_the_connect_rows_only():
    plain = _plain(load_recording(CAPTURES / "write-after-reset.pcapng"))
    assert P.predict(plain, "Windows") == ()
    refused = P.predict(_plain(load_recording(CAPTURES / "refused.pcapng")), "Windows")
    assert [(l.call.op, l.call.errno) for l in refused] == [("connect", "ECONNREFUSED")]


def test_every_darwin_row_cites_xnu_and_every_row_a_source():
    for row in P.PREDICTIONS:
        assert row.source and row.situation in P.SITUATIONS
        if row.os == "Darwin":
            assert P.XNU_TAG in row.source and "bsd/" in row.source
            assert row.status == P.DARWIN_STATUS


@pytest.mark.parametrize("name, expected", [
    ("tls-duplicate-hello.pcap", {("127.0.0.1:49952", "connect", "ECONNREFUSED"),
                                  ("127.0.0.1:8443", "read", "ECONNRESET"),
                                  ("127.0.0.1:8443", "write", "EPIPE")}),
    ("http2-deflate-case.pcap", {("127.0.0.1:8080", "read", "ECONNRESET"), ("127.0.0.1:8080", "write", "EPIPE")}),
    ("zip64.pcap", {("[::1]:50528", "connect", "ECONNREFUSED"),
                    ("127.0.0.1:50529", "read", "EOF")}),  # the HTTP server closed first: the client reads EOF
])
def test_real_mac_captures_get_darwin_predictions(corpus, name, expected):
    recording = load_recording(corpus / "macos" / name)
    guess = guess_os(recording)
    links = P.predict(recording, guess.display)
    assert {(str(l.call.local), l.call.op, l.call.outcome) for l in links} == expected
    assert all(l.call.source == "predicted" for l in links)


def test_xnu_ignores_an_rst_that_is_not_exact_and_the_next_one_counts(corpus):
    """zeek/almost-resp.pcap, a Mac's lo0: the server's RST,ACK (frame 10) comes right after 42 bytes
    the client has not acknowledged yet; XNU expects last_ack_sent, answers with a challenge ACK
    (frame 11, acking those bytes) and the server's bare RST (frame 12) is the one that resets.
    Linux would have taken frame 10 (it expects rcv_nxt)."""
    recording = load_recording(corpus / "zeek" / "almost-resp.pcap")
    darwin = [l for l in P.predict(recording, "Darwin") if l.call.op == "read"]
    assert [(l.cause.frame, [r.frame for r in l.related]) for l in darwin] == [(12, [10])]
    assert any("challenge ACK" in c for c in darwin[0].caveats)
    linux = [l for l in P.predict(recording, "Linux") if l.call.op == "read"]
    assert [l.cause.frame for l in linux] == [10]


def test_a_syn_followed_by_its_own_fin_is_no_connect_timeout(corpus):
    """tcpdump's tfo capture: a TFO SYN with data, then the client's FIN, nothing answered:
    the application closed, it did not wait in connect(). (The capture's other connection, seen
    on both sides of a NAT, closed cleanly: its server reads EOF at each copy of the client's FIN.)"""
    recording = load_recording(corpus / "tcpdump" / "tfo-5c1fa7f9ae91.pcap")
    links = P.predict(recording, "Linux")
    assert [(l.rule, l.cause.frame) for l in links] == [("linux-fin-read", 7), ("linux-fin-read", 8)]
    assert not any(l.call.op == "connect" for l in links)


def test_a_capture_that_begins_mid_connection_is_taken_as_established(corpus):
    """tcpdump's tcp_rst_diag_payload.pcap: one RST,ACK and nothing before it."""
    recording = load_recording(corpus / "tcpdump" / "tcp_rst_diag_payload.pcap")
    links = P.predict(recording, "Linux")
    assert [(l.call.role, l.call.op, l.call.outcome) for l in links] == [
        ("peer", "read", "ECONNRESET"), ("peer", "write", "ECONNRESET")]
    assert all(any("mid-connection" in c for c in l.caveats) for l in links)
    assert P.predict(recording, "unknown") == ()  # no table for an unknown OS: nothing guessed


def _with_darwin_expectation():
    from tcpteardown.scenarios.registry import all_scenarios

    return [(CAPTURES / f"{s.name}.pcapng", s.expectation("Darwin")) for s in all_scenarios()
            if s.expectation("Darwin") is not None]  # accept-overflow needs Linux's tcp_abort_on_overflow


@pytest.mark.parametrize("path, expectation", _with_darwin_expectation(), ids=lambda v: getattr(v, "stem", ""))
def test_darwin_predictions_agree_with_the_librarys_darwin_expectations(path, expectation):
    """Two readings of XNU's source, made apart: the Darwin rows here, and each scenario's
    Darwin expectation (scenarios/xnu.py citations). Predicting with Darwin's rules on the
    scenario's packets must give the outcome the expectation names, wherever both speak."""
    predicted = {(l.call.role, l.call.op): l.call.outcome
                 for l in P.predict(_plain(load_recording(path)), "Darwin")}
    first = {}
    for outcome in expectation.outcomes:
        first.setdefault((outcome.role, _FAMILY.get(op_family(outcome.op) or "")), outcome.outcome)
    both = {key: (want, predicted[key]) for key, want in first.items() if key in predicted}
    assert all(want == got for want, got in both.values()), both
    if path.stem not in NOT_PREDICTED:
        assert both, "no prediction to compare"
