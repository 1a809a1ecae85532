"""echo-p3: a WASI 0.3 (wasi:http/service@0.3.0) handler in async Python.

    GET  /       200 "hello from Python (WASI 0.3)"
    POST /echo   streams the request body back as it arrives (content-type copied)
    GET  /both   awaits two 50 ms timers at once and answers the elapsed time:
                 about 50 ms, not 100, since both waits overlap
    anything else: 404

In WASI 0.3 `handle` is a coroutine that returns the response; the body is a
stream the host reads after that, so whatever writes it is spawned as a task
of the same request (`componentize_py_async_support.spawn`).

componentize-py's asyncio loop has no timers: `asyncio.sleep(x)` with x > 0
raises NotImplementedError. Wait on the WASI clock instead
(`monotonic_clock.wait_for`); `asyncio.gather` and tasks work as usual.
"""

import asyncio

import componentize_py_async_support
import wit_world
from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import monotonic_clock
from wit_world.imports.wasi_http_types import Fields, Method_Get, Method_Post, Request, Response

TEXT = [("content-type", b"text/plain; charset=utf-8")]


class Handler(exports.Handler):
    async def handle(self, request: Request) -> Response:
        method = request.get_method()
        path = request.get_path_with_query()

        if isinstance(method, Method_Get) and path == "/":
            return text(200, "hello from Python (WASI 0.3)\n")

        if isinstance(method, Method_Post) and path == "/echo":
            # The request body stream becomes the response body unchanged:
            # the host copies it through without the guest touching a byte.
            headers = [(k, v) for k, v in request.get_headers().copy_all() if k == "content-type"]
            body, trailers = Request.consume_body(request, unit_future())
            return Response.new(Fields.from_list(headers), body, trailers)[0]

        if isinstance(method, Method_Get) and path == "/both":
            start = monotonic_clock.now()
            await asyncio.gather(sleep_ms(50), sleep_ms(50))
            elapsed = (monotonic_clock.now() - start) // 1_000_000
            return text(200, f"two 50 ms waits took {elapsed} ms\n")

        return text(404, "not found\n")


async def sleep_ms(ms: int) -> None:
    await monotonic_clock.wait_for(ms * 1_000_000)


def text(status: int, body: str) -> Response:
    """A response whose body a spawned task writes once the host reads it."""
    tx, rx = wit_world.byte_stream()

    async def send() -> None:
        with tx:
            await tx.write_all(body.encode())

    componentize_py_async_support.spawn(send())
    response = Response.new(Fields.from_list(TEXT), rx, no_trailers())[0]
    response.set_status_code(status)
    return response


def no_trailers():
    return wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(lambda: Ok(None))[1]


def unit_future():
    return wit_world.result_unit_wasi_http_types_error_code_future(lambda: Ok(None))[1]
