"""The one small interface to per-OS socket options the scenario runner needs.

    from tcpteardown.capture.sockopts import tcp_state, prepare_socket, nosignal_send_flags
    prepare_socket(sock)                       # once, before the first write
    sock.send(data, nosignal_send_flags())     # never raises SIGPIPE
    tcp_state(sock)                            # "ESTABLISHED", "CLOSE_WAIT", ... (Linux names)

Linux or macOS is picked once, at import, from `sys.platform`. Linux asks
TCP_INFO (byte 0 is tcpi_state, Linux numbering); macOS asks
TCP_CONNECTION_INFO (byte 0 is tcpi_state, BSD numbering, translated to the
Linux name by `capture.macos`). Every state name that leaves this module is
a Linux name, whatever the host.

This module must never import anything Linux- or macOS-only at module
level, and never hold on to a socket.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from typing import Callable

from . import macos

# Linux tcp_states.h: TCP_ESTABLISHED = 1 ... TCP_NEW_SYN_RECV = 12; 0 is unused.
LINUX_STATES = ("UNKNOWN(0)", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
                "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV")
LINUX_TCP_INFO = 11  # socket.TCP_INFO on Linux
LINUX_MSG_NOSIGNAL = 0x4000  # socket.MSG_NOSIGNAL on Linux

# Every name tcp_state() can return (besides UNKNOWN(n) for a number no kernel uses).
STATE_NAMES = frozenset(LINUX_STATES[1:])


def linux_state_name(number: int) -> str:
    """tcpi_state (Linux numbering) -> name; ``UNKNOWN(n)`` outside the table."""
    return LINUX_STATES[number] if 0 < number < len(LINUX_STATES) else f"UNKNOWN({number})"


@dataclass(frozen=True, slots=True)
class Platform:
    """How one OS answers the three questions; chosen once per process."""

    name: str  # "Linux", "Darwin"
    info_level: int  # getsockopt level for the state
    info_option: int  # TCP_INFO / TCP_CONNECTION_INFO
    info_size: int  # bytes to ask for
    state_from_info: Callable[[bytes], str]  # bytes -> Linux state name
    send_flags: int  # flags that keep a write from raising SIGPIPE
    nosigpipe_option: int  # SO_NOSIGPIPE to set on each socket, or 0


def _linux_state_from_info(data: bytes) -> str:
    if not data:
        raise ValueError("empty TCP_INFO: expected at least the 1-byte tcpi_state")
    return linux_state_name(data[0])


LINUX = Platform(
    name="Linux",
    info_level=socket.IPPROTO_TCP,
    info_option=LINUX_TCP_INFO,
    # Only tcpi_state is needed: Linux copies min(optlen, sizeof) bytes.
    info_size=1,
    state_from_info=_linux_state_from_info,
    send_flags=LINUX_MSG_NOSIGNAL,
    nosigpipe_option=0,
)

MACOS = Platform(
    name="Darwin",
    info_level=macos.IPPROTO_TCP,
    info_option=macos.TCP_CONNECTION_INFO,
    # XNU copies min(optlen, sizeof) as well, but ask for the whole struct:
    # older releases refused a short buffer for this option.
    info_size=macos.TCP_CONNECTION_INFO_SIZE,
    state_from_info=macos.state_from_connection_info,
    send_flags=0,  # no MSG_NOSIGNAL on macOS: SO_NOSIGPIPE on the socket instead
    nosigpipe_option=macos.SO_NOSIGPIPE,
)


def platform_for(sys_platform: str) -> Platform:
    """The Platform for a `sys.platform` value; LookupError when unsupported."""
    if sys_platform.startswith("linux"):
        return LINUX
    if sys_platform == "darwin":
        return MACOS
    raise LookupError(f"TCP states are read on Linux and macOS, not on {sys_platform}")


try:
    HOST: "Platform | None" = platform_for(sys.platform)
except LookupError:
    HOST = None


def _host() -> Platform:
    if HOST is None:
        raise OSError(f"tcpteardown reads TCP states on Linux and macOS, not on {sys.platform}")
    return HOST


def tcp_state(sock: socket.socket, platform: "Platform | None" = None) -> str:
    """The kernel's TCP state of `sock`, by its Linux name.

    One getsockopt, no allocation beyond its buffer: cheap enough to poll.
    Raises ValueError for a socket whose descriptor is already closed (its
    state can no longer be asked), OSError when the kernel refuses.
    """
    host = platform or _host()
    if sock.fileno() < 0:
        raise ValueError("cannot read the TCP state of a closed socket")
    return host.state_from_info(sock.getsockopt(host.info_level, host.info_option, host.info_size))


def nosignal_send_flags(platform: "Platform | None" = None) -> int:
    """Flags for send()/sendto() so a write to a reset socket returns EPIPE
    instead of raising SIGPIPE: MSG_NOSIGNAL on Linux, 0 on macOS (there
    `prepare_socket` sets SO_NOSIGPIPE instead)."""
    return (platform or _host()).send_flags


def prepare_socket(sock: socket.socket, platform: "Platform | None" = None) -> None:
    """Make `sock` behave the same on every OS: no SIGPIPE on write.

    On macOS sets SO_NOSIGPIPE; on Linux nothing is needed (the send flags do it).
    """
    host = platform or _host()
    if host.nosigpipe_option:
        sock.setsockopt(macos.SOL_SOCKET, host.nosigpipe_option, 1)
