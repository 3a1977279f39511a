"""The scenario library: what each scenario does and what it should show.

A scenario is a small class: `setup(stage)` opens listeners and reserves
ports (so the capture can watch them), `play(stage)` performs the teardown
through the recorder. `expected` says, per OS, which socket calls end in
which outcome and what kind of cause each one has; the runner compares it
with what the kernel actually did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Expectation:
    outcomes: tuple[Outcome, ...]
    # The segments that must appear, as (sender role, flags text) pairs in order.
    teardown: tuple[tuple[str, str], ...] = ()
    observed: bool = True  # False: derived from the stack's documented behaviour, not yet seen on a real host
    why: str = ""  # one paragraph a reader sees next to the result


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


BSD_NOTE = "Derived from the BSD stack's documented behaviour; not yet observed on a real Mac."


def on_bsd(expectation: Expectation) -> Expectation:
    """The Linux expectation as macOS's: the same story, marked not yet observed."""
    return Expectation(expectation.outcomes, expectation.teardown, False,
                       f"{BSD_NOTE} {expectation.why}".strip())


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

    names = sorted(info.name for info in pkgutil.iter_modules(library.__path__))
    for name in sorted(names, key=lambda n: n != "basics"):  # the seed scenarios first, as `list` shows them
        importlib.import_module(f"{library.__name__}.{name}")
