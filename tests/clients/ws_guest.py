"""A client of the Python WebSocket echo (guest-examples/python/websocket)
for tests/websocket.rs, with the `websockets` library: connects to URL
offering the subprotocols `x` and `echo`, prints the one chosen, checks that
a text and a binary message come back unchanged, prints `echoed`, then sends
`close` and prints the server's close code and reason."""

import asyncio
import sys

import websockets


async def main(url):
    async with websockets.connect(url, subprotocols=["x", "echo"], open_timeout=20) as ws:
        print(f"subprotocol {ws.subprotocol}", flush=True)
        await ws.send("héllo, catshost")
        assert await ws.recv() == "héllo, catshost"
        await ws.send(b"\x00\x01\xff" * 1000)
        assert await ws.recv() == b"\x00\x01\xff" * 1000
        print("echoed", flush=True)
        await ws.send("close")
        try:
            await asyncio.wait_for(ws.recv(), 20)
        except websockets.ConnectionClosed as closed:
            print(f"closed {closed.rcvd.code} {closed.rcvd.reason}", flush=True)


asyncio.run(main(sys.argv[1]))
