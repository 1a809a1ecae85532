"""websocket: a WebSocket echo (world catshost:guest/websocket-handler).

A client opening ws://HOST/ (any path) is accepted, with the subprotocol
"echo" when it offers it; every text or binary message comes back
unchanged, except the text "close", which makes the guest close the socket
with 1000 "bye". The host does RFC 6455 (handshake, framing, ping/pong,
close); the guest sees whole messages. Plain HTTP: GET / answers
"WebSocket echo (Python): open ws://HOST/"; anything else 404.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.handler import OpenRequest
from wit_world.imports import sockets
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class Handler(exports.Handler):
    def open(self, socket: int, request: OpenRequest) -> str | None:
        # Returning is ok(...); `raise Err(status)` would refuse the socket.
        return "echo" if "echo" in request.protocols else None

    def on_message(self, socket: int, message: sockets.Message) -> None:
        try:
            if isinstance(message, sockets.Message_Text) and message.value == "close":
                sockets.close(socket, 1000, "bye")
            else:
                sockets.send(socket, message)
        except Err:
            # closed (the client went first) or too-large: nothing to answer.
            # An exception left uncaught here would trap the instance.
            pass

    def on_close(self, socket: int, code: int, reason: str) -> None:
        pass


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?", 1)[0]
        if isinstance(request.method(), Method_Get) and path == "/":
            answer(response_out, 200, b"WebSocket echo (Python): open ws://HOST/\n")
        else:
            answer(response_out, 404, b"no such path\n")


def answer(response_out: ResponseOutparam, status: int, text: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain; charset=utf-8")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        stream.blocking_write_and_flush(text)
    OutgoingBody.finish(body, None)
