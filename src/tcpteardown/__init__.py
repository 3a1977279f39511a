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


def load(capture, *, strace=(), logs=(), tz=None, year=None) -> Recording:
    """The recording in `capture` (a bundle, or any pcap/pcapng) plus the socket calls of
    the `strace` and application `logs` files, read as `tcpteardown explain` reads them."""
    from .formats.evidence import load_evidence

    return load_evidence(capture, strace=strace, logs=logs, tz=tz, year=year)


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
    "load",
]
