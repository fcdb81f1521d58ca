"""Refusals raised by the app's own dependencies, wherever the middleware sits.

Starlette and FastAPI apps (a mounted sub-app included) answer any exception with a 500 of
their own and then re-raise it. A refusal that a dependency raised must still reach the
client as that refusal (401/403 problem+json), never as the app's 500.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route as StarletteRoute

from mtlsauth import CertificateMissing, ClientIdentity, Policy, TokenCheck
from mtlsauth.adapters.asgi import (
    MTLSMiddleware,
    client_identity,
    identity_from_scope,
    require_client_cert,
)
from mtlsauth.adapters.asgi_oauth import require_token
from mtlsauth.adapters.fastapi import MutualTLS
from mtlsauth.testing import with_client_cert

ads_only = MutualTLS(policy=Policy(organizations={"ads"}))
check = TokenCheck(lambda token: {"sub": "x"}, binding="if_present")
token_claims = require_token(check)


def _routes(app: FastAPI) -> FastAPI:
    @app.get("/who")
    def who(i: Annotated[ClientIdentity, Depends(client_identity)]) -> dict[str, str | None]:
        return {"cn": i.common_name}

    @app.get("/ads")
    def ads(i: Annotated[ClientIdentity, Depends(ads_only)]) -> dict[str, str | None]:
        return {"cn": i.common_name}

    @app.get(
        "/ops", dependencies=[Depends(require_client_cert(policy=Policy(organizations={"ops"})))]
    )
    def ops() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/token")
    def token(claims: Annotated[Any, Depends(token_claims)]) -> dict[str, str]:
        return {"sub": claims["sub"]}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug in the app")

    return app


def _mounted(verifier) -> FastAPI:
    app = FastAPI()
    app.mount("/v1", _routes(FastAPI()))
    app.add_middleware(MTLSMiddleware, verifier=verifier, mode="optional")
    return app


def _wrapped(verifier) -> MTLSMiddleware:
    return MTLSMiddleware(_routes(FastAPI()), verifier=verifier, mode="optional")


async def _get(app, path, cert=None) -> httpx.Response:
    transport = httpx.ASGITransport(app=with_client_cert(app, cert), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
        return await client.get(path)


async def test_dependency_refusals_of_a_mounted_sub_app_are_refusals(verifier, certs) -> None:
    app = _mounted(verifier)
    for path, cert, status, code in [
        ("/v1/who", None, 401, "certificate_missing"),
        ("/v1/ads", None, 401, "certificate_missing"),
        ("/v1/ads", certs.good, 403, "organization_not_allowed"),
        ("/v1/ops", certs.good, 403, "organization_not_allowed"),
        ("/v1/token", certs.good, 401, "token_missing"),
    ]:
        r = await _get(app, path, cert)
        assert (r.status_code, r.json()["code"]) == (status, code), path
        assert r.headers["content-type"] == "application/problem+json"
    r = await _get(app, "/v1/who", certs.good)
    assert (r.status_code, r.json()) == (200, {"cn": "ledger"})


async def test_dependency_refusals_behind_a_wrapping_middleware_are_refusals(
    verifier, certs
) -> None:
    app = _wrapped(verifier)
    r = await _get(app, "/who")
    assert (r.status_code, r.json()["code"]) == (401, "certificate_missing")
    r = await _get(app, "/ads", certs.good)
    assert (r.status_code, r.json()["code"]) == (403, "organization_not_allowed")
    assert (await _get(app, "/who", certs.good)).json() == {"cn": "ledger"}


async def test_other_failures_keep_the_apps_own_500(verifier, certs) -> None:
    for app, path in [(_mounted(verifier), "/v1/boom"), (_wrapped(verifier), "/boom")]:
        r = await _get(app, path, certs.good)
        assert (r.status_code, r.text) == (500, "Internal Server Error")


async def test_a_500_the_app_answers_itself_is_sent(verifier, certs) -> None:
    async def failing(request: Request) -> PlainTextResponse:
        assert identity_from_scope(request.scope) is not None
        return PlainTextResponse("down", status_code=500)

    async def chunks():
        yield b"a"
        yield b"b"

    async def streamed(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks(), status_code=500)

    inner = Starlette(
        routes=[StarletteRoute("/fail", failing), StarletteRoute("/stream", streamed)]
    )
    app = MTLSMiddleware(inner, verifier=verifier)
    r = await _get(app, "/fail", certs.good)
    assert (r.status_code, r.text) == (500, "down")
    r = await _get(app, "/stream", certs.good)
    assert (r.status_code, r.text) == (500, "ab")


# -- WSGI: a plain WSGI app (no framework that turns exceptions into its own 500) ---------------
def _wsgi_app(environ, start_response):
    from mtlsauth.adapters.wsgi import identity_from_environ
    from mtlsauth.adapters.wsgi_oauth import check_token

    who = identity_from_environ(environ)
    if environ["PATH_INFO"] == "/ops":
        if who is None:
            raise CertificateMissing("this path requires a client certificate")
        start_response("200 OK", [("Content-Type", "text/plain")])  # then it checks more
        Policy(organizations={"ops"}).check(who)
    elif environ["PATH_INFO"] == "/token":
        check_token(environ, check)
    elif environ["PATH_INFO"] == "/boom":
        raise RuntimeError("a bug in the app")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _serve_wsgi(app, path: str, cert=None) -> tuple[int, dict[str, str], bytes]:
    """One request through wsgiref's handler, whose start_response follows PEP 3333 (a
    second call with exc_info replaces headers not yet sent)."""
    import io
    from wsgiref.handlers import SimpleHandler

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",  # the trusted proxy
    }
    if cert is not None:
        environ["HTTP_X_SSL_CLIENT_CERT"] = quote(cert.chain_pem.bytes().decode(), safe="")
    out, err = io.BytesIO(), io.StringIO()
    SimpleHandler(io.BytesIO(), out, err, environ, multithread=False).run(app)
    head, _, body = out.getvalue().partition(b"\r\n\r\n")  # names and values lower-cased
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_a_refusal_raised_by_a_plain_wsgi_app_is_answered_as_a_refusal(fwd_verifier, certs) -> None:
    """``check_token(environ, check)`` and a stricter ``Policy.check`` raise an
    ``MTLSAuthError``; the WSGI middleware let it through to the server (a 500), where
    the ASGI and aiohttp middlewares answer it."""
    import json

    from mtlsauth.adapters.wsgi import MTLSMiddleware as WSGIMiddleware

    app = WSGIMiddleware(_wsgi_app, verifier=fwd_verifier, mode="optional")
    for path, cert, status, code in [
        ("/ops", None, 401, "certificate_missing"),
        ("/ops", certs.good, 403, "organization_not_allowed"),  # after start_response
        ("/token", certs.good, 401, "token_missing"),
    ]:
        got, headers, body = _serve_wsgi(app, path, cert)
        assert (got, json.loads(body)["code"]) == (status, code), path
        assert headers["content-type"] == "application/problem+json"
        if path == "/token":
            assert headers["www-authenticate"].startswith("bearer")
    assert _serve_wsgi(app, "/other", certs.good)[::2] == (200, b"ok")
    assert _serve_wsgi(app, "/boom", certs.good)[0] == 500  # not a refusal: the server's


async def test_route_patterns_of_a_parent_middleware_include_the_mount_prefix(
    verifier, certs
) -> None:
    """As docs/fastapi.md says: on the app that mounts, the path keeps the mount prefix;
    on the mounted app, it is the path below it."""
    from mtlsauth import Route

    def sub() -> FastAPI:
        inner = FastAPI()

        @inner.get("/admin/x")
        def admin() -> dict[str, bool]:
            return {"ok": True}

        return inner

    parent = FastAPI()
    parent.mount("/v1", sub())
    parent.add_middleware(
        MTLSMiddleware,
        verifier=verifier,
        mode="optional",
        routes=[Route("/v1/admin/*", mode="mandatory")],
    )
    assert (await _get(parent, "/v1/admin/x")).status_code == 401
    child = sub()
    child.add_middleware(
        MTLSMiddleware,
        verifier=verifier,
        mode="optional",
        routes=[Route("/admin/*", mode="mandatory")],
    )
    mounted = FastAPI()
    mounted.mount("/v1", child)
    assert (await _get(mounted, "/v1/admin/x")).status_code == 401
    assert (await _get(mounted, "/v1/admin/x", certs.good)).status_code == 200
