"""A delay line without netem: every packet of the namespace waits in user
space (NFQUEUE over netlink, queued by iptables), and `PacketGate`, which
holds only what an iptables match selects until released.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import time
from typing import Optional

from .. import platform as host
from .namespace import NamespaceError, _require_private, _run_tool

# -- a delay line without netem -----------------------------------------------------------

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR = 1
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_VERDICT_HDR = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


class DelayLine:
    """Every packet sent in this namespace waits `delay_ms` in user space.

    For kernels without netem (many minimal and cloud kernels): an
    iptables rule sends each outgoing packet to NFQUEUE, a thread holds it
    for the delay and lets it go (NF_ACCEPT), in arrival order. A segment is
    captured on `lo` when it is let go, as with netem; the capture's UDP
    markers wait in the same line, so its stop barrier still comes after
    every segment sent before it. Only inside a private namespace.
    """

    QUEUE = 4242

    def __init__(self, delay_ms: float, *, match: tuple = (), table: str = "filter", queue: int = QUEUE,
                 holding: bool = False):
        """`match`: iptables match arguments (default: every packet); `holding`:
        keep every queued packet until `release()` (a gate, see PacketGate)."""
        _require_private("queue packets")
        self.delay_ns = int(delay_ms * 1_000_000)
        self.queued = 0  # packets that entered the line so far
        self._holding = holding
        self._rule = ("-t", table, "OUTPUT", *match, "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")
        self.queue = queue
        self._seq = 0
        self._stop = False
        self._error: Optional[BaseException] = None
        self._wake_r, self._wake_w = os.pipe()
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        added = []
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind((0, 0))
            self._request(NFQNL_MSG_CONFIG, _nlattr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            self._request(NFQNL_MSG_CONFIG, _nlattr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
            for tool in ("iptables", "ip6tables"):
                _run_tool(tool, "-w", self._rule[0], self._rule[1], "-I", *self._rule[2:])
                added.append(tool)
        except BaseException:
            self._remove_rules(added)
            self._sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        import threading

        self._thread = threading.Thread(target=self._run, name="tcpteardown-delay-line", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Let every held packet go, in order; later ones pass after the delay only."""
        self._holding = False
        os.write(self._wake_w, b"r")

    def _remove_rules(self, tools) -> None:
        for tool in tools:
            subprocess.run([host.find_tool(tool) or tool, "-w", self._rule[0], self._rule[1], "-D", *self._rule[2:]],
                           capture_output=True)

    @staticmethod
    def problem() -> Optional[str]:
        for tool in ("iptables", "ip6tables"):
            if host.find_tool(tool) is None:
                return f"needs `{tool}` (apt-get install iptables) to queue segments"
        return None

    def __enter__(self) -> "DelayLine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._stop = True
        self.release()
        self._thread.join(5.0)
        self._remove_rules(("iptables", "ip6tables"))
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._error is not None:
            raise NamespaceError(f"the delay line failed: {self._error}")

    # -- netlink -------------------------------------------------------------------------
    def _message(self, kind: int, payload: bytes, flags: int) -> bytes:
        self._seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.queue) + payload
        return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, self._seq, 0) + body

    def _request(self, kind: int, payload: bytes) -> None:
        self._sock.send(self._message(kind, payload, NLM_F_REQUEST | NLM_F_ACK))
        data = self._sock.recv(65536)
        length, msg_type = struct.unpack_from("=IH", data)
        if msg_type == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, 16)[0]
            if code:
                raise NamespaceError(f"NFQUEUE configuration refused: {os.strerror(code)}")

    def _run(self) -> None:
        from collections import deque

        waiting: deque = deque()  # (due_ns or None while held, packet id), in arrival order
        try:
            while not self._stop or waiting:
                now = time.monotonic_ns()
                if not self._holding and waiting and waiting[-1][0] is None:
                    waiting = deque((now if due is None else due, packet) for due, packet in waiting)
                while waiting and waiting[0][0] is not None and waiting[0][0] <= now:
                    self._sock.send(self._message(NFQNL_MSG_VERDICT, _nlattr(
                        NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, waiting.popleft()[1])), NLM_F_REQUEST))
                due = waiting[0][0] if waiting else None
                timeout = (due - now) / 1e9 if due is not None else 0.05
                readable, _, _ = select.select([self._sock, self._wake_r], [], [], max(timeout, 0))
                if self._wake_r in readable:
                    os.read(self._wake_r, 64)
                if self._sock in readable:
                    data = self._sock.recv(1 << 20)
                    arrived = time.monotonic_ns()
                    for packet_id in _packet_ids(data):
                        waiting.append((None if self._holding else arrived + self.delay_ns, packet_id))
                        self.queued += 1
        except BaseException as exc:  # surfaced by close()
            self._error = exc


def _nlattr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _packet_ids(data: bytes):
    """Packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type = struct.unpack_from("=IH", data, offset)
        if length < 16:
            return
        if msg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET):
            at = offset + 20  # nlmsghdr + nfgenmsg
            while at + 4 <= offset + length:
                attr_len, attr_type = struct.unpack_from("=HH", data, at)
                if attr_len < 4:
                    break
                if attr_type & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, at + 4)[0]
                at += (attr_len + 3) & ~3
        offset += (length + 3) & ~3


class PacketGate(DelayLine):
    """Hold the packets an iptables match selects until `release()`.

    Where the tbf `Gate` holds everything on lo, this one holds only what
    `match` selects (say, the client's bare ACK that would complete a
    handshake), in the mangle table so it comes before any delay line.
    """

    def __init__(self, match: tuple):
        super().__init__(0, match=match, table="mangle", queue=DelayLine.QUEUE + 1, holding=True)
