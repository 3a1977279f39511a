"""Application log lines -> SocketCalls: the failure as the program reported it.

Reads any text log whose lines carry a timestamp and finds the socket errors
in it, through the catalogue of real phrasings (`tcpteardown.messages`:
nginx, HAProxy, Envoy, Node.js, Java/Netty, Python and its libraries, Go,
gRPC, curl, redis, PostgreSQL, MySQL). An error a runtime made from an
end-of-file becomes the end-of-file it stands for (the call's text keeps the
words; correlate says who made it). Under a Java exception, the innermost JDK
stack frame names the op.

Timestamps, found anywhere in the line (the earliest wins):
- Go's ``log`` package: ``2024/05/01 17:26:02.140166`` (also nginx's error log);
- ISO 8601: ``2024-05-01T17:26:02.140166Z``, ``2024-05-01 17:26:02,140``
  (Python logging), with or without a zone (``Z``, ``+02:00``, ``+0200``);
- syslog: ``May  1 17:26:02`` and glog/klog (Kubernetes): ``E0501
  17:26:02.140166``, which have no year: `year=`, else the file's mtime,
  else the current year, and a problem says which was used;
- epoch seconds with a fraction (zap's ``"ts":1714584362.140166``), UTC;
- the access-log form of HAProxy, nginx and Apache: ``30/Nov/2026:19:49:04.123``
  (with or without `` +0000``).
Times without a zone are read in `tz` (``"UTC"``, ``"+02:00"``,
``"Europe/Berlin"``); without `tz` they are read as UTC and a problem says so.

A *record* is a timestamped line plus the lines after it that carry no
timestamp (a Python traceback, a Java stack trace). Each distinct errno found
in a record becomes one SocketCall at the record's time (start_ns == end_ns;
a proxy's line spans its session: HAProxy and Envoy stamp its start and
print its duration),
text = the timestamped line, plus the line naming the error when that is
another one. End-of-file reports become ``recv`` with result 0 and no errno;
errors have result -1 and the errno name; `where` is ``path:LINE``. Lines
without an error are skipped silently; a line that looks like a socket error
but cannot be read (no timestamp before it, an impossible date, a phrasing
this tool does not know) is reported as ``"path:LINE: ..."`` (many of one kind
as one summary, `imported.Problems`), skipped, and listed in
`ImportResult.unread` for explain's "unlinked". Also reported: bytes that are
not text, timestamps going backwards, a file with no timestamp at all. Never
raises for bad lines; raises UserError only for a bad `tz`. Linear in its
input (bench/importers.py).
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import re
from dataclasses import replace
from pathlib import PurePath
from typing import Iterable, Optional, Union

from tcpteardown.errors import UserError
from tcpteardown.formats.imported import ImportResult, Problems, cycles_unchecked, open_evidence
from tcpteardown.formats.stamps import LEADING as _LEADING, MONTHS as _MONTHS, TIME_RE as _TIME_RE
from tcpteardown.messages import read_message, stack_frame_op
from tcpteardown.model import Endpoint, SocketCall, writable_twin

__all__ = ["parse_log", "read_log_file", "parse_tz", "ImportResult"]

# Lines that look like a socket error even when read_message() cannot read them.
_LOOKS_LIKE_RE = re.compile(
    r"\[Errno \d+\]|\bError: (?:read|write|connect) [A-Z]+\b|\b(?:read|write|dial) tcp[46]? \S+:\d+"
    r"|\bjava\.net\.\w+Exception\b|\bcurl: \((?:7|18|28|52|55|56)\) ")


def _might_look_like(text: str) -> bool:
    """Cheap gate before _LOOKS_LIKE_RE: one of its literal parts is there."""
    return ("Errno" in text or "Error: " in text or " tcp" in text or "java.net." in text
            or "curl: (" in text)


# Every form TIME_RE reads holds HH:MM or ten digits from 1 (epoch seconds or ms): a
# line without either (a stack frame, a traceback's body) is spared TIME_RE's search,
# which costs several times more where nothing matches than where a stamp opens the line.
_MAYBE_STAMP_RE = re.compile(r"\d\d:\d\d|1\d{9}")


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
        try:
            return _dt.timezone(sign * _dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
        except ValueError:
            raise UserError(f"time zone {tz!r}: an offset lies between -23:59 and +23:59") from None
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python 3.8 has no zoneinfo
        raise UserError(f"time zone {tz!r}: IANA names need Python 3.9+; use an offset like +02:00") from None
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"unknown time zone {tz!r} (expected UTC, an offset like +02:00, "
                        f"or a name like Europe/Berlin)") from None


# ns per unit of a fraction's last digit, by its number of digits (9 and more: 1 ns).
_FRACTION_UNIT = tuple(10 ** (9 - digits) for digits in range(10))


def _fraction_ns(digits: Optional[str]) -> int:
    """The fraction of a second written as `digits`, in ns (truncated past 9 digits)."""
    if not digits:
        return 0
    return int(digits) * _FRACTION_UNIT[len(digits)] if len(digits) <= 9 else int(digits[:9])


def _zone(text: str) -> _dt.timezone:
    if text == "Z":
        return _dt.timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


# A line stamped this much earlier than one before it is reported.
_BACKWARDS_NS = 1_000_000_000

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _to_ns(year: int, month: int, day: int, hour: int, minute: int, second: int,
           frac_ns: int, tzinfo: _dt.tzinfo) -> int:
    return _whole_ns(year, month, day, hour, minute, second, tzinfo) + frac_ns


@functools.lru_cache(maxsize=4096)
def _whole_ns(year: int, month: int, day: int, hour: int, minute: int, second: int, tzinfo: _dt.tzinfo) -> int:
    """Cached: a busy log has thousands of lines per second."""
    local = _dt.datetime(year, month, day, hour, minute, second, tzinfo=tzinfo)
    return (local - _EPOCH) // _dt.timedelta(seconds=1) * 1_000_000_000


# The forms whose second is the same for every line with the same fields (not the
# yearless ones, whose year follows the lines before): the groups down to the
# second and the zone, and the fraction's group.
_WHOLE_GROUPS = {"go": ("gy", "gmo", "gd", "gh", "gmi", "gs"),
                 "iso": ("iy", "imo", "id", "ih", "imi", "is", "iz"),
                 "ctime": ("ty", "tmon", "td", "th", "tmi", "ts", "tz"),
                 "clf": ("cy", "cmon", "cd", "ch", "cmi", "cs", "cz")}
_FRACTION_GROUP = {"go": "gf", "iso": "if", "ctime": "tf", "clf": "cf"}


class _Clock:
    """Turns the timestamp of a line into ns since the epoch."""

    def __init__(self, path: str, tz: Optional[_dt.tzinfo], year: Optional[int], note) -> None:
        self.path = path
        self.tz = tz
        self.year = year
        self.note = note
        self.last_month: Optional[int] = None
        self.written_ns: Optional[int] = None  # the file's mtime, when it gave the year
        # (form, its fields down to the second, zone) -> ns of that second: a busy log
        # writes many lines per second. Per clock, so that each file says its notes.
        self.seconds: dict[tuple, int] = {}
        # The form the last stamped line opened with (a LEADING entry), and the ns of
        # each second it wrote, by its text (and zone).
        self.form: Optional[tuple] = None
        self.leading_seconds: dict[str, int] = {}

    def local_tz(self) -> _dt.tzinfo:
        if self.tz is None:
            self.note("notz", "times without a zone were read as UTC (give the zone with --tz, e.g. '+02:00' or 'Europe/Berlin')")
            self.tz = _dt.timezone.utc  # said once; the rest follow
        return self.tz

    def syslog_year(self) -> int:
        if self.year is None:
            try:
                mtime = os.stat(self.path).st_mtime
                self.year = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).year
                self.written_ns = int(mtime) * 1_000_000_000
                self.note("year", f"syslog/klog times carry no year; used {self.year}, the year of the file's "
                                  f"modification time (give it with --year)")
            except OSError:
                self.year = _dt.datetime.now(_dt.timezone.utc).year
                self.note("year", f"syslog/klog times carry no year; used the current year {self.year} "
                                  f"(give it with --year)")
        return self.year

    def leading(self, line: str) -> Optional[tuple[int, int]]:
        """(ns, end) of the stamp `line` opens with, when it is in the form the last
        stamped line opened with (most logs: every line), else None. The same ns
        and end as ``ns(TIME_RE.match(line))``, for a fraction of its cost: each
        second is read once. Raises ValueError for an impossible date or time."""
        if self.form is None:
            return None
        pattern, fraction, zone = self.form
        m = pattern.match(line)
        if m is None:
            return None
        # The seconds are 19 characters wide in both forms (yyyy?mm?dd?hh:mm:ss).
        key = line[:19] if zone is None else line[:19] + (m.group(zone) or "")
        digits = m.group(fraction)
        whole = self.leading_seconds.get(key)
        if whole is None:
            whole = self.leading_seconds[key] = self.ns(_TIME_RE.match(line)) - _fraction_ns(digits)
        if digits and len(digits) <= 9:  # _fraction_ns(digits), inline: once a line
            return whole + int(digits) * _FRACTION_UNIT[len(digits)], m.end()
        return whole + _fraction_ns(digits), m.end()

    def opened_with(self, m: re.Match) -> None:
        """Remember the form of a stamp found at a line's start, for `leading`."""
        self.form = _LEADING.get(m.lastgroup) if m.start() == 0 else None

    def ns(self, m: re.Match) -> int:
        """Raises ValueError for an impossible date or time."""
        kind = m.lastgroup  # the alternative that matched (each is one outer group)
        fraction = _FRACTION_GROUP.get(kind)
        if fraction is not None:
            key = (kind, m.group(*_WHOLE_GROUPS[kind]))
            whole = self.seconds.get(key)
            if whole is None:
                whole = self.seconds[key] = self._ns(m, kind) - _fraction_ns(m.group(fraction))
            return whole + _fraction_ns(m.group(fraction))
        return self._ns(m, kind)

    def _ns(self, m: re.Match, kind: str) -> int:
        if kind == "epoch":
            whole, _, frac = m.group("epoch").partition(".")
            return int(whole) * 1_000_000_000 + _fraction_ns(frac)
        if kind == "millis":
            return int(m.group("millis")) * 1_000_000
        if kind == "ctime":  # C's ctime/asctime, date(1): it carries its year
            y, mon, d, h, mi, sec, frac, zone = m.group("ty", "tmon", "td", "th", "tmi", "ts", "tf", "tz")
            return _to_ns(int(y), _MONTHS[mon], int(d), int(h), int(mi), int(sec), _fraction_ns(frac),
                          _dt.timezone.utc if zone else self.local_tz())
        if kind == "rfc2822":  # date -R, HTTP dates, e-mail
            y, mon, d, h, mi, sec, zone = m.group("ry", "rmon", "rd", "rh", "rmi", "rs", "rz")
            return _to_ns(int(y), _MONTHS[mon], int(d), int(h), int(mi), int(sec), 0,
                          _dt.timezone.utc if zone in ("GMT", "UTC") else _zone(zone))
        if kind == "jul":  # java.util.logging's SimpleFormatter: Dec 06, 2026 7:06:01 PM
            y, mon, d, h, mi, sec, half = m.group("jy", "jmon", "jd", "jh", "jmi", "js", "jp")
            hour = int(h) % 12 + (12 if half == "PM" else 0)
            return _to_ns(int(y), _MONTHS[mon], int(d), hour, int(mi), int(sec), 0, self.local_tz())
        if kind == "go":
            y, mo, d, h, mi, sec, frac = m.group("gy", "gmo", "gd", "gh", "gmi", "gs", "gf")
            return _to_ns(int(y), int(mo), int(d), int(h), int(mi), int(sec), _fraction_ns(frac), self.local_tz())
        if kind == "iso":
            y, mo, d, h, mi, sec, frac, zone = m.group("iy", "imo", "id", "ih", "imi", "is", "if", "iz")
            tzinfo = _zone(zone) if zone else self.local_tz()
            return _to_ns(int(y), int(mo), int(d), int(h), int(mi), int(sec), _fraction_ns(frac), tzinfo)
        if kind == "clf":  # HAProxy, nginx/Apache access logs: [30/Nov/2026:19:49:04.123 +0000]
            y, mon, d, h, mi, sec, frac, zone = m.group("cy", "cmon", "cd", "ch", "cmi", "cs", "cf", "cz")
            return _to_ns(int(y), _MONTHS[mon], int(d), int(h), int(mi), int(sec), _fraction_ns(frac),
                          _zone(zone) if zone else self.local_tz())
        if kind == "klog":  # glog/klog: month and day, no year
            mo, d, h, mi, sec, frac = m.group("kmo", "kd", "kh", "kmi", "ks", "kf")
            return self._yearless(int(mo), int(d), int(h), int(mi), int(sec), frac)
        mon, d, h, mi, sec, frac = m.group("smon", "sd", "sh", "smi", "ss", "sf")
        return self._yearless(_MONTHS[mon], int(d), int(h), int(mi), int(sec), frac)

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


