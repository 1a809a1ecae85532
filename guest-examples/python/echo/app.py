"""echo (WASI 0.2): POST /echo streams the request body back unchanged,
with its content-type; GET / answers "hello from Python (WASI 0.2)";
anything else 404. The WASI 0.2 twin of echo-p3, for the benchmark's
p2-against-p3 rows."""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def answer(response_out: ResponseOutparam, status: int, text: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain; charset=utf-8")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        stream.blocking_write_and_flush(text)
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method, path = request.method(), request.path_with_query()
        if isinstance(method, Method_Get) and path == "/":
            return answer(response_out, 200, b"hello from Python (WASI 0.2)\n")
        if not (isinstance(method, Method_Post) and path == "/echo"):
            return answer(response_out, 404, b"no such path\n")
        headers = [(k, v) for k, v in request.headers().entries() if k.lower() == "content-type"]
        response = OutgoingResponse(Fields.from_list(headers))
        out = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        body = request.consume()
        with body.stream() as incoming, out.write() as outgoing:
            while True:
                try:
                    chunk = incoming.blocking_read(4096)  # blocking-write-and-flush takes 4096 at most
                except Err as error:
                    if isinstance(error.value, StreamError_Closed):
                        break
                    raise
                if chunk:
                    outgoing.blocking_write_and_flush(chunk)
        OutgoingBody.finish(out, None)
