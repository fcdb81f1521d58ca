"""ASGI adapter in process: httpx.ASGITransport + with_client_cert, FastAPI and raw ASGI apps."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from mtlsauth import ClientIdentity, IdentityMissing, Policy, Verifier
from mtlsauth.adapters.asgi import (
    MTLSMiddleware,
    Route,
    client_identity,
    identity_from_scope,
    optional_client_identity,
    require_client_cert,
)
from mtlsauth.testing import with_client_cert

PROXY = "10.0.0.1"
STRANGER = "203.0.113.9"


def problem(status: int, code: str, title: str, detail: str) -> dict[str, object]:
    return {
        "type": f"urn:mtlsauth:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }


MISSING = problem(
    401, "certificate_missing", "Client certificate required", "no client certificate was presented"
)
UNTRUSTED = problem(
    401, "untrusted_issuer", "Client certificate invalid", "no valid path to a trusted CA"
)
EXPIRED = problem(401, "certificate_expired", "Client certificate invalid", "certificate expired")


def fastapi_app(verifier: Verifier, **kw) -> FastAPI:
    app = FastAPI()
    app.add_middleware(MTLSMiddleware, verifier=verifier, **kw)

    @app.get("/whoami")
    def whoami(who: Annotated[ClientIdentity, Depends(client_identity)]) -> dict[str, str | None]:
        return {"cn": who.common_name}

    @app.get("/maybe")
    def maybe(
        who: Annotated[ClientIdentity | None, Depends(optional_client_identity)],
    ) -> dict[str, str | None]:
        return {"cn": who.common_name if who else None}

    @app.get(
        "/ops",
        dependencies=[Depends(require_client_cert(policy=Policy(organizations={"payments"})))],
    )
    def ops() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/echo-header")
    def echo(request: Request) -> dict[str, str | None]:
        return {"value": request.headers.get("x-ssl-client-cert")}

    return app


async def get(
    app, path: str, cert=None, *, peer: str = "127.0.0.1", headers=None, tls: bool = True
):
    wrapped = with_client_cert(app, cert) if tls else app
    transport = httpx.ASGITransport(app=wrapped, client=(peer, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as c:
        return await c.get(path, headers=headers)


# -- this adapter's certificate source ---------------------------------------------------------
# The mode x certificate x path contract is tests/adapters/test_contract.py; here only
# what is this adapter's own: the certificate read from its TLS source.
@pytest.mark.parametrize(
    ("mode", "which", "status", "body"),
    [
        pytest.param("mandatory", "good", 200, {"cn": "ledger"}, id="mandatory good"),
        pytest.param("mandatory", "wrong_ca", 401, UNTRUSTED, id="mandatory wrong CA"),
        pytest.param("optional", None, 200, {"cn": None}, id="optional none"),
    ],
)
async def test_tls_source(certs, verifier, mode, which, status, body) -> None:
    app = fastapi_app(verifier, mode=mode)
    r = await get(app, "/maybe", getattr(certs, which) if which else None)
    assert r.status_code == status
    assert r.json() == body
    if status != 200:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == f'MutualTLS error="{body["code"]}"'
        assert r.headers["cache-control"] == "no-store"


async def test_https_without_tls_extension_says_what_is_missing(verifier, caplog) -> None:
    # uvicorn with --ssl-* but without MTLSH11Protocol: TLS, and no certificate for the app.
    # The log line says so; the client gets the plain refusal (how the server is set up is
    # the operator's business).
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        r = await get(fastapi_app(verifier), "/whoami", tls=False)
    assert (r.status_code, r.json()["code"]) == (401, "certificate_missing")
    assert r.json()["detail"] == "no client certificate was presented"
    [line] = [m for m in (x.getMessage() for x in caplog.records) if "mtlsauth refused" in m]
    assert "server passes no client certificate" in line
    assert "MTLSH11Protocol" in line


async def test_plain_http_without_tls_extension(verifier) -> None:
    transport = httpx.ASGITransport(app=fastapi_app(verifier), client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get("/whoami")
    assert (r.status_code, r.json()) == (401, MISSING)


async def test_client_cert_error_is_refused(certs, verifier) -> None:
    tls = {**certs.good.asgi_tls_extension(), "client_cert_error": "unable to get issuer"}
    r = await get(fastapi_app(verifier), "/whoami", tls)
    assert r.json()["code"] == "tls_verification_failed"


async def test_client_cert_name_none_is_tolerated(certs, verifier) -> None:
    tls = {**certs.good.asgi_tls_extension(), "client_cert_name": None}
    r = await get(fastapi_app(verifier), "/whoami", tls)
    assert r.json() == {"cn": "ledger"}


async def test_revoked(certs, rev_verifier) -> None:
    app = fastapi_app(rev_verifier)
    assert (await get(app, "/whoami", certs.unrevoked)).json() == {"cn": "current"}
    r = await get(app, "/whoami", certs.revoked)
    assert (r.status_code, r.json()["code"]) == (401, "certificate_revoked")


async def test_exempt_path_and_dependency_in_optional_mode(certs, verifier) -> None:
    app = fastapi_app(verifier, mode="optional", exempt_paths={"/healthz"})
    assert (await get(app, "/healthz", None)).json() == {"status": "up"}
    r = await get(app, "/whoami", None)  # optional mode, but the route's dependency insists
    assert (r.status_code, r.json()["code"]) == (401, "certificate_missing")
    assert r.json()["detail"] == "this endpoint requires a client certificate"


async def test_require_client_cert_policy(certs, verifier) -> None:
    app = fastapi_app(verifier)
    assert (await get(app, "/ops", certs.good)).json() == {"ok": "yes"}
    r = await get(app, "/ops", certs.other_org)
    assert r.status_code == 403
    assert r.json() == problem(
        403,
        "organization_not_allowed",
        "Client certificate not allowed",
        r.json()["detail"],
    )
    assert "www-authenticate" not in r.headers


async def test_per_route_rules(certs, verifier) -> None:
    routes = [
        Route("/ops", policy=Policy(organizations={"ads"})),
        Route("/maybe", mode="optional"),
    ]
    app = fastapi_app(verifier, routes=routes)
    assert (await get(app, "/maybe", None)).json() == {"cn": None}
    assert (await get(app, "/whoami", None)).status_code == 401
    # the route policy (ads) admits ads-bot at the middleware; the dependency wants payments
    assert (await get(app, "/ops", certs.other_org)).status_code == 403
    r = await get(app, "/ops", certs.good)
    assert (r.status_code, r.json()["code"]) == (403, "organization_not_allowed")


# -- forwarded headers ----------------------------------------------------------------------
async def test_forwarded_header(certs, fwd_verifier) -> None:
    app = fastapi_app(fwd_verifier, mode="optional")
    value = quote(certs.good.chain_pem.text(), safe="")
    hdr = {"X-SSL-Client-Cert": value}
    r = await get(app, "/maybe", peer=PROXY, headers=hdr, tls=False)
    assert r.json() == {"cn": "ledger"}
    r = await get(app, "/echo-header", peer=PROXY, headers=hdr, tls=False)
    assert r.json() == {"value": value}  # a trusted proxy's header stays visible
    r = await get(app, "/maybe", peer=STRANGER, headers=hdr, tls=False)
    assert (r.status_code, r.json()["code"]) == (401, "untrusted_forwarder")


@pytest.mark.parametrize("mode", ["off", "optional"])
async def test_forged_header_is_stripped(certs, fwd_verifier, mode) -> None:
    app = fastapi_app(fwd_verifier, mode=mode, exempt_paths={"/echo-header"})
    forged = {"X-SSL-Client-Cert": "forged"}
    r = await get(app, "/echo-header", peer=STRANGER, headers=forged, tls=False)
    assert r.json() == {"value": None}


# -- raw ASGI: scope copy, lifespan, websockets ---------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.scopes: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "lifespan":
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
        elif scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
        else:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


async def drive(app, scope, incoming):
    sent: list[dict] = []
    queue = list(incoming)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def ws_scope(certs, which, *, http_response: bool) -> dict:
    ext: dict = {"tls": getattr(certs, which).asgi_tls_extension()} if which else {}
    if http_response:
        ext["websocket.http.response"] = {}
    return {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "extensions": ext,
    }


async def test_lifespan_passes_through(verifier) -> None:
    inner = Recorder()
    sent = await drive(
        MTLSMiddleware(inner, verifier=verifier),
        {"type": "lifespan"},
        [{"type": "lifespan.startup"}],
    )
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert "mtlsauth.identity" not in inner.scopes[0]


async def test_scope_is_copied(certs, verifier) -> None:
    inner = Recorder()
    scope = {
        "type": "http",
        "path": "/",
        "method": "GET",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "extensions": {"tls": certs.good.asgi_tls_extension()},
    }
    await drive(MTLSMiddleware(inner, verifier=verifier), scope, [])
    assert "mtlsauth.identity" not in scope
    assert identity_from_scope(inner.scopes[0]).common_name == "ledger"


async def test_websocket_accepted_with_good_cert(certs, verifier) -> None:
    inner = Recorder()
    sent = await drive(
        MTLSMiddleware(inner, verifier=verifier),
        ws_scope(certs, "good", http_response=False),
        [{"type": "websocket.connect"}],
    )
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert identity_from_scope(inner.scopes[0]).common_name == "ledger"


async def test_websocket_denied_with_http_response(certs, verifier) -> None:
    inner = Recorder()
    sent = await drive(
        MTLSMiddleware(inner, verifier=verifier),
        ws_scope(certs, "expired", http_response=True),
        [{"type": "websocket.connect"}],
    )
    assert inner.scopes == []
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    assert (b"content-type", b"application/problem+json") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == EXPIRED


async def test_websocket_denied_with_close_1008(verifier, certs) -> None:
    inner = Recorder()
    sent = await drive(
        MTLSMiddleware(inner, verifier=verifier),
        ws_scope(certs, None, http_response=False),
        [{"type": "websocket.connect"}],
    )
    assert inner.scopes == []
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "certificate_missing"}]


# -- accessors, hooks, async safety ---------------------------------------------------------
def test_identity_from_scope_without_middleware() -> None:
    with pytest.raises(IdentityMissing):
        identity_from_scope({"type": "http"})


async def test_dependency_without_middleware_is_500(certs) -> None:
    app = FastAPI()

    @app.get("/")
    def index(who: Annotated[ClientIdentity, Depends(client_identity)]) -> dict[str, str]:
        return {}

    transport = httpx.ASGITransport(
        app=with_client_cert(app, certs.good), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as c:
        assert (await c.get("/")).status_code == 500


async def test_on_error_custom_response(certs, verifier) -> None:
    from starlette.responses import PlainTextResponse

    seen = []

    def on_error(error, scope):
        seen.append((error.code, scope["path"]))
        return PlainTextResponse(f"nope: {error.code}", status_code=error.status)

    r = await get(fastapi_app(verifier, on_error=on_error), "/whoami", certs.wrong_ca)
    assert (r.status_code, r.text) == (401, "nope: untrusted_issuer")
    assert seen == [("untrusted_issuer", "/whoami")]


async def test_on_error_async_and_none_and_raising(certs, verifier) -> None:
    async def returns_none(error, scope):
        return None

    def raises(error, scope):
        raise RuntimeError("bug in hook")

    for hook in (returns_none, raises):
        r = await get(fastapi_app(verifier, on_error=hook), "/whoami", certs.wrong_ca)
        assert (r.status_code, r.json()) == (401, UNTRUSTED)  # still refused, default body


async def test_on_decision_raising_does_not_500_or_pass(certs, verifier) -> None:
    def hook(decision):
        raise RuntimeError("metrics down")

    app = fastapi_app(verifier, on_decision=hook)
    assert (await get(app, "/whoami", certs.good)).status_code == 200
    assert (await get(app, "/whoami", certs.wrong_ca)).status_code == 401


class SlowChecker:
    """A revocation checker that claims to do network I/O (like OCSP)."""

    token = object()
    may_block = True

    def __init__(self) -> None:
        self.threads: list[str] = []

    def check(self, chain, *, at: datetime):
        self.threads.append(threading.current_thread().name)
        return None


async def test_may_block_runs_off_the_event_loop(pki, certs) -> None:
    checker = SlowChecker()
    v = Verifier(trust_store=pki.root.trust_store(), revocation=checker)
    assert v.may_block
    r = await get(fastapi_app(v), "/whoami", certs.good)
    assert r.json() == {"cn": "ledger"}
    assert checker.threads
    assert threading.main_thread().name not in checker.threads


def test_middleware_validates_at_construction(verifier) -> None:
    with pytest.raises(ValueError, match="mode"):
        MTLSMiddleware(Recorder(), verifier=verifier, mode="required")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        require_client_cert(policy={"organizations": ["x"]})  # type: ignore[arg-type]


def test_module_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import mtlsauth.adapters.asgi, mtlsauth.adapters.wsgi, mtlsauth._guard; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'flask', 'werkzeug', 'aiohttp', 'uvicorn', 'django')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_websocket_refused_by_the_app_after_connect(certs, verifier) -> None:
    from mtlsauth import PolicyDenied

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        raise PolicyDenied("not for you", code="certificate_denied")

    sent = await drive(
        MTLSMiddleware(app, verifier=verifier),
        ws_scope(certs, "good", http_response=False),
        [{"type": "websocket.connect"}],
    )
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "certificate_denied"}]


@pytest.mark.parametrize(
    "name",
    [b"x-ssl-client-cert", b"X_SSL_Client_Cert", b"X-SSL-CLIENT-CERT", b"x-\xdfl-client-cert"],
)
def test_forged_header_is_hidden_in_every_spelling_django_folds(fwd_verifier, name) -> None:
    """Django's ASGI request (and ASGI-to-WSGI bridges) build ``META`` keys with
    ``"HTTP_" + name.decode("latin-1").upper().replace("-", "_")``, and ``str.upper`` turns
    the Latin-1 byte ``ß`` into ``SS``: ``X-\\xdfL-Client-Cert`` lands on
    ``HTTP_X_SSL_CLIENT_CERT``. The servers tested refuse such a name, but the middleware
    must not rely on that: every name that folds into a hidden key is removed."""
    import asyncio
    import io

    import test_django
    from django.core.handlers.asgi import ASGIRequest

    test_django.configure_django()  # (it migrates a database: not from an event loop)
    inner = Recorder()
    app = MTLSMiddleware(inner, verifier=fwd_verifier, mode="off")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "raw_path": b"/x",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"app"), (name, b"forged")],
        "client": (STRANGER, 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(drive(app, scope, [{"type": "http.request", "body": b""}]))
    (seen,) = inner.scopes
    meta = ASGIRequest(seen, io.BytesIO(b"")).META
    assert "HTTP_X_SSL_CLIENT_CERT" not in meta
    assert seen["headers"] == [(b"host", b"app")]


@pytest.mark.parametrize("requests", [1, 2], ids=["decided", "cached"])
def test_headers_a_server_appends_later_never_reach_the_app(pki, fwd_verifier, requests):
    """uvicorn's httptools protocol appends a chunked trailer's fields to the list it passed
    as ``scope["headers"]``, whenever they arrive (HAProxy forwards trailers): the app reads
    the headers as they were when the request was decided, on the cached path too."""
    import asyncio

    value = quote(pki.good.chain_pem.text(), safe="")
    seen: list[list[bytes]] = []

    async def app(scope, receive, send):
        await receive()
        seen.append([v for k, v in scope["headers"] if k == b"x-ssl-client-cert"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = MTLSMiddleware(app, verifier=fwd_verifier)

    async def one() -> int:
        headers = [(b"host", b"x"), (b"x-ssl-client-cert", value.encode())]
        status = []

        async def receive():
            headers.append((b"x-ssl-client-cert", b"FORGED"))  # the trailer, late
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "raw_path": b"/",
            "headers": headers,
            "client": (PROXY, 5000),
        }
        await middleware(scope, receive, send)
        return status[0]

    for _ in range(requests):
        assert asyncio.run(one()) == 200
    assert all(copies == [value.encode()] for copies in seen), seen
