"""The Linux/macOS atlas: for each teardown a real Mac capture shows, the Linux bundle that tells the same story.

Each pair is a scenario's stored Linux bundle (`captures/linux/<scenario>.pcapng`)
and one connection of a real macOS loopback capture that a public project
recorded (the `scenarios.xnu` citation says which file, which connection and
what it shows). Where that project's licence allows it (zeek: BSD-3-Clause;
suricata-verify: MIT) the capture ships, byte for byte, in
`captures/macos/public/` with attribution in `captures/macos/README.md`;
otherwise (nDPI: LGPL-3.0) it is read from the shared corpus.

`tcpteardown diff --align structure` on a pair compares the two by who
closed, how and what answered; what remains are the stacks' differences and
the applications'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UserError
from . import xnu
from .registry import Evidence

CORPUS_HINT = ("the shared corpus of real captures (../shared/corpus next to the repository; "
               "its MANIFEST.tsv names each file's repository, path and commit to fetch it from)")


@dataclass(frozen=True, slots=True)
class AtlasPair:
    kind: str  # the teardown, in words
    scenario: str  # its Linux bundle: captures/linux/<scenario>.pcapng
    darwin: Evidence  # a real Mac capture's connection (scenarios.xnu)
    shipped: Optional[str] = None  # its copy in captures/macos/public/, where the licence allows
    licence: str = ""  # of the project the Mac capture comes from

    @property
    def corpus_path(self) -> str:
        return self.darwin.where

    def linux_path(self, captures: Path) -> Path:
        return captures / "linux" / f"{self.scenario}.pcapng"

    def darwin_path(self, captures: Path, corpus: Optional[Path] = None) -> Path:
        """The shipped copy, else the corpus file; UserError saying how to get it when neither is here."""
        if self.shipped and (captures / "macos" / "public" / self.shipped).exists():
            return captures / "macos" / "public" / self.shipped
        folder = corpus or captures.parent.parent / "shared" / "corpus"
        if (folder / self.corpus_path).exists():
            return folder / self.corpus_path
        raise UserError(f"the macOS capture for {self.kind!r} ({self.corpus_path}) is not here: it is "
                        f"not redistributed ({self.licence}); get it from {CORPUS_HINT}")


ATLAS: tuple[AtlasPair, ...] = (
    AtlasPair("refused: a SYN to a port where nothing listens", "refused", xnu.SEEN_REFUSED,
              "suricata-verify-tls-duplicate-hello.pcap", "MIT"),
    AtlasPair("graceful close, the server first", "graceful-close", xnu.SEEN_SERVER_FIN,
              "zeek-zip64.pcap", "BSD-3-Clause"),
    AtlasPair("graceful close, the client first", "use-after-close", xnu.SEEN_CLIENT_FIN,
              "zeek-bulk-loading.pcap", "BSD-3-Clause"),
    AtlasPair("a write after the peer's FIN draws an RST", "broken-pipe", xnu.SEEN_DATA_AFTER_FIN,
              "suricata-verify-http2-deflate-case.pcap", "MIT"),
    AtlasPair("abortive close: closed with data unread, RST instead of FIN", "http-client-abort",
              xnu.SEEN_CLOSE_UNREAD, "suricata-verify-tls-duplicate-hello.pcap", "MIT"),
    AtlasPair("FIN, then RST from the same side", "keepalive-race-eof", xnu.SEEN_FIN_THEN_RST, None,
              "LGPL-3.0, read from the corpus"),
)


def atlas_pair(scenario: str) -> AtlasPair:
    for pair in ATLAS:
        if pair.scenario == scenario:
            return pair
    raise UserError(f"no atlas pair for {scenario!r}; the atlas has {', '.join(p.scenario for p in ATLAS)}")
