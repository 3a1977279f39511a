"""Shaping a private namespace's `lo`: a netem delay (or the NFQUEUE delay
line where the kernel has no netem), and a `Gate` that holds every packet.

Runs inside a namespace made by `namespace.run_in_namespace`; the probes
say whether this machine can do it at all.
"""

from __future__ import annotations

import socket
import subprocess
from functools import lru_cache
from typing import Optional

from ...errors import MissingTool
from .. import platform as host
from .namespace import (
    NamespaceError,
    _require_private,
    inside_private_namespace,
    namespace_id,
    namespace_problem,
    run_in_namespace,
    tc,
)
from .nfqueue import DelayLine

@lru_cache(maxsize=None)
def netem_problem() -> Optional[str]:
    """None when --delay works: `netem delay` on lo in a namespace, or else the
    NFQUEUE delay line (`DelayLine`); otherwise why not."""
    problem = namespace_problem() or _tool_problem("tc", "iproute2")
    if problem:
        return problem
    try:
        run_in_namespace(lambda: None, delay_ms=1)
    except NamespaceError as exc:
        return str(exc).replace("a 1 ms delay", "a delay")
    return None


@lru_cache(maxsize=None)
def gate_problem() -> Optional[str]:
    """None when a Gate (tbf qdisc on lo) can be installed inside a namespace."""
    problem = namespace_problem() or _tool_problem("tc", "iproute2")
    if problem:
        return problem

    def probe() -> None:
        Gate().remove()

    try:
        run_in_namespace(probe)
    except NamespaceError as exc:
        return str(exc)
    return None


def _tool_problem(name: str, package: str) -> Optional[str]:
    return None if host.find_tool(name) else f"needs the `{name}` program (apt-get install {package})"

_delay_method: Optional[str] = None  # how the child delays: "netem" or "nfqueue"
_delay_ns = 0  # the delay every segment gets on this namespace's lo


def added_delay_ns() -> int:
    """How long this namespace holds every segment before the capture sees it (0: none).
    The kernel's tracepoints fire before the hold, so witness and capture stamps differ by it."""
    return _delay_ns


def add_delay(delay_ms: float, cleanup) -> None:
    """netem on lo when the kernel has it; else an NFQUEUE delay line in user space."""
    global _delay_method, _delay_ns
    _delay_ns = int(delay_ms * 1_000_000)
    try:
        _add_netem(delay_ms)
        _delay_method = "netem"
        return
    except NamespaceError as netem_error:
        problem = DelayLine.problem()
        if problem:
            raise NamespaceError(f"{netem_error}; and no NFQUEUE fallback: {problem}") from None
    cleanup.enter_context(DelayLine(delay_ms))
    _delay_method = "nfqueue"


def _add_netem(delay_ms: float) -> None:
    tc_path = host.find_tool("tc")
    if tc_path is None:
        raise MissingTool("--delay needs the `tc` program (apt-get install iproute2)")
    result = subprocess.run([tc_path, "qdisc", "add", "dev", "lo", "root", "netem", "delay", f"{delay_ms}ms"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit status {result.returncode}"
        if "unknown" in detail.lower() or "not supported" in detail.lower():
            detail = "this kernel has no netem queueing discipline (CONFIG_NET_SCH_NETEM / module sch_netem)"
        raise NamespaceError(f"cannot add a {delay_ms} ms delay on lo: {detail}")

class Gate:
    """Hold every packet on the namespace's `lo` until released.

    A token-bucket qdisc (tbf, present in most kernels, unlike netem and
    plug) is the root of `lo`. `hold()` throttles it to 1 byte/s and spends
    its bucket with one datagram of our own, so the next segment waits about
    a minute for tokens; `release()` restores a fast rate and sends one more
    datagram to make the queue run: everything held leaves in order, back to
    back, within one transmit run -- before any of it is received.
    """

    FAST = ("rate", "100gbit", "burst", "4mb", "limit", "16mb")
    # The bucket is 1600 bytes; the drain datagram spends all but ~10 of them.
    SLOW = ("rate", "8bit", "burst", "1600", "limit", "16mb")
    DRAIN_IP_BYTES = 1576  # + 14 bytes of Ethernet header on lo = 1590 bytes of tokens

    def __init__(self) -> None:
        _require_private("plug lo")
        self._sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sink.bind(("127.0.0.1", 0))
        self._installed = False
        try:
            tc("qdisc", "add", "dev", "lo", "root", "tbf", *self.FAST)
        except BaseException:
            self._sink.close()
            raise
        self._installed = True

    def _datagram(self, size: int) -> None:
        self._sink.sendto(b"g" * size, self._sink.getsockname())
        self._sink.recv(65536)  # it went through; keep the sink's queue empty

    def hold(self) -> None:
        tc("qdisc", "change", "dev", "lo", "root", "tbf", *self.SLOW)
        self._datagram(self.DRAIN_IP_BYTES - 28)

    def release(self) -> None:
        tc("qdisc", "change", "dev", "lo", "root", "tbf", *self.FAST)
        self._sink.sendto(b"kick", self._sink.getsockname())  # makes the queue run now

    def remove(self) -> None:
        if self._installed:
            self._installed = False
            subprocess.run([host.find_tool("tc") or "tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        self._sink.close()


def mark_recording(recording, delay_ms: Optional[float]):
    """The recording with ("netns", its namespace id) and, with a delay, ("delay_ms", X) in its metadata."""
    from dataclasses import replace

    extra = [pair for pair in recording.metadata.extra if pair[0] not in ("netns", "delay_ms", "delay_method")]
    extra.append(("netns", namespace_id() if inside_private_namespace() else "private"))
    if delay_ms is not None:
        extra.append(("delay_ms", f"{delay_ms:g}"))
        if _delay_method:
            extra.append(("delay_method", _delay_method))
    return replace(recording, metadata=replace(recording.metadata, extra=tuple(extra)))
