"""An asyncio client (epoll, non-blocking sockets) meets three teardowns and
prints what asyncio told it (tests/test_event_loops.py):
    python asyncio_client.py REFUSED_PORT RESET_PORT EOF_PORT
REFUSED_PORT: nothing listens (connect's EINPROGRESS, then SO_ERROR);
RESET_PORT: the server reads our request and resets (SO_LINGER 0);
EOF_PORT: the server reads our request and closes (FIN): read() returns b"".
Then the loop is a server too: its accept() is tried before anyone connects
(EAGAIN: "would block"), and the connection it accepts is closed at once.
"""

import asyncio
import socket
import sys


async def one(port: int) -> str:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as err:
        return f"connect: {err!r}"
    try:
        writer.write(b"hello\n")
        await writer.drain()
        data = await reader.read(100)
        return f"read: {data!r}"
    except OSError as err:
        return f"read: {err!r}"
    finally:
        writer.close()


async def accept_would_block() -> str:
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        accepting = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)  # one loop turn: accept() was tried, found nobody (EAGAIN), and waits
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        conn, _ = await accepting
        conn.close()
        data = await reader.read(100)  # b"": the accepted socket's FIN
        writer.close()
        return f"accept, then read: {data!r}"


async def main(ports: list[int]) -> None:
    for port in ports:  # one after another: each teardown on its own
        print(await one(port), flush=True)
    print(await accept_would_block(), flush=True)


asyncio.run(main([int(p) for p in sys.argv[1:]]))
