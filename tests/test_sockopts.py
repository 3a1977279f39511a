"""The per-OS socket layer: Linux on real loopback sockets, macOS on XNU-layout bytes."""

from __future__ import annotations

import select
import socket
import struct
import sys
import time

import pytest

from tcpteardown.capture import macos, sockopts
from tcpteardown.capture.sockopts import LINUX, MACOS, nosignal_send_flags, platform_for, prepare_socket, tcp_state

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="real-socket checks of the Linux path")


def wait_state(sock, *states, timeout=5.0):
    """Poll until the kernel reports one of `states` (deadline guards against hangs only)."""
    deadline = time.monotonic() + timeout
    pause = 0.0001
    while (state := tcp_state(sock)) not in states:
        assert time.monotonic() < deadline, f"never reached {states}, last {state}"
        time.sleep(pause)  # wait-ok: polling an event with back-off
        pause = min(pause * 2, 0.005)
    return state


@pytest.fixture
def pair():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    yield listener, client, server
    for sock in (client, server, listener):
        sock.close()


# -- Linux, real sockets --------------------------------------------------------------

@linux_only
def test_host_platform_is_linux():
    assert sockopts.HOST is LINUX
    assert nosignal_send_flags() == socket.MSG_NOSIGNAL
    assert LINUX.info_option == socket.TCP_INFO


@linux_only
def test_linux_states_through_a_graceful_close(pair):
    listener, client, server = pair
    assert tcp_state(listener) == "LISTEN"
    assert tcp_state(client) == "ESTABLISHED"
    server.close()
    assert wait_state(client, "CLOSE_WAIT") == "CLOSE_WAIT"
    client.close()


@linux_only
def test_linux_state_after_rst_is_close(pair):
    _, client, server = pair
    client.send(b"unread")
    select.select([server], [], [], 5)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()  # unread data and linger 0: RST
    assert wait_state(client, "CLOSE") == "CLOSE"
    with pytest.raises(OSError) as info:
        client.send(b"x", nosignal_send_flags())
    assert info.value.errno in (104, 32)  # ECONNRESET first, then EPIPE


@linux_only
def test_linux_fresh_socket_is_close_and_closed_socket_is_refused():
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    assert tcp_state(sock) == "CLOSE"
    sock.close()
    with pytest.raises(ValueError, match="closed socket"):
        tcp_state(sock)


@linux_only
def test_prepare_socket_is_a_no_op_on_linux(pair):
    _, client, _ = pair
    prepare_socket(client)
    assert tcp_state(client) == "ESTABLISHED"


def test_linux_state_table_matches_the_kernel_header():
    # include/net/tcp_states.h
    assert [sockopts.linux_state_name(n) for n in (1, 7, 8, 10, 11, 12)] == [
        "ESTABLISHED", "CLOSE", "CLOSE_WAIT", "LISTEN", "CLOSING", "NEW_SYN_RECV"]
    assert sockopts.linux_state_name(0) == "UNKNOWN(0)"
    assert sockopts.linux_state_name(99) == "UNKNOWN(99)"


def test_platform_is_picked_from_sys_platform():
    assert platform_for("linux") is LINUX
    assert platform_for("darwin") is MACOS
    with pytest.raises(LookupError, match="win32"):
        platform_for("win32")


# -- macOS, at unit level -------------------------------------------------------------

def connection_info(state: int, *, options=0, maxseg=16344, txpackets=7, rxpackets=5) -> bytes:
    """A struct tcp_connection_info as XNU writes it (little-endian, 112 bytes)."""
    head = struct.pack("<BBBxIIIIIIIIIIIII", state, 6, 6, options, 0, 200, maxseg,
                       1 << 30, 65536, 400000, 0, 400000, 1, 1, 1, 0)
    tail = struct.pack("<7Q", txpackets, 1000, 0, rxpackets, 800, 0, 0)
    return head + tail


BSD_CASES = [
    (0, "CLOSE"), (1, "LISTEN"), (2, "SYN_SENT"), (3, "SYN_RECV"), (4, "ESTABLISHED"),
    (5, "CLOSE_WAIT"), (6, "FIN_WAIT1"), (7, "CLOSING"), (8, "LAST_ACK"), (9, "FIN_WAIT2"),
    (10, "TIME_WAIT"),
]


@pytest.mark.parametrize("number,linux_name", BSD_CASES)
def test_macos_states_translate_to_linux_names(number, linux_name):
    assert macos.state_from_connection_info(connection_info(number)) == linux_name
    assert linux_name in sockopts.STATE_NAMES


