"""The Python API: what `explain`, `census`, `diff`, `plot` and `run` compute, as objects.

    import tcpteardown as tt

    recording = tt.load("incident.pcap", logs=["client.log"])
    explanation = tt.explain(recording)
    for link in explanation.links:           # model.Link: the call, what caused it, the rule
        print(link.call.op, link.call.outcome, "<-", link.kind.value, link.cause and link.cause.frame)
    print(explanation.text(lang="go"))       # the paragraphs `tcpteardown explain` prints
    document = explanation.document()        # the dict `explain --json` prints (schemas/explain-1.json)

The commands call these same functions, so a script gets what the CLI
prints, without parsing text. The names in `__all__` are stable within a
major version (docs/api.md is generated from this module and a test keeps
it current); anything not listed here is internal and may change.

Problems the readers step over (a truncated last packet, a log line that
cannot be read) go to `warn` when given, else to Python's warnings as
`EvidenceWarning`: nothing is dropped silently, and a notebook shows them.
Bad input raises `UserError` with one line naming the file and what was
expected.
"""

from __future__ import annotations

import datetime as _dt
import os as _os
import warnings as _warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence, Union

from .errors import UserError
from .model import Link, Recording

if TYPE_CHECKING:  # the heavy modules are imported when a function runs, not by `import tcpteardown`
    from matplotlib.figure import Figure

    from .analysis.census import Census
    from .analysis.diff import DiffResult
    from .formats.os_guess import OsGuess
    from .scenarios import ScenarioRun

# In reading order (docs/api.md follows it).
__all__ = ["load", "explain", "Explanation", "census", "census_document", "diff", "diff_text", "diff_document",
           "ladder", "run", "EvidenceWarning", "UserError"]

PathLike = Union[str, _os.PathLike]
TimeZone = Union[None, str, _dt.tzinfo]


class EvidenceWarning(UserWarning):
    """Something a reader stepped over (a damaged packet, an unreadable log line), named with its place."""


def _warner(warn: Optional[Callable[[str], None]]) -> Callable[[str], None]:
    return warn if warn is not None else (lambda text: _warnings.warn(text, EvidenceWarning, stacklevel=3))


def load(capture: Union[PathLike, Sequence[PathLike]], *, strace: Iterable[PathLike] = (),
         logs: Iterable[PathLike] = (), tz: TimeZone = None, year: Optional[int] = None,
         warn: Optional[Callable[[str], None]] = None) -> Recording:
    """The recording in `capture` (a bundle, any pcap/pcapng, or a capture set: several files,
    a directory, a glob, .gz/.xz/.zst) plus the socket calls of the `strace` logs
    (strace -f -ttt -T -y/-yy) and application `logs`, as `explain` reads them.

    `tz`: the zone of log lines that carry none ("Europe/Paris", "+02:00"; default UTC);
    `year`: of log lines that carry none (syslog). Lines that cannot be read, and a set's
    damaged or overlapping members, go to `warn`."""
    from .formats.applog import parse_tz
    from .formats.evidence import load_evidence

    warn = _warner(warn)
    names = list(capture) if isinstance(capture, (list, tuple)) else capture
    recording = load_evidence(names, strace=strace, logs=logs, tz=parse_tz(tz), year=year, warn=warn)
    for key, line in recording.metadata.extra:
        if key in ("partial", "set_note"):
            warn(line)
    return recording


def run(scenario: str, *, family: str = "ipv4") -> ScenarioRun:
    """Run one scenario of the library live on loopback (`tcpteardown run NAME`; needs root or
    CAP_NET_RAW to capture). `.recording` is what was recorded, `.matches` whether the kernel
    behaved as the scenario expects on this OS."""
    from .scenarios import run_scenario

    return run_scenario(scenario, family=family)


