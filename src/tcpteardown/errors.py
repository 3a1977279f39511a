"""Errors a user can cause and read: the CLI prints them without a traceback.

Everything raised for bad input, a missing privilege or a missing tool is a
`UserError` (or a subclass) whose message says what was wrong, where, and
what to do instead. Anything else reaching the CLI is a bug in tcpteardown.
"""

from __future__ import annotations

from typing import Optional


class UserError(Exception):
    """A problem with the input or the environment, not with tcpteardown."""


class CaptureFileError(UserError):
    """A capture file that cannot be read (further).

    `offset` is the byte offset of the problem in `path`; `partial` holds
    whatever was read before it (callers keep it: nothing read is lost).
    """

    def __init__(self, path: str, offset: Optional[int], problem: str, partial: object = None):
        where = f"{path}" if offset is None else f"{path} at byte offset {offset}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.offset = offset
        self.problem = problem
        self.partial = partial


class NoCapturePrivilege(UserError):
    """This process may not open a packet capture."""


class MissingTool(UserError):
    """An external program (tcpdump, strace, tshark, go) is not installed."""
