"""A WebSocket client of tests/upgrade.rs, with the `websockets` library:
connects to URL (wss:// verified against CAFILE), sends a text and a binary
message and checks each comes back, prints `echoed`, then waits for the
server's close and prints `closed CODE`."""

import asyncio
import ssl
import sys

import websockets


async def main(url, cafile):
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    async with websockets.connect(url, ssl=context, open_timeout=10) as ws:
        await ws.send("hello, catshost")
        assert await ws.recv() == "hello, catshost"
        await ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
        print("echoed", flush=True)
        try:
            await asyncio.wait_for(ws.recv(), 20)
        except websockets.ConnectionClosed as closed:
            print(f"closed {closed.rcvd.code if closed.rcvd else 'none'}", flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
