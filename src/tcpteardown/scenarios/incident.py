"""The incident evidence for notebook 08: a plain tcpdump capture and a real
program's own log, as an SRE would bring them.

A small Python client (run as its own process, its source below) sends a
request to a server that reads only the first line and closes, so the
server's kernel resets the connection; the client logs the exception the way
Python's logging does. tcpdump captures the loopback traffic. Nothing is
edited afterwards: capture.pcap is tcpdump's file, client.log the client's.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from pathlib import Path

from ..capture.tcpdump import TcpdumpCapture

CLIENT = r'''
import logging, socket, sys, time
logging.Formatter.converter = time.gmtime
logging.basicConfig(filename=sys.argv[2], level=logging.INFO,
                    format="%(asctime)s.%(msecs)03dZ %(levelname)s checkout-client: %(message)s",
                    datefmt="%Y-%m-%dT%H:%M:%S")
host, port = sys.argv[1].rsplit(":", 1)
sock = socket.create_connection((host, int(port)))
logging.info("connected to %s", sys.argv[1])
sock.sendall(b"POST /checkout HTTP/1.1\r\nHost: shop\r\nContent-Length: 40000\r\n\r\n" + b"x" * 40000)
try:
    reply = sock.recv(65536)
    logging.info("reply: %r", reply[:40])
except OSError as exc:
    logging.error("request failed: %s: %s", type(exc).__name__, exc)
    sys.exit(1)
'''


def record_incident(folder: Path) -> Path:
    """Write folder/capture.pcap and folder/client.log; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "client.log"
    log.unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        stack.enter_context(TcpdumpCapture(folder / "capture.pcap", [port]))
        worker = threading.Thread(target=_serve_one, args=(server,))
        worker.start()
        try:
            subprocess.run([sys.executable, "-c", CLIENT, f"127.0.0.1:{port}", str(log)], timeout=30)
        finally:
            worker.join(timeout=30)
    return folder


def _serve_one(server: socket.socket) -> None:
    """Read the request line only, then close: the unread body makes it an RST."""
    conn, _ = server.accept()
    with conn:
        conn.settimeout(10)
        received = b""
        while b"\r\n" not in received:
            chunk = conn.recv(64)
            if not chunk:
                return
            received += chunk
