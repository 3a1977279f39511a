"""Half-close: one direction ends with FIN while the other goes on.

`half-close` is shutdown(SHUT_WR) used as intended (the peer reads EOF yet
keeps answering); `shutdown-then-write` is our own shutdown followed by a
write (EPIPE with no packet as cause); `simultaneous-close` has both FINs
on the wire before either arrives, which drives both sides through CLOSING
into TIME_WAIT. It needs a private network namespace: on loopback a FIN is
delivered before its sender's call returns, so the two FINs can only cross
if loopback holds them; the scenario plugs the namespace's `lo` with a
token-bucket queue (`capture.netns.Gate`) and releases both FINs together.
"""

from __future__ import annotations

import socket

from ...capture import netns
from .. import xnu
from ..registry import Expectation, Outcome, Scenario, on_xnu, register
from ..stage import Stage
from .basics import _close, _connected_pair, _listen, _recv, _send



def _shutdown(stage: Stage, role: str, sock: socket.socket):
    return stage.rec.call(role, "shutdown", sock, sock.shutdown, socket.SHUT_WR, text="shutdown(SHUT_WR)")


# -- half-close -------------------------------------------------------------------

def _half_close(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    _send(stage, "client", client, b"SUM 1 2 3\n")
    _shutdown(stage, "client", client)  # FIN: "no more from me", yet we still listen
    stage.wait_state(server, "CLOSE_WAIT")
    _recv(stage, "server", server)  # the request
    _recv(stage, "server", server)  # EOF: the client's FIN
    _send(stage, "server", server, b"6\n")  # the peer keeps sending after our FIN
    stage.wait_readable(client)
    _recv(stage, "client", client)  # and we still receive
    _close(stage, "server", server)
    stage.wait_state(client, "CLOSE")  # FIN_WAIT2 + FIN: handed to a TIME_WAIT entry
    _recv(stage, "client", client)  # EOF: the server's FIN
    _close(stage, "client", client)


_HALF = Expectation(
    outcomes=(Outcome("server", "recv", "EOF", "fin"), Outcome("client", "recv", "EOF", "fin")),
    teardown=(("client", "FIN,ACK"), ("server", "FIN,ACK")),
    why=("shutdown(SHUT_WR) closes only our sending direction: the kernel sends FIN, the server "
         "reads the request and then end-of-file, yet the connection is still open the other way, so "
         "the server's answer arrives after our FIN. Only when the server closes too does the client "
         "read end-of-file. This is how `nc -N` and HTTP/1.0-style request bodies end."),
)

register(Scenario(
    name="half-close",
    summary="we shutdown(SHUT_WR): FIN; the peer reads EOF yet keeps sending, we still receive; then both close",
    family_group="halfclose",
    setup=_listen,
    play=_half_close,
    expected={"Linux": _HALF, "Darwin": on_xnu(_HALF, xnu.SHUTDOWN_WR_FIN, xnu.CLOSE_SENDS_FIN)},
))


# -- shutdown-then-write --------------------------------------------------------------

def _shutdown_then_write(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    _shutdown(stage, "client", client)
    _send(stage, "client", client, b"one more line")  # EPIPE: we said we were done
    stage.wait_state(server, "CLOSE_WAIT")
    _close(stage, "server", server)
    stage.wait_state(client, "CLOSE")  # FIN_WAIT2 + FIN: handed to a TIME_WAIT entry
    _close(stage, "client", client)


_SHUT = Expectation(
    outcomes=(Outcome("client", "send", "EPIPE", "local-close"),),
    teardown=(("client", "FIN,ACK"), ("server", "FIN,ACK")),
    why=("The client shut down its own sending direction and then wrote. No packet caused the error: "
         "the kernel refuses the write at once with EPIPE (and SIGPIPE, unless suppressed), because "
         "after our FIN no more data may follow. A 'broken pipe' with no RST anywhere in the capture "
         "points at our own shutdown or close."),
)

register(Scenario(
    name="shutdown-then-write",
    summary="we shutdown(SHUT_WR), then write: EPIPE with no packet as cause",
    family_group="halfclose",
    setup=_listen,
    play=_shutdown_then_write,
    expected={"Linux": _SHUT, "Darwin": on_xnu(_SHUT, xnu.SHUTDOWN_WR_FIN, xnu.WRITE_EPIPE_FIRST)},
))


# -- simultaneous-close ------------------------------------------------------------------

def _time_wait_entries(family: str, port: int) -> int:
    """TIME_WAIT sockets with `port` at either end, from /proc/net/tcp{,6} (this namespace's own)."""
    path = "/proc/net/tcp6" if family == "ipv6" else "/proc/net/tcp"
    count = 0
    with open(path) as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
            count += state == "06" and port in ports
    return count


def _simultaneous_setup(stage: Stage) -> None:
    stage.gate = netns.Gate()  # refuses to run outside a private namespace
    stage._cleanup.callback(stage.gate.remove)
    stage.listener = stage.listen()


def _simultaneous_close(stage: Stage) -> None:
    client, server = _connected_pair(stage, stage.listener)
    stage.gate.hold()
    _shutdown(stage, "client", client)  # FIN queued on lo, not yet delivered
    _shutdown(stage, "server", server)  # the server's FIN too: both in FIN_WAIT1
    stage.wait_state(client, "FIN_WAIT1")
    stage.wait_state(server, "FIN_WAIT1")
    stage.gate.release()  # both FINs leave back to back: each arrives at a side in FIN_WAIT1
    stage.wait_state(client, "CLOSE")  # the sockets hand over to TIME_WAIT entries
    stage.wait_state(server, "CLOSE")
    # Only a simultaneous close leaves *both* sides in TIME_WAIT (via CLOSING);
    # a passive closer goes LAST_ACK -> CLOSE without one.
    port = stage.listener.getsockname()[1]
    stage.wait_for("a TIME_WAIT entry for each side", lambda: _time_wait_entries(stage.family, port) == 2)
    stage.notes.append("both sides reached TIME_WAIT (through CLOSING): the FINs crossed")
    _close(stage, "client", client)
    _close(stage, "server", server)


_SIMUL = Expectation(
    outcomes=(),
    teardown=(("client", "FIN,ACK"), ("server", "FIN,ACK")),
    why=("Both sides shut down at once, so each FIN is on the wire before the other arrives. Each "
         "side receives the peer's FIN while its own is still unacknowledged (FIN_WAIT1), which "
         "RFC 9293 sends to CLOSING instead of TIME_WAIT; the ACKs then take both to TIME_WAIT. No "
         "call fails: a simultaneous close is clean, but both ends pay TIME_WAIT, not just one. "
         "On loopback a FIN is delivered before its sender's call returns, so the scenario holds "
         "the FINs on a plugged lo in a private namespace and releases them together."),
)

register(Scenario(
    name="simultaneous-close",
    summary="both sides close at once: the FINs cross, both pass CLOSING and end in TIME_WAIT",
    family_group="halfclose",
    setup=_simultaneous_setup,
    play=_simultaneous_close,
    expected={"Linux": _SIMUL, "Darwin": on_xnu(
        _SIMUL, xnu.CLOSING_FIN_ACK, xnu.TIME_WAIT_30S,
        teardown=(("client", "FIN,ACK"), ("server", "FIN,ACK"), ("client", "FIN,ACK"), ("server", "FIN,ACK")),
        why=("Both FINs cross as on Linux, but each side answers the other's FIN from CLOSING with FIN,ACK "
             "(XNU retransmits its own FIN, tcp_outflags[CLOSING]) where Linux sends a bare ACK, so four "
             "FINs are on the wire; both sides then hold TIME_WAIT for 30 s (Linux 60 s). The scenario "
             "itself needs a Linux network namespace to hold the FINs."))},
    needs=("netns", "tc"),
))
