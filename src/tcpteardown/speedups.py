"""The optional compiled loops (`_speedups.c`), and the one switch that turns them off.

Some loops cost more in the interpreter (or in dozens of numpy passes) than
everything else a census of a connection-heavy capture does: walking a
capture's records (each pcap record header, or pcapng packet block, says
where the next one starts), decoding each frame's link, IP and TCP headers
to columns (`pcap_columns._decode_compiled`), grouping a batch's packets by
4-tuple (`census._Grouped`), and writing 68 MB of `census --json` rows. `pip install` compiles `_speedups.c` where it finds a C
compiler; where it does not (a student's Mac without Xcode's command line
tools), the install goes on and the Python code beside each caller gives the
same results, slower. The tests compare both.

`compiled()` is the module, or None when it was not built or when
TCPTEARDOWN_PURE_PYTHON=1 is set (to measure or compare the Python code).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Optional

__all__ = ["compiled", "ENGINE"]

try:
    from . import _speedups as _module
except ImportError:  # not built: no C compiler at install time
    _module = None


def compiled() -> Optional[ModuleType]:
    """The compiled loops, or None (not built, or TCPTEARDOWN_PURE_PYTHON is set)."""
    if os.environ.get("TCPTEARDOWN_PURE_PYTHON"):
        return None
    return _module


ENGINE = "python" if compiled() is None else "compiled"
