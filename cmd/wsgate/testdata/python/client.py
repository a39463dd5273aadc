"""A Python websockets client for wsgate's tests: connects to URL, trusting
only CA_FILE, retrying the way websockets' reconnecting iterator does,
sends one message and prints its echo.

Usage: client.py URL CA_FILE
"""
import asyncio
import ssl
import sys

import websockets


async def main(url, ca_file):
    ctx = ssl.create_default_context(cafile=ca_file)
    async for ws in websockets.connect(url, ssl=ctx, server_hostname="localhost", open_timeout=5):
        await ws.send("hello from python")
        print("echo:", await ws.recv(), flush=True)
        await ws.close()
        return


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), timeout=30))
