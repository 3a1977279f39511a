"""Run a scenario on real loopback sockets and record it.

setup (listeners, so the ports are known) -> start the capture and, on
Linux as root, the kernel witness -> play -> stop both -> one Recording ->
expected vs observed. Everything opened is closed on the way out, also on
Ctrl-C and on failure.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Optional, Sequence

from .. import __version__
from ..model import Metadata, Recording
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
            return judge(scenario, family, recording, server_ports_of(recording))
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
        frames = live.stop().frames if live else ()
        events = witness_handle.stop() if witness_handle else ()
    recording = _build_recording(scenario, stage, frames, events, live, witness_handle, started)
    return judge(scenario, family, recording, set(stage.ports))


def _start_witness(ports, cleanup):
    """The kernel witness when this host has one; None otherwise."""
    from ..capture.kernel import KernelWitness

    witness = KernelWitness(ports)
    if not witness.available:
        return None
    cleanup.enter_context(witness)
    return witness


def _own_family(frames, host: str) -> tuple:
    """Only the frames of the scenario's own loopback address: the capture
    filters by port number, and another program's connection on the same
    number over the other address family must not slip into the story."""
    from ..capture.dissect import segment_from_frame

    kept = []
    for frame in frames:
        segment = segment_from_frame(0, frame)
        if segment is not None and host in (segment.src.host, segment.dst.host):
            kept.append(frame)
    return tuple(kept)


def _build_recording(scenario, stage, frames, events, live, witness, started) -> Recording:
    from ..capture.dissect import segments_from_frames

    frames = _own_family(frames, stage.host)
    segments = segments_from_frames(frames)
    extra = [("family", stage.family), ("ports", ",".join(map(str, stage.ports)))]
    if events:
        from ..analysis.witness import attach_reset_reasons, check_agreement

        segments = attach_reset_reasons(segments, events)
        # Never hidden: an RST the kernel sent that the capture missed, or the reverse.
        extra += [("witness_disagreement", text)
                  for text in check_agreement(segments, events, window=(started, time.time_ns()))]
    if live is not None:
        extra.extend(live.loss_extra())
    if witness is not None:
        extra.append(("witness", "tracefs"))
    extra.extend(("note", note) for note in stage.notes)
    if platform.mac_ver()[0]:  # `sw_vers -productVersion`: which macOS a contributed bundle came from
        extra.append(("macos", platform.mac_ver()[0]))
    metadata = Metadata(
        scenario=scenario.name,
        os=platform.system(),
        kernel=platform.release(),
        python=platform.python_version(),
        scapy=_scapy_version(),
        tcpteardown=__version__,
        hostname=socket.gethostname(),
        capture=live.describe() if live else "no capture",
        started_ns=started,
        extra=tuple(extra),
    )
    return Recording(segments=tuple(segments), calls=stage.rec.calls, kernel_events=tuple(events),
                     metadata=metadata, frames=tuple(frames))


def _scapy_version() -> Optional[str]:
    try:
        import scapy

        return scapy.VERSION
    except ImportError:
        return None


def judge(scenario: Scenario, family: str, recording: Recording, server_ports: set) -> ScenarioRun:
    """Compare what the kernel did with what the scenario expects on this OS."""
    expected = scenario.expectation(recording.metadata.os or platform.system())
    causes = _causes(recording)
    observed = tuple(
        Outcome(call.role, call.op, call.outcome, causes.get(id(call), "unchecked"))
        for call in recording.calls if call.outcome != "ok"
    )
    teardown = tuple(
        ("server" if seg.src.port in server_ports else "client", seg.flags.render())
        for seg in recording.segments if seg.is_fin or seg.is_rst
    )
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


def _causes(recording: Recording) -> dict:
    """Cause kind per call id, as the correlator links them."""
    from ..analysis.correlate import correlate

    return {id(link.call): link.kind.value for link in correlate(recording)}


def _fmt(outcomes) -> str:
    return "[" + "; ".join(f"{o.role} {o.op}() -> {o.outcome}" for o in outcomes) + "]" if outcomes else "[nothing]"


def _fmt_td(teardown) -> str:
    return "[" + ", ".join(f"{role} {flags}" for role, flags in teardown) + "]" if teardown else "[none]"


def server_ports_of(recording: Recording) -> set:
    text = recording.metadata.get("ports") or ""
    return {int(p) for p in text.split(",") if p}

