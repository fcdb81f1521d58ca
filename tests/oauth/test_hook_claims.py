"""An ``on_decision`` hook that changes the token claims it is handed changes nothing the
application reads.

The hook runs before the application, and the claims are a mutable mapping: a hook that
redacts a claim before logging it (``claims.pop("sub")``) or writes into a nested one would
otherwise hand the application claims its token never carried. Each adapter is driven in
process with a route whose ``TokenCheck`` returns nested claims, and a hook that rewrites
every part of them.
"""

from __future__ import annotations

import copy
import threading
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mtlsauth import ForwardedCert, Route, TokenCheck, Verifier
from mtlsauth._guard import Decision, _for_hook
from mtlsauth.adapters import aiohttp as aio
from mtlsauth.adapters import aiohttp_oauth, asgi, asgi_oauth, wsgi, wsgi_oauth
from mtlsauth.testing import CA

HEADER = "x-ssl-client-cert"
CLAIMS: dict[str, Any] = {
    "sub": "client-1",
    "scope": "read",
    "aud": ["api"],
    "ext": {"roles": ["reader"]},
}


def _rewrite(decision: Decision) -> None:
    """What a careless hook does to the claims it logs: every kind of change in place."""
    claims = decision.token
    assert isinstance(claims, dict)
    claims.pop("sub")
    claims["scope"] = "admin"
    claims["aud"].append("billing")
    claims["ext"]["roles"].append("admin")


class _Opaque(dict[str, Any]):
    """Claims a validator may return that refuse to be copied (a lock cannot be)."""

    def __init__(self) -> None:
        super().__init__(scope="read")
        self.lock = threading.Lock()


class World:
    def __init__(self, ca: CA, opaque: bool = False) -> None:
        self.client = ca.issue_client_cert(common_name="alice", organization="bank")
        self.verifier = Verifier(
            trust_store=ca.trust_store(),
            forwarded=ForwardedCert.preset("nginx", header=HEADER, trusted_proxies=["127.0.0.1"]),
        )
        self.opaque = opaque
        self.hooked: list[object] = []
        check = TokenCheck(self.introspect, binding="if_present")
        self.routes = [Route("/claims", token=check)]

    def introspect(self, token: str) -> object:
        if token != "good":
            raise LookupError("unknown token")
        return _Opaque() if self.opaque else copy.deepcopy(CLAIMS)

    def on_decision(self, decision: Decision) -> None:
        self.hooked.append(decision.token)
        if decision.token is not None and not self.opaque:
            _rewrite(decision)
        elif decision.token is not None:
            decision.token["scope"] = "admin"  # type: ignore[index]

    def headers(self) -> dict[str, str]:
        return {HEADER: quote(self.client.cert_pem.text(), safe=""), "authorization": "Bearer good"}


def _seen(claims: object) -> object:
    """What the application answers about the claims it read."""
    return dict(claims) if isinstance(claims, dict) else None


@pytest.fixture(params=[False, True], ids=["mapping", "uncopyable"])
def world(ca: CA, request: pytest.FixtureRequest) -> World:
    return World(ca, opaque=request.param)


def _expect(world: World, body: object) -> None:
    if world.opaque:
        assert body == {"scope": "read"}
        assert world.hooked == [None]  # claims that cannot be copied are not shown to the hook
    else:
        assert body == CLAIMS
        assert len(world.hooked) == 1
        assert world.hooked[0] != CLAIMS  # the hook did change its own copy


async def test_asgi_app_reads_the_claims_the_token_carried(world: World) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = httpx.Response(200, json=_seen(asgi_oauth.token_claims_from_scope(scope)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.content})

    mw = asgi.MTLSMiddleware(
        app, verifier=world.verifier, routes=world.routes, on_decision=world.on_decision
    )
    transport = httpx.ASGITransport(app=mw, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://rs") as client:
        response = await client.get("/claims", headers=world.headers())
    assert response.status_code == 200
    _expect(world, response.json())


def test_wsgi_app_reads_the_claims_the_token_carried(world: World) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = httpx.Response(200, json=_seen(wsgi_oauth.token_claims_from_environ(environ)))
        start_response("200 OK", [("content-type", "application/json")])
        return [body.content]

    mw = wsgi.MTLSMiddleware(
        app, verifier=world.verifier, routes=world.routes, on_decision=world.on_decision
    )
    transport = httpx.WSGITransport(app=mw, remote_addr="127.0.0.1")
    with httpx.Client(transport=transport, base_url="http://rs") as client:
        response = client.get("/claims", headers=world.headers())
    assert response.status_code == 200
    _expect(world, response.json())


async def test_aiohttp_handler_reads_the_claims_the_token_carried(world: World) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(_seen(aiohttp_oauth.get_token_claims(request)))

    app = web.Application(
        middlewares=[
            aio.mtls_middleware(
                verifier=world.verifier, routes=world.routes, on_decision=world.on_decision
            )
        ]
    )
    app.router.add_get("/claims", handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/claims", headers=world.headers())
        assert response.status == 200
        _expect(world, await response.json())


def test_the_hook_copy_is_equal_and_separate() -> None:
    claims = copy.deepcopy(CLAIMS)
    decision = Decision(identity=None, error=None, mode="mandatory", token=claims)
    seen = _for_hook(decision)
    assert seen == decision
    assert seen.token == claims
    assert seen.token is not claims
    assert seen.token["ext"] is not claims["ext"]  # type: ignore[index]
    assert _for_hook(Decision(identity=None, error=None, mode="mandatory")).token is None
