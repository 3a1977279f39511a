"""The model: endpoints, flags, and the small derived properties."""

import dataclasses

import pytest

from tcpteardown.model import Endpoint, Recording, Segment, SocketCall, TcpFlags


@pytest.mark.parametrize("text, host, port", [
    ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("[::1]:443", "::1", 443),
    ("[2001:db8:0:0::1]:1", "2001:db8::1", 1),
])
def test_endpoint_parse_and_render(text, host, port):
    endpoint = Endpoint.parse(text)
    assert (endpoint.host, endpoint.port) == (host, port)
    assert Endpoint.parse(str(endpoint)) == endpoint


@pytest.mark.parametrize("bad", ["localhost:80", "127.0.0.1", "1.2.3.4:99999", "[::1]80"])
def test_endpoint_parse_rejects_with_the_text(bad):
    with pytest.raises(ValueError, match="endpoint"):
        Endpoint.parse(bad)


def test_flags_render_round_trip():
    flags = TcpFlags.RST | TcpFlags.ACK
    assert flags.render() == "RST,ACK"
    assert TcpFlags.parse(flags.render()) == flags
    assert (TcpFlags.SYN | TcpFlags.ACK).render() == "SYN,ACK"
    assert TcpFlags(0).render() == "none"


def test_model_is_frozen():
    seg = Segment(1, 0, Endpoint("127.0.0.1", 1), Endpoint("127.0.0.1", 2), TcpFlags.SYN, 0, 0, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        seg.seq = 5  # type: ignore[misc]


def test_eof_is_a_zero_read_without_errno():
    eof = SocketCall("client", "recv", 1, 2, result=0)
    reset = SocketCall("client", "recv", 1, 2, result=-1, errno="ECONNRESET")
    closed_send = SocketCall("client", "send", 1, 2, result=0)
    assert eof.outcome == "EOF" and eof.is_eof
    assert reset.outcome == "ECONNRESET" and reset.failed
    assert closed_send.outcome == "ok"


def test_with_calls_sorts_by_time():
    first = SocketCall("a", "recv", 5, 6)
    second = SocketCall("b", "send", 1, 2)
    rec = Recording(calls=(first,)).with_calls([second])
    assert rec.calls == (second, first)


def test_tcpflags_and_is_enums_own():
    """TcpFlags & reads a table of the 256 values (enum builds each result slowly): the
    same members and pseudo-members, ints and TcpFlags on either side, TypeError else."""
    import enum

    for a in range(256):
        for b in (0, 1, 2, 4, 16, 18, 20, 255, 256, -1, 1 << 20, TcpFlags.ACK, TcpFlags.SYN | TcpFlags.ACK):
            assert (TcpFlags(a) & b) is enum.IntFlag.__and__(TcpFlags(a), b)
            assert (b & TcpFlags(a)) is enum.IntFlag.__rand__(TcpFlags(a), b)
    assert bool(TcpFlags.SYN & TcpFlags.ACK) is False and (TcpFlags.RST | TcpFlags.ACK) & TcpFlags.ACK
    with pytest.raises(TypeError):
        TcpFlags.SYN & "SYN"
