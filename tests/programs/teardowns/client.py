"""A small Python program that makes each classic teardown failure happen once
on loopback, against its own listeners: ECONNREFUSED, EOF, EPIPE, ECONNRESET.

The tests run it under strace and compare the importer's calls with what this
program saw. It prints one JSON object per step (step, errno, local, remote)
on stdout. It never touches anything but loopback; every wait is bounded.
Usage: python3 client.py [127.0.0.1|::1]
"""

import errno
import json
import socket
import struct
import sys
import time

HOST = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
FAMILY = socket.AF_INET6 if ":" in HOST else socket.AF_INET


def endpoint(address):
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def report(step, error, sock=None, remote=None):
    local = endpoint(sock.getsockname()) if sock is not None and sock.fileno() >= 0 else None
    print(json.dumps({"step": step, "errno": error, "local": local,
                      "remote": endpoint(remote) if remote else None}), flush=True)


def listener():
    sock = socket.socket(FAMILY)
    sock.bind((HOST, 0))
    sock.listen()
    return sock


def pair(server):
    client = socket.create_connection(server.getsockname()[:2], timeout=5)
    accepted, _ = server.accept()
    return client, accepted


def refused():
    server = listener()
    address = server.getsockname()[:2]
    server.close()
    client = socket.socket(FAMILY)
    try:
        client.connect(address)
    except OSError as error:
        report("refused", errno.errorcode[error.errno], None, address)
    finally:
        client.close()


def eof():
    server = listener()
    client, accepted = pair(server)
    accepted.close()  # FIN
    data = client.recv(16)
    report("eof", "EOF" if data == b"" else "data", client, client.getpeername())
    client.close()
    server.close()


def broken_pipe():
    server = listener()
    client, accepted = pair(server)
    peer, me = client.getpeername(), client.getsockname()
    accepted.close()  # FIN; our next write draws an RST, the one after fails
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            client.send(b"x")
            time.sleep(0.001)
        report("broken-pipe", "none", client, peer)
    except OSError as error:
        print(json.dumps({"step": "broken-pipe", "errno": errno.errorcode[error.errno],
                          "local": endpoint(me), "remote": endpoint(peer)}), flush=True)
    client.close()
    server.close()


def reset():
    server = listener()
    client, accepted = pair(server)
    peer, me = client.getpeername(), client.getsockname()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    accepted.close()  # RST right away
    try:
        client.recv(16)
        report("reset", "none", client, peer)
    except OSError as error:
        print(json.dumps({"step": "reset", "errno": errno.errorcode[error.errno],
                          "local": endpoint(me), "remote": endpoint(peer)}), flush=True)
    client.close()
    server.close()


for step in (refused, eof, broken_pipe, reset):
    step()
