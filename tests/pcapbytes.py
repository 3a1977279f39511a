"""Byte builders for reader tests (dpkt style): packets and capture files as literal bytes.

Kept deliberately independent of `tcpteardown.formats` (no shared code with
the reader under test) so a bug cannot cancel itself out.
"""

from __future__ import annotations

import ipaddress
import struct


def tcp(sport=40000, dport=80, seq=1000, ack=0, flags=0x02, window=65535, options=b"", payload=b""):
    options = options + b"\x00" * (-len(options) % 4)
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, window, 0, 0) + options + payload


def ipv4(src="10.0.0.1", dst="10.0.0.2", payload=b"", proto=6, options=b"", flags_fragment=0x4000,
         total=None):
    options = options + b"\x00" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    length = total if total is not None else ihl * 4 + len(payload)
    return (struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length, 1, flags_fragment, 64, proto, 0,
                        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options + payload)


def ipv6(src="2001:db8::1", dst="2001:db8::2", payload=b"", next_header=6, extensions=()):
    """`extensions`: (type, body) pairs walked in order before the TCP header."""
    chain = b""
    kinds = [kind for kind, _ in extensions] + [next_header]
    for index, (kind, body) in enumerate(extensions):
        following = kinds[index + 1]
        if kind == 44:  # fragment header: fixed 8 bytes
            chain += bytes([following, 0]) + body[:6].ljust(6, b"\0")
        else:
            body = body.ljust(6 + 8 * ((len(body) - 6 + 7) // 8) if len(body) > 6 else 6, b"\0")
            chain += bytes([following, (len(body) + 2) // 8 - 1]) + body
    first = kinds[0]
    return (struct.pack("!IHBB", 6 << 28, len(chain) + len(payload), first, 64)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + chain + payload)


def ethernet(payload, ethertype=0x0800, vlans=()):
    header = b"\x02" * 6 + b"\x04" * 6
    for tpid, tci in vlans:
        header += struct.pack("!HH", tpid, tci)
    return header + struct.pack("!H", ethertype) + payload


def pcap(packets, *, linktype=1, nanoseconds=False, big_endian=False, snaplen=262144, network=None):
    """`packets`: (seconds, fraction, data) or (seconds, fraction, data, orig_len)."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype if network is None else network)
    for item in packets:
        seconds, fraction, data = item[:3]
        orig_len = item[3] if len(item) > 3 else len(data)
        out += struct.pack(order + "IIII", seconds, fraction, len(data), orig_len) + data
    return out


# -- pcapng ---------------------------------------------------------------------------

def _pad(data):
    return data + b"\0" * (-len(data) % 4)


def options(pairs, order="<"):
    if not pairs:
        return b""
    out = b""
    for code, value in pairs:
        out += struct.pack(order + "HH", code, len(value)) + _pad(value)
    return out + struct.pack(order + "HH", 0, 0)


def block(kind, body, order="<", trailer=None):
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I",
                                                                         length if trailer is None else trailer)


def shb(order="<", comment=None):
    opts = options([(1, comment.encode())], order) if comment else b""
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + opts, order)


def idb(linktype, order="<", snaplen=0, tsresol=None, tsoffset=None):
    pairs = []
    if tsresol is not None:
        pairs.append((9, bytes([tsresol])))
    if tsoffset is not None:
        pairs.append((14, struct.pack(order + "q", tsoffset)))
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options(pairs, order), order)


def epb(interface, ticks, data, order="<", orig_len=None, comments=()):
    opts = options([(1, c.encode()) for c in comments], order)
    return block(6, struct.pack(order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                len(data) if orig_len is None else orig_len) + _pad(data) + opts, order)


def opb(interface, ticks, data, order="<"):
    return block(2, struct.pack(order + "HHIIII", interface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                len(data)) + _pad(data), order)


def spb(data, order="<", orig_len=None):
    return block(3, struct.pack(order + "I", len(data) if orig_len is None else orig_len) + _pad(data), order)


def custom(pen, payload, order="<", copyable=False):
    return block(0x00000BAD if copyable else 0x40000BAD, struct.pack(order + "I", pen) + payload, order)


def syn_frame(sport=40000, dport=80, seq=1000):
    return ethernet(ipv4(payload=tcp(sport, dport, seq=seq, flags=0x02)))
