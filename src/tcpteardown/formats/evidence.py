"""Evidence loading: a capture plus strace logs plus application logs -> one Recording.

The one place that turns what a user hands over (CAPTURE, `--strace FILE`,
`--log FILE`, a time zone) into a Recording: `explain`, `plot` and the
notebooks all call `load_evidence`. Lines the importers cannot read are
handed to `warn`, one line each, naming the file and line.

Big captures. With an `Interest`, a plain pcap/pcapng is read through the
column reader (`pcap_columns`) in one pass and only the frames of the
connections that matter become Segments: the 4-tuples the calls name, the
connection `--conn` names, and, for a call that names no 4-tuple, the
connections with packets in a window before it. Memory is one window of the
file plus the selected connections, whatever the capture's size. A bundle is
always read whole (its socket calls travel in it).

Capture sets (several files, a directory, a glob, a compressed file:
`formats.capture_set`) are read as one stream through the same column
reader, frames numbered on from member to member, so a connection that spans
a rotation is one connection: whole when they hold less than the big size
decompressed, else selectively as a big capture. The set's damaged members
and overlaps travel in the metadata as ("partial", line) and ("set_note",
line), said by the command as census says them.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np

from ..errors import UserError
from ..model import Endpoint, Metadata, Recording, Segment, SocketCall, TcpFlags

__all__ = ["load_evidence", "read_calls", "Interest", "interest_for", "read_selected", "BIG_CAPTURE_BYTES",
           "NEAR_WINDOW_NS", "PREDICTIONS_LIMITED", "NEAR_CANDIDATES"]

# Above this size a capture is read selectively (when the caller says what matters);
# the environment variable overrides it (0: always, as the tests do on small captures).
BIG_CAPTURE_BYTES = 16 << 20  # ~150,000 loopback packets; read whole, ~200 MB
BIG_CAPTURE_VARIABLE = "TCPTEARDOWN_BIG_CAPTURE_BYTES"
# Metadata key of a recording read for calls naming no 4-tuple: its other connections are
# candidates only, not predicted (api.explain); the value says so in one line.
PREDICTIONS_LIMITED = "predictions_limited"
# ... and for each such call's window, "T0 T1 SHOWN READ": how many of its connections show
# the RST/FIN that can explain the call, and how many of those (the nearest) were read
# (analysis.correlate says it in the link when some were left out).
NEAR_CANDIDATES = "near_candidates"
NEAR_CANDIDATES_READ = 16
# A call that names no 4-tuple: connections with packets this long before it are read.
NEAR_WINDOW_NS = 1_000_000_000
# ... and of those, their packets from this long before the window (their handshake).
_LOOKBACK_NS = 2_000_000_000

PathLike = Union[str, "os.PathLike[str]"]


def read_calls(kind: str, path: PathLike, *, tz: Optional[dt.tzinfo] = None, year: Optional[int] = None,
               warn: Callable[[str], None] = lambda text: None,
               unread: Callable[[tuple], None] = lambda entries: None) -> tuple[SocketCall, ...]:
    """The socket calls of one `kind` ("strace" or "log") file; its problems go to
    `warn`, the lines it could not read (`ImportResult.unread`) to `unread`.
    `year`: for log lines that carry none (syslog)."""
    from .applog import read_log_file
    from .strace import read_strace_file

    try:
        if kind == "strace":
            result = read_strace_file(path, tz=tz)
        else:
            result = read_log_file(path, tz=tz, year=year)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a {kind} file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    for problem in result.problems:
        warn(problem)
    unread(tuple(result.unread))
    return tuple(result.calls)


def load_evidence(capture: Union[PathLike, list], *, strace: Iterable[PathLike] = (), logs: Iterable[PathLike] = (),
                  tz: Optional[dt.tzinfo] = None, year: Optional[int] = None,
                  warn: Callable[[str], None] = lambda text: None,
                  unread: Callable[[tuple], None] = lambda entries: None,
                  select: Optional[Callable[[tuple[SocketCall, ...]], "Interest"]] = None,
                  big_bytes: Optional[int] = None) -> Recording:
    """The recording in `capture` (a bundle or any pcap/pcapng, or a list of
    names: a capture set) plus the calls of every strace and application log file.

    `select`, given the imported calls, says which connections matter; a plain
    capture of at least `big_bytes` (default: $TCPTEARDOWN_BIG_CAPTURE_BYTES, else
    BIG_CAPTURE_BYTES) is then read selectively (`read_selected`), anything else whole."""
    from .bundle import bundle_metadata, load_recording
    from .capture_set import is_set

    extra = [call for path in strace for call in read_calls("strace", path, tz=tz, warn=warn, unread=unread)]
    extra += [call for path in logs for call in read_calls("log", path, tz=tz, year=year, warn=warn,
                                                            unread=unread)]
    extra.sort(key=lambda c: (c.start_ns, c.end_ns))
    names = [os.fspath(name) for name in capture] if isinstance(capture, (list, tuple)) else [os.fspath(capture)]
    if big_bytes is None:
        setting = os.environ.get(BIG_CAPTURE_VARIABLE, "")
        big_bytes = int(setting) if setting.isdigit() else BIG_CAPTURE_BYTES
    if is_set(names):
        recording, big = _read_set(names, select, extra, big_bytes)
        if big:
            return recording
    else:
        path = Path(names[0])
        big = path.is_file() and path.stat().st_size >= big_bytes and bundle_metadata(path) is None
        if select is not None and big:
            interest = select(tuple(extra))
            return read_selected(path, interest).with_calls(interest.clip_calls(extra))
        recording = load_recording(path)
    recording = recording.with_calls(extra) if extra else recording
    interest = select(tuple(extra)) if select is not None else None
    if interest is not None and (interest.since is not None or interest.until is not None):
        recording = replace(recording, segments=tuple(s for s in recording.segments if interest.in_span(s.time_ns)),
                            calls=tuple(interest.clip_calls(recording.calls)))
    return recording


# -- reading only what matters ------------------------------------------------------

@dataclass(frozen=True)
class Interest:
    """Which connections of a capture to read into Segments.

    `pairs`: every connection on these 4-tuples. `near`: (endpoint or None,
    t0, t1): connections (on that endpoint) with a packet in [t0, t1].
    `first`: the n-th connection in order of first packet that has `port`
    / `endpoint` (None: any), as `--conn N|:PORT|ADDR:PORT` means.
    `since`/`until` clip everything, packets and calls. `near_flags`: per
    `near` window, TCP flags one of which a connection must show inside it
    to be read (the RST or FIN that can explain its call; 0 or missing: any
    packet), of those only the NEAR_CANDIDATES_READ whose lies nearest the
    window's end; all of the window's connections when none shows them.
    """

    pairs: frozenset = frozenset()
    near: tuple = ()
    near_flags: tuple = ()
    first: Optional[tuple[int, Optional[int], Optional[Endpoint]]] = None  # (n, port, endpoint)
    since: Optional[int] = None
    until: Optional[int] = None
    lookback_ns: int = _LOOKBACK_NS  # `near`: packets read this long before t0, for the handshake

    def flags_of(self, window: int) -> int:
        return self.near_flags[window] if window < len(self.near_flags) else 0

    def in_span(self, time_ns: int) -> bool:
        return (self.since is None or time_ns >= self.since) and (self.until is None or time_ns <= self.until)

    def clip_calls(self, calls: Iterable[SocketCall]) -> list[SocketCall]:
        return [c for c in calls if self.in_span(c.end_ns) or self.in_span(c.start_ns)]


def interest_for(calls: Iterable[SocketCall], *, number: Optional[int] = None, endpoints: tuple = (),
                 port: Optional[int] = None, since: Optional[int] = None, until: Optional[int] = None,
                 window_ns: int = NEAR_WINDOW_NS,
                 late_ns: Callable[[SocketCall], int] = lambda call: 1_000_000_000) -> Interest:
    """What explain and plot need from a big capture. With a connection named
    (`number`, `endpoints` as in `--conn`, `port`): that connection only.
    Otherwise the connection of every failing (or end-of-file) call: its
    4-tuple when the call names both ends, else the connections with packets
    in the `window_ns` before the call (on its one named endpoint, if any),
    or in [since, until] when given. `late_ns(call)`: how long after a call
    its cause may be stamped (`analysis.correlate.tolerance`; default 1 s)."""
    if len(endpoints) == 2:
        return Interest(pairs=frozenset({frozenset(endpoints)}), since=since, until=until)
    if number is not None or endpoints or port is not None:
        return Interest(first=(number or 1, port, endpoints[0] if endpoints else None), since=since, until=until)
    pairs, near, flags = set(), [], []
    for call in calls:
        if not (call.failed or call.is_eof):
            continue
        if call.local is not None and call.remote is not None:
            pairs.add(frozenset((call.local, call.remote)))
            continue
        t0 = since if since is not None else call.start_ns - window_ns
        t1 = until if until is not None else call.end_ns + late_ns(call)
        near.append((call.local or call.remote, t0, t1))
        flags.append(evidence_flags(call))
    if not pairs and not near:
        return Interest(first=(1, None, None), since=since, until=until)  # nothing failed: the first, for a picture
    return Interest(pairs=frozenset(pairs), near=tuple(near), near_flags=tuple(flags), since=since, until=until)


# The segment that can explain each outcome (analysis.correlate's rules): an RST for a
# reset or a refusal (the RST/ACK answering the SYN), a FIN for end-of-file. Others
# (timeouts: silence; EPIPE: maybe this side's own close) may lie on any connection.
_EXPLAINED_BY = {"ECONNRESET": TcpFlags.RST, "ECONNREFUSED": TcpFlags.RST, "EOF": TcpFlags.FIN}


def evidence_flags(call: SocketCall) -> int:
    """The TCP flags one of which a connection must show near `call` to explain it,
    for every outcome its words leave open (a log line's `also`); 0: any connection may."""
    from ..messages import read_message

    outcomes = {"EOF" if call.is_eof else call.errno}
    found = read_message(call.text) if call.source == "log" and call.text else None
    if found is not None and found.phrasing is not None:
        outcomes |= set(found.phrasing.also)
    if not all(outcome in _EXPLAINED_BY for outcome in outcomes):
        return 0
    mask = 0
    for outcome in outcomes:
        mask |= int(_EXPLAINED_BY[outcome])
    return mask


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


def _endpoint_hash(hi, lo, port):
    return ((hi * _MIX[0]) ^ lo) * _MIX[1] ^ (port.astype(np.uint64) * _MIX[2])


def _key_hash(batch):
    """One number per packet for its unordered 4-tuple (equal for both directions)."""
    return _endpoint_hash(batch.src_hi, batch.src_lo, batch.sport) + _endpoint_hash(batch.dst_hi, batch.dst_lo,
                                                                                      batch.dport)


def _port_pair(a, b):
    return np.minimum(a, b).astype(np.int64) << 16 | np.maximum(a, b).astype(np.int64)


class _Selection:
    """The streaming state of one pass: which rows of each batch to decode."""

    def __init__(self, interest: Interest):
        self.interest = interest
        self.pair_codes = np.array(sorted({min(e.port for e in key) << 16 | max(e.port for e in key)
                                           for key in interest.pairs if len(key) == 2}), dtype=np.int64)
        self.pair_keys = interest.pairs
        self.seen = np.zeros(0, dtype=np.uint64)  # key hashes met so far, while `first` is unresolved
        self.counted = 0
        self.chosen: Optional[np.uint64] = None  # the key hash `first` resolved to

    def rows(self, batch, frame_bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Indices of the batch's rows worth decoding now; the rows a `near` window
        (or its lookback) holds, for later: decoded only for the connections with a
        packet inside a window (most in a busy window's lookback have none); the
        rows inside a window; and per window with `Interest.near_flags`, the rows
        inside it that can explain its call."""
        interest = self.interest
        time = batch.time_ns
        wanted = np.zeros(len(batch), dtype=bool)
        if len(self.pair_codes):
            wanted |= np.isin(_port_pair(batch.sport, batch.dport), self.pair_codes)
        near = np.zeros(len(batch), dtype=bool)
        inside = np.zeros(len(batch), dtype=bool)
        explaining = []
        for window, (endpoint, t0, t1) in enumerate(interest.near):
            on = (time >= t0 - interest.lookback_ns) & (time <= t1)
            if endpoint is not None:
                on &= (batch.sport == endpoint.port) | (batch.dport == endpoint.port)
            near |= on
            on &= time >= t0
            inside |= on
            mask = interest.flags_of(window)
            if mask:
                explaining.append((window, on & ((batch.flags & mask) != 0)))
        if interest.first is not None:
            keys = _key_hash(batch)
            if self.chosen is None:
                self._resolve(batch, keys, frame_bytes)
            if self.chosen is not None:
                wanted |= keys == self.chosen
        if interest.since is not None:
            wanted &= (time >= interest.since).astype(bool)
            near &= (time >= interest.since).astype(bool)
        if interest.until is not None:
            wanted &= (time <= interest.until).astype(bool)
            near &= (time <= interest.until).astype(bool)
        near &= ~wanted
        inside &= near
        explaining = [(window, np.flatnonzero(rows & near)) for window, rows in explaining]
        return np.flatnonzero(wanted), np.flatnonzero(near), np.flatnonzero(inside), explaining

    def _resolve(self, batch, keys, frame_bytes) -> None:
        """Count connections in order of first packet until the n-th that has
        the port / endpoint `first` asks for (4-tuple reuse counts once)."""
        n, port, endpoint = self.interest.first
        match = np.ones(len(batch), dtype=bool)
        if port is not None or endpoint is not None:
            wanted_port = port if port is not None else endpoint.port
            match = (batch.sport == wanted_port) | (batch.dport == wanted_port)
        rows = np.flatnonzero(match)
        unique, first_rows = np.unique(keys[rows], return_index=True)
        order = np.argsort(first_rows, kind="stable")
        unique, first_rows = unique[order], rows[first_rows[order]]
        new = ~np.isin(unique, self.seen)
        for key, row in zip(unique[new], first_rows[new]):
            if endpoint is not None:
                segment = _decode(batch, frame_bytes, [row])
                if not segment or endpoint not in segment[0].connection_key:
                    continue
            self.counted += 1
            if self.counted == n:
                self.chosen = key
                self.seen = np.zeros(0, dtype=np.uint64)
                return
        self.seen = np.union1d(self.seen, unique[new])

def _decode(batch, frame_bytes, rows) -> list[Segment]:
    from .pcap_links import decode_segment

    frames = batch.frame[rows]
    out = []
    for row, frame, (linktype, data) in zip(rows, frames, frame_bytes(frames)):
        segment = decode_segment(int(frame), int(batch.time_ns[row]), linktype, data)
        if segment is not None:
            out.append(segment)
    return out


def _read_set(names: list, select, extra: list, big_bytes: int) -> tuple[Recording, bool]:
    """A capture set's recording, and whether it was big (read selectively, calls
    added and clipped) or whole (the caller adds the calls)."""
    from .capture_set import CaptureSet, iter_set_batches, open_set, set_label

    capture_set = open_set(names)
    label = set_label(names, capture_set)
    big = select is not None and capture_set.expanded_bytes >= big_bytes
    problems: list[str] = []

    def said() -> tuple:
        return (tuple(("partial", line) for line in capture_set.damaged)
                + tuple(("set_note", line) for line in capture_set.notes))

    if big:
        interest = select(tuple(extra))

        def batches(first_pass: bool):
            # a second pass (connections that began before their window) reads a copy of the set
            reading = capture_set if first_pass else CaptureSet(list(capture_set.members))
            on_problem = problems.append if first_pass else (lambda text: None)
            for batch, frame_bytes, _frames in iter_set_batches(reading, on_problem=on_problem, with_frames=True):
                yield batch, frame_bytes

        recording = read_selected(label, interest, batches=batches)
        recording = replace(recording, metadata=replace(
            recording.metadata, extra=recording.metadata.extra + tuple(("problem", p) for p in problems) + said()))
        return recording.with_calls(interest.clip_calls(extra)), True
    segments: list[Segment] = []
    frames: list = []
    for batch, frame_bytes, frames_of in iter_set_batches(capture_set, on_problem=problems.append,
                                                            with_frames=True):
        frames.extend(frames_of())
        segments.extend(_decode(batch, frame_bytes, np.arange(len(batch))))
    extra_meta = tuple(("problem", p) for p in problems) + said()
    return Recording(segments=tuple(segments), frames=tuple(frames),
                     metadata=Metadata(source_file=label, extra=extra_meta)), False


def read_selected(capture: PathLike, interest: Interest, *, batches: Optional[Callable] = None) -> Recording:
    """A Recording holding only the connections `interest` names, read in one
    pass with flat memory (two when a connection found in a `near` window
    began before it). Its metadata says what was read
    (`selected`: "N of M TCP packets"); reader problems are kept as
    ("problem", text), as `bundle.load_recording` keeps them. `batches(first_pass)`:
    the (batch, frame_bytes) to read instead of the file's (a capture set's)."""
    path = str(capture)
    problems: list[str] = []
    if batches is None:
        if not Path(path).exists():
            raise UserError(f"{path}: no such file")

        def batches(first_pass: bool):
            from ..prefetch import prefetched
            from .pcap_columns import iter_tcp_batches_with_bytes

            # the next window is decoded on the second core while this one is searched
            return prefetched(iter_tcp_batches_with_bytes(
                path, on_problem=problems.append if first_pass else (lambda text: None)))
    counts: dict = {}
    segments, tcp_packets = _one_pass(batches(True), interest, counts=counts)
    passes = 1
    headless = _headless(segments, interest)
    if headless:  # connections found in a window that began before it: a second pass for their start
        first_seen = {}
        for segment in segments:
            first_seen.setdefault(segment.connection_key, segment.time_ns)
        have = np.array(sorted(s.frame for s in segments), dtype=np.int64)
        earlier, _ = _one_pass(batches(False), Interest(pairs=frozenset(headless), since=interest.since,
                                                        until=max(first_seen[key] for key in headless)), skip=have)
        segments = sorted(segments + earlier, key=lambda s: s.frame)
        passes = 2
    keys = {s.connection_key for s in segments}
    what = f"{len(segments)} of {tcp_packets} TCP packets ({len(keys)} of the capture's 4-tuples"
    what += f", {passes} passes)" if passes > 1 else ")"
    limited = ()
    if interest.near:
        what += (f"; for {len(interest.near)} call(s) naming no 4-tuple, the connections with packets in "
                 f"the window before each (--window, --since/--until)")
        shown = " or ".join(name for name, bit in (("an RST", TcpFlags.RST), ("a FIN", TcpFlags.FIN))
                            if any(mask & bit for mask in interest.near_flags))
        if shown:
            what += (f" that show {shown} in it (what can explain the call; all when none does), the "
                     f"{NEAR_CANDIDATES_READ} whose is nearest the call")
        limited = ((PREDICTIONS_LIMITED, "predictions only for the connections the calls name by 4-tuple: the "
                    "others were read as candidates for a call that names none"),)
    limited += tuple((NEAR_CANDIDATES, f"{interest.near[window][1]} {interest.near[window][2]} {shown} {read}")
                     for window, (shown, read) in sorted(counts.items()))
    extra = (("selected", what + ": only the connections the calls or --conn name were read"),) + limited \
        + tuple(("problem", p) for p in problems)
    return Recording(segments=tuple(segments), metadata=Metadata(source_file=path, extra=extra))


def _one_pass(batches, interest: Interest, skip: Optional[np.ndarray] = None,
              counts: Optional[dict] = None) -> tuple[list[Segment], int]:
    """The segments `interest` selects from `batches` ((batch, frame_bytes) pairs), and
    the count of TCP packets; frames in `skip` (sorted; read by an earlier pass) are
    not decoded again. `counts` gets, per `near` window narrowed to the connections
    that can explain its call, (how many show that, how many were read)."""
    counts = {} if counts is None else counts
    selection = _Selection(interest)
    segments: list[Segment] = []
    tcp_packets = 0
    # Rows only a `near` window wanted: (frames, times, key hashes, their bytes), decoded
    # at the end for the connections with a packet inside a window (their key hashes).
    later: list[tuple] = []
    inside_keys: list[np.ndarray] = []
    explaining: dict[int, list[tuple]] = {}  # window -> [(key hashes, times)] of the rows that can explain its call
    for batch, frame_bytes in batches:
        tcp_packets += len(batch)
        rows, near, inside, explaining_rows = selection.rows(batch, frame_bytes)
        if skip is not None:
            rows = rows[~np.isin(batch.frame[rows], skip)] if len(rows) else rows
            near = near[~np.isin(batch.frame[near], skip)] if len(near) else near
        if len(rows):
            segments.extend(_decode(batch, frame_bytes, rows))
        if len(near):
            keys = _key_hash(batch)
            frames = batch.frame[near]
            later.append((frames, batch.time_ns[near], keys[near], frame_bytes(frames)))
            inside_keys.append(keys[inside])
            for window, rows_of in explaining_rows:
                explaining.setdefault(window, []).append((keys[rows_of], batch.time_ns[rows_of]))
    if later:
        from .pcap_links import decode_segment

        wanted = _candidate_keys(interest, np.concatenate(inside_keys), explaining, counts)
        for frames, times, keys, data in later:
            for row in np.flatnonzero(np.isin(keys, wanted)).tolist():
                segment = decode_segment(int(frames[row]), int(times[row]), *data[row])
                if segment is not None:
                    segments.append(segment)
        segments.sort(key=lambda segment: segment.frame)
    return _exact(segments, interest), tcp_packets


def _candidate_keys(interest: Interest, inside: np.ndarray, explaining: dict, counts: dict) -> np.ndarray:
    """The key hashes of the `near` connections to decode: for a window whose call only an
    RST or FIN can explain, the NEAR_CANDIDATES_READ connections whose such packet lies
    nearest before the window's end (the call's deadline: correlate picks among them the
    same way), all of them when none shows one; every connection in the others.
    `counts[window]` = (connections that show one, read) for those windows."""
    masked = set(explaining)
    if len(masked) < len(interest.near) or any(not sum(len(k) for k, _t in explaining[w]) for w in masked):
        keep = [inside]  # a window without flags (or none showing them): all its connections
    else:
        keep = []
    for window, parts in explaining.items():
        keys = np.concatenate([k for k, _t in parts])
        if not len(keys):
            continue
        times = np.concatenate([t for _k, t in parts])
        deadline = interest.near[window][2]
        order = np.argsort(deadline - times, kind="stable")  # all inside the window: at or before the deadline
        unique, first = np.unique(keys[order], return_index=True)
        nearest = unique[np.argsort(first, kind="stable")][:NEAR_CANDIDATES_READ]
        counts[window] = (len(unique), len(nearest))
        keep.append(nearest)
    return np.unique(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.uint64)


def _headless(segments: list[Segment], interest: Interest) -> set:
    """4-tuples read for a `near` window whose first segment read is no SYN:
    they began before the window (a connect that retried for minutes)."""
    if not interest.near:
        return set()
    first: dict = {}
    for segment in segments:
        first.setdefault(segment.connection_key, segment)
    return {key for key, segment in first.items()
            if key not in interest.pairs and not segment.is_syn}


def _exact(segments: list[Segment], interest: Interest) -> list[Segment]:
    """Drop what only the cheap per-batch tests let through (ports and hashes
    collide; a window's neighbours may belong to no selected connection)."""
    if interest.first is not None:
        key = segments[0].connection_key if segments else None
        return [s for s in segments if s.connection_key == key]
    keys = [s.connection_key for s in segments]  # a new frozenset each time it is asked: asked once
    inside, explaining = set(), set()
    for window, (endpoint, t0, t1) in enumerate(interest.near):
        mask = interest.flags_of(window)
        for s, key in zip(segments, keys):
            if t0 <= s.time_ns <= t1 and (endpoint is None or endpoint in key):
                inside.add(key)
                if not mask or s.flags & mask:
                    explaining.add(key)
    inside = explaining or inside
    pairs = interest.pairs
    return [s for s, key in zip(segments, keys) if key in pairs or key in inside]
