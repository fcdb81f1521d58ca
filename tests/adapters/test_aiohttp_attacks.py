"""aiohttp adapter under attack: raw request lines and headers sent over a socket to a
real aiohttp server in process (the test client would normalise what is tried here)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from mtlsauth import ForwardedCert, Verifier
from mtlsauth.adapters import aiohttp as adapter
from mtlsauth.adapters.aiohttp import Route, get_identity, mtls_middleware


async def send(server, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` as is; the status line and the body of the answer."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        out = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = out.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


def get(target: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: x", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.fixture
def no_chain(monkeypatch) -> None:
    """No TLS here: every request comes without a certificate."""
    monkeypatch.setattr(adapter, "peer_chain", lambda ssl_object: ())


@pytest.fixture
async def server(aiohttp_server, pki, no_chain):
    """``/admin`` and ``/sub/admin`` (a sub-application) need a certificate, ``/healthz``
    and ``/pub/*`` are exempt; ``hits`` records every request that reached an admin handler."""
    hits: list[str] = []

    async def admin(request: web.Request) -> web.Response:
        hits.append(request.raw_path)
        await request.read()
        return web.Response(text="admin")

    async def public(request: web.Request) -> web.Response:
        return web.Response(text="public")

    sub = web.Application()
    sub.router.add_get("/admin", admin)
    sub.router.add_get("/{tail:.*}", public)
    app = web.Application(
        middlewares=[
            mtls_middleware(
                verifier=Verifier(trust_store=pki.root.trust_store()),
                mode="optional",
                exempt_paths={"/healthz", "/pub/*"},
                routes=[Route("/sub/admin", mode="mandatory"), Route("/admin*", mode="mandatory")],
            )
        ]
    )
    app.router.add_get("/healthz", public)
    app.router.add_get("/admin", admin)
    app.router.add_post("/admin/upload", admin)
    app.router.add_get("/pub/{tail:.*}", public)
    app.add_subapp("/sub", sub)
    srv = await aiohttp_server(app)
    srv.hits = hits
    return srv


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"http://x/admin", b"401"),  # absolute form: request.path is the URL's path
        (b"HTTP://x:80/admin", b"401"),
        (b"https://x/sub/admin", b"401"),
        (b"http://x//admin", b"400"),
        (b"http://x/healthz/../admin", b"400"),
        (b"http://x/%61dmin", b"400"),
        (b"/sub/admin", b"401"),  # a sub-application's route, prefix included
        (b"/sub//admin", b"400"),
        (b"/sub/./admin", b"400"),
        (b"/sub/%61dmin", b"400"),
        (b"/pub/../admin", b"400"),
        (b"/pub/%2e%2e/admin", b"400"),
        (b"/admin;x", b"400"),
        (b"/admin%00", b"400"),
        (b"//admin", b"400"),
        (b"*", b"400"),  # OPTIONS * below: no path to match a route against
    ],
)
async def test_no_target_reaches_a_protected_handler(server, target, status) -> None:
    method = b"OPTIONS" if target == b"*" else b"GET"
    line, _ = await send(server, get(target, method=method))
    assert line.split(b" ")[1] == status
    assert server.hits == []


async def test_absolute_form_exempt_path_still_exempt(server) -> None:
    line, body = await send(server, get(b"http://x/healthz"))
    assert (line.split(b" ")[1], body) == (b"200", b"public")


async def test_head_refusal_has_no_body(server) -> None:
    line, body = await send(server, get(b"/admin", method=b"HEAD"))
    assert (line.split(b" ")[1], body) == (b"401", b"")


async def test_expect_continue_refused_body_never_reaches_the_handler(server) -> None:
    # aiohttp answers Expect: 100-continue (the route's expect_handler) before any
    # middleware runs: the client is invited to send its body, but the refusal follows
    # and no handler ever reads it (docs/security.md, "Red-team pass: aiohttp").
    request = (
        b"POST /admin/upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
            b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(b"hello")
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert rest.startswith(b"HTTP/1.1 401 ")
    assert server.hits == []


@pytest.mark.parametrize(
    "header",
    [
        b"X-SSL-CLIENT-CERT: forged",
        b"x-ssl-client_cert: forged",
        b"X_SSL_CLIENT_CERT: forged",
        b"x-ssl-client-cert: one\r\nX-Ssl-Client-Cert: two",
    ],
)
@pytest.mark.parametrize("mode", ["off", "optional"])
async def test_forged_header_spellings_hidden(aiohttp_server, pki, no_chain, header, mode) -> None:
    seen: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            (
                [k for k in request.headers if "cert" in k.lower()],
                [k for k, _ in request.raw_headers if b"cert" in k.lower()],
                get_identity(request),
            )
        )
        return web.Response(text="ok")

    forwarded = ForwardedCert.preset(
        "nginx", header="x-ssl-client-cert", trusted_proxies=["10.0.0.1"]
    )
    verifier = Verifier(trust_store=pki.root.trust_store(), forwarded=forwarded)
    app = web.Application(
        middlewares=[mtls_middleware(verifier=verifier, mode=mode, exempt_paths={"/"})]
    )
    app.router.add_get("/", handler)
    line, _ = await send(await aiohttp_server(app), get(b"/", header))
    assert line.split(b" ")[1] == b"200"
    assert seen == [([], [], None)]


@pytest.mark.parametrize(
    "header",
    [b"X-SSL-Client-Cert : b", b"x-ssl-client-cert\t: b", b" x-ssl-client-cert: b", b"x\xe9: b"],
)
async def test_malformed_header_names_never_reach_the_middleware(
    aiohttp_server, pki, no_chain, header
) -> None:
    # aiohttp's parser refuses these itself, so no other spelling of the name gets through
    app = web.Application(
        middlewares=[mtls_middleware(verifier=Verifier(trust_store=pki.root.trust_store()))]
    )
    line, _ = await send(await aiohttp_server(app), get(b"/", header))
    assert line.split(b" ")[1] == b"400"


async def test_forged_header_does_not_hide_the_identity_from_outer_middlewares(
    aiohttp_client, certs, fwd_verifier, monkeypatch
) -> None:
    """A client with a good certificate that added a certificate header made the middleware
    clone the request to hide it, and the identity (and token claims) went on the clone
    only: a middleware placed before ``mtls_middleware`` (an audit log, a rate limit per
    client) then read no identity (``IdentityMissing``, a 500 if unhandled, or an
    anonymous client if handled), for the price of one extra header."""
    from mtlsauth import IdentityMissing, TokenCheck
    from mtlsauth.adapters.aiohttp_oauth import get_token_claims

    monkeypatch.setattr(adapter, "peer_chain", lambda ssl_object: certs.good.chain_der)
    outer_seen: list[object] = []

    @web.middleware
    async def outer(request: web.Request, handler):
        response = await handler(request)
        try:
            who = get_identity(request)
            outer_seen.append((who.common_name if who else None, get_token_claims(request)))
        except IdentityMissing as exc:
            outer_seen.append(exc.code)
        return response

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"header": request.headers.get("x-ssl-client-cert")})

    check = TokenCheck(lambda token: {"sub": "x"}, binding="if_present", required=False)
    app = web.Application(
        middlewares=[
            outer,
            mtls_middleware(verifier=fwd_verifier, routes=[Route("/*", token=check)]),
        ]
    )
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    for headers in ({}, {"X-SSL-Client-Cert": "forged"}, {"x_ssl_client_cert": "forged"}):
        r = await client.get("/", headers=headers)
        assert (r.status, await r.json()) == (200, {"header": None})
    assert outer_seen == [("ledger", None)] * 3


async def test_hiding_a_header_keeps_what_an_earlier_proxy_fix_set(
    aiohttp_client, fwd_verifier, no_chain
) -> None:
    """A middleware before ``mtls_middleware`` that sets the client's address, scheme and
    host (``clone(remote=..., ...)``, as aiohttp-remotes does from X-Forwarded-*) had its
    work undone when a certificate header was hidden: the clone was built from the message
    alone. One extra header then turned ``request.remote`` back into the socket peer (the
    load balancer's own, often allow-listed, address) and ``request.secure`` to False."""
    want = ["198.51.100.7", "https", "api.example", True]

    @web.middleware
    async def proxy_fix(request: web.Request, handler):
        return await handler(request.clone(remote=want[0], scheme=want[1], host=want[2]))

    async def handler(request: web.Request) -> web.Response:
        return web.json_response([request.remote, request.scheme, request.host, request.secure])

    app = web.Application(
        middlewares=[proxy_fix, mtls_middleware(verifier=fwd_verifier, mode="off")]
    )
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    for headers in ({}, {"X-SSL-Client-Cert": "forged"}, {"x_ssl_client_cert": "forged"}):
        r = await client.get("/", headers=headers)
        assert (r.status, await r.json()) == (200, want)


async def test_hiding_a_header_without_host_does_no_lookup(
    aiohttp_server, fwd_verifier, no_chain, monkeypatch
) -> None:
    # aiohttp before 3.10 answers request.host with socket.getfqdn() (blocking) when the
    # request has no Host header: the clone must not ask for it
    import socket

    def lookup(*args: object) -> str:
        raise AssertionError("socket.getfqdn() called on the event loop")

    monkeypatch.setattr(socket, "getfqdn", lookup)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=str(request.headers.get("x-ssl-client-cert")))

    app = web.Application(middlewares=[mtls_middleware(verifier=fwd_verifier, mode="off")])
    app.router.add_get("/", handler)
    request = b"GET / HTTP/1.0\r\nX-SSL-Client-Cert: forged\r\n\r\n"
    line, body = await send(await aiohttp_server(app), request)
    assert (line.split(b" ")[1], body) == (b"200", b"None")


async def test_hiding_a_header_after_the_body_was_read_is_refused_not_a_500(
    aiohttp_client, fwd_verifier, no_chain
) -> None:
    """aiohttp refuses to clone a request whose body was read (``RuntimeError``): with a
    middleware before ``mtls_middleware`` that reads the body (a request log, a signature
    check), any client could turn its request into a 500 and a logged traceback by adding
    a certificate header. It is refused with 400 ``request_malformed`` instead, as a header
    that cannot be re-encoded is."""

    @web.middleware
    async def reads_body(request: web.Request, handler):
        await request.read()
        return await handler(request)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application(
        middlewares=[reads_body, mtls_middleware(verifier=fwd_verifier, mode="off")]
    )
    app.router.add_post("/", handler)
    client = await aiohttp_client(app)
    r = await client.post("/", data=b"payload")
    assert (r.status, await r.read()) == (200, b"payload")
    r = await client.post("/", data=b"payload", headers={"X-SSL-Client-Cert": "forged"})
    assert r.status == 400
    assert (await r.json())["code"] == "request_malformed"
    r = await client.post("/", data=b"", headers={"X-SSL-Client-Cert": "forged"})
    assert (r.status, await r.read()) == (200, b"")  # nothing read: cloned, hidden


async def test_hiding_a_header_for_a_client_that_went_away_is_no_traceback(
    fwd_verifier, caplog
) -> None:
    """A client that resets its connection while its request waits (here behind a slow
    middleware) leaves no transport: aiohttp before 3.10 asserts one in ``clone()``, so
    hiding its certificate header ended in an ``AssertionError`` and an "Error handling
    request" traceback. It is refused with ``request_malformed`` (nobody is left to read
    the answer), on every release, and the handler does not run for it."""
    import logging
    import socket

    decisions: list[object] = []
    ran: list[str] = []
    gone = asyncio.Event()

    @web.middleware
    async def slow_first(request: web.Request, handler):
        for _ in range(200):
            if request.transport is None:
                break
            await asyncio.sleep(0.01)
        gone.set()
        return await handler(request)

    async def handler(request: web.Request) -> web.Response:
        ran.append("handler")
        return web.Response(text="x")

    app = web.Application(
        middlewares=[
            slow_first,
            mtls_middleware(verifier=fwd_verifier, mode="off", on_decision=decisions.append),
        ]
    )
    app.router.add_get("/", handler)
    # A plain runner: aiohttp's test server cancels handlers when the client goes away,
    # which production servers (handler_cancellation=False) do not.
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        sock = socket.create_connection(("127.0.0.1", runner.addresses[0][1]))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-SSL-Client-Cert: forged\r\n\r\n")
        await asyncio.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST
        await asyncio.wait_for(gone.wait(), 5)
        for _ in range(100):
            if decisions:
                break
            await asyncio.sleep(0.01)
    finally:
        await runner.cleanup()
    assert [d.code for d in decisions] == ["request_malformed"]
    assert ran == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("target", "host"),
    [
        (b"http://x/", b"Host: y:80"),
        (b"http://[::1]:8080/", b"Host: x"),
        (b"/", b"Host: a b"),
        (b"/", b"Host: [::1"),
    ],
)
async def test_clone_sees_the_host_the_request_had(
    aiohttp_server, fwd_verifier, no_chain, target, host
) -> None:
    # the host passed to clone() is what the request itself answered, absolute form or not
    async def handler(request: web.Request) -> web.Response:
        return web.json_response([request.scheme, request.host, request.path])

    app = web.Application(middlewares=[mtls_middleware(verifier=fwd_verifier, mode="off")])
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)

    def request(*extra: bytes) -> bytes:
        lines = [b"GET " + target + b" HTTP/1.1", host, *extra, b"Connection: close"]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    plain = await send(server, request())
    hidden = await send(server, request(b"X-SSL-Client-Cert: forged"))
    assert plain[0].split(b" ")[1] == b"200"
    assert hidden == plain


@pytest.mark.parametrize("first", [True, False])
async def test_a_path_rewrite_after_the_middleware_does_not_bypass_it(
    aiohttp_client, pki, no_chain, first
) -> None:
    """aiohttp routes before any middleware runs: a middleware that rewrites the path
    (``clone(rel_url=...)``) changes what ``mtls_middleware`` matches when placed before it,
    not which handler runs. Placed after it (docs/aiohttp.md), the rewrite changes nothing
    the check saw."""

    @web.middleware
    async def rewrite(request: web.Request, handler):
        return await handler(request.clone(rel_url="/healthz"))

    async def admin(request: web.Request) -> web.Response:
        return web.Response(text="admin")

    mtls = mtls_middleware(
        verifier=Verifier(trust_store=pki.root.trust_store()), exempt_paths={"/healthz"}
    )
    app = web.Application(middlewares=[mtls, rewrite] if first else [rewrite, mtls])
    app.router.add_get("/admin", admin)
    r = await (await aiohttp_client(app)).get("/admin")
    # the documented hazard of the wrong order, pinned so that a fix shows up here
    assert r.status == (401 if first else 200)
