"""tcpteardown: which segment made this socket call fail?

Sources (scenario runs, live capture, pcap files, strace and application
logs) build one `Recording`; analysis links each failing socket call to the
FIN or RST that caused it; views draw ladders, diffs and census plots.
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

__version__ = "0.1.0"

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
]
