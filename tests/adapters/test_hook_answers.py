"""Each adapter's deny path with an ``on_error`` hook that gets its answer wrong.

The hook answers a refusal; whatever it returns, the answer is still a refusal: a success
status (a ``Response`` made without a status is a 200, which a proxy's ``auth_request``
reads as "allowed"), an accepted websocket, something that is not an answer at all or an
answer that fails. None of them may become a pass or a 500.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mtlsauth import MTLSAuthError, Verifier
from mtlsauth.adapters.asgi import MTLSMiddleware as ASGIMiddleware

MISSING = {
    "type": "urn:mtlsauth:error:certificate_missing",
    "title": "Client certificate required",
    "status": 401,
    "detail": "no client certificate was presented",
    "code": "certificate_missing",
}


# -- ASGI ---------------------------------------------------------------------------------------
async def _hello(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def asgi_get(verifier: Verifier, on_error) -> httpx.Response:
    app = ASGIMiddleware(_hello, verifier=verifier, on_error=on_error)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get("/pay")


async def test_asgi_an_on_error_answer_with_a_success_status_keeps_the_refusals(verifier) -> None:
    from starlette.responses import JSONResponse, PlainTextResponse

    for answer in (PlainTextResponse("sorry"), JSONResponse({"error": "no certificate"})):
        r = await asgi_get(verifier, lambda error, scope, a=answer: a)
        assert r.status_code == 401
        assert r.text != "hello"


async def test_asgi_an_on_error_answer_that_is_no_app_sends_the_default(verifier) -> None:
    for answer in ({"error": "no certificate"}, "refused", 401):
        r = await asgi_get(verifier, lambda error, scope, a=answer: a)
        assert (r.status_code, r.json()) == (401, MISSING)


async def test_asgi_an_on_error_app_that_fails_sends_the_default(verifier) -> None:
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("template missing")

    r = await asgi_get(verifier, lambda error, scope: broken)
    assert (r.status_code, r.json()) == (401, MISSING)


async def test_asgi_an_on_error_app_cannot_accept_a_refused_websocket(verifier) -> None:
    async def accepts(scope, receive, send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "welcome"})
        await send({"type": "websocket.close", "code": 1000})

    sent: list[dict] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive():
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect"}

    async def send(message):
        sent.append(message)

    app = ASGIMiddleware(_hello, verifier=verifier, on_error=lambda error, scope: accepts)
    scope = {"type": "websocket", "path": "/ws", "headers": [], "client": ("127.0.0.1", 1)}
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "certificate_missing"}]


# -- WSGI ---------------------------------------------------------------------------------------
def wsgi_get(verifier: Verifier, on_error):
    import werkzeug
    from werkzeug.test import Client

    from mtlsauth.adapters.wsgi import MTLSMiddleware

    def hello(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"hello"]

    client = Client(MTLSMiddleware(hello, verifier=verifier, on_error=on_error))
    assert werkzeug is not None
    return client.get("/pay", environ_base={"REMOTE_ADDR": "192.0.2.7"})


def test_wsgi_an_on_error_answer_with_a_success_status_keeps_the_refusals(verifier) -> None:
    import werkzeug

    r = wsgi_get(verifier, lambda error, environ: werkzeug.Response("sorry"))
    assert (r.status_code, r.text) == (401, "sorry")


def test_wsgi_an_on_error_answer_that_is_no_app_sends_the_default(verifier) -> None:
    for answer in ({"error": "no certificate"}, "refused", 401):
        r = wsgi_get(verifier, lambda error, environ, a=answer: a)
        assert (r.status_code, r.json) == (401, MISSING)


def test_wsgi_an_on_error_app_that_fails_sends_the_default(verifier) -> None:
    def broken(environ, start_response):
        raise RuntimeError("template missing")

    r = wsgi_get(verifier, lambda error, environ: broken)
    assert (r.status_code, r.json) == (401, MISSING)


def test_wsgi_an_on_error_app_that_fails_while_its_answer_is_read_sends_the_default(
    verifier,
) -> None:
    # A generator app fails when the server reads it, after the middleware returned: that
    # was the server's 500 (and a traceback), not the refusal.
    def lazy(environ, start_response):
        raise RuntimeError("template missing")
        yield b""

    def lazy_after_start(environ, start_response):
        start_response("403 Forbidden", [("content-type", "text/html")])
        yield b"<h1>"
        raise RuntimeError("template missing")

    closed = []

    class Body:
        def __iter__(self):
            raise RuntimeError("stream broken")

        def close(self):
            closed.append(True)

    def body_fails(environ, start_response):
        start_response("403 Forbidden", [])
        return Body()

    def never_starts(environ, start_response):
        return [b"refused"]

    def text_body(environ, start_response):
        start_response("403 Forbidden", [])
        return ["refused"]

    for app in (lazy, lazy_after_start, body_fails, never_starts, text_body):
        r = wsgi_get(verifier, lambda error, environ, a=app: a)
        assert (r.status_code, r.json) == (401, MISSING), app.__name__
        assert r.headers["content-type"] == "application/problem+json"
    assert closed == [True]


def test_wsgi_an_on_error_app_with_headers_no_server_takes_sends_the_default(verifier) -> None:
    # A dict of headers (or a pair of bytes) fails in the server once the middleware has
    # returned: a 500 rather than the refusal.
    for headers in ({"content-type": "text/plain"}, [(b"content-type", b"text/plain")]):

        def app(environ, start_response, h=headers):
            start_response("403 Forbidden", h)
            return [b"refused"]

        r = wsgi_get(verifier, lambda error, environ, a=app: a)
        assert (r.status_code, r.json) == (401, MISSING)


def test_wsgi_an_on_error_generator_app_is_answered_as_a_refusal(verifier) -> None:
    def lazy(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        yield b"sor"
        yield b"ry"

    r = wsgi_get(verifier, lambda error, environ: lazy)
    assert (r.status_code, r.text) == (401, "sorry")


def test_wsgi_refuses_a_coroutine_on_error_at_construction(verifier) -> None:
    from mtlsauth.adapters.wsgi import MTLSMiddleware

    async def on_error(error, environ):
        return None

    with pytest.raises(TypeError, match="on_error"):
        MTLSMiddleware(lambda e, s: [], verifier=verifier, on_error=on_error)


def test_wsgi_an_awaitable_from_on_error_sends_the_default(verifier) -> None:
    made = []

    async def later():
        return None

    def on_error(error, environ):
        made.append(later())
        return made[-1]

    r = wsgi_get(verifier, on_error)
    assert (r.status_code, r.json) == (401, MISSING)
    assert made[0].cr_frame is None  # closed, never left to warn


# -- aiohttp ------------------------------------------------------------------------------------
async def test_aiohttp_an_on_error_answer_with_a_success_status_keeps_the_refusals(
    aiohttp_client, verifier
) -> None:
    from aiohttp import web

    from mtlsauth.adapters.aiohttp import mtls_middleware

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def on_error(error: MTLSAuthError, request: web.Request) -> web.Response:
        return web.Response(text="sorry")

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier, on_error=on_error)])
    app.router.add_get("/pay", hello)
    client = await aiohttp_client(app)
    r = await client.get("/pay")
    assert (r.status, await r.text()) == (401, "sorry")


@pytest.mark.parametrize("kind", ["response", "stream", "websocket"])
async def test_aiohttp_an_on_error_answer_prepared_with_a_success_status_closes_the_connection(
    aiohttp_client, verifier, caplog, kind
) -> None:
    """A hook that prepared its own answer (a 200 stream, an accepted websocket) already
    queued the status line: it cannot be changed any more, so the connection is dropped and
    the client never reads a whole success. Recent aiohttp releases buffer a ``Response``'s
    headers until its body, and nothing is sent; a ``StreamResponse`` (and any response on
    older releases) sends its headers as it is prepared, so the client sees them and then a
    connection cut before the body."""
    import aiohttp
    from aiohttp import web

    from mtlsauth.adapters.aiohttp import mtls_middleware

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def on_error(error: MTLSAuthError, request: web.Request) -> web.StreamResponse:
        if kind == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            return ws
        if kind == "response":
            answer: web.StreamResponse = web.Response(text="sorry")  # a 200
        else:
            answer = web.StreamResponse(status=200)
            answer.content_length = 5
        await answer.prepare(request)
        return answer

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier, on_error=on_error)])
    app.router.add_get("/pay", hello)
    client = await aiohttp_client(app)
    with caplog.at_level("WARNING", logger="mtlsauth"):
        if kind == "websocket":
            # The hook's own handshake went out at once; the connection is dropped right
            # after it, before any message.
            async with client.ws_connect("/pay") as ws:
                message = await ws.receive(timeout=5)
            assert message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            )
        else:

            async def fetch() -> bytes:
                r = await client.get("/pay")
                return await r.read()

            with pytest.raises((aiohttp.ClientError, ConnectionError)):
                await asyncio.wait_for(fetch(), 10)  # a cut, never a timeout or a body
    assert "the connection is closed instead" in caplog.text