@dataclass(frozen=True)
class Explanation:
    """Each failing socket call of a recording linked to the segment that caused it.

    `links` holds the real calls' links (strace, logs, the bundle) and, for what no real call
    covers, the calls predicted from the packets with the rules of the OS they show
    (`os_guess`). `recording` is the one explained (its metadata names that OS). `notes` are
    what `explain` says on stderr about the evidence."""

    recording: Recording
    links: tuple[Link, ...]
    os_guess: OsGuess
    conn: Optional[str] = None
    notes: tuple[str, ...] = ()
    tz: Optional[_dt.tzinfo] = None  # the zone of every clock time told (None: UTC)

    def text(self, *, lang: Optional[str] = None, tz: TimeZone = None, width: Optional[int] = None) -> str:
        """The paragraphs `tcpteardown explain` prints: one per failure, the clean closes summarised
        (all told in full with `conn`). `lang` quotes each errno as that runtime prints it
        ("go", "python", "node", "java", ...); `tz` is the zone of printed times (default UTC);
        `width` wraps on word boundaries."""
        from .formats.applog import parse_tz
        from .units import times_in
        from .views.clean_closes import split_clean
        from .views.narrative import narrate

        tz = parse_tz(tz) if tz is not None else self.tz
        told, clean = split_clean(self.links, self.recording) if self.conn is None else (self.links, ())
        with times_in(tz):
            text = narrate(told, self.recording, lang=lang, tz=tz, width=width) if told or not clean else ""
        return "\n\n".join(part for part in (text, *clean) if part)

    def document(self, *, lang: Optional[str] = None, tz: TimeZone = None, unread: Sequence = ()) -> dict:
        """The document `tcpteardown explain --json` prints (tcpteardown/explain/1, schemas/explain-1.json)."""
        from .formats.applog import parse_tz
        from .units import times_in
        from .views.contracts.links import links_to_json

        tz = parse_tz(tz) if tz is not None else self.tz
        with times_in(tz):
            return links_to_json(self.links, self.recording, lang=lang, tz=tz, os_guess=self.os_guess,
                                 unread=unread)


def explain(recording: Recording, *, os: Optional[str] = None, conn: Union[None, int, str] = None,
            tz: TimeZone = None) -> Explanation:
    """Link each failing call of `recording` to its FIN or RST (`tcpteardown explain`).

    The OS is named from the packets (`os` overrides it: "linux", "darwin", "freebsd", "windows");
    `conn` keeps the calls of one connection (a number from `census`, "1", or
    "10.0.0.1:80-10.0.0.2:5000" as the CLI's --conn takes it); `tz` is the zone of every clock
    time the explanation tells, the links' own sentences too (default UTC)."""
    from .formats.applog import parse_tz
    from .units import times_in

    zone = parse_tz(tz)
    with times_in(zone):
        return replace(_explain(recording, os, None if conn is None else str(conn)), tz=zone)


def _explain(recording: Recording, os: Optional[str], conn: Optional[str]) -> Explanation:
    from .analysis.correlate import correlate
    from .analysis.predict import TABLE_OSES, predict
    from .formats.evidence import PREDICTIONS_LIMITED
    from .formats.os_guess import DISPLAY, guess_os

    guess = guess_os(recording, override=os)
    if guess.display and (guess.overridden or not recording.metadata.os):
        recording = replace(recording, metadata=replace(recording.metadata, os=guess.display))
    os_of = {host: DISPLAY.get(name, name) for host, name in guess.hosts.items()}
    real = correlate(recording)
    predicted = predict(_predictable(recording), guess.display or "unknown", os_of=os_of, real_links=real)
    notes = ()
    if predicted and guess.display not in TABLE_OSES:
        notes = (f"no rule table for {guess.name}: only connect() outcomes are predicted",)
    limited = dict(recording.metadata.extra).get(PREDICTIONS_LIMITED)
    if limited is not None:
        notes += (limited,)
    links = tuple(real) + tuple(predicted)
    if conn is not None:
        from .analysis.connections import connections, select_connection

        chosen = select_connection(connections(recording), conn)
        links = tuple(link for link in links if link.call in chosen.calls or _on(link.call, chosen.key))
    return Explanation(recording, links, guess, conn, notes)


def _predictable(recording: Recording) -> Recording:
    """What to predict from: a big capture read for calls naming no 4-tuple holds their
    candidate connections, which no call refers to: only the connections the calls name
    by 4-tuple are predicted (formats.evidence.PREDICTIONS_LIMITED)."""
    from .formats.evidence import PREDICTIONS_LIMITED

    if PREDICTIONS_LIMITED not in dict(recording.metadata.extra):
        return recording
    named = {frozenset((call.local, call.remote)) for call in recording.calls
             if call.local is not None and call.remote is not None}
    return replace(recording, segments=tuple(s for s in recording.segments if s.connection_key in named))


