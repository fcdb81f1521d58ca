"""Refusals raised by the app's own dependencies, wherever the middleware sits.

Starlette and FastAPI apps (a mounted sub-app included) answer any exception with a 500 of
their own and then re-raise it. A refusal that a dependency raised must still reach the
client as that refusal (401/403 problem+json), never as the app's 500.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route as StarletteRoute

from mtlsauth import ClientIdentity, Policy, TokenCheck
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
