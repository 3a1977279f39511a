"""Every registered scenario, over IPv4 and IPv6, passes the same checks.

The list comes from the registry, so a new scenario is checked the day it
is registered (the model is trio's `check_half_closeable_stream`). One real
run per scenario and family (a module-scoped fixture; the CI budget is 15
minutes on 2 cores), then, on that run:

- its outcome is its declared expectation on this OS;
- it left nothing behind: descriptors, threads, child processes, namespaces;
  every call timed, errnos by name;
- its bundle round-trips (packets, calls, kernel events, metadata);
- tshark reads the bundle and sees the same segments;
- `tcpteardown explain --json` links each failing call to a cause of the
  declared kind, and the frame it names is, for tshark, that kind of segment;
- its ladder draws legibly (no overlaps, text >= 11 px at 1024 px wide, the
  legend clear of the rule footnote) and writes as PNG, SVG or PDF (one
  format per case, in turn, so all three meet real recordings).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

import pytest

from conftest import tool_or_skip
from leftovers import children, open_fds, processes_in
from tcpteardown.model import Recording, TcpFlags
from tcpteardown.scenarios import all_scenarios, get_scenario, run_scenario
from tcpteardown.scenarios.needs import can_run

pytestmark = pytest.mark.needs_capture

CASES = [(scenario.name, family) for scenario in all_scenarios() for family in ("ipv4", "ipv6")]
FORMATS = {case: (".png", ".svg", ".pdf")[index % 3] for index, case in enumerate(CASES)}
# The flag a cause of each kind is, on the wire.
CAUSE_FLAG = {"rst": TcpFlags.RST, "fin": TcpFlags.FIN, "syn-unanswered": TcpFlags.SYN}


@dataclass
class Played:
    run: object  # ScenarioRun
    leaked_fds: set
    threads: tuple[int, int]
    leaked_children: set
    bundle: str
    case: tuple[str, str] = ("", "")
    wire: dict = None  # tshark's view of the bundle, read once
    reading: object = None  # tshark started on the bundle as soon as it was written (Popen)

    def tshark(self) -> dict[int, int]:
        if self.wire is None:
            self.wire = tshark_flags(self.bundle, self.reading)
            self.reading = None
        return self.wire


@pytest.fixture(scope="module")
def warmed():
    """One run first: scapy and the witness open their long-lived files on first use."""
    problem = can_run(get_scenario("refused"))
    if problem:
        pytest.skip(f"cannot play scenarios here: {problem}")
    run_scenario("refused")


@pytest.fixture(scope="module", params=CASES, ids=[f"{name}-{family}" for name, family in CASES])
def played(request, warmed, tmp_path_factory) -> Played:
    from tcpteardown.formats.bundle import write_bundle

    name, family = request.param
    problem = can_run(get_scenario(name))
    if problem:
        pytest.skip(f"{name}: {problem}")
    fds, threads, kids = open_fds(), threading.active_count(), children()
    run = run_scenario(name, family=family)
    leaked = (open_fds() - fds, (threads, threading.active_count()), children() - kids)
    bundle = write_bundle(tmp_path_factory.mktemp(f"{name}-{family}") / f"{name}.pcapng", run.recording)
    played = Played(run, leaked[0], leaked[1], leaked[2], str(bundle), (name, family),
                    reading=start_tshark(str(bundle)))  # reads on the other core while explain and the ladder run
    yield played
    if played.reading is not None:  # no test asked for it (-k)
        played.reading.kill()
        played.reading.communicate()


def test_outcome_is_its_declared_expectation(played):
    run = played.run
    assert run.expected is not None, f"{run.scenario.name} declares nothing for {run.recording.metadata.os}"
    assert run.matches, f"{run.scenario.name} over {run.family}: " + "; ".join(run.mismatches)


def test_calls_are_timed_and_nothing_is_left_behind(played):
    assert played.leaked_fds == set(), "file descriptors leaked"
    assert played.threads[0] == played.threads[1], [t.name for t in threading.enumerate()]
    assert played.leaked_children == set(), "child processes left running"
    recording = played.run.recording
    if "netns" in played.run.scenario.needs:
        namespace = recording.metadata.get("netns")
        assert namespace and namespace.startswith("net:["), recording.metadata.extra
        assert namespace != os.readlink("/proc/self/ns/net")
        assert processes_in(namespace) == []
    assert recording.calls
    for call in recording.calls:
        assert call.start_ns <= call.end_ns, call
        assert call.errno is None or (call.errno.isupper() and call.errno.startswith("E")), call
    if recording.segments:  # one clock: the first packet falls inside the run, not hours away
        assert abs(recording.segments[0].time_ns - recording.calls[0].start_ns) < 1_000_000_000


@pytest.mark.parametrize("scenario", all_scenarios(), ids=lambda s: s.name)
def test_expectations_are_honest(scenario):
    """Seen on Linux and explained; never claimed as seen on a Mac."""
    linux = scenario.expected["Linux"]
    assert linux.observed and linux.why and scenario.summary
    darwin = scenario.expected.get("Darwin")
    assert darwin is None or not darwin.observed


def _wire(recording: Recording) -> list[tuple]:
    return [(s.frame, s.time_ns, str(s.src), str(s.dst), int(s.flags), s.seq, s.ack, s.payload_len, s.reset_reason)
            for s in recording.segments]


def test_the_bundle_round_trips(played):
    from tcpteardown.formats.bundle import load_recording

    recording, loaded = played.run.recording, load_recording(played.bundle)
    assert _wire(loaded) == _wire(recording)
    assert loaded.calls == recording.calls
    assert loaded.kernel_events == recording.kernel_events
    for field in ("scenario", "os", "kernel", "capture", "started_ns"):
        assert getattr(loaded.metadata, field) == getattr(recording.metadata, field), field
    assert set(recording.metadata.extra) <= set(loaded.metadata.extra)


def start_tshark(bundle: str):
    """tshark dissecting the bundle, running (a Popen), or None without tshark."""
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    return subprocess.Popen([tshark, "-r", bundle, "-Y", "tcp", "-T", "fields", "-e", "frame.number",
                             "-e", "tcp.flags"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tshark_flags(bundle: str, reading=None) -> dict[int, int]:
    """frame number -> TCP flag bits, as tshark dissects the bundle (its tcpteardown block is a frame to tshark)."""
    tool_or_skip("tshark")
    reading = reading or start_tshark(bundle)
    out, err = reading.communicate(timeout=60)
    assert reading.returncode == 0, err
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return {int(frame): int(flags, 16) & 0x3F for frame, flags in rows}


def test_tshark_reads_the_bundle(played):
    recording = played.run.recording
    assert played.tshark() == {s.frame: int(s.flags) & 0x3F for s in recording.segments}


def test_explain_links_every_failing_call_to_its_declared_cause(played, capsys):
    from tcpteardown.cli import main

    run = played.run
    assert main(["explain", played.bundle, "--json"]) == 0
    links = json.loads(capsys.readouterr().out)["links"]
    wire = played.tshark()
    expected = list(run.expected.outcomes)
    failing = [call for call in run.recording.calls if call.outcome != "ok"]
    assert len(failing) == len(expected)
    for call, want in zip(failing, expected):
        mine = [link for link in links if link["call"]["op"] == call.op and link["call"]["errno"] == call.outcome
                and abs(link["call"]["time"] - call.end_ns / 1e9) < 1e-6]
        assert len(mine) == 1, f"{call.op}() -> {call.outcome}: {len(mine)} links in {links}"
        cause = mine[0]["cause"]
        assert cause["kind"] == want.cause, mine[0]
        if want.cause != "none":
            assert mine[0]["rule"] != "no-rule", mine[0]
        if want.cause in CAUSE_FLAG:
            assert wire[cause["frame"]] & CAUSE_FLAG[want.cause], f"frame {cause['frame']} is not a {want.cause}"


def test_the_ladder_draws_legibly(played, tmp_path):
    from test_ladder import MAGIC, arrows, assert_legend_clear_of_footnote, assert_legible, connectors, \
        failure_marks, text_by_gid
    from tcpteardown.analysis.correlate import correlate
    from tcpteardown.analysis.elide import elide
    from tcpteardown.views import style
    from tcpteardown.analysis.connections import connections, select_connection
    from tcpteardown.views.ladder import draw_ladder, ladder_alt_text, min_text_px

    recording = played.run.recording
    links = correlate(recording)
    figure = draw_ladder(recording, links, lang="go")
    drawn = select_connection(connections(recording))
    anchors = [link.cause.time_ns for link in links if link.call in drawn.calls and link.cause is not None]
    assert len(arrows(figure)) == len(elide(drawn.segments, drawn.calls, anchors=anchors).kept)
    assert len(failure_marks(figure)) == sum(1 for c in drawn.calls if c.failed)
    assert len(connectors(figure)) == sum(1 for link in links if link.call in drawn.calls
                                          and (link.cause is not None or link.local_call is not None))
    assert_legible(figure)
    assert min_text_px(figure) >= 11
    if text_by_gid(figure, "rules"):
        assert_legend_clear_of_footnote(figure)
    assert ladder_alt_text(figure).startswith(f"Ladder diagram of {played.run.scenario.name}")
    suffix = FORMATS[played.case]
    assert style.save_figure(figure, tmp_path / f"ladder{suffix}").read_bytes().startswith(MAGIC[suffix])