def _on(call, key: frozenset) -> bool:
    """A call whose endpoints all belong to the connection with this key (a predicted call)."""
    ends = {end for end in (call.local, call.remote) if end is not None}
    return bool(ends) and ends <= key


def census(captures: Union[PathLike, Sequence[PathLike]], *,
           warn: Optional[Callable[[str], None]] = None) -> Census:
    """Every TCP connection in a capture, or a capture set (several files, a directory, a glob,
    .gz/.xz/.zst), and how it ended (`tcpteardown census`).

    The result iterates `ConnectionSummary` objects (`.iter_connections()`, `.summary()`,
    `.failing_first(n)`); damaged or unreadable members and what the reader stepped over go to
    `warn`, and the rest is still counted."""
    from .commands.census import census_set
    from .formats.capture_set import open_set

    names = [_os.fspath(captures)] if isinstance(captures, (str, _os.PathLike)) else [_os.fspath(c) for c in captures]
    if not names:
        raise UserError("census: no capture given")
    warn = _warner(warn)
    capture_set = open_set(names)
    result = census_set(capture_set, on_problem=warn)
    for line in (*capture_set.damaged, *capture_set.notes):
        warn(line)
    return result


def census_document(result: Census, *, label: str, top: Optional[int] = None, os: str = "linux",
                    problems: Sequence[str] = ()) -> dict:
    """The document `tcpteardown census --json` prints (tcpteardown/census/1): `top` lists only
    that many connections, RST and refused first (None: all); "predicted" follows `os`'s rules."""
    from .views.contracts.census import census_json

    chosen = None if top is None else result.failing_first(top)
    return census_json(result, label, problems, chosen, os_name=os.capitalize())


def diff(a: Union[Recording, PathLike], b: Union[Recording, PathLike], *, conn_a: Union[None, int, str] = None,
         conn_b: Union[None, int, str] = None, align_by: str = "steps", tolerance_ms: Optional[float] = None,
         count_bare_acks: bool = False) -> DiffResult:
    """The two teardowns aligned step by step, with what differs (`tcpteardown diff`).

    `a` and `b` are recordings or capture paths; `align_by="structure"` compares across OSes by
    the shape of the close (as the atlas does); `.matches` is True when nothing that counts
    differs (bare ACKs only one side sent do not, unless `count_bare_acks`)."""
    from .analysis.diff import diff as diff_recordings

    labels = [_os.path.basename(_os.fspath(x)) if not isinstance(x, Recording) else None for x in (a, b)]
    a, b = (x if isinstance(x, Recording) else load(x) for x in (a, b))
    tolerance = None if tolerance_ms is None else int(tolerance_ms * 1_000_000)
    try:
        return diff_recordings(a, b, tolerance=tolerance, connection_a=conn_a, connection_b=conn_b,
                               label_a=labels[0], label_b=labels[1], count_bare_acks=count_bare_acks,
                               align_by=align_by)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def diff_text(result: DiffResult, *, width: Optional[int] = None) -> str:
    """The aligned table `tcpteardown diff` prints."""
    from .views.diff_table import render_table

    return render_table(result, width=width)


def diff_document(result: DiffResult, *, a_file: str = "A", b_file: str = "B",
                  figure: Optional[str] = None) -> dict:
    """The document `tcpteardown diff --json` prints (tcpteardown/diff/1)."""
    from .views.contracts.diff import diff_json

    return diff_json(result, a_file, b_file, figure)


def ladder(recording: Recording, links: Optional[Iterable[Link]] = None, **options) -> Figure:
    """One connection of `recording` drawn as a ladder (`tcpteardown plot`), a matplotlib Figure.

    `links` default to the real calls' links, as `plot` draws them; options are views.ladder.draw_ladder's
    (`conn`, `lang`, `time_axis="compressed"|"linear"`, `full`)."""
    from .analysis.correlate import correlate
    from .views.ladder import draw_ladder

    if links is None:
        links = correlate(recording)
    return draw_ladder(recording, links, **options)
