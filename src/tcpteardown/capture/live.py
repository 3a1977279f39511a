"""Live capture of a scenario's segments on the loopback interface, with scapy.

Every segment of the watched ports exactly once, with the kernel's
timestamp, and nothing missed at either end:

- Once: a packet socket on Linux `lo` sees each packet twice (the outgoing
  copy and the incoming one). We ask the kernel to drop the outgoing copy
  (PACKET_IGNORE_OUTGOING, Linux 4.20+) and, where that option is missing,
  drop it ourselves by the packet type the kernel reports.
- Nothing missed: start and stop are barriers. A UDP marker datagram goes to
  a port of our own; capture has started when the sniffer has seen the start
  marker, and it stops only after it has seen the stop marker, which was
  sent after the scenario's last call returned.
- Filtering: with libpcap, scapy compiles the filter to BPF and the kernel
  applies it; without libpcap every packet is read and filtered in Python.
  `LiveCapture.filter_location` says which happened. Packets that were
  queued before the filter was attached are checked again here (a cheap
  header walk, never scapy), so another program's loopback TCP never leaks in.
- Keeping up: the socket buffer is as large as the kernel allows (64 MiB
  with SO_RCVBUFFORCE as root, else up to net.core.rmem_max), the reader
  drains it in batches without a select() per packet, and whatever the kernel
  still had to drop is counted (PACKET_STATISTICS) in `kernel_drops`, never
  hidden. Under load, prefer the tcpdump backend (`capture.backends`).

Timestamps are read from SO_TIMESTAMPNS ourselves (scapy turns them into a
float, which loses nanoseconds at today's epoch).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import Iterable, Optional

from ..errors import NoCapturePrivilege, UserError
from ..model import Frame
from . import platform as host
from .marker import PREFIX, Lifecycle, capture_filter, marker_token, open_marker

SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h, Linux 4.20+
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33  # like SO_RCVBUF, past net.core.rmem_max, with CAP_NET_ADMIN
SCM_TIMESTAMPNS = SO_TIMESTAMPNS

BARRIER_SECONDS = 5.0  # how long a marker may take to show up before we give up
RCVBUF_BYTES = 8 << 20  # asked for without privilege (the kernel caps it at rmem_max)
RCVBUF_FORCE_BYTES = 64 << 20  # asked for as root: ~50,000 small loopback packets
BATCH_PACKETS = 1024  # packets read per wake-up before looking at the stop flag again


class LiveCapture(Lifecycle):
    """Capture TCP on `ports` (either address family) on the loopback interface;
    every TCP port when `ports` is empty.

    Use as a context manager, or `start()` then `stop() -> tuple[Frame, ...]`.
    """

    def __init__(self, ports: Iterable[int], *, iface: Optional[str] = None):
        self.ports = sorted(set(ports or ()))
        self._port_set = frozenset(self.ports)
        self.iface = iface or host.loopback_interface()
        self.frames: list[Frame] = []
        self.filter_location = "none"
        self.dedup_location = "none"
        self.kernel_drops = 0
        self.kernel_packets: Optional[int] = None  # packets the socket was offered (PACKET_STATISTICS)
        self.rcvbuf_bytes: Optional[int] = None  # the buffer the kernel granted
        self.linktype = 1
        self._marker_sock: Optional[socket.socket] = None
        self._sniffer = None
        self._raw: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop_token: Optional[bytes] = None
        self._seen_tokens: set = set()
        self._seen = threading.Condition()
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._wake: Optional[tuple[int, int]] = None  # a pipe: the reader's select() ends at once on stop

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._marker_sock = open_marker()
        self._marker_port = self._marker_sock.getsockname()[1]
        try:
            self._wake = os.pipe()
            self._open_sniffer()
            self._thread = threading.Thread(target=self._read_loop, name="tcpteardown-capture", daemon=True)
            self._thread.start()
            self._barrier(b"start")
        except BaseException:
            self._shutdown()
            raise

    def stop(self) -> tuple[Frame, ...]:
        """Wait for the stop marker, then close everything. Idempotent."""
        if self._thread is None:
            return tuple(self.frames)
        try:
            if self._error is None:
                self._barrier(b"stop")
        finally:
            self._shutdown()
        if self._error is not None:
            raise UserError(f"live capture on {self.iface} failed: {self._error}")
        return tuple(self.frames)

    def describe(self) -> str:
        buffer = f", buffer {self.rcvbuf_bytes >> 10} KiB" if self.rcvbuf_bytes else ""
        return (f"scapy on {self.iface}, filter in {self.filter_location}, "
                f"outgoing copies dropped in {self.dedup_location}{buffer}, kernel drops {self.kernel_drops}")

    # -- internals ---------------------------------------------------------------
    def _bpf(self) -> str:
        return capture_filter(self.ports, self._marker_port)

    def _open_sniffer(self) -> None:
        import scapy.arch  # noqa: F401  (selects the platform's sockets: conf.L2listen)
        import scapy.config
        import scapy.layers.inet  # noqa: F401  (registers link types: lo is ARPHRD_LOOPBACK -> Ether)
        import scapy.layers.inet6  # noqa: F401
        from scapy.error import Scapy_Exception

        conf = scapy.config.conf
        try:
            self._sniffer = conf.L2listen(iface=self.iface, filter=self._bpf())
            self.filter_location = "kernel (BPF compiled by libpcap)"
        except (Scapy_Exception, ImportError, OSError) as exc:
            if isinstance(exc, PermissionError):
                raise NoCapturePrivilege(host.no_capture_privilege_message()) from None
            self._sniffer = conf.L2listen(iface=self.iface)
            self.filter_location = "Python (libpcap unavailable to compile BPF)"
        self.linktype = conf.l2types.layer2num.get(self._sniffer.LL, 1)
        raw = getattr(self._sniffer, "ins", None)
        self._raw = raw if isinstance(raw, socket.socket) and host.IS_LINUX else None
        if self._raw is not None:
            self.rcvbuf_bytes = _grow_buffer(self._raw)
            # Drops so far were of packets queued before the BPF filter was
            # attached, into the default-sized buffer: other programs' traffic,
            # before our capture window. Reading the statistics resets them.
            _packet_statistics(self._raw)
            self._raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                self._raw.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self.dedup_location = "kernel (PACKET_IGNORE_OUTGOING)"
            except OSError:
                self.dedup_location = "Python (packet type PACKET_OUTGOING)"
        else:
            self.dedup_location = "not needed (BPF sees each loopback packet once)"

    def _read_loop(self) -> None:
        try:
            while not self._done.is_set():
                if self._raw is not None:
                    for packet in self._receive_batch(timeout=0.05):
                        self._keep(*packet)
                    continue
                packet = self._receive(timeout=0.05)
                if packet is not None:
                    self._keep(*packet)
        except BaseException as exc:  # surfaced by stop(); a capture thread must not die silently
            self._error = exc
            with self._seen:
                self._seen.notify_all()

    def _receive(self, timeout: float):
        """One packet as (time_ns, bytes, orig_len), or None, through scapy's
        own socket (macOS BPF devices; Linux uses `_receive_batch`)."""
        readable, _, _ = select.select([self._sniffer, self._wake[0]], [], [], timeout)
        if self._sniffer not in readable:
            return None
        _cls, data, ts = self._sniffer.recv_raw()
        if data is None:
            return None
        return (int(round(float(ts) * 1e9)) if ts else time.time_ns()), bytes(data), len(data)

    def _receive_batch(self, timeout: float) -> list:
        """Up to BATCH_PACKETS packets as (time_ns, bytes, orig_len): one
        select(), then non-blocking reads until the buffer is empty."""
        readable, _, _ = select.select([self._raw, self._wake[0]], [], [], timeout)
        if self._raw not in readable:
            return []
        batch = []
        space = socket.CMSG_SPACE(16)
        for _ in range(BATCH_PACKETS):
            try:
                data, ancillary, _flags, address = self._raw.recvmsg(65536, space, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            if address[2] == PACKET_OUTGOING:
                continue  # the outgoing copy the kernel could not drop for us
            batch.append((_stamp(ancillary), data, len(data)))
        return batch

    def _keep(self, time_ns: int, data: bytes, orig_len: int) -> None:
        token = self._marker_token(data)
        if token is not None:
            with self._seen:
                self._seen_tokens.add(token)
                self._seen.notify_all()
            return
        if not self._wanted(data):
            return  # not ours: no BPF, or queued before the BPF was attached
        self.frames.append(Frame(time_ns, self.linktype, data, orig_len))

    def _decode(self, data: bytes):
        return self._sniffer.LL(data)

    def _marker_token(self, data: bytes) -> Optional[bytes]:
        from scapy.layers.inet import UDP

        if PREFIX not in data:
            return None
        packet = self._decode(data)
        if UDP in packet and packet[UDP].dport == self._marker_port:
            return bytes(packet[UDP].payload)
        return None

    def _wanted(self, data: bytes) -> bool:
        """TCP on one of our ports (any TCP when we watch all), by a header walk."""
        from ..formats.pcap_links import decode_segment

        try:
            segment = decode_segment(0, 0, self.linktype, data)
        except (ValueError, struct.error):
            return False
        if segment is None:
            return False
        return not self._port_set or segment.src.port in self._port_set or segment.dst.port in self._port_set

    def _barrier(self, phase: bytes) -> None:
        """Send markers until the reader has seen one: proof that everything
        the kernel delivered before it has been read too."""
        token = marker_token(phase)
        deadline = time.monotonic() + BARRIER_SECONDS
        with self._seen:
            while token not in self._seen_tokens:
                if self._error is not None:
                    return
                if time.monotonic() > deadline:
                    raise UserError(f"live capture on {self.iface} never saw its own {phase.decode()} marker "
                                    f"within {BARRIER_SECONDS:.0f} s; is the interface up?")
                self._marker_sock.sendto(token, ("127.0.0.1", self._marker_port))
                self._seen.wait(0.05)

    def _shutdown(self) -> None:
        self._done.set()
        if self._wake is not None and self._thread is not None:
            os.write(self._wake[1], b"x")  # ends the reader's select(): no poll interval to wait out
        if self._thread is not None:
            self._thread.join(timeout=BARRIER_SECONDS)
            self._thread = None
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        if self._raw is not None:
            self.kernel_packets, self.kernel_drops = _packet_statistics(self._raw)
        if self._sniffer is not None:
            self._sniffer.close()
            self._sniffer = None
        if self._marker_sock is not None:
            self._marker_sock.close()
            self._marker_sock = None


def _packet_statistics(sock: socket.socket) -> tuple[Optional[int], int]:
    """(packets offered, packets dropped for lack of buffer) since the socket
    opened (PACKET_STATISTICS; reading it resets the kernel's counters)."""
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    except OSError:
        return None, 0
    packets, drops = struct.unpack("II", raw)
    return packets, drops


def _grow_buffer(sock: socket.socket) -> Optional[int]:
    """Ask for the largest receive buffer we may have; the size granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_FORCE_BYTES)
    except OSError:  # EPERM without CAP_NET_ADMIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return None


def _stamp(ancillary) -> int:
    """The kernel's SO_TIMESTAMPNS stamp in `ancillary`, or now."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanos = struct.unpack("qq", payload[:16])
            return seconds * 1_000_000_000 + nanos
    return time.time_ns()
