"""The scenarios' macOS expectations rest on evidence, and the evidence holds.

No Mac has recorded a scenario yet: every Darwin expectation cites XNU's
source or a real Mac capture from the shared corpus. The captures are read
here and each cited connection must show the expectation's teardown, in
order; the source citations must name a file that exists at the tag in
the XNU repository (checked when a mirror of it is on this machine).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tcpteardown.analysis.tcpstate import connections
from tcpteardown.formats.bundle import load_recording
from tcpteardown.scenarios import all_scenarios
from tcpteardown.scenarios.registry import FROM_SOURCE, OBSERVED, SEEN_IN_CAPTURE
from tcpteardown.scenarios.xnu import XNU_TAG

DARWIN = [(s.name, s.expectation("Darwin")) for s in all_scenarios() if s.expectation("Darwin")]


def _teardown(conn, swap: bool) -> tuple:
    """(scenario role, flags) of every FIN or RST in the connection, as the runner lists them."""
    def role(segment):
        sent_by_client = segment.src == conn.client
        return "server" if sent_by_client == swap else "client"
    return tuple((role(s), s.flags.render()) for s in conn.segments if s.is_fin or s.is_rst)


def test_no_darwin_expectation_is_called_observed_and_each_rests_on_source():
    assert len(DARWIN) >= 18
    for name, expectation in DARWIN:
        assert not expectation.observed and expectation.status in (FROM_SOURCE, SEEN_IN_CAPTURE), name
        assert any(e.kind == "source" for e in expectation.evidence), name
        for evidence in expectation.evidence:
            if evidence.kind == "source":
                assert evidence.where.startswith(XNU_TAG + " bsd/"), evidence
                assert " l." in evidence.where, evidence  # a line at the tag, not a vague pointer


@pytest.mark.parametrize("name,expectation", [(n, e) for n, e in DARWIN if e.status == SEEN_IN_CAPTURE],
                         ids=lambda value: value if isinstance(value, str) else "")
def test_each_capture_cited_shows_the_expected_teardown(corpus, name, expectation):
    for evidence in expectation.evidence:
        if evidence.kind != "capture":
            continue
        recording = load_recording(corpus / evidence.where)
        conn = connections(recording)[evidence.connection - 1]
        assert conn.roles_known, evidence
        # XNU's SYN: mss,nop,wscale,nop,nop,TS,sackOK,eol (NOPs not kept) and MSS 16344/16324 on lo0.
        syn = conn.segments[0]
        assert [n for n, _ in syn.options] == ["MSS", "WS", "TS", "SACK_PERM"], syn.options
        assert dict(syn.options)["MSS"] in (16344, 16324), syn.options
        assert _teardown(conn, evidence.swap_roles) == expectation.teardown, (name, evidence)


def test_a_wrong_citation_would_fail():
    """The check above can fail: the graceful close read with its roles swapped is not that teardown."""
    darwin = dict(DARWIN)["graceful-close"]
    cited = next(e for e in darwin.evidence if e.kind == "capture")
    assert _teardown_of_corpus(cited, swap=not cited.swap_roles) != darwin.teardown


def _teardown_of_corpus(evidence, swap):
    from conftest import CORPUS
    if not (CORPUS / evidence.where).exists():
        pytest.skip(f"needs the shared corpus at {CORPUS}")
    conn = connections(load_recording(CORPUS / evidence.where))[evidence.connection - 1]
    return _teardown(conn, swap)


def test_list_shows_per_os_which_expectations_are_observed():
    out = subprocess.run([sys.executable, "-m", "tcpteardown", "list", "--json"], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    rows = {row["name"]: row["expectations"] for row in json.loads(out)["scenarios"]}
    assert rows["broken-pipe"]["Linux"]["status"] == OBSERVED
    assert rows["broken-pipe"]["Darwin"]["status"] == SEEN_IN_CAPTURE
    assert rows["half-close"]["Darwin"]["status"] == FROM_SOURCE
    assert any("sosendcheck" in line for line in rows["write-after-reset"]["Darwin"]["evidence"])
    text = subprocess.run([sys.executable, "-m", "tcpteardown", "list"], capture_output=True, text=True,
                          check=True, timeout=120).stdout
    assert "Darwin: seen in a real capture" in text and "Darwin: from source" in text