# SocketCall's and Endpoint's slots, writable (filled in, then made the real class): the
# frozen dataclass's __init__ costs ~4 us a call, a quarter of a 1M-line log's import.
_WritableCall = writable_twin(SocketCall)
_WritableEndpoint = writable_twin(Endpoint)


@functools.lru_cache(maxsize=1 << 16)
def _endpoint(text: Optional[str]) -> Optional[Endpoint]:
    """An endpoint as printed, or None (a host name: curl "Failed to connect
    to localhost port 80"). Cached (Endpoint is immutable): a busy log names
    the same few hosts and the ephemeral ports again and again; the address is
    checked once per host."""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    address = _address(host)
    if address is None or not port.isdigit() or int(port) > 65535:
        return None
    endpoint = _WritableEndpoint()  # Endpoint(address, int(port)): a log names ports by the thousand
    endpoint.host, endpoint.port = address, int(port)
    endpoint.__class__ = Endpoint
    return endpoint


@functools.lru_cache(maxsize=4096)
def _address(host: str) -> Optional[str]:
    try:
        return Endpoint.parse(f"{host}:0").host
    except ValueError:
        return None


def _log_call(role: str, op: str, start_ns: int, end_ns: int, result: int, errno: Optional[str],
              local: Optional[Endpoint], remote: Optional[Endpoint], text: str, where: str) -> SocketCall:
    """SocketCall(role=role, ..., source="log", text=text, where=where)."""
    call = _WritableCall()
    call.role, call.op, call.start_ns, call.end_ns, call.result, call.errno = role, op, start_ns, end_ns, result, errno
    call.pid = call.fd = None
    call.local, call.remote, call.source, call.text, call.where, call.events = local, remote, "log", text, where, ""
    call.__class__ = SocketCall
    return call


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
    The language that printed a line is ``tcpteardown.messages.read_message(call.text)``.
    """
    problems = Problems()

    def note(key: str, text: str) -> None:
        problems.note(key, f"{path}: {text}")

    clock = _Clock(path, parse_tz(tz), year, note)
    who = role or _default_role(path)
    calls: list[SocketCall] = []
    unread: list[dict] = []
    record_ns: Optional[int] = None
    record_line = ""
    seen: dict[str, int] = {}  # errno -> index in calls, for the current record
    refine: Optional[int] = None  # a Java call whose op the next stack frame may name
    stamped = 0  # lines with a timestamp
    line_no = 0
    latest_ns: Optional[int] = None

    for line_no, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if "\ufffd" in line:
            problems.add(path, line_no, "bytes that are not valid UTF-8 (read with replacement characters)")
        # Most lines open with their stamp, in the form of the line before: a match
        # there is what TIME_RE's search finds first.
        try:
            opened = clock.leading(line)  # (ns, end of the stamp)
            start = 0
            if opened is None:
                stamp = _TIME_RE.match(line) or (_TIME_RE.search(line) if _MAYBE_STAMP_RE.search(line) else None)
                if stamp:
                    clock.opened_with(stamp)
                    start = stamp.start()
                    opened = clock.ns(stamp), stamp.end()
        except (ValueError, OverflowError) as problem:
            stamped += 1
            record_ns = None
            if read_message(line) or _LOOKS_LIKE_RE.search(line):
                problems.add(path, line_no, f"unreadable timestamp ({problem}); line skipped")
            continue
        if opened is not None:
            stamped += 1
            record_ns, end = opened
            if latest_ns is not None and record_ns < latest_ns - _BACKWARDS_NS:
                problems.add(path, line_no, "timestamp more than a second earlier than a line before it "
                                            "(the clock stepped back, or logs were merged out of order)")
            if latest_ns is None or record_ns > latest_ns:
                latest_ns = record_ns
            record_line = line
            seen = {}
            refine = None
            message = " " + line[end:] if not start else line[:start] + " " + line[end:]
        else:
            message = line
            if refine is not None and message.lstrip().startswith("at "):
                op = stack_frame_op(message)
                if op is not None:
                    calls[refine] = replace(calls[refine], op=op)  # the frame knows the op; the text did not say
                refine = None
                continue
        found = read_message(message)
        if found is None:
            if _might_look_like(message) and _LOOKS_LIKE_RE.search(message):
                why = "looks like a socket error but names no errno this tool knows (unknown phrasing)"
                problems.add(path, line_no, why + "; line skipped")
                unread.append({"where": f"{path}:{line_no}", "source": "log", "text": line, "why": why})
            continue
        if record_ns is None:
            why = (f"{found.errno} reported without a timestamp on this line or a line before it "
                   f"(expected Go log, ISO 8601 or syslog time)")
            problems.add(path, line_no, why + "; line skipped")
            unread.append({"where": f"{path}:{line_no}", "source": "log", "text": line, "why": why})
            continue
        if found.errno in seen:
            continue  # the same failure, told again further down the traceback
        text = record_line if opened is None else line
        if opened is None and record_line:
            text = record_line + "\n" + line
        eof = found.errno == "EOF"
        seen[found.errno] = len(calls)
        refine = len(calls) if found.lang in ("Java", "Netty") and not eof else None
        when = record_ns + found.elapsed_ns  # a proxy's line is stamped when its session began
        calls.append(_log_call(
            who, found.op if not eof else "recv", record_ns, when, 0 if eof else -1, None if eof else found.errno,
            _endpoint(found.local), _endpoint(found.remote), text, f"{path}:{line_no}"))
    if line_no and not stamped:
        note("nostamp", f"none of its {line_no} lines holds a timestamp this tool reads (Go log, ISO 8601, "
                        f"ctime, RFC 2822, Java, access log, syslog, glog, epoch seconds or milliseconds): "
                        f"nothing could be placed on the capture's clock")
    calls.sort(key=lambda call: call.start_ns)
    return ImportResult(tuple(calls), problems.lines(), tuple(unread))


def read_log_file(path: Union[str, "os.PathLike[str]"], **options) -> ImportResult:
    """`parse_log` over a file (UTF-8; UTF-16/32 with a byte-order mark, or
    UTF-16 without one, as Windows tools write it; undecodable bytes replaced
    and reported)."""
    handle, encoding = open_evidence(path)
    with handle, cycles_unchecked():
        result = parse_log(handle, path=str(path), **options)
    if encoding:
        return ImportResult(result.calls, (f"{path}: {encoding}",) + result.problems, result.unread)
    return result