def test_macos_numbering_is_not_linux_numbering():
    # 4 is ESTABLISHED on a Mac but FIN_WAIT1 on Linux; 1 is LISTEN vs ESTABLISHED.
    assert macos.linux_state_name(4) == "ESTABLISHED"
    assert sockopts.linux_state_name(4) == "FIN_WAIT1"
    assert macos.linux_state_name(1) == "LISTEN"
    assert macos.linux_state_name(11) == "UNKNOWN(11)"


def test_macos_connection_info_layout():
    assert macos.TCP_CONNECTION_INFO_SIZE == 112
    data = connection_info(5, options=macos.TCPCI_OPT_TIMESTAMPS | macos.TCPCI_OPT_SACK | macos.TCPCI_OPT_WSCALE,
                           txpackets=9, rxpackets=4)
    info = macos.parse_connection_info(data)
    assert (info.state, info.bsd_state) == ("CLOSE_WAIT", "CLOSE_WAIT")
    assert info.options == ("TS", "SACK", "WS")
    assert (info.maxseg, info.rto_ms, info.snd_wscale) == (16344, 200, 6)
    assert (info.txpackets, info.rxpackets) == (9, 4)
    with pytest.raises(ValueError, match="112 bytes"):
        macos.parse_connection_info(data[:56])
    with pytest.raises(ValueError, match="tcpi_state"):
        macos.state_from_connection_info(b"")


class RecordingSocket:
    """Stands in for a socket on a Mac: answers getsockopt with XNU bytes, records setsockopt."""

    def __init__(self, info: bytes):
        self.info = info
        self.asked = []
        self.set = []

    def fileno(self):
        return 3

    def getsockopt(self, level, option, size):
        self.asked.append((level, option, size))
        return self.info[:size]

    def setsockopt(self, level, option, value):
        self.set.append((level, option, value))


def test_macos_path_asks_tcp_connection_info_and_sets_nosigpipe():
    sock = RecordingSocket(connection_info(6))
    assert tcp_state(sock, MACOS) == "FIN_WAIT1"
    assert sock.asked == [(6, 0x106, 112)]
    prepare_socket(sock, MACOS)
    assert sock.set == [(0xFFFF, 0x1022, 1)]
    assert nosignal_send_flags(MACOS) == 0


def test_linux_path_asks_one_byte_of_tcp_info():
    sock = RecordingSocket(bytes([8]) + bytes(231))
    assert tcp_state(sock, LINUX) == "CLOSE_WAIT"
    assert sock.asked == [(socket.IPPROTO_TCP, 11, 1)]
    prepare_socket(sock, LINUX)
    assert sock.set == []


def test_the_reader_knows_macos_loopback_framing(corpus):
    from tcpteardown.formats import pcap_links
    from tcpteardown.formats.bundle import load_recording

    assert macos.LINKTYPE_NULL == pcap_links.LINKTYPE_NULL
    assert macos.AF_INET6 in pcap_links.AF_INET6 and macos.AF_INET == pcap_links.AF_INET
    data = (corpus / "zeek" / "almost-resp.pcap").read_bytes()
    assert struct.unpack_from("<I", data, 20)[0] == macos.LINKTYPE_NULL  # pcap header: network
    assert data[24 + 16:24 + 20] == struct.pack("<I", macos.AF_INET6)  # first frame: ::1, little-endian Mac
    recording = load_recording(corpus / "zeek" / "almost-resp.pcap")
    syn6 = recording.segments[0]
    assert syn6.src.host == "::1" and dict(syn6.options)["MSS"] == macos.LOOPBACK_MTU - 60
    syn4 = next(s for s in recording.segments if s.is_syn and not s.src.is_ipv6)
    assert dict(syn4.options)["MSS"] == macos.LOOPBACK_MTU - 40


def test_everything_imports_on_macos_and_picks_the_macos_layer():
    """Nothing Linux-only at module level: import the platform layer, the
    scenarios, the capture backends and the CLI as if on a Mac."""
    import subprocess

    program = (
        "import sys; sys.platform = 'darwin'\n"
        "from tcpteardown.capture import sockopts, platform\n"
        "import tcpteardown.capture.live, tcpteardown.capture.tcpdump, tcpteardown.cli\n"
        "from tcpteardown.scenarios import all_scenarios\n"
        "all_scenarios(); tcpteardown.cli.build_parser()\n"
        "print(sockopts.HOST.name, sockopts.nosignal_send_flags(), platform.loopback_interface())\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Darwin", "0", "lo0"]
