"""A bounded load generator on loopback: many short real connections ending
every way (FIN, client RST, server RST, refused), and one whose client read
fails with ECONNRESET, reported as a Go program logs it.

Used by tests/test_big_capture.py (a few hundred connections) and
bench/explain_big.py (a capture of >= 100,000 connections).
"""

from __future__ import annotations

import datetime as dt
import socket
import struct
import threading

LINGER_0 = struct.pack("ii", 1, 0)
MODES = (b"F", b"C", b"S", b"X")  # FIN both ways, client RST, server RST, refused


def _serve(listener: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                mode = conn.recv(1)
            except OSError:
                continue
            if mode in (b"S", b"V"):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)  # close() sends RST
            elif mode == b"F":
                conn.sendall(b"ok")
            elif mode == b"C":
                try:
                    conn.recv(1)  # the client's RST (or FIN)
                except OSError:
                    pass


def play_many(listener: socket.socket, closed_port: int, count: int, victim: int) -> str:
    """`count` connections, the `victim`-th (0-based) reset by the server while
    the client reads. Returns the Go log line the client would print."""
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(listener, stop), daemon=True)
    server.start()
    address = listener.getsockname()
    line = ""
    try:
        for number in range(count):
            mode = b"V" if number == victim else MODES[number % len(MODES)]
            if mode == b"X":
                with socket.socket() as client:
                    try:
                        client.connect(("127.0.0.1", closed_port))
                    except ConnectionRefusedError:
                        pass
                continue
            with socket.create_connection(address) as client:
                local, remote = client.getsockname(), client.getpeername()  # before any RST
                client.sendall(mode)
                if mode == b"F":
                    client.recv(2)
                elif mode == b"C":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
                elif mode == b"S":
                    try:
                        client.recv(1)  # the server's RST
                    except ConnectionResetError:
                        pass
                elif mode == b"V":
                    try:
                        client.recv(10)
                    except ConnectionResetError:
                        now = dt.datetime.now(dt.timezone.utc)
                        line = (f"{now:%Y/%m/%d %H:%M:%S.%f} read tcp {local[0]}:{local[1]}->"
                                f"{remote[0]}:{remote[1]}: read: connection reset by peer")
                    else:
                        raise AssertionError("the victim's read was not reset")
    finally:
        stop.set()
        try:  # wake the accept() so the thread ends
            socket.create_connection(address, timeout=1).close()
        except OSError:
            pass
        server.join(timeout=5)
    return line
