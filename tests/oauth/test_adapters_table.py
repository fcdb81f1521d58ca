"""Route requirement x token state x certificate state, through every framework helper.

Each framework is driven in process, with the certificate arriving the same way everywhere:
nginx's URL-escaped PEM header from a trusted proxy (127.0.0.1, the test clients' peer).
The token validator stands for an introspection endpoint: a table of token -> claims.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fastapi import Depends, FastAPI
from flask import Flask
from starlette.requests import Request

from mtlsauth import ForwardedCert, Route, TokenCheck, Verifier
from mtlsauth.adapters import aiohttp as aio
from mtlsauth.adapters import aiohttp_oauth, asgi, asgi_oauth, wsgi, wsgi_oauth
from mtlsauth.testing import CA, ClientCert

HEADER = "x-ssl-client-cert"

# route            cert  | token: none bound-alice bound-twin unbound invalid padded inactive expired
TABLE = """
mtls-only          alice | ok        ok          ok         ok      ok      ok     ok       ok
mtls-only          twin  | ok        ok          ok         ok      ok      ok     ok       ok
mtls-only          none  | c_missing c_missing   c_missing  c_missing c_missing c_missing c_missing c_missing
mtls-oauth-opt     alice | ok        ok          mismatch   unbound invalid invalid invalid invalid
mtls-oauth-opt     twin  | ok        mismatch    ok         unbound invalid invalid invalid invalid
mtls-oauth-opt     none  | c_missing c_missing   c_missing  c_missing c_missing c_missing c_missing c_missing
both               alice | t_missing ok          mismatch   unbound invalid invalid invalid invalid
both               twin  | t_missing mismatch    ok         unbound invalid invalid invalid invalid
both               none  | c_missing c_missing   c_missing  c_missing c_missing c_missing c_missing c_missing
oauth-mtls-opt     alice | t_missing ok          mismatch   ok      invalid invalid invalid invalid
oauth-mtls-opt     twin  | t_missing mismatch    ok         ok      invalid invalid invalid invalid
oauth-mtls-opt     none  | t_missing mismatch    mismatch   ok      invalid invalid invalid invalid
"""
TOKENS = (
    "none",
    "bound-alice",
    "bound-twin",
    "unbound",
    "invalid",
    "padded",
    "inactive",
    "expired",
)
OUTCOMES = {
    "ok": (200, None, None),
    "c_missing": (401, "certificate_missing", 'MutualTLS error="certificate_missing"'),
    "t_missing": (401, "token_missing", "Bearer"),
    "mismatch": (401, "token_binding_mismatch", 'Bearer error="invalid_token"'),
    "unbound": (401, "token_not_bound", 'Bearer error="invalid_token"'),
    "invalid": (401, "token_invalid", 'Bearer error="invalid_token"'),
}


def _rows() -> list[pytest.ParameterSet]:
    rows = []
    for line in TABLE.strip().splitlines():
        left, right = line.split("|")
        route, cert = left.split()
        outcomes = right.split()
        assert len(outcomes) == len(TOKENS), line
        for token, outcome in zip(TOKENS, outcomes, strict=True):
            rows.append(pytest.param(route, cert, token, outcome, id=f"{route}-{cert}-{token}"))
    return rows


ROWS = _rows()


class World:
    """Two certificates with one subject DN (other keys), tokens bound to each, the apps."""

    def __init__(self) -> None:
        ca = CA(organization="oauth-table")
        self.ca = ca
        self.alice: ClientCert = ca.issue_client_cert(common_name="alice", organization="bank")
        self.twin: ClientCert = ca.issue_client_cert(common_name="alice", organization="bank")
        self.verifier = Verifier(
            trust_store=ca.trust_store(),
            forwarded=ForwardedCert.preset("nginx", header=HEADER, trusted_proxies=["127.0.0.1"]),
        )
        x5t = {
            name: self.verifier.verify_pem(c.chain_pem.text()).x5t_s256()
            for name, c in (("alice", self.alice), ("twin", self.twin))
        }
        assert x5t["alice"] != x5t["twin"]
        now = int(time.time())
        base = {"active": True, "sub": "client-1", "scope": "accounts payments", "exp": now + 600}
        self.claims: dict[str, dict[str, object]] = {
            "bound-alice": {**base, "cnf": {"x5t#S256": x5t["alice"]}},
            "bound-twin": {**base, "cnf": {"x5t#S256": x5t["twin"]}},
            "unbound": dict(base),
            "padded": {**base, "cnf": {"x5t#S256": x5t["alice"] + "="}},
            "inactive": {"active": False, "cnf": {"x5t#S256": x5t["alice"]}},
            "expired": {**base, "exp": now - 3600, "cnf": {"x5t#S256": x5t["alice"]}},
        }

    def introspect(self, token: str) -> dict[str, object]:
        if token not in self.claims:
            raise LookupError("unknown token")
        return self.claims[token]

    def checks(self) -> dict[str, TokenCheck | None]:
        return {
            "mtls-only": None,
            "mtls-oauth-opt": TokenCheck(self.introspect, required=False),
            "both": TokenCheck(self.introspect),
            "oauth-mtls-opt": TokenCheck(self.introspect, binding="if_present"),
        }

    def routes(self, *, with_tokens: bool) -> list[Route]:
        out = []
        for name, check in self.checks().items():
            mode = "optional" if name == "oauth-mtls-opt" else "mandatory"
            out.append(Route(f"/{name}", mode=mode, token=check if with_tokens else None))
        return out

    def headers(self, cert: str, token: str) -> dict[str, str]:
        headers = {}
        if cert != "none":
            which = self.alice if cert == "alice" else self.twin
            headers[HEADER] = quote(which.cert_pem.text(), safe="")
        if token != "none":
            headers["authorization"] = f"Bearer {token}"
        return headers


@pytest.fixture(scope="module")
def world() -> World:
    return World()


# -- ASGI / FastAPI ---------------------------------------------------------------------------
def fastapi_app(world: World, mechanism: str) -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        asgi.MTLSMiddleware,
        verifier=world.verifier,
        mode="mandatory",
        routes=world.routes(with_tokens=mechanism == "route"),
    )
    for name, check in world.checks().items():

        def make(name: str, check: TokenCheck | None):
            if check is None:

                def plain(who=Depends(asgi.optional_client_identity)):  # noqa: B008
                    return {"cn": who.common_name, "sub": None}

                return plain
            if mechanism == "route":

                def routed(conn_scope=Depends(_scope)):  # noqa: B008
                    claims = asgi_oauth.token_claims_from_scope(conn_scope)
                    return {"sub": claims["sub"] if claims else None}

                return routed

            def dependent(
                claims=Depends(asgi_oauth.require_token(check)),  # noqa: B008
                conn_scope=Depends(_scope),  # noqa: B008
            ):
                # The dependency stores what it returns where token_claims_from_scope reads.
                stored = asgi_oauth.token_claims_from_scope(conn_scope)
                if stored is not claims:
                    raise AssertionError("the claims in the scope differ from the dependency's")
                return {"sub": stored["sub"] if stored else None}

            return dependent

        app.get(f"/{name}")(make(name, check))
    return app


def _scope(request: Request) -> dict:
    return request.scope


async def _asgi_call(app, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://rs") as c:
        return await c.get(path, headers=headers)


# -- WSGI / Flask -----------------------------------------------------------------------------
def flask_app(world: World, mechanism: str) -> Flask:
    app = Flask(__name__)
    for name, check in world.checks().items():
        if check is None or mechanism == "route":

            def view(name: str = name, routed: bool = check is not None) -> dict:
                from flask import request

                if not routed:
                    return {"sub": None}
                claims = wsgi_oauth.token_claims_from_environ(request.environ)
                return {"sub": claims["sub"] if claims else None}

        else:

            def inner() -> dict:
                from flask import request

                claims = wsgi_oauth.token_claims_from_environ(request.environ)
                return {"sub": claims["sub"] if claims else None}

            view = wsgi_oauth.token_required(check)(inner)
        app.add_url_rule(f"/{name}", endpoint=name, view_func=view)
    app.wsgi_app = wsgi.MTLSMiddleware(
        app.wsgi_app,
        verifier=world.verifier,
        routes=world.routes(with_tokens=mechanism == "route"),
    )
    return app


# -- aiohttp ----------------------------------------------------------------------------------
def aiohttp_app(world: World, mechanism: str) -> web.Application:
    app = web.Application(
        middlewares=[
            aio.mtls_middleware(
                verifier=world.verifier, routes=world.routes(with_tokens=mechanism == "route")
            )
        ]
    )
    for name, check in world.checks().items():

        async def routed(request: web.Request, plain: bool = check is None) -> web.Response:
            if plain:
                return web.json_response({"sub": None})
            claims = aiohttp_oauth.get_token_claims(request)
            return web.json_response({"sub": claims["sub"] if claims else None})

        if check is not None and mechanism == "decorator":
            handler = aiohttp_oauth.token_required(check)(routed)
        else:
            handler = routed
        app.router.add_get(f"/{name}", handler)
    return app


async def _aiohttp_call(app: web.Application, path: str, headers: dict[str, str]):
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get(path, headers=headers)
        body = await resp.read()
        return resp.status, resp.headers.get("www-authenticate"), body, resp.content_type


# -- the table --------------------------------------------------------------------------------
def _expected_sub(outcome: str, token: str, route: str) -> str | None:
    if outcome != "ok" or route == "mtls-only" or token == "none":
        return None
    return "client-1"


@pytest.fixture(scope="module")
def apps(world: World):
    return {("asgi", m): fastapi_app(world, m) for m in ("route", "dependency")} | {
        ("wsgi", m): flask_app(world, m) for m in ("route", "decorator")
    }


@pytest.mark.parametrize("mechanism", ["route", "dependency"])
@pytest.mark.parametrize(("route", "cert", "token", "outcome"), ROWS)
async def test_asgi(apps, world, mechanism, route, cert, token, outcome) -> None:
    r = await _asgi_call(apps["asgi", mechanism], f"/{route}", world.headers(cert, token))
    _check(outcome, r.status_code, r.headers.get("www-authenticate"), r.json(), token, route)
    if outcome != "ok":
        assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("mechanism", ["route", "decorator"])
@pytest.mark.parametrize(("route", "cert", "token", "outcome"), ROWS)
def test_wsgi(apps, world, mechanism, route, cert, token, outcome) -> None:
    client = apps["wsgi", mechanism].test_client()
    r = client.get(f"/{route}", headers=world.headers(cert, token))
    _check(outcome, r.status_code, r.headers.get("www-authenticate"), r.get_json(), token, route)
    if outcome != "ok":
        assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("mechanism", ["route", "decorator"])
@pytest.mark.parametrize(("route", "cert", "token", "outcome"), ROWS)
async def test_aiohttp(world, mechanism, route, cert, token, outcome) -> None:
    import json

    status, challenge, body, ctype = await _aiohttp_call(
        aiohttp_app(world, mechanism), f"/{route}", world.headers(cert, token)
    )
    _check(outcome, status, challenge, json.loads(body), token, route)
    if outcome != "ok":
        assert ctype == "application/problem+json"


def _check(outcome, status, challenge, body, token, route) -> None:
    want_status, want_code, want_challenge = OUTCOMES[outcome]
    assert status == want_status, body
    if want_code is None:
        assert challenge is None
        assert body.get("sub") == _expected_sub(outcome, token, route)
        return
    assert body["code"] == want_code, body
    assert body["type"] == f"urn:mtlsauth:error:{want_code}"
    assert challenge is not None
    assert challenge.startswith(want_challenge), challenge
    if want_code == "token_missing":
        assert challenge == "Bearer"  # RFC 6750 3.1: no error code when no token came


async def test_check_token_stores_the_claims_for_a_plain_starlette_app(world) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route as StarletteRoute

    check = TokenCheck(world.introspect)

    async def endpoint(request: Request) -> JSONResponse:
        returned = await asgi_oauth.check_token(request.scope, check)
        stored = asgi_oauth.token_claims_from_scope(request.scope)
        return JSONResponse({"sub": stored["sub"], "same": stored is returned})

    app = asgi.MTLSMiddleware(
        Starlette(routes=[StarletteRoute("/s", endpoint)]), verifier=world.verifier
    )
    r = await _asgi_call(app, "/s", world.headers("alice", "bound-alice"))
    assert (r.status_code, r.json()) == (200, {"sub": "client-1", "same": True})


def test_table_covers_every_combination() -> None:
    combos = {(r.values[0], r.values[1], r.values[2]) for r in ROWS}
    assert len(combos) == 4 * 3 * len(TOKENS)
