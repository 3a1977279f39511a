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


OPTION_MAX = 0xFFFF  # an option's length field is 16 bits
REPEATABLE = {OPT_COMMENT}  # options the specification allows more than once in a block


def options(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    """Encoded options. A value longer than an option can hold is split into
    several options of the same code where the specification allows repeats
    (comments: Wireshark shows them one after another), never dropped;
    elsewhere it is an error of the caller."""
    out = []
    for code, value in pairs:
        for piece in _pieces(code, value):
            out.append(struct.pack("<HH", code, len(piece)) + _pad(piece))
    return b"".join(out) + struct.pack("<HH", OPT_ENDOFOPT, 0) if out else b""


def _pieces(code: int, value: bytes) -> list[bytes]:
    if len(value) <= OPTION_MAX:
        return [value]
    if code not in REPEATABLE:
        raise ValueError(f"pcapng option {code} is {len(value)} bytes; at most {OPTION_MAX} fit and it may not repeat")
    pieces = []
    while value:
        cut = min(len(value), OPTION_MAX)
        while cut < len(value) and value[cut] & 0xC0 == 0x80:  # never split a UTF-8 character
            cut -= 1
        pieces.append(value[:cut])
        value = value[cut:]
    return pieces


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
