"""Which OS captured this, and which OS each endpoint runs: told by the packets.

A plain capture carries no calls, so the rules that turn its segments into
predicted errnos (`analysis.predict`) must know whose kernel sent them. Three
kinds of evidence, each stated in words so `explain` can show them:

- the capturing host: the pcapng section header's `shb_os`, a bundle's own
  metadata, the link type (macOS `lo0` is DLT_NULL with AF_INET6 = 30, FreeBSD
  writes 28; Linux `lo` is Ethernet with zero MACs; SLL/SLL2 and NFLOG exist
  only on Linux; PKTAP 258 only on Apple's tcpdump);
- each endpoint's SYN and SYN/ACK: the TCP option layout, exactly (p0f 3's
  `p0f.fp`: XNU `mss,nop,ws,nop,nop,ts,sok,eol+1`, Linux `mss,sok,ts,nop,ws`,
  FreeBSD `mss,nop,ws,sok,ts`, Windows `mss,nop,ws,nop,nop,sok`),
  the initial TTL (64 on Unix stacks, 128 on Windows) and, on loopback, the
  MSS its MTU implies (lo0's 16384: 16344 over IPv4, 16324 over IPv6;
  Linux lo's 65536: 65495 and 65476).

`guess_os(recording)` weighs them (`WEIGHTS`) into one `OsGuess`: the name
(linux, darwin, freebsd, windows or unknown), the evidence, the OS of each
host address and of the capturing host. `override` (the CLI's `--os`) wins
and says so. Pure: reads the recording's frames and metadata, no files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..model import Recording, TcpFlags
from . import pcap_links as links

__all__ = ["OsGuess", "OS_NAMES", "DISPLAY", "guess_os", "display_name"]

OS_NAMES = ("linux", "darwin", "freebsd", "windows", "unknown")
# The names errnos.py and Metadata.os use.
DISPLAY = {"linux": "Linux", "darwin": "Darwin", "freebsd": "FreeBSD", "windows": "Windows"}

# How much each kind of evidence counts; the host's own word is strongest.
WEIGHTS = {"shb_os": 4, "metadata": 4, "link": 3, "layout": 2, "mss": 2, "ttl": 1}

# Option layouts, exact, from p0f 3's p0f.fp: [tcp:request] for a SYN, and
# [tcp:response] for a SYN/ACK (which echoes what the SYN offered, so only
# the layouts one OS alone sends are listed: Linux and Windows both answer
# `mss,nop,nop,sok`, XNU and FreeBSD both `mss,nop,ws,nop,nop,ts`).
SYN_LAYOUTS: dict[str, str] = {
    "mss,nop,ws,nop,nop,ts,sok,eol+1": "darwin",  # p0f "Mac OS X"
    "mss,sok,ts,nop,ws": "linux",  # p0f "Linux 3.11 and newer"
    "mss,nop,nop,sok,nop,ws": "linux",  # p0f "Linux (no timestamps)"
    "mss,nop,ws,sok,ts": "freebsd",  # p0f "FreeBSD 9.x or newer"
    "mss,nop,ws,nop,nop,sok": "windows",  # p0f "Windows 7 or 8", "NT kernel"
    "mss,nop,nop,sok": "windows",  # p0f "Windows NT kernel" (no window scaling)
}
SYNACK_LAYOUTS: dict[str, str] = {
    "mss,nop,ws,nop,nop,ts,sok,eol+1": "darwin",
    "mss,nop,ws,sok,eol+1": "darwin",
    "mss,sok,ts,nop,ws": "linux",
    "mss,nop,nop,sok,nop,ws": "linux",
    "mss,nop,nop,ts,nop,ws": "linux",
    "mss,nop,ws,sok,ts": "freebsd",
    "mss,nop,ws,nop,nop,sok": "windows",
}

# MSS on a loopback interface: its MTU less the IP and TCP headers.
LOOPBACK_MSS = {16344: ("darwin", "lo0 MTU 16384 over IPv4"), 16324: ("darwin", "lo0 MTU 16384 over IPv6"),
                65495: ("linux", "lo MTU 65536 over IPv4"), 65476: ("linux", "lo MTU 65536 over IPv6")}

# Address families in a NULL/LOOP header that only one OS writes.
NULL_FAMILIES = {30: "darwin", 28: "freebsd"}
LINUX_ONLY_LINKS = {links.LINKTYPE_LINUX_SLL: "Linux cooked capture (SLL, tcpdump -i any)",
                    links.LINKTYPE_LINUX_SLL2: "Linux cooked capture v2 (SLL2, tcpdump -i any)",
                    links.LINKTYPE_NFLOG: "Linux netfilter log (NFLOG)"}


@dataclass(frozen=True)
class OsGuess:
    name: str  # one of OS_NAMES
    evidence: tuple[str, ...]
    capturing_host: str = "unknown"
    hosts: dict = field(default_factory=dict)  # IP address -> OS name, where its segments show it
    overridden: bool = False

    @property
    def display(self) -> Optional[str]:
        """"Linux", "Darwin"...: the spelling errnos and Metadata.os use; None when unknown."""
        return DISPLAY.get(self.name)

    def os_of(self, host: str) -> str:
        """The OS of one address: its own evidence, else the overall name."""
        return self.hosts.get(host, self.name)


def display_name(name: str) -> Optional[str]:
    return DISPLAY.get(name)


def _name_from_text(text: str) -> Optional[str]:
    lowered = text.lower()
    for needle, name in (("darwin", "darwin"), ("mac os", "darwin"), ("macos", "darwin"), ("linux", "linux"),
                         ("freebsd", "freebsd"), ("windows", "windows")):
        if needle in lowered:
            return name
    return None


def _host_evidence(recording: Recording) -> list[tuple[str, str, str]]:
    """(name, weight key, sentence) for the capturing host."""
    found = []
    meta = recording.metadata
    for key, value in meta.extra:
        if key == "shb_os" and _name_from_text(value):
            found.append((_name_from_text(value), "shb_os", f"pcapng section header: shb_os {value!r}"))
    if meta.os and _name_from_text(meta.os):
        found.append((_name_from_text(meta.os), "metadata",
                      f"tcpteardown bundle recorded on {meta.os} {meta.kernel or ''}".rstrip()))
    families, linktypes, zero = set(), set(), False
    for frame in recording.frames:
        linktypes.add(frame.linktype)
        family = links.null_family(frame.linktype, frame.data)
        if family is not None:
            families.add(family)
        zero = zero or links.zero_macs(frame.linktype, frame.data)
    for family in sorted(families):
        if family in NULL_FAMILIES:
            found.append((NULL_FAMILIES[family], "link",
                          f"DLT_NULL loopback with AF_INET6 = {family} (only {DISPLAY[NULL_FAMILIES[family]]} "
                          "writes that number)"))
    for linktype in sorted(linktypes):
        if linktype in LINUX_ONLY_LINKS:
            found.append(("linux", "link", LINUX_ONLY_LINKS[linktype]))
        elif linktype == links.LINKTYPE_PKTAP:
            found.append(("darwin", "link", "Apple PKTAP link type (258)"))
    if zero:
        found.append(("linux", "link", "Ethernet frames with all-zero MAC addresses (Linux's lo)"))
    return found


def _initial_ttl(ttl: int) -> int:
    return 64 if ttl <= 64 else 128 if ttl <= 128 else 255


def _segment_evidence(recording: Recording) -> dict[str, list[tuple[str, str, str]]]:
    """Per sending address: (name, weight key, sentence) from its SYNs and SYN/ACKs."""
    per_host: dict[str, dict[tuple, tuple[str, str, str]]] = {}
    frames = recording.frames
    for seg in recording.segments:
        if not seg.flags & TcpFlags.SYN or seg.flags & TcpFlags.RST or not 0 < seg.frame <= len(frames):
            continue
        frame = frames[seg.frame - 1]
        signature = links.stack_signature(frame.linktype, frame.data)
        if signature is None:
            continue
        ttl, layout = signature
        what = "SYN/ACK" if seg.flags & TcpFlags.ACK else "SYN"
        seen = per_host.setdefault(seg.src.host, {})
        name = (SYNACK_LAYOUTS if seg.flags & TcpFlags.ACK else SYN_LAYOUTS).get(layout)
        if name is not None:
            seen.setdefault(("layout", name), (name, "layout", f"{seg.src.host} sent a {what} with options "
                                                              f"{layout} (frame {seg.frame}): {DISPLAY[name]}'s order"))
        mss = dict(seg.options).get("MSS")
        if mss in LOOPBACK_MSS:
            name, why = LOOPBACK_MSS[mss]
            seen.setdefault(("mss", name), (name, "mss", f"{seg.src.host} announced MSS {mss} "
                                                        f"(frame {seg.frame}): {why}"))
        initial = _initial_ttl(ttl)
        if initial == 128:
            seen.setdefault(("ttl", "windows"), ("windows", "ttl", f"{seg.src.host} sends with initial TTL 128 "
                                                                    f"(frame {seg.frame}): Windows"))
    return {host: list(items.values()) for host, items in per_host.items()}


def _winner(items: list[tuple[str, str, str]]) -> str:
    scores: dict[str, int] = {}
    for name, key, _ in items:
        scores[name] = scores.get(name, 0) + WEIGHTS[key]
    if not scores:
        return "unknown"
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return "unknown"
    return ranked[0][0]


def guess_os(recording: Recording, override: Optional[str] = None) -> OsGuess:
    """The OS of the capture, of its capturing host and of each address."""
    host_items = _host_evidence(recording)
    per_host = _segment_evidence(recording)
    hosts = {host: _winner(items) for host, items in per_host.items()}
    hosts = {host: name for host, name in hosts.items() if name != "unknown"}
    everything = host_items + [item for items in per_host.values() for item in items]
    evidence = [sentence for _, _, sentence in everything]
    name = _winner(everything)
    if name == "unknown":
        evidence.append("the packets do not say which OS sent them" if not everything else
                        "the evidence points to several OSes with equal weight")
    capturing = _winner(host_items)
    if override:
        override = override.lower()
        if override not in OS_NAMES:
            raise ValueError(f"unknown OS {override!r} (expected one of {', '.join(OS_NAMES)})")
        evidence.insert(0, f"--os {override} given: it overrides what the packets say ({name})")
        return OsGuess(override, tuple(evidence), capturing, {h: override for h in hosts}, True)
    return OsGuess(name, tuple(evidence), capturing, hosts)
