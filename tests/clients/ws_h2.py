"""A WebSocket over HTTP/2 (RFC 8441) for tests/websocket.rs, with the `h2`
library on a cleartext connection (prior knowledge): prints whether the
server offers extended CONNECT, opens a WebSocket at PATH with an extended
CONNECT, sends a text message, prints what comes back, closes with 1000 and
prints the server's close code. With `reset`, it resets the stream right
after the CONNECT instead, prints `reset`, and keeps the connection 3 s.

    python ws_h2.py HOST PORT PATH [reset]
"""

import os
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(opcode, payload):
    """A final, masked client frame."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse(buf):
    """The first whole server frame of buf (unmasked) and the rest, or None."""
    if len(buf) < 2:
        return None
    opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < at + n:
        return None
    return opcode, buf[at : at + n], buf[at + n :]


def main(host, port, path, reset):
    sock = socket.create_connection((host, port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    state = {"enable": None, "status": None, "data": b"", "ended": False}

    def pump():
        data = sock.recv(65536)
        if not data:
            raise SystemExit("the server closed the connection")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                code = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
                changed = event.changed_settings.get(code)
                state["enable"] = changed.new_value if changed else 0
            elif isinstance(event, h2.events.ResponseReceived):
                state["status"] = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.DataReceived):
                state["data"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                state["ended"] = True
        sock.sendall(conn.data_to_send())

    while state["enable"] is None:
        pump()
    print(f"enable-connect-protocol {state['enable']}", flush=True)
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"{host}:{port}"),
            ("sec-websocket-version", "13"),
        ],
    )
    sock.sendall(conn.data_to_send())
    if reset:
        conn.reset_stream(stream)
        sock.sendall(conn.data_to_send())
        print("reset", flush=True)
        time.sleep(3)
        return
    while state["status"] is None:
        pump()
    print(f"status {state['status']}", flush=True)
    conn.send_data(stream, frame(0x1, b"hello over h2"))
    sock.sendall(conn.data_to_send())
    while (got := parse(state["data"])) is None:
        pump()
    opcode, payload, state["data"] = got
    print(f"message {opcode} {payload.decode()}", flush=True)
    conn.send_data(stream, frame(0x8, struct.pack("!H", 1000)))
    sock.sendall(conn.data_to_send())
    while (got := parse(state["data"])) is None:
        pump()
    opcode, payload, _ = got
    print(f"closed {struct.unpack('!H', payload[:2])[0] if opcode == 8 else 'none'}", flush=True)


main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:] == ["reset"])
