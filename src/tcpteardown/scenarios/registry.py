"""The scenario library: what each scenario does and what it should show.

A scenario is a small class: `setup(stage)` opens listeners and reserves
ports (so the capture can watch them), `play(stage)` performs the teardown
through the recorder. `expected` says, per OS, which socket calls end in
which outcome and what kind of cause each one has; the runner compares it
with what the kernel actually did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import UserError


@dataclass(frozen=True, slots=True)
class Outcome:
    """One notable socket call: who, which op, what it returned, and why."""

    role: str
    op: str
    outcome: str  # errno name, "EOF", or "ok"
    cause: str  # rst, fin, syn-unanswered, local-close, none

    def __str__(self) -> str:
        return f"{self.role} {self.op}() -> {self.outcome} (cause: {self.cause})"


FROM_SOURCE = "from source"
SEEN_IN_CAPTURE = "seen in a real capture"
OBSERVED = "observed"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why an expectation is believed when no recording of the scenario shows it.

    `kind` "source": a line of the kernel's source decides it (`where` names
    the file, function and line at a tagged release). `kind` "capture": a
    real capture from a public project shows the teardown's segments
    (`where` is its path under the shared corpus, `connection` the 1-based
    connection in it; `swap_roles` when the scenario's server is that
    capture's SYN sender). A capture shows segments, never errno values.
    """

    kind: str  # "source" or "capture"
    where: str
    shows: str
    connection: Optional[int] = None
    swap_roles: bool = False

    def __str__(self) -> str:
        mark = FROM_SOURCE if self.kind == "source" else SEEN_IN_CAPTURE
        at = f" (connection {self.connection})" if self.connection else ""
        return f"{mark}: {self.where}{at}: {self.shows}"


@dataclass(frozen=True, slots=True)
class Expectation:
    outcomes: tuple[Outcome, ...]
    # The segments that must appear, as (sender role, flags text) pairs in order.
    teardown: tuple[tuple[str, str], ...] = ()
    observed: bool = True  # True only when this scenario was recorded on a real host of this OS
    why: str = ""  # one paragraph a reader sees next to the result
    evidence: tuple[Evidence, ...] = ()  # for an expectation not observed: what it rests on

    @property
    def status(self) -> str:
        """"observed", "seen in a real capture" (the teardown; calls from source) or "from source"."""
        if self.observed:
            return OBSERVED
        if any(e.kind == "capture" for e in self.evidence):
            return SEEN_IN_CAPTURE
        return FROM_SOURCE


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    family_group: str  # which module of the library it comes from
    setup: Callable
    play: Callable
    expected: dict  # OS name ("Linux", "Darwin") -> Expectation
    needs: tuple[str, ...] = ()  # "root", "netns", ...
    notes: str = ""

    def expectation(self, os_name: str) -> Optional[Expectation]:
        return self.expected.get(os_name)


def on_xnu(linux: Expectation, *evidence: Evidence, outcomes: Optional[tuple[Outcome, ...]] = None,
           teardown: Optional[tuple[tuple[str, str], ...]] = None, why: str = "") -> Expectation:
    """macOS's expectation: Linux's story unless XNU's source says otherwise.

    Never observed until a scenario is recorded on a Mac (captures/macos/);
    each one says what it rests on (`scenarios.xnu` holds the citations).
    """
    if not evidence:
        raise ValueError("a Darwin expectation needs its evidence (scenarios.xnu)")
    return Expectation(linux.outcomes if outcomes is None else outcomes,
                       linux.teardown if teardown is None else teardown,
                       False, why or linux.why, tuple(evidence))


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    if scenario.name in SCENARIOS:
        raise ValueError(f"scenario {scenario.name!r} registered twice")
    SCENARIOS[scenario.name] = scenario
    return scenario


def get_scenario(name: str) -> Scenario:
    _load_library()
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise UserError(f"no scenario named {name!r}; known scenarios: {known}") from None


def all_scenarios() -> list[Scenario]:
    _load_library()
    return list(SCENARIOS.values())


def _load_library() -> None:
    """Import every module of the library once: each registers its scenarios."""
    import importlib
    import pkgutil

    from . import library

    for info in pkgutil.iter_modules(library.__path__):
        importlib.import_module(f"{library.__name__}.{info.name}")
