"""The one column batch type: TCP header fields of consecutive frames, one numpy array per field.

Made by the fast capture reader (`formats.pcap_columns`) and, for Segments
already in memory, by `batch_from_segments`; consumed by `analysis.census`.
Plain data next to the model: no I/O, no decoding.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .model import Segment

__all__ = ["TcpBatch", "IPV4_MARK", "address_halves", "batch_from_segments"]

# An IPv4 address is stored as (IPV4_MARK, address): no IPv6 address starts with 64 one bits.
IPV4_MARK = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class TcpBatch:
    """TCP header fields of consecutive frames (equal-length arrays).

    Addresses are two uint64 halves of the 128-bit address; IPv4 is
    (IPV4_MARK, address). `packets` counts every frame the batch covered,
    TCP or not; `last_frame` is the last of them. `time_ns` is int64, or an
    object array of Python ints when a garbage time overflows int64.
    """

    frame: np.ndarray  # int64
    time_ns: np.ndarray  # int64 (object when out of int64 range)
    flags: np.ndarray  # uint8
    seq: np.ndarray  # uint32
    ack: np.ndarray  # uint32
    payload_len: np.ndarray  # int64
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    sport: np.ndarray  # int64
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    dport: np.ndarray
    packets: int
    last_frame: int = 0
    end_offset: int = 0  # file offset reached, for progress

    def __len__(self) -> int:
        return len(self.frame)


@functools.lru_cache(maxsize=1 << 16)  # a recording's hosts repeat: ipaddress parsing was 80 % of a census of Segments
def address_halves(host: str) -> tuple[int, int]:
    """(hi, lo) of an address as TcpBatch stores it."""
    address = ipaddress.ip_address(host)
    if address.version == 4:
        return int(IPV4_MARK), int(address)
    value = int(address)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def batch_from_segments(segments: Sequence[Segment], packets: Optional[int] = None) -> TcpBatch:
    """A TcpBatch of Segments (e.g. a Recording's), in the order given."""
    src = [address_halves(s.src.host) for s in segments]
    dst = [address_halves(s.dst.host) for s in segments]
    u64 = np.uint64
    times = [s.time_ns for s in segments]
    return TcpBatch(
        frame=np.array([s.frame for s in segments], dtype=np.int64),
        time_ns=np.array(times, dtype=object if any(not -2**63 <= t < 2**63 for t in times) else np.int64),
        flags=np.array([int(s.flags) & 0xFF for s in segments], dtype=np.uint8),
        seq=np.array([s.seq for s in segments], dtype=np.uint32),
        ack=np.array([s.ack for s in segments], dtype=np.uint32),
        payload_len=np.array([s.payload_len for s in segments], dtype=np.int64),
        src_hi=np.array([h for h, _ in src], dtype=u64), src_lo=np.array([lo for _, lo in src], dtype=u64),
        sport=np.array([s.src.port for s in segments], dtype=np.int64),
        dst_hi=np.array([h for h, _ in dst], dtype=u64), dst_lo=np.array([lo for _, lo in dst], dtype=u64),
        dport=np.array([s.dst.port for s in segments], dtype=np.int64),
        packets=len(segments) if packets is None else packets,
        last_frame=max((s.frame for s in segments), default=0),
    )
