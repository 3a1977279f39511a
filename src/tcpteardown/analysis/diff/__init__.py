"""Where two teardown stories part: recording A against recording B.

Theory of operation. Two recordings of "the same" teardown never agree on
the things that do not matter: addresses, ports, initial sequence numbers,
the wall clock, a few microseconds of loopback jitter. So each side is first
*normalised*: one connection is picked (the caller's, else the one holding
the first failing socket call, else the first); the endpoint that sent the
first SYN is the client and the other the server; sequence and
acknowledgment numbers count from each direction's initial number; times
count from the first SYN. What remains is two lists of steps:

- segments, keyed by (sender role, flags, payload length);
- socket calls, keyed by (side, op family, outcome).

Each pair of lists is aligned by edit distance (`analysis.align`: a match costs 0, or 1 when
only the relative seq/ack differ, a deletion or insertion 4 (6 for a segment
carrying data), a substitution 6, and a substitution is only allowed between
segments of the same sender and class -- opening (SYN), closing (FIN or
RST), data, bare ACKs -- or calls of the same side and op): so an RST where the
other recording has a FIN pairs up as *one* step with a different flag, and
a segment missing from one recording is *one* step only in the other,
instead of everything after it shifting. Segments are aligned in two
passes: the SYNs, FINs and RSTs first (the story's skeleton), then the data
and ACKs between two paired ones. The two aligned lists are merged by
time into `aligned_rows`, and every row is inspected for differences:

| difference          | when                                                        |
| ---                 | ---                                                         |
| `OnlyIn`            | a segment or call has no partner in the other recording     |
|                     | (a bare ACK is shown but does not count: ACK timing)        |
| `FlagDifference`    | partners whose flags differ (RST where the other has FIN)   |
| `PayloadDifference` | partners whose payload lengths differ                       |
| `ReasonDifference`  | partner RSTs the kernel witness saw sent for other reasons  |
| `OutcomeDifference` | partner calls that ended differently (errno names, EOF, ok) |
| `StateDifference`   | a side went through other TCP states, as the kernel told it |
|                     | on both sides (packet-inferred states would only restate    |
|                     | the segment differences): where the two sequences part      |
| `TimingDifference`  | a step came later/earlier, or took longer, beyond tolerance |
| `OptionDifference`  | TCP options differ (MSS, window scale, SACK, timestamps)    |

Timing compares the gap since the previous paired step, not the time since
the SYN: one slow step is one difference, not a cascade. The default
tolerance is generous (loopback jitter on a loaded machine is not a
difference; a 200 ms retransmission timeout is).

Options: MSS is compared as the largest IP packet it implies (MSS + IP and
TCP headers, at most 65535, the largest IPv4 total length), so one stack's
IPv4 and IPv6 recordings match (Linux lo: 65495 and 65476; macOS lo0: 16344
and 16324) while Linux against macOS does not. Window scale is compared by
value; SACK-permitted, SACK blocks and timestamps by presence (timestamp
values are clocks, not behaviour).

Aligning by teardown structure (`align_by="structure"`, `diff --align
structure`). Two *different* applications' teardowns of the same kind (an
HTTP server's close against a scenario's) share no payload sizes and often
not even who opened the connection. So each side is reduced to its
skeleton: the handshake, every FIN and RST, and what was sent after the
first of them (what answered the close); data and bare ACKs before the
close are summed per direction. When the side that closed first is the
client in one and the server in the other, the second side's roles are
swapped, so that closer faces closer. Alignment then keys on sender and
flags, never on payload length.

Every difference has a `category`, so stack differences are named apart
from the applications':

| category      | differences                                                        |
| ---           | ---                                                                |
| `stack`       | the kernels chose differently: MSS, window scale, SACK/timestamps,  |
|               | the order of SYN options, bare RST vs RST,ACK answering the same    |
|               | step, a FIN sent again to acknowledge the peer's FIN (XNU, CLOSING) |
| `teardown`    | the story differs: FIN where the other has RST, a FIN or RST only   |
|               | one side has, another errno, another TCP state, another RST reason  |
| `application` | payload sizes, data segments, timing, which side closed first       |

In structure mode application differences are shown, not counted: they
are what two applications may differ in while their kernels tear down the
same way.

The package: `vocabulary` (steps, differences and their categories, rows, the
result; its JSON is `views.contracts.diff`), `normalise` (one recording reduced to steps) and
`compare` (the alignment and the differences). It is pure: it never imports
socket or scapy, and never reads files.
"""

from . import vocabulary
from .compare import diff
from .normalise import Normalised, normalise, pick_connection
from .vocabulary import *  # noqa: F403  (the package speaks the vocabulary: its __all__ is listed once, there)

__all__ = [*vocabulary.__all__, "Normalised", "diff", "normalise", "pick_connection"]
