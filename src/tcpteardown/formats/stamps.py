"""The timestamp forms log lines carry, recognised in one regular expression.

`TIME_RE` matches, anywhere in a line (the earliest wins): Go's ``log``
(``2026/12/06 19:06:01.140166``, also nginx's error log), ISO 8601 / RFC 3339
with or without zone and fraction (``2026-12-06T19:06:01.140Z``, Python
logging's ``2026-12-06 19:06:01,140``, journald's ``short-iso``), C's
``ctime``/``asctime`` and date(1) (``Sun Dec  6 19:06:01 2026``, ``... UTC
2026``), RFC 2822 (``date -R``, HTTP: ``Sun, 06 Dec 2026 19:06:01 +0000``),
java.util.logging's default (``Dec 06, 2026 7:06:01 PM``), the access-log
form (``06/Dec/2026:19:06:01 +0000``), and epoch seconds with a fraction or
epoch milliseconds (13 digits). Two forms carry no year, and only they need
one guessed: syslog (``Dec  6 19:06:01``, journald's ``short-precise``) and
glog/klog (``E1206 19:06:01.140166``). `formats.applog` turns a match into ns.

Also here, for the merging of sources (`analysis.sources`): `message_words`
(a line's words without its timestamps) and `stamp_precision_ns`. Pure.
"""

from __future__ import annotations

import re

__all__ = ["TIME_RE", "LEADING", "MONTHS", "YEARLESS", "message_words", "stamp_precision_ns"]

MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MON = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"

# Each form as one alternative of TIME_RE, in the order it tries them.
_FORMS = (
    ("go", r"(?P<go>(?P<gy>\d{4})/(?P<gmo>\d\d)/(?P<gd>\d\d)[ T](?P<gh>\d\d):(?P<gmi>\d\d):(?P<gs>\d\d)"
           r"(?:\.(?P<gf>\d+))?)"),
    ("iso", r"(?P<iso>(?P<iy>\d{4})-(?P<imo>\d\d)-(?P<id>\d\d)[T ](?P<ih>\d\d):(?P<imi>\d\d):(?P<is>\d\d)"
            r"(?:[.,](?P<if>\d+))?(?:\s?(?P<iz>Z|[+-]\d\d:?\d\d)(?![\d:]))?)"),
    ("ctime", rf"(?P<ctime>\b{_DAY},? (?P<tmon>{_MON}) {{1,2}}(?P<td>\d{{1,2}}) (?P<th>\d\d):(?P<tmi>\d\d):(?P<ts>\d\d)"
              r"(?:\.(?P<tf>\d+))? (?:(?P<tz>UTC|GMT) )?(?P<ty>\d{4}))\b"),
    ("rfc2822", rf"(?P<rfc2822>\b{_DAY}, (?P<rd>\d\d?) (?P<rmon>{_MON}) (?P<ry>\d{{4}}) (?P<rh>\d\d):(?P<rmi>\d\d)"
                r":(?P<rs>\d\d) (?P<rz>[+-]\d{4}|GMT|UTC))"),
    ("jul", rf"(?P<jul>\b(?P<jmon>{_MON}) (?P<jd>\d\d), (?P<jy>\d{{4}}) (?P<jh>\d\d?):(?P<jmi>\d\d):(?P<js>\d\d)"
            r" (?P<jp>AM|PM))\b"),
    ("sys", rf"(?P<sys>\b(?P<smon>{_MON}) {{1,2}}(?P<sd>\d{{1,2}}) "
            r"(?P<sh>\d\d):(?P<smi>\d\d):(?P<ss>\d\d)(?:\.(?P<sf>\d+))?)\b"),
    ("klog", r"(?P<klog>\b[IWEF](?P<kmo>[01]\d)(?P<kd>[0-3]\d) (?P<kh>\d\d):(?P<kmi>\d\d):(?P<ks>\d\d)\.(?P<kf>\d{6}))\b"),
    ("clf", rf"(?P<clf>(?P<cd>\d\d)/(?P<cmon>{_MON})/(?P<cy>\d{{4}}):(?P<ch>\d\d):"
            r"(?P<cmi>\d\d):(?P<cs>\d\d)(?:\.(?P<cf>\d+))?(?: (?P<cz>[+-]\d{4}))?)"),
    ("epoch", r"(?P<epoch>(?<![\d.])1\d{9}\.\d{3,9})(?![\d.])"),
    ("millis", r"(?P<millis>(?<![\d.])1\d{12})(?![\d.])"),
)

# One alternation, so that the earliest timestamp in a line wins in one search
# (at one place, the first alternative: ctime's weekday before syslog's month).
TIME_RE = re.compile("|".join(form for _kind, form in _FORMS))

# The two forms most logs open their lines with, each alone, for a line's start:
# where one matches at a line's start, TIME_RE.match matches the same text the
# same way (no alternative before it can match there: go needs a "/" where iso
# has a "-"), and one form alone costs a fraction of the whole alternation.
# Each with the names of its fraction's and its zone's groups.
LEADING = {kind: (re.compile(form), *groups) for (kind, form), groups
           in zip(_FORMS, (("gf", None), ("if", "iz")))}

# The forms that carry no year: the only ones whose year is guessed (and said).
YEARLESS = frozenset({"sys", "klog"})


def message_words(text: str) -> str:
    """The application's words in a log record: its text without the timestamps
    (record's arrival stamp, the program's own) and runs of blank, so that the
    same line read from two files compares equal."""
    first = text.split("\n", 1)[0] if "\n" in text else text
    rest = text[len(first):]
    return " ".join((TIME_RE.sub(" ", first) + rest).split()).strip(" :-[]")


def stamp_precision_ns(text: str) -> int:
    """How finely the first timestamp of `text` is written, in ns (1 s for
    ``19:06:01``, 1 us for ``19:06:01.140166``; 1 s when none is found):
    among sources of one failure, the finest gives its time."""
    stamp = TIME_RE.search(text)
    if stamp is None:
        return 1_000_000_000
    digits = next((value for name, value in stamp.groupdict().items()
                   if value and name.endswith("f") and len(name) == 2), None)
    if stamp.lastgroup == "millis":
        return 1_000_000
    if digits is None and stamp.lastgroup == "epoch":
        digits = stamp.group("epoch").partition(".")[2]
    return 10 ** (9 - min(len(digits), 9)) if digits else 1_000_000_000
