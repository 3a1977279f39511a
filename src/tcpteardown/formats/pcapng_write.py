"""A small pcapng writer: the blocks a bundle needs, nothing more.

Section Header, one Interface Description per link type (nanosecond
timestamps), Enhanced Packet Blocks with comments, and one Custom Block.
Layout and option codes from the pcapng specification
(draft-ietf-opsawg-pcapng): every block is type, total length, body padded
to 32 bits, total length again. Little-endian, as most writers do.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterable, Sequence

SHB = 0x0A0D0D0A
IDB = 0x00000001
EPB = 0x00000006
CUSTOM_NOCOPY = 0x40000BAD  # custom block that must not be copied into edited files
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_HARDWARE, SHB_OS, SHB_USERAPPL = 2, 3, 4
IF_NAME, IF_TSRESOL = 2, 9

# RFC 5612 reserves enterprise number 32473 for documentation and examples;
# tcpteardown has no registered PEN, and readers match the payload's own tag.
PEN = 32473


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def options(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    out = b""
    for code, value in pairs:
        out += struct.pack("<HH", code, len(value)) + _pad(value)
    return out + struct.pack("<HH", OPT_ENDOFOPT, 0) if out else b""


def block(block_type: int, body: bytes) -> bytes:
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def section_header(hardware: str, os_name: str, application: str, comment: str) -> bytes:
    opts = [(SHB_HARDWARE, hardware.encode()), (SHB_OS, os_name.encode()),
            (SHB_USERAPPL, application.encode())]
    if comment:
        opts.insert(0, (OPT_COMMENT, comment.encode()))
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + options(opts)
    return block(SHB, body)


def interface(linktype: int, name: str, snaplen: int = 262144) -> bytes:
    body = struct.pack("<HHI", linktype, 0, snaplen)
    body += options([(IF_NAME, name.encode()), (IF_TSRESOL, bytes([9]))])  # 10^-9 s
    return block(IDB, body)


def enhanced_packet(interface_id: int, time_ns: int, data: bytes, orig_len: int,
                    comments: Sequence[str] = ()) -> bytes:
    body = struct.pack("<IIIII", interface_id, time_ns >> 32, time_ns & 0xFFFFFFFF, len(data), orig_len)
    body += _pad(data) + options((OPT_COMMENT, c.encode()) for c in comments)
    return block(EPB, body)


def custom(payload: bytes, pen: int = PEN) -> bytes:
    return block(CUSTOM_NOCOPY, struct.pack("<I", pen) + payload)


def write_all(out: BinaryIO, blocks: Iterable[bytes]) -> None:
    for chunk in blocks:
        out.write(chunk)
