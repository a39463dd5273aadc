"""A Python websockets echo server, as a real backend for wsgate's tests.

Usage: echo_server.py ID   (listens on 127.0.0.1, a port the kernel picks)

Prints "listening on 127.0.0.1:PORT" once serving. On SIGTERM it closes the
server the way websockets does: open connections get a close frame with
code 1001 (going away), new handshakes get 503 while it closes.
"""
import asyncio
import signal
import sys

import websockets


async def echo(ws, path=None):
    async for msg in ws:
        await ws.send(msg)


async def main(ident):
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with websockets.serve(echo, "127.0.0.1", 0, extra_headers={"X-Backend-Id": ident}) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"listening on {host}:{port}", flush=True)
        await stop


asyncio.run(main(sys.argv[1]))
