"""auth-p3: a WASI 0.3 middleware (wasi:http/middleware@0.3.0) in async Python
that lets a request through only with `Authorization: Bearer TOKEN`, TOKEN
being the tenant's `AUTH_TOKEN` environment variable (Rust's `auth` in Python).

    no token, or another one   401 with WWW-Authenticate: Bearer, answered
                               here: the next hop never runs
    AUTH_TOKEN unset           500: the middleware refuses to run open
    the right token            handed to the next hop; its response comes
                               back with `x-middleware: python-auth` added,
                               its body and trailers streamed through

A middleware exports `wasi:http/handler@0.3.0` (`exports.Handler`, as in a
service) and imports it: `wit_world.imports.handler.handle(request)` is the
next hop, a coroutine that returns its response or raises
`Err(ErrorCode_...)`, which is left to propagate as this hop's error.

A response's headers cannot be changed in place: the pass-through builds a
new one from the next hop's status, headers plus ours, and the body stream
and trailers future of `Response.consume_body`, which the host copies
through without the guest touching a byte.

Read the environment per request, not at import: the module is initialised
at build time.
"""

import hmac

import componentize_py_async_support
import wit_world
from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import environment, handler
from wit_world.imports.wasi_http_types import ErrorCode_InternalError, Fields, Request, Response

TAG = ("x-middleware", b"python-auth")


class Handler(exports.Handler):
    async def handle(self, request: Request) -> Response:
        token = next((v for k, v in environment.get_environment() if k == "AUTH_TOKEN" and v), None)
        if token is None:
            return text(500, "auth: AUTH_TOKEN is not set\n")

        expected = f"Bearer {token}".encode()
        given = request.get_headers().get("authorization")
        # The same time whatever the token given, up to its length.
        if not any(hmac.compare_digest(v, expected) for v in given):
            return text(401, "unauthorized\n", [("www-authenticate", b"Bearer")])

        response = await handler.handle(request)  # the next hop
        headers = response.get_headers().copy_all()
        headers.append(TAG)
        status = response.get_status_code()
        body, trailers = Response.consume_body(response, unit_future())
        passed = Response.new(fields(headers), body, trailers)[0]
        set_status(passed, status)
        return passed


def text(status: int, body: str, extra=()) -> Response:
    """A text/plain response whose body a spawned task writes."""
    tx, rx = wit_world.byte_stream()

    async def send() -> None:
        with tx:
            await tx.write_all(body.encode())

    componentize_py_async_support.spawn(send())
    headers = [("content-type", b"text/plain; charset=utf-8"), TAG, *extra]
    response = Response.new(fields(headers), rx, no_trailers())[0]
    set_status(response, status)
    return response


def fields(headers) -> Fields:
    try:
        return Fields.from_list(headers)
    except Err:
        raise Err(ErrorCode_InternalError("auth-p3: bad headers"))


def set_status(response: Response, status: int) -> None:
    try:
        response.set_status_code(status)
    except Err:
        raise Err(ErrorCode_InternalError("auth-p3: bad status"))


def no_trailers():
    return wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(lambda: Ok(None))[1]


def unit_future():
    return wit_world.result_unit_wasi_http_types_error_code_future(lambda: Ok(None))[1]
