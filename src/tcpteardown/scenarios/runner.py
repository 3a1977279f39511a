"""Run a scenario on real loopback sockets and record it.

setup (listeners, so the ports are known) -> start the capture and, on
Linux as root, the kernel witness -> play -> stop both -> one Recording ->
expected vs observed. Everything opened is closed on the way out, also on
Ctrl-C and on failure.
"""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Optional, Sequence

from ..analysis.connections import declared_server_ports, side_by_port
from ..model import Recording
from .registry import Expectation, Outcome, Scenario, get_scenario
from .stage import Stage


@dataclass(frozen=True)
class ScenarioRun:
    scenario: Scenario
    family: str
    recording: Recording
    expected: Optional[Expectation]
    observed: tuple[Outcome, ...]
    observed_teardown: tuple[tuple[str, str], ...]
    mismatches: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def matches(self) -> bool:
        return self.expected is not None and not self.mismatches


def run_scenario(name: str, *, family: str = "ipv4", capture: bool = True, witness: bool = True,
                 observers: Sequence[Callable[[list], ContextManager]] = (),
                 capture_backend: str = "scapy", delay_ms: Optional[float] = None) -> ScenarioRun:
    """Play scenario `name` over `family` ("ipv4" or "ipv6") and record it.

    `observers` are called with the scenario's ports once they are known and
    return context managers that watch the play alongside our own capture
    (the tests run tcpdump this way, to compare with what we captured).
    `capture_backend`: "scapy", "tcpdump" or "auto" (capture.backends).
    `delay_ms`: play in a fresh network namespace whose lo delays every
    segment (netem); scenarios that need a namespace always get their own.
    """
    scenario = get_scenario(name)
    if delay_ms is not None or "netns" in scenario.needs:
        from ..capture import netns

        if not netns.inside_private_namespace():
            recording = netns.run_in_namespace(
                lambda: netns.mark_recording(run_scenario(
                    name, family=family, capture=capture, witness=witness, observers=observers,
                    capture_backend=capture_backend).recording, delay_ms),
                delay_ms=delay_ms)
            return judge(scenario, family, recording, declared_server_ports(recording))
    stage = Stage(family)
    live = witness_handle = None
    started = time.time_ns()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stage.close)
        scenario.setup(stage)
        if capture:
            from ..capture.backends import choose_backend, open_backend

            live = cleanup.enter_context(open_backend(choose_backend(capture_backend), stage.ports))
        if witness:
            witness_handle = _start_witness(stage.ports, cleanup)
        for observer in observers:
            cleanup.enter_context(observer(list(stage.ports)))
        scenario.play(stage)
        captured = live.stop() if live else None
        events = witness_handle.stop() if witness_handle else ()
    recording = _build_recording(scenario, stage, captured, events, witness_handle, started)
    return judge(scenario, family, recording, set(stage.ports))


def _start_witness(ports, cleanup):
    """The kernel witness when this host has one; None otherwise."""
    from ..capture.kernel import KernelWitness

    witness = KernelWitness(ports)
    if not witness.available:
        return None
    cleanup.enter_context(witness)
    return witness


def _build_recording(scenario, stage, captured, events, witness, started) -> Recording:
    from ..capture.session import assemble

    extra = [("family", stage.family), ("ports", ",".join(map(str, stage.ports)))]
    if captured is not None:
        extra.extend(("problem", problem) for problem in captured.problems)
    extra.extend(("note", note) for note in stage.notes)
    if platform.mac_ver()[0]:  # `sw_vers -productVersion`: which macOS a contributed bundle came from
        extra.append(("macos", platform.mac_ver()[0]))
    recording, _notes = assemble(
        captured=captured, calls=stage.rec.calls, events=events, witness=witness,
        window=(started, time.time_ns()), started_ns=started, scenario=scenario.name, extra=extra,
        # Only the scenario's own loopback address: the capture filters by port number, and another
        # program's connection on the same number over the other address family must not slip in.
        keep=lambda segment: stage.host in (segment.src.host, segment.dst.host))
    return recording


def judge(scenario: Scenario, family: str, recording: Recording, server_ports: set) -> ScenarioRun:
    """Compare what the kernel did with what the scenario expects on this OS."""
    expected = scenario.expectation(recording.metadata.os or platform.system())
    causes = _causes(recording)
    observed = tuple(
        Outcome(call.role, call.op, call.outcome, causes.get(id(call), "unchecked"))
        for call in recording.calls if call.outcome != "ok"
    )
    teardown = _teardown(recording, server_ports)
    mismatches = []
    if expected is None:
        mismatches.append(f"no expected outcome for {recording.metadata.os}")
    else:
        want = [(o.role, o.op, o.outcome) for o in expected.outcomes]
        got = [(o.role, o.op, o.outcome) for o in observed]
        if want != got:
            mismatches.append(f"socket calls: expected {_fmt(expected.outcomes)}, observed {_fmt(observed)}")
        else:
            for want_o, got_o in zip(expected.outcomes, observed):
                if got_o.cause not in (want_o.cause, "unchecked"):
                    mismatches.append(f"{got_o.role} {got_o.op}() {got_o.outcome}: expected cause "
                                      f"{want_o.cause}, linked to {got_o.cause}")
        if recording.frames or recording.segments:
            if tuple(expected.teardown) != teardown:
                mismatches.append(f"teardown segments: expected {_fmt_td(expected.teardown)}, "
                                  f"observed {_fmt_td(teardown)}")
    return ScenarioRun(scenario, family, recording, expected, observed, teardown, tuple(mismatches))


def _teardown(recording: Recording, server_ports: set) -> tuple:
    """(side, flags) of every FIN and RST, in order, as the expectation lists them.

    Once both sides have sent their FIN the story is over: an RST after that
    answers a late segment (a FIN retransmitted because its ACK was slow on a
    loaded machine) with no socket left to take it. The run still shows it;
    it is not compared, because a scenario cannot promise the scheduler's timing.
    """
    found, fin_from = [], set()
    for seg in recording.segments:
        if not (seg.is_fin or seg.is_rst):
            continue
        side = side_by_port(seg.src, server_ports)
        if seg.is_rst and not seg.is_fin and fin_from >= {"client", "server"}:
            continue
        if seg.is_fin:
            fin_from.add(side)
        found.append((side, seg.flags.render()))
    return tuple(found)


def _causes(recording: Recording) -> dict:
    """Cause kind per call id, as the correlator links them."""
    from ..analysis.correlate import correlate

    return {id(link.call): link.kind.value for link in correlate(recording)}


def _fmt(outcomes) -> str:
    return "[" + "; ".join(f"{o.role} {o.op}() -> {o.outcome}" for o in outcomes) + "]" if outcomes else "[nothing]"


def _fmt_td(teardown) -> str:
    return "[" + ", ".join(f"{role} {flags}" for role, flags in teardown) + "]" if teardown else "[none]"


