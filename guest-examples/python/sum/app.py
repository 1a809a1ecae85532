"""sum: a small JSON API.

POST /sum with a JSON array of numbers answers {"count": N, "sum": S};
anything that is not such an array gets 400 {"error": "..."}; GET /boom
raises an exception (the host answers 500 and logs the traceback).
"""

import json
import math

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


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    data = bytearray()
    with body.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(65536)
            except Err as error:
                if isinstance(error.value, StreamError_Closed):
                    break
                raise
    return bytes(data)


def respond(response_out: ResponseOutparam, status: int, value) -> None:
    payload = json.dumps(value, separators=(",", ":")).encode() + b"\n"
    headers = Fields.from_list([("content-type", b"application/json")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        stream.blocking_write_and_flush(payload)
    OutgoingBody.finish(body, None)


def reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def total(numbers):
    if not isinstance(numbers, list) or not all(
        isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in numbers
    ):
        raise ValueError("expected a JSON array of finite numbers")
    total = sum(numbers)
    if not math.isfinite(total):
        raise ValueError("the sum is too large")
    return {"count": len(numbers), "sum": total}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        method = request.method()
        if path == "/boom":
            raise RuntimeError("boom: an exception the handler does not catch")
        if path == "/sum" and isinstance(method, Method_Post):
            try:
                answer = total(json.loads(read_body(request), parse_constant=reject_constant))
            except ValueError as error:
                return respond(response_out, 400, {"error": str(error)})
            return respond(response_out, 200, answer)
        if isinstance(method, Method_Get):
            return respond(response_out, 200, {"usage": "POST /sum [1, 2, 3]"})
        respond(response_out, 405, {"error": "use POST /sum"})
