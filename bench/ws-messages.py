"""N text messages echoed one after the other on one WebSocket, for
bench/instructions.sh's `ws` mode: the server's instructions per message.

    python ws-messages.py PORT N
"""

import sys

from websockets.sync.client import connect


def main(port, n):
    with connect(f"ws://127.0.0.1:{port}/echo", max_size=None) as ws:
        for i in range(n):
            ws.send(f"message {i:08d} " + "x" * 48)
            ws.recv()


main(int(sys.argv[1]), int(sys.argv[2]))
