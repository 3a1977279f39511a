"""tcpteardown: which segment made this socket call fail?

Sources (scenario runs, live capture, pcap files, strace and application
logs) build one `Recording`; analysis links each failing socket call to the
FIN or RST that caused it; views draw ladders, diffs and census plots.
`tcpteardown.explain`, `census`, `diff` and `ladder` (api.py) are what the
commands compute, as objects.
"""

from .model import (
    CauseKind,
    Endpoint,
    Frame,
    KernelEvent,
    Link,
    Metadata,
    Recording,
    Segment,
    SocketCall,
    TcpFlags,
)

from .api import (
    EvidenceWarning,
    Explanation,
    UserError,
    census,
    census_document,
    diff,
    diff_document,
    diff_text,
    explain,
    ladder,
    load,
    run,
)

__version__ = "0.1.0"


# The functions and their documented signatures: api.py (docs/api.md).
__all__ = [
    "CauseKind",
    "Endpoint",
    "Frame",
    "KernelEvent",
    "Link",
    "Metadata",
    "Recording",
    "Segment",
    "SocketCall",
    "TcpFlags",
    "__version__",
    "EvidenceWarning",
    "Explanation",
    "UserError",
    "census",
    "census_document",
    "diff",
    "diff_document",
    "diff_text",
    "explain",
    "ladder",
    "load",
    "run",
]
