"""Link layers, IP and TCP headers as the fast reader needs them: bytes in, numbers out.

One table (`LINKS`) says, for every link type tcpteardown knows, where the
network header starts (dpkt's `dltoff`, with the quirks spelled out) and
what a bundle names its interface; the object decoder here, the column
decoder (`pcap_columns`) and the bundle writer all read it; pure functions
walk IPv4/IPv6 to the TCP header and decode it into a `model.Segment`.

Never: open files, import scapy, or decode more than census and correlation
need (no checksums, no reassembly, no application layers).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Optional

from ..model import Endpoint, Segment, TcpFlags

# -- link types (LINKTYPE_* numbers, tcpdump.org/linktypes.html) ---------------

LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the *capturing host's* byte order
LINKTYPE_ETHERNET = 1  # Ethernet II, VLAN tags (802.1Q, 802.1ad, QinQ) allowed
LINKTYPE_FDDI = 10  # FDDI + 802.2 LLC/SNAP (old captures; bonus)
LINKTYPE_RAW_BSD12 = 12  # DLT_RAW as OpenBSD numbers it: bare IPv4/IPv6
LINKTYPE_RAW_BSD14 = 14  # DLT_RAW as BSD/OS numbers it: bare IPv4/IPv6
LINKTYPE_RAW = 101  # bare IPv4/IPv6, version from the first nibble
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113  # Linux "cooked" v1 (tcpdump -i any): 16 bytes, protocol at 14
LINKTYPE_NFLOG = 239  # Linux netfilter log: TLVs, the packet in NFULA_PAYLOAD
LINKTYPE_IPV4 = 228  # bare IPv4
LINKTYPE_IPV6 = 229  # bare IPv6
LINKTYPE_PKTAP = 258  # Apple PKTAP (tcpdump -i pktap / -k): a header naming interface and process, then the frame
LINKTYPE_LINUX_SLL2 = 276  # Linux "cooked" v2: 20 bytes, protocol at 0


@dataclass(frozen=True)
class Link:
    """One link type: how its frames lead to the IP header, and what a bundle calls its interface.

    `layout` names the way (both decoders branch on it, never on numbers):
    ethernet (ethertype at 12, VLAN tags walked), cooked (an ethertype at
    `ethertype_at`, IP after `header` bytes), family (a 4-byte address
    family, IP after it), raw (IP version from the first nibble), ipv4/ipv6
    (bare IP), nflog, pktap and fddi (walked per frame in Python only).
    """

    number: int
    name: str  # libpcap's DLT name, as `tcpdump -L` prints it
    layout: str
    header: int = 0  # bytes before the IP header, where fixed
    ethertype_at: int = 0
    interface: str = ""  # the interface name a bundle writes for frames of this type


LINKS = {link.number: link for link in (
    Link(LINKTYPE_NULL, "NULL", "family", header=4, interface="lo0"),  # macOS lo0
    Link(LINKTYPE_ETHERNET, "EN10MB", "ethernet", header=14, ethertype_at=12, interface="lo"),  # Linux lo
    Link(LINKTYPE_FDDI, "FDDI", "fddi", header=21, ethertype_at=19),
    Link(LINKTYPE_RAW_BSD12, "RAW(12)", "raw"),
    Link(LINKTYPE_RAW_BSD14, "RAW(14)", "raw"),
    Link(LINKTYPE_RAW, "RAW", "raw", interface="raw"),
    Link(LINKTYPE_LOOP, "LOOP", "family", header=4),
    Link(LINKTYPE_LINUX_SLL, "LINUX_SLL", "cooked", header=16, ethertype_at=14, interface="any"),
    Link(LINKTYPE_NFLOG, "NFLOG", "nflog"),
    Link(LINKTYPE_IPV4, "IPV4", "ipv4"),
    Link(LINKTYPE_IPV6, "IPV6", "ipv6"),
    Link(LINKTYPE_PKTAP, "PKTAP", "pktap"),  # a header of its own length, then a frame of the inner type
    Link(LINKTYPE_LINUX_SLL2, "LINUX_SLL2", "cooked", header=20, ethertype_at=0, interface="any"),
)}
LINK_NAMES = {number: link.name for number, link in LINKS.items()}
KNOWN_LINKTYPES = frozenset(LINKS)


def linktypes_with(layout: str) -> tuple[int, ...]:
    """The link type numbers of one layout, e.g. every "raw" one."""
    return tuple(number for number, link in LINKS.items() if link.layout == layout)


def interface_name(linktype: int) -> str:
    """The interface name a bundle writes for `linktype` (lo, lo0, any, ...)."""
    link = LINKS.get(linktype)
    return link.interface if link is not None and link.interface else f"linktype{linktype}"


ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLANS = frozenset({0x8100, 0x88A8, 0x9100})  # 802.1Q, 802.1ad, old QinQ

# Address families in NULL/LOOP headers. AF_INET6 differs per OS.
AF_INET = 2
AF_INET6 = frozenset({10, 24, 28, 30})  # Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, macOS/iOS 30

IPPROTO_TCP = 6
# IPv6 extension headers the reader walks over to find TCP (RFC 8200 4.1).
IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_DEST_OPTS = 0, 43, 44, 60
IPV6_AUTH = 51  # length in 4-byte units, RFC 4302
IPV6_NO_NEXT = 59

_U16 = struct.Struct("!H")
_U32LE = struct.Struct("<I")
_IPV4 = struct.Struct("!BxHxxHxB")  # version/ihl, total length, flags/fragment offset, protocol
_TCP = struct.Struct("!HHIIBBH")  # ports, seq, ack, data offset, flags, window
_PORTS = struct.Struct("!HH")


def network_offset(linktype: int, data: bytes) -> tuple[int, int]:
    """(offset of the IP header, IP version 4/6) in `data`; version 0 when not IP."""
    link = LINKS.get(linktype)
    if link is None:
        return 0, 0
    size, layout = len(data), link.layout
    if layout == "ethernet":
        offset = link.ethertype_at
        while size >= offset + 2:
            ethertype = _U16.unpack_from(data, offset)[0]
            if ethertype in ETHERTYPE_VLANS:
                offset += 4
                continue
            return offset + 2, _ethertype_version(ethertype)
        return 0, 0
    if layout == "family":
        if size < link.header:
            return 0, 0
        family = _U32LE.unpack_from(data, 0)[0]
        if family > 0xFFFF:  # written in the other byte order
            family = int.from_bytes(data[:4], "big")
        if family == AF_INET:
            return link.header, 4
        if family in AF_INET6:
            return link.header, 6
        return 0, 0
    if layout == "raw":
        return (0, data[0] >> 4) if size and data[0] >> 4 in (4, 6) else (0, 0)
    if layout in ("ipv4", "ipv6"):
        return 0, int(layout[-1])
    if layout == "cooked":
        if size < link.header:
            return 0, 0
        return link.header, _ethertype_version(_U16.unpack_from(data, link.ethertype_at)[0])
    if layout == "nflog":
        return _nflog_payload(data)
    if layout == "pktap":
        header = _pktap_header(data)
        if header is None:
            return 0, 0
        length, inner = header
        offset, version = network_offset(inner, data[length:]) if inner != LINKTYPE_PKTAP else (0, 0)
        return (length + offset, version) if version else (0, 0)
    if layout == "fddi":
        # frame control (1), destination (6), source (6), then LLC/SNAP AA AA 03 + OUI + ethertype
        if size >= link.header and data[13:16] == b"\xaa\xaa\x03":
            return link.header, _ethertype_version(_U16.unpack_from(data, link.ethertype_at)[0])
        return 0, 0
    raise AssertionError(f"link layout {layout!r} has no decoder")  # a new LINKS row needs one


# Apple's struct pktap_header (libpcap pcap/pktap.h, tcpdump print-pktap.c), in
# the capturing host's byte order: length of this header, record type
# (1: a packet), the inner frame's DLT, interface name[24], flags, protocol
# family, link header and trailer lengths, pid @52, command name[20] @56,
# service class, interface type and unit, effective pid @84, its name[20] @88.
_PKTAP_MIN = 108
_PKTAP_PACKET = 1


def _pktap_order(data: bytes) -> str:
    return "<" if _U32LE.unpack_from(data, 0)[0] <= 0xFFFF else ">"


def _pktap_header(data: bytes) -> Optional[tuple[int, int]]:
    """(header length, inner link type) of a PKTAP packet record, None otherwise."""
    if len(data) < _PKTAP_MIN:
        return None
    length, rectype, dlt = struct.unpack_from(_pktap_order(data) + "III", data, 0)
    if rectype != _PKTAP_PACKET or not _PKTAP_MIN <= length <= len(data):
        return None
    return length, dlt


def pktap_process(data: bytes) -> Optional[tuple[int, str]]:
    """(pid, command name) a PKTAP header names, or None when it names none (pid -1 or 0)."""
    if _pktap_header(data) is None:
        return None
    order = _pktap_order(data)
    pid = struct.unpack_from(order + "i", data, 52)[0]
    name = data[56:76].split(b"\0", 1)[0].decode("utf-8", "replace")
    if pid <= 0:
        pid = struct.unpack_from(order + "i", data, 84)[0]
        name = data[88:108].split(b"\0", 1)[0].decode("utf-8", "replace")
    return (pid, name) if pid > 0 else None


def _ethertype_version(ethertype: int) -> int:
    return 4 if ethertype == ETHERTYPE_IPV4 else 6 if ethertype == ETHERTYPE_IPV6 else 0


def _nflog_payload(data: bytes) -> tuple[int, int]:
    # Header: family (1), version (1), resource id (2, big endian); then TLVs
    # whose length and type are in *host* byte order (little endian on x86),
    # each padded to 4 bytes. NFULA_PAYLOAD (9) holds the IP packet.
    if len(data) < 4:
        return 0, 0
    family = data[0]
    offset = 4
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("<HH", data, offset)
        if length < 4 or offset + length > len(data):  # a big-endian capturing host
            length, kind = struct.unpack_from(">HH", data, offset)
        if length < 4:
            return 0, 0
        if kind == 9:
            version = 4 if family == AF_INET else 6 if family in AF_INET6 else 0
            return offset + 4, version
        offset += (length + 3) & ~3
    return 0, 0


# -- IP and TCP ------------------------------------------------------------------

class NotTcp(Exception):
    """Raised inside the decoder for frames that carry no decodable TCP header."""


def _address_text(raw: bytes, _known: dict = {}) -> str:
    """An IPv4 (4 bytes) or IPv6 (16) address as text; each distinct one is formatted once
    (a capture has few hosts, and formatting one costs as much as decoding its segment)."""
    text = _known.get(raw)
    if text is None:
        text = (ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw)).compressed
        if len(_known) < 100_000:  # bounded: a scan of a whole address space must not grow it forever
            _known[raw] = text
    return text


def _flags(value: int, _known: dict = {}) -> TcpFlags:
    """TcpFlags(value), each of the 256 made once (making one is a tenth of decoding a segment)."""
    flags = _known.get(value)
    if flags is None:
        flags = _known[value] = TcpFlags(value)
    return flags


def tcp_offset(data: bytes, offset: int, version: int) -> tuple[int, int, str, str, bool]:
    """Walk the IP header at `offset`: (TCP header offset, TCP length, src, dst, is_fragment).

    TCP length is what the IP header says (header + payload), not what was captured.
    Raises NotTcp when the packet is not TCP or too short to tell.
    """
    size = len(data)
    if version == 4:
        if size < offset + 20:
            raise NotTcp
        ver_ihl, total, frag, proto = _IPV4.unpack_from(data, offset)
        ihl = (ver_ihl & 0x0F) * 4
        if ver_ihl >> 4 != 4 or ihl < 20 or proto != IPPROTO_TCP:
            raise NotTcp
        src = _address_text(data[offset + 12:offset + 16])
        dst = _address_text(data[offset + 16:offset + 20])
        # TSO/GRO captures carry total length 0 for super-segments: use what was captured.
        length = (total if total else size - offset) - ihl
        return offset + ihl, length, src, dst, bool(frag & 0x3FFF)
    if version == 6:
        if size < offset + 40:
            raise NotTcp
        if data[offset] >> 4 != 6:
            raise NotTcp
        payload = _U16.unpack_from(data, offset + 4)[0]
        next_header = data[offset + 6]
        src = _address_text(data[offset + 8:offset + 24])
        dst = _address_text(data[offset + 24:offset + 40])
        here = offset + 40
        end = here + payload if payload else size  # jumbograms and TSO: payload length 0
        fragment = False
        for _ in range(16):  # bounded walk over extension headers
            if next_header == IPPROTO_TCP:
                return here, end - here, src, dst, fragment
            if next_header in (IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_DEST_OPTS, IPV6_AUTH, IPV6_FRAGMENT):
                if size < here + 8:
                    raise NotTcp
                if next_header == IPV6_FRAGMENT:
                    fragment = fragment or bool(_U16.unpack_from(data, here + 2)[0] & 0xFFF9)
                    length = 8
                elif next_header == IPV6_AUTH:
                    length = (data[here + 1] + 2) * 4
                else:
                    length = (data[here + 1] + 1) * 8
                next_header = data[here]
                here += length
                continue
            raise NotTcp
    raise NotTcp


def decode_options(raw: bytes) -> tuple[tuple[str, object], ...]:
    """TCP options by name, in wire order, NOP and EOL dropped."""
    named = []
    i, size = 0, len(raw)
    while i < size:
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= size:
            break
        length = raw[i + 1]
        if length < 2 or i + length > size:
            break
        value = raw[i + 2:i + length]
        if kind == 2 and length == 4:
            named.append(("MSS", _U16.unpack(value)[0]))
        elif kind == 3 and length == 3:
            named.append(("WS", value[0]))
        elif kind == 4 and length == 2:
            named.append(("SACK_PERM", None))
        elif kind == 8 and length == 10:
            named.append(("TS", struct.unpack("!II", value)))
        elif kind == 5 and length >= 10 and (length - 2) % 8 == 0:
            edges = struct.unpack(f"!{(length - 2) // 4}I", value)
            named.append(("SACK", tuple(zip(edges[0::2], edges[1::2]))))
        else:
            named.append((_OPTION_NAMES.get(kind, f"OPT{kind}"), bytes(value)))
        i += length
    return tuple(named)


_OPTION_NAMES = {6: "ECHO", 7: "ECHOREPLY", 19: "MD5", 28: "UTO", 29: "TCP_AO", 30: "MPTCP", 34: "TFO"}


def peek_tcp(linktype: int, data: bytes) -> Optional[tuple[Endpoint, Endpoint, int]]:
    """(src, dst, TCP flags as an int) of a frame's TCP segment, or None: the header walk
    without building a Segment (watch's flight recorder keys every packet, decodes few)."""
    found = _whole_tcp_header(linktype, data)
    if found is None:
        return None
    tcp, src, dst = found[2], found[4], found[5]
    sport, dport = _PORTS.unpack_from(data, tcp)
    return Endpoint(src, sport), Endpoint(dst, dport), data[tcp + 13]


def _whole_tcp_header(linktype: int, data: bytes) -> Optional[tuple[int, int, int, int, str, str]]:
    """(IP offset, IP version, TCP offset, TCP length, src, dst) when `data`
    holds a whole TCP header (not in a later fragment), else None."""
    offset, version = network_offset(linktype, data)
    if not version:
        return None
    try:
        tcp, tcp_len, src, dst, fragment = tcp_offset(data, offset, version)
    except NotTcp:
        return None
    if fragment or len(data) < tcp + 20:
        return None
    return offset, version, tcp, tcp_len, src, dst


def decode_segment(frame: int, time_ns: int, linktype: int, data: bytes) -> Optional[Segment]:
    """The TCP segment in one captured frame, or None when it carries none.

    Fragments (other than a first fragment with a whole TCP header) and
    frames cut before the TCP flags are None: they are counted, not decoded.
    """
    found = _whole_tcp_header(linktype, data)
    if found is None:
        return None
    _offset, _version, tcp, tcp_len, src, dst = found
    sport, dport, seq, ack, data_offset, flags, window = _TCP.unpack_from(data, tcp)
    header_len = (data_offset >> 4) * 4
    options = decode_options(data[tcp + 20:min(tcp + header_len, len(data))]) if header_len > 20 else ()
    return Segment(
        frame=frame,
        time_ns=time_ns,
        src=Endpoint(src, sport),
        dst=Endpoint(dst, dport),
        flags=_flags(flags),
        seq=seq,
        ack=ack,
        window=window,
        payload_len=max(tcp_len - header_len, 0),
        options=options,
    )


# -- what a frame says about the stack that sent it (for formats.os_guess) ------

# p0f's names for option kinds in a layout (p0f 3, doc/README section 5).
_LAYOUT_NAMES = {1: "nop", 2: "mss", 3: "ws", 4: "sok", 5: "sack", 8: "ts"}


def option_layout(raw: bytes) -> str:
    """TCP options in wire order as p0f writes them, NOP and EOL included:
    ``mss,nop,ws,nop,nop,ts,sok,eol+1`` (``eol+N``: N bytes follow the EOL)."""
    kinds = []
    i, size = 0, len(raw)
    while i < size:
        kind = raw[i]
        if kind == 0:
            kinds.append(f"eol+{size - i - 1}")
            break
        if kind == 1:
            kinds.append("nop")
            i += 1
            continue
        if i + 1 >= size or raw[i + 1] < 2:
            kinds.append("?")
            break
        kinds.append(_LAYOUT_NAMES.get(kind, f"?{kind}"))
        i += raw[i + 1]
    return ",".join(kinds)


def stack_signature(linktype: int, data: bytes) -> Optional[tuple[int, str]]:
    """(IPv4 TTL or IPv6 hop limit, TCP option layout) of the TCP segment in
    one frame; None when it carries no whole TCP header."""
    found = _whole_tcp_header(linktype, data)
    if found is None:
        return None
    offset, version, tcp, *_ = found
    ttl = data[offset + 8] if version == 4 else data[offset + 7]
    header_len = (data[tcp + 12] >> 4) * 4
    return ttl, option_layout(data[tcp + 20:min(tcp + header_len, len(data))])


def null_family(linktype: int, data: bytes) -> Optional[int]:
    """The address family in a NULL/LOOP link header (30 is AF_INET6 on macOS)."""
    if linktype not in (LINKTYPE_NULL, LINKTYPE_LOOP) or len(data) < 4:
        return None
    family = _U32LE.unpack_from(data, 0)[0]
    return int.from_bytes(data[:4], "big") if family > 0xFFFF else family


def zero_macs(linktype: int, data: bytes) -> bool:
    """An Ethernet frame whose both MAC addresses are zero: Linux's `lo`."""
    return linktype == LINKTYPE_ETHERNET and len(data) >= 12 and not any(data[:12])
