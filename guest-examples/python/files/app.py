"""files: what a guest may reach when the host grants it (--env, --dir).

GET /env/NAME answers the environment variable NAME (404 when unset: the
host's own environment is never inherited); GET /file/NAME reads /data/NAME;
PUT /file/NAME writes the request body there (403 when /data is read-only).
NAME is one file name: no folders, no way out of /data.
"""

import os

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Put,
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


def respond(response_out: ResponseOutparam, status: int, data, content_type=b"text/plain; charset=utf-8") -> None:
    if isinstance(data, str):
        data = data.encode()
    response = OutgoingResponse(Fields.from_list([("content-type", content_type)]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        # blocking-write-and-flush takes at most 4096 bytes at a time.
        for start in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[start : start + 4096])
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?", 1)[0]
        method = request.method()
        if path.startswith("/env/") and isinstance(method, Method_Get):
            value = os.environ.get(path[len("/env/"):])
            if value is None:
                return respond(response_out, 404, "not set\n")
            return respond(response_out, 200, value + "\n")
        if path.startswith("/file/"):
            name = path[len("/file/"):]
            if not name or "/" in name or name in (".", ".."):
                return respond(response_out, 400, "one file name, please\n")
            name = "/data/" + name
            try:
                if isinstance(method, Method_Get):
                    with open(name, "rb") as file:
                        return respond(response_out, 200, file.read(), b"application/octet-stream")
                if isinstance(method, Method_Put):
                    data = read_body(request)
                    with open(name, "wb") as file:
                        file.write(data)
                    return respond(response_out, 201, "written\n")
            except FileNotFoundError:
                return respond(response_out, 404, "no such file\n")
            except PermissionError as error:
                return respond(response_out, 403, f"{error}\n")
            except OSError as error:
                return respond(response_out, 403, f"{error}\n")
        respond(response_out, 404, "try GET /env/NAME, GET or PUT /file/NAME\n")
