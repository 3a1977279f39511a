"""A load generator of short loopback connections at a fixed rate: the program
that bench/record_pace.py runs untraced and under `tcpteardown record`.

    python short_connections.py --port P --refused-port Q [--rate 2500] [--seconds 2]

One process, two threads, as a small service and its client would be:

- the server thread accepts on 127.0.0.1:P; per connection it reads the
  request and either answers it and closes (most connections) or, for every
  RESET_EVERY-th request (the request says so), closes with SO_LINGER 0
  without answering: an RST;
- the client (main thread) opens connections at --rate a second for
  --seconds (paced against the clock, never faster; late ones are not made
  up by bursts beyond what the schedule allows): connect, write, read, close.
  The reset ones read ECONNRESET. Every REFUSED_EVERY-th connection goes to
  Q instead, a port bound but not listening: connect is refused (an RST/ACK).

At the end it prints one JSON object on stdout: connections made, seconds,
the rate achieved, and its own count of failing calls per errno name (the
ground truth the bench checks the bundle against). Never: more than
rate x seconds connections, a connection left open, anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import struct
import threading
import time

RESET_EVERY = 10  # every 10th connection is aborted by the server (RST)
REFUSED_EVERY = 25  # every 25th goes to the closed port (refused)
ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def serve(listener: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the run is over
        with conn:
            request = conn.recv(64)
            if request.startswith(b"reset"):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT)
            elif request:
                conn.sendall(b"ok\n")


def one_connection(n: int, port: int, refused_port: int, failures: dict) -> None:
    refused = n % REFUSED_EVERY == REFUSED_EVERY - 1
    reset = not refused and n % RESET_EVERY == RESET_EVERY - 1
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(("127.0.0.1", refused_port if refused else port))
        client.sendall(b"reset\n" if reset else b"hello\n")
        while client.recv(64):
            pass  # until EOF (the server's FIN) or the RST
    except OSError as exc:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        failures[name] = failures.get(name, 0) + 1
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="port to serve on (127.0.0.1)")
    parser.add_argument("--refused-port", type=int, required=True, help="a port to hold bound, not listening")
    parser.add_argument("--rate", type=float, default=2500.0, help="connections a second")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long to keep the rate")
    args = parser.parse_args()

    listener = socket.socket()
    closed = socket.socket()
    for sock, port in ((listener, args.port), (closed, args.refused_port)):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    listener.listen(1024)
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(listener, stop), daemon=True)
    server.start()

    failures: dict[str, int] = {}
    total = int(args.rate * args.seconds)
    interval = 1.0 / args.rate
    started = time.monotonic()
    made = 0
    deadline = started + args.seconds
    while made < total:
        now = time.monotonic()
        if now >= deadline:
            break  # the schedule is over: a slowed program makes fewer connections, never more
        ahead = started + made * interval - now
        if ahead > 0.001:  # sleep only when a millisecond ahead: each sleep overshoots
            time.sleep(ahead)
        one_connection(made, args.port, args.refused_port, failures)
        made += 1
    took = time.monotonic() - started
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    server.join(5)
    closed.close()
    print(json.dumps({"connections": made, "asked": total, "seconds": round(took, 3),
                      "rate": round(made / took, 1) if took > 0 else 0.0, "failures": failures}), flush=True)


if __name__ == "__main__":
    main()
