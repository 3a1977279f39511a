"""Where matplotlib keeps its cache when HOME is not writable.

Called before anything imports matplotlib (the CLI first thing, the views
module at import; scapy imports matplotlib too when it is installed).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def settle_matplotlib_dirs() -> None:
    """Give matplotlib a private cache when HOME is not writable (a sandbox, a
    student account, HOME=/nonexistent): otherwise it prints two lines of
    warnings before our own output. Never a fixed shared path: a folder of
    this user's own, checked to be theirs."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    home = Path.home()
    wanted = (Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib",
              Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib")
    try:
        for folder in wanted:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(folder)
        return
    except OSError:
        pass
    mine = Path(tempfile.gettempdir()) / f"tcpteardown-matplotlib-{os.getuid()}"
    try:
        mine.mkdir(mode=0o700, exist_ok=True)
        info = mine.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(mine)  # someone else's: never use it
    except OSError:
        mine = Path(tempfile.mkdtemp(prefix="tcpteardown-matplotlib-"))
    os.environ["MPLCONFIGDIR"] = str(mine)
