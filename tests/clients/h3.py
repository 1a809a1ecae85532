"""An HTTP/3 client for tests/http3.rs, built on aioquic (a QUIC and HTTP/3
stack nobody here wrote). Certificates are not verified (the tests' are
self-signed); SNI is the name given.

    python h3.py requests SPEC   # SPEC: JSON, see `requests` below
    python h3.py no-headers PORT STREAMS SECONDS
    python h3.py no-credit PORT AUTHORITY PATH SECONDS
    python h3.py flood PORT GARBAGE INITIALS
    python h3.py cert PORT SNI PEM  # whether the server shows PEM's certificate

Each prints one JSON line with what it saw.
"""

import asyncio
import hashlib
import json
import os
import socket
import ssl
import sys
import time

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamReset


def configuration(sni, **extra):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, **extra)
    config.verify_mode = ssl.CERT_NONE
    config.server_name = sni
    return config


class Client(QuicConnectionProtocol):
    """HTTP/3 over one QUIC connection: each stream's response gathered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}
        self.terminated = None
        self.closed = asyncio.get_running_loop().create_future()

    def request(self, method, authority, path, headers=(), body=b""):
        stream_id = self._quic.get_next_available_stream_id()
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ] + [(k.encode(), v.encode()) for k, v in headers]
        if body:
            head.append((b"content-length", str(len(body)).encode()))
        self.h3.send_headers(stream_id, head, end_stream=not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=True)
        loop = asyncio.get_running_loop()
        self.streams[stream_id] = {"status": None, "headers": {}, "body": b"",
                                   "done": loop.create_future(), "head": loop.create_future()}
        self.transmit()
        return stream_id

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self.streams:
            stream = self.streams[event.stream_id]
            stream["reset"] = event.error_code
            if not stream["done"].done():
                stream["done"].set_result(None)
        if isinstance(event, ConnectionTerminated):
            self.terminated = event.error_code
            if not self.closed.done():
                self.closed.set_result(None)
            for stream in self.streams.values():
                if not stream["done"].done():
                    stream["done"].set_result(None)
        for h3_event in self.h3.handle_event(event):
            stream = self.streams.get(getattr(h3_event, "stream_id", None))
            if stream is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                if "head" in stream and not stream["head"].done():
                    stream["head"].set_result(None)
                for k, v in h3_event.headers:
                    if k == b":status":
                        stream["status"] = int(v)
                    else:
                        stream["headers"][k.decode()] = v.decode()
            elif isinstance(h3_event, DataReceived):
                stream["body"] += h3_event.data
            if getattr(h3_event, "stream_ended", False) and not stream["done"].done():
                stream["done"].set_result(None)


def result(stream):
    body = stream["body"]
    out = {
        "status": stream["status"],
        "headers": stream["headers"],
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    if len(body) <= 4096:
        out["body"] = body.decode(errors="replace")
    if "reset" in stream:
        out["reset"] = stream["reset"]
    return out


def pattern(size):
    """The body of a POST of `size` bytes: 0, 1, ..., 250, 0, 1, ..."""
    return bytes(i % 251 for i in range(size))


async def requests(spec):
    """SPEC: {"port", "sni", "requests": [{"method", "authority", "path",
    "headers": [[k, v]], "body_size"}], "timeout", "announce_headers",
    "hold"}. With hold, the connection is kept open up to that many seconds
    after the responses, or until the server closes it.
    Every request goes at once on one connection; prints "sent" once they
    are sent, "headers" once every response head came (with
    announce_headers), then the results in order."""
    config = configuration(spec.get("sni", "localhost"))
    async with connect("127.0.0.1", spec["port"], configuration=config,
                       create_protocol=Client) as client:
        ids = []
        for r in spec["requests"]:
            body = pattern(r.get("body_size", 0))
            ids.append(client.request(r.get("method", "GET"), r.get("authority", "localhost"),
                                      r.get("path", "/"), r.get("headers", []), body))
        print("sent", flush=True)
        streams = [client.streams[i] for i in ids]
        if spec.get("announce_headers"):
            await asyncio.wait_for(asyncio.gather(*(s["head"] for s in streams)), 30)
            print("headers", flush=True)
        try:
            await asyncio.wait_for(asyncio.gather(*(s["done"] for s in streams)),
                                   spec.get("timeout", 60))
        except asyncio.TimeoutError:
            pass
        if spec.get("hold"):
            try:
                await asyncio.wait_for(client.closed, spec["hold"])
            except asyncio.TimeoutError:
                pass
        print(json.dumps({"responses": [result(s) for s in streams],
                          "terminated": client.terminated}), flush=True)


async def no_headers(port, count, seconds):
    """Opens `count` request streams, each with the first byte of a HEADERS
    frame and nothing more; waits up to `seconds` for the server to end
    them; then asks for / on a new connection."""
    started = time.monotonic()
    async with connect("127.0.0.1", port, configuration=configuration("localhost"),
                       create_protocol=Client) as client:
        quic = client._quic
        client.h3  # the control streams are open
        ids = []
        for _ in range(count):
            stream_id = quic.get_next_available_stream_id()
            quic.send_stream_data(stream_id, b"\x01", end_stream=False)
            client.streams[stream_id] = {"status": None, "headers": {}, "body": b"",
                                         "done": asyncio.get_running_loop().create_future()}
            ids.append(stream_id)
        client.transmit()
        done = [client.streams[i]["done"] for i in ids]
        try:
            await asyncio.wait_for(asyncio.gather(*done), seconds)
        except asyncio.TimeoutError:
            pass
        ended = sum(1 for f in done if f.done())
        elapsed = time.monotonic() - started
    good = await good_request(port)
    print(json.dumps({"streams": count, "ended": ended, "seconds": round(elapsed, 2),
                      "good": good}), flush=True)


async def good_request(port):
    async with connect("127.0.0.1", port, configuration=configuration("localhost"),
                       create_protocol=Client) as client:
        stream_id = client.request("GET", "localhost", "/")
        await asyncio.wait_for(client.streams[stream_id]["done"], 30)
        return client.streams[stream_id]["status"]


async def no_credit(port, authority, path, seconds):
    """GETs `path` of `authority` granting 1 KiB of stream credit and never more (the
    connection stays alive: packets are acknowledged); waits up to
    `seconds` for the server to reset the stream."""
    config = configuration("localhost", max_stream_data=1024)
    # Never raise the limits it granted.
    QuicConnection._write_stream_limits = lambda *a, **k: None
    QuicConnection._write_connection_limits = lambda *a, **k: None
    started = time.monotonic()
    async with connect("127.0.0.1", port, configuration=config,
                       create_protocol=Client) as client:
        stream_id = client.request("GET", authority, path)
        stream = client.streams[stream_id]
        try:
            await asyncio.wait_for(stream["done"], seconds)
        except asyncio.TimeoutError:
            pass
        out = result(stream)
        out["seconds"] = round(time.monotonic() - started, 2)
        out["terminated"] = client.terminated
    print(json.dumps(out), flush=True)


def flood(port, garbage, initials):
    """Sends `garbage` random datagrams, then `initials` QUIC Initial
    packets (new connections, each from a socket of its own) that never
    go further."""
    target = ("127.0.0.1", port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(garbage):
        sock.sendto(os.urandom(1 + i % 1350), target)
    sockets = []
    for _ in range(initials):
        quic = QuicConnection(configuration=configuration("localhost"))
        quic.connect(target, now=time.monotonic())
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for data, _ in quic.datagrams_to_send(now=time.monotonic()):
            s.sendto(data, target)
        sockets.append(s)
        if len(sockets) >= 200:
            sockets.pop(0).close()
    print(json.dumps({"garbage": garbage, "initials": initials}), flush=True)


async def cert(port, sni, pem):
    """Whether the certificate the server shows a client asking for `sni`
    is the one in the file `pem`."""
    from cryptography import x509
    with open(pem, "rb") as f:
        want = x509.load_pem_x509_certificate(f.read())
    async with connect("127.0.0.1", port, configuration=configuration(sni),
                       create_protocol=Client) as client:
        served = client._quic.tls._peer_certificate
    print(json.dumps({"same": served == want, "served": served.subject.rfc4514_string()}),
          flush=True)


def main():
    mode = sys.argv[1]
    if mode == "requests":
        asyncio.run(requests(json.loads(sys.argv[2])))
    elif mode == "no-headers":
        asyncio.run(no_headers(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    elif mode == "no-credit":
        asyncio.run(no_credit(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])))
    elif mode == "cert":
        asyncio.run(cert(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    elif mode == "flood":
        flood(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
