"""Evidence loading: a capture plus strace logs plus application logs -> one Recording.

The one place that turns what a user hands over (CAPTURE, `--strace FILE`,
`--log FILE`, a time zone) into a Recording: `explain`, `plot` and the
notebooks all call `load_evidence`. Lines the importers cannot read are
handed to `warn`, one line each, naming the file and line.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Callable, Iterable, Optional, Union

from ..errors import UserError
from ..model import Recording, SocketCall

__all__ = ["load_evidence", "read_calls"]

PathLike = Union[str, "os.PathLike[str]"]


def read_calls(kind: str, path: PathLike, *, tz: Optional[dt.tzinfo] = None,
               warn: Callable[[str], None] = lambda text: None) -> tuple[SocketCall, ...]:
    """The socket calls of one `kind` ("strace" or "log") file; its problems go to `warn`."""
    from .applog import read_log_file
    from .strace import read_strace_file

    reader = read_strace_file if kind == "strace" else read_log_file
    try:
        result = reader(path, tz=tz)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a {kind} file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    for problem in result.problems:
        warn(problem)
    return tuple(result.calls)


def load_evidence(capture: PathLike, *, strace: Iterable[PathLike] = (), logs: Iterable[PathLike] = (),
                  tz: Optional[dt.tzinfo] = None, warn: Callable[[str], None] = lambda text: None) -> Recording:
    """The recording in `capture` (a bundle or any pcap/pcapng) plus the calls
    of every strace and application log file."""
    from .bundle import load_recording

    recording = load_recording(capture)
    extra = [call for path in strace for call in read_calls("strace", path, tz=tz, warn=warn)]
    extra += [call for path in logs for call in read_calls("log", path, tz=tz, warn=warn)]
    return recording.with_calls(extra) if extra else recording
