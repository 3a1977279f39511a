"""Loopback ports nothing listens on, for tests that want a refused connect."""

import contextlib
import socket


def closed_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing listens on: all bound at once, then released.

    Binding one probe at a time can hand back the same port twice (the kernel may
    pick a just-released port again), which made two "different" ports one."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((host, 0))
        return [probe.getsockname()[1] for probe in probes]


def closed_port(host: str = "127.0.0.1") -> int:
    """One loopback port nothing listens on (bound then released)."""
    return closed_ports(1, host)[0]
