"""Application log lines -> SocketCalls: the failure as the program reported it.

Reads any text log whose lines carry a timestamp and finds the socket errors
in it, through the Rosetta (`tcpteardown.errnos.read_message`): Go net errors
(``write tcp A->B: write: broken pipe``, ``dial tcp A: connect: connection
refused``, ``use of closed network connection``, ``i/o timeout``, ``EOF``),
Python exceptions and tracebacks, Java exceptions and stack traces, Node.js
errors, curl, nginx error logs.

Timestamps, found anywhere in the line (the earliest wins):
- Go's ``log`` package: ``2024/05/01 17:26:02.140166`` (also nginx's error log);
- ISO 8601: ``2024-05-01T17:26:02.140166Z``, ``2024-05-01 17:26:02,140``
  (Python logging), with or without a zone (``Z``, ``+02:00``, ``+0200``);
- syslog: ``May  1 17:26:02`` and glog/klog (Kubernetes): ``E0501
  17:26:02.140166``, which have no year: `year=`, else the file's mtime,
  else the current year, and a problem says which was used;
- epoch seconds with a fraction (zap's ``"ts":1714584362.140166``), UTC.
Times without a zone are read in `tz` (``"UTC"``, ``"+02:00"``,
``"Europe/Berlin"``); without `tz` they are read as UTC and a problem says so.

A *record* is a timestamped line plus the lines after it that carry no
timestamp (a Python traceback, a Java stack trace). Each distinct errno found
in a record becomes one SocketCall at the record's time (start_ns == end_ns),
text = the timestamped line, plus the line naming the error when that is
another one. End-of-file reports become ``recv`` with result 0 and no errno;
errors have result -1 and the errno name. Lines without an error are skipped
silently; a line that looks like a socket error but cannot be read (no
timestamp before it, an impossible date, an errno this tool does not know) is
reported as ``"path:LINE: ..."`` and skipped. Never raises for bad lines;
raises UserError only for a bad `tz`.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import PurePath
from typing import Iterable, Optional, Union

from tcpteardown.errnos import read_message
from tcpteardown.errors import UserError
from tcpteardown.formats.imported import ImportResult
from tcpteardown.model import Endpoint, SocketCall

__all__ = ["parse_log", "read_log_file", "parse_tz", "ImportResult"]

_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

# One alternation, so that the earliest timestamp in a line wins in one search.
_TIME_RE = re.compile(
    r"(?P<go>(?P<gy>\d{4})/(?P<gmo>\d\d)/(?P<gd>\d\d)[ T](?P<gh>\d\d):(?P<gmi>\d\d):(?P<gs>\d\d)(?:\.(?P<gf>\d+))?)"
    r"|(?P<iso>(?P<iy>\d{4})-(?P<imo>\d\d)-(?P<id>\d\d)[T ](?P<ih>\d\d):(?P<imi>\d\d):(?P<is>\d\d)"
    r"(?:[.,](?P<if>\d+))?(?:\s?(?P<iz>Z|[+-]\d\d:?\d\d)(?![\d:]))?)"
    r"|(?P<sys>\b(?P<smon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(?P<sd>\d{1,2}) "
    r"(?P<sh>\d\d):(?P<smi>\d\d):(?P<ss>\d\d)(?:\.(?P<sf>\d+))?)\b"
    r"|(?P<klog>\b[IWEF](?P<kmo>[01]\d)(?P<kd>[0-3]\d) (?P<kh>\d\d):(?P<kmi>\d\d):(?P<ks>\d\d)\.(?P<kf>\d{6}))\b"
    r"|(?P<epoch>(?<![\d.])1\d{9}\.\d{3,9})(?![\d.])")

# Lines that look like a socket error even when read_message() cannot read them.
_LOOKS_LIKE_RE = re.compile(
    r"\[Errno \d+\]|\bError: (?:read|write|connect) [A-Z]+\b|\b(?:read|write|dial) tcp[46]? \S+:\d+"
    r"|\bjava\.net\.\w+Exception\b|\bcurl: \((?:7|18|28|52|55|56)\) ")


def _might_look_like(text: str) -> bool:
    """Cheap gate before _LOOKS_LIKE_RE: one of its literal parts is there."""
    return ("Errno" in text or "Error: " in text or " tcp" in text or "java.net." in text
            or "curl: (" in text)


def parse_tz(tz: Union[None, str, _dt.tzinfo]) -> Optional[_dt.tzinfo]:
    """``"UTC"``, ``"Z"``, ``"+02:00"``, ``"-0700"`` or an IANA name
    (``"Europe/Berlin"``) -> tzinfo. Raises UserError naming what was expected."""
    if tz is None or isinstance(tz, _dt.tzinfo):
        return tz
    text = tz.strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return _dt.timezone.utc
    m = re.fullmatch(r"(?:UTC)?([+-])(\d\d):?(\d\d)", text)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        return _dt.timezone(sign * _dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python 3.8 has no zoneinfo
        raise UserError(f"time zone {tz!r}: IANA names need Python 3.9+; use an offset like +02:00") from None
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"unknown time zone {tz!r} (expected UTC, an offset like +02:00, "
                        f"or a name like Europe/Berlin)") from None


def _fraction_ns(digits: Optional[str]) -> int:
    return int((digits + "000000000")[:9]) if digits else 0


def _zone(text: str) -> _dt.timezone:
    if text == "Z":
        return _dt.timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _to_ns(year: int, month: int, day: int, hour: int, minute: int, second: int,
           frac_ns: int, tzinfo: _dt.tzinfo) -> int:
    local = _dt.datetime(year, month, day, hour, minute, second, tzinfo=tzinfo)
    whole = (local - _EPOCH) // _dt.timedelta(seconds=1)
    return whole * 1_000_000_000 + frac_ns


class _Clock:
    """Turns the timestamp of a line into ns since the epoch."""

    def __init__(self, path: str, tz: Optional[_dt.tzinfo], year: Optional[int], note) -> None:
        self.path = path
        self.tz = tz
        self.year = year
        self.note = note
        self.last_month: Optional[int] = None
        self.written_ns: Optional[int] = None  # the file's mtime, when it gave the year

    def local_tz(self) -> _dt.tzinfo:
        if self.tz is None:
            self.note("notz", "times without a zone were read as UTC (pass tz=, e.g. '+02:00' or 'Europe/Berlin')")
            return _dt.timezone.utc
        return self.tz

    def syslog_year(self) -> int:
        if self.year is None:
            try:
                mtime = os.stat(self.path).st_mtime
                self.year = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).year
                self.written_ns = int(mtime) * 1_000_000_000
                self.note("year", f"syslog/klog times carry no year; used {self.year}, the year of the file's "
                                  f"modification time (pass year=)")
            except OSError:
                self.year = _dt.datetime.now(_dt.timezone.utc).year
                self.note("year", f"syslog/klog times carry no year; used the current year {self.year} "
                                  f"(pass year=)")
        return self.year

    def ns(self, m: re.Match) -> int:
        """Raises ValueError for an impossible date or time."""
        if m.group("epoch"):
            whole, _, frac = m.group("epoch").partition(".")
            return int(whole) * 1_000_000_000 + _fraction_ns(frac)
        if m.group("go"):
            return _to_ns(int(m.group("gy")), int(m.group("gmo")), int(m.group("gd")), int(m.group("gh")),
                          int(m.group("gmi")), int(m.group("gs")), _fraction_ns(m.group("gf")), self.local_tz())
        if m.group("iso"):
            zone = m.group("iz")
            tzinfo = _zone(zone) if zone else self.local_tz()
            return _to_ns(int(m.group("iy")), int(m.group("imo")), int(m.group("id")), int(m.group("ih")),
                          int(m.group("imi")), int(m.group("is")), _fraction_ns(m.group("if")), tzinfo)
        if m.group("klog"):  # glog/klog: month and day, no year
            return self._yearless(int(m.group("kmo")), int(m.group("kd")), int(m.group("kh")),
                                  int(m.group("kmi")), int(m.group("ks")), m.group("kf"))
        return self._yearless(_MONTHS[m.group("smon")], int(m.group("sd")), int(m.group("sh")),
                              int(m.group("smi")), int(m.group("ss")), m.group("sf"))

    def _yearless(self, month: int, day: int, hour: int, minute: int, second: int, frac: Optional[str]) -> int:
        year = self.syslog_year()
        if self.last_month is not None and month < self.last_month - 6:
            self.year = year = year + 1  # December -> January
        self.last_month = month
        fields = (month, day, hour, minute, second, _fraction_ns(frac), self.local_tz())
        when = _to_ns(year, *fields)
        if self.written_ns is not None:
            if when > self.written_ns + 86_400 * 1_000_000_000:
                # A line cannot be later than the file's last write: it is from the year before
                # (a log of December read in January).
                self.year = year = year - 1
                when = _to_ns(year, *fields)
            self.written_ns = None  # decided on the first line; the rest follow it
        return when


def _endpoint(text: Optional[str]) -> Optional[Endpoint]:
    if not text:
        return None
    try:
        return Endpoint.parse(text)
    except ValueError:
        return None  # a host name (curl "Failed to connect to localhost port 80")


def _default_role(path: str) -> str:
    if path.startswith("<"):
        return "log"
    return PurePath(path).stem or "log"


def parse_log(lines: Iterable[str], *, path: str = "<log>", tz: Union[None, str, _dt.tzinfo] = None,
              year: Optional[int] = None, role: Optional[str] = None) -> ImportResult:
    """Socket failures reported in application log lines.

    `path` names the source in problems (and its mtime gives syslog lines a
    year when `year` is not given). `tz` applies to times without a zone.
    `role` is the SocketCall role (default: the file name without extension,
    ``log`` for ``<log>``). Returns calls with source ``log``, time-sorted.
    The language that printed a line is ``tcpteardown.errnos.match_message(call.text)``.
    """
    problems: list[str] = []
    noted: set[str] = set()

    def note(key: str, text: str) -> None:
        if key not in noted:
            noted.add(key)
            problems.append(f"{path}: {text}")

    clock = _Clock(path, parse_tz(tz), year, note)
    who = role or _default_role(path)
    calls: list[SocketCall] = []
    record_ns: Optional[int] = None
    record_line = ""
    seen: dict[str, int] = {}  # errno -> index in calls, for the current record

    for line_no, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        stamp = _TIME_RE.search(line)
        if stamp:
            try:
                record_ns = clock.ns(stamp)
            except (ValueError, OverflowError) as problem:
                record_ns = None
                if read_message(line) or _LOOKS_LIKE_RE.search(line):
                    problems.append(f"{path}:{line_no}: unreadable timestamp {stamp.group(0)!r} ({problem}); "
                                    f"line skipped")
                continue
            record_line = line
            seen = {}
            message = line[:stamp.start()] + " " + line[stamp.end():]
        else:
            message = line
        found = read_message(message)
        if found is None:
            if _might_look_like(message) and _LOOKS_LIKE_RE.search(message):
                problems.append(f"{path}:{line_no}: looks like a socket error but names no errno this tool "
                                f"knows; line skipped")
            continue
        if record_ns is None:
            problems.append(f"{path}:{line_no}: {found.errno} reported without a timestamp on this line or "
                            f"a line before it (expected Go log, ISO 8601 or syslog time); line skipped")
            continue
        if found.errno in seen:
            continue  # the same failure, told again further down the traceback
        text = record_line if not stamp else line
        if not stamp and record_line:
            text = record_line + "\n" + line
        eof = found.errno == "EOF"
        seen[found.errno] = len(calls)
        calls.append(SocketCall(
            role=who, op=found.op if not eof else "recv", start_ns=record_ns, end_ns=record_ns,
            result=0 if eof else -1, errno=None if eof else found.errno,
            local=_endpoint(found.local), remote=_endpoint(found.remote), source="log", text=text))
    calls.sort(key=lambda call: call.start_ns)
    return ImportResult(tuple(calls), tuple(problems))


def read_log_file(path: Union[str, "os.PathLike[str]"], **options) -> ImportResult:
    """`parse_log` over a file, pipe or FIFO (formats.inputs.open_text: UTF-8 or
    what its byte order mark says, undecodable bytes replaced)."""
    from .inputs import open_text

    with open_text(path) as handle:
        return parse_log(handle, path=str(path), **options)
