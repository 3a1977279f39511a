"""Which local end a connect() got, when strace -y names only the socket's inode.

Pure function over a bundle's witness events and segments; the live path is
tests/test_record.py's tight loop of refused connects and test_record_backends."""

from tcpteardown.formats.socket_ends import LATE_NS, SocketEnds
from tcpteardown.model import Endpoint, KernelEvent, Segment, TcpFlags

SERVER = Endpoint("127.0.0.1", 45123)
CLIENT = Endpoint("127.0.0.1", 52478)
US = 1_000


def _syn(time_ns: int, src: Endpoint = CLIENT) -> Segment:
    return Segment(1, time_ns, src, SERVER, TcpFlags.SYN, 1, 0, 65495, 0)


def _syn_sent(time_ns: int, tid: int = 7) -> KernelEvent:
    # Linux 6.x names no source port yet when connect() enters SYN_SENT
    return KernelEvent(time_ns, "sock:inet_sock_set_state", Endpoint("127.0.0.1", 0), SERVER,
                       (("newstate", "TCP_SYN_SENT"), ("pid", str(tid))))


def test_the_witness_narrows_the_window_to_the_syn_after_its_event():
    ends = SocketEnds([_syn_sent(100 * US)], [_syn(20 * US, Endpoint("127.0.0.1", 40000)), _syn(110 * US)])
    assert ends.connected(7, 0, 200 * US, SERVER) == CLIENT  # not the other thread's earlier SYN


def test_a_witness_stamp_mapped_late_still_finds_the_syn_within_the_call():
    """Under load the witness's clock maps onto the packets' with more than the slack:
    its event can land after the SYN it caused. The call's own span still holds it."""
    ends = SocketEnds([_syn_sent(400 * US)], [_syn(110 * US)])
    assert ends.connected(7, 100 * US, 500 * US, SERVER) == CLIENT


def test_no_syn_near_the_call_is_no_answer():
    ends = SocketEnds([_syn_sent(100 * US)], [_syn(200 * US + LATE_NS + 1)])
    assert ends.connected(7, 0, 200 * US, SERVER) is None


def test_a_syn_stamped_after_the_calls_strace_end_is_still_its_own():
    """Measured under load: a connect's strace stamps ended 90 us before the kernel stamped
    its SYN (and its SYN_SENT event). The next connect's SYN stays the next one's."""
    other = Endpoint("127.0.0.1", 52480)
    ends = SocketEnds([_syn_sent(154 * US), _syn_sent(700 * US)], [_syn(167 * US), _syn(710 * US, other)])
    assert ends.connected(7, 0, 77 * US, SERVER) == CLIENT
    assert ends.connected(7, 600 * US, 690 * US, SERVER) == other
