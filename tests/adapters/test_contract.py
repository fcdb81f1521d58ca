"""One contract for every adapter: mode x certificate x path, driven through each framework.

Every driver builds its framework's app from the same configuration mapping (the schema of
docs/config.md, so Django reads it from ``settings.MTLSAUTH`` exactly as the others get it
from ``config_from_mapping``), sends one request and reports what came back: the status,
the refusal's code, or the identity and whether the app saw the certificate header.

The certificate arrives as nginx's URL-escaped PEM header from the test client's peer
(127.0.0.1). The "forged" case sends a genuine certificate from a peer the configuration
does not trust: what an attacker next to the app can do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from mtlsauth._config import config_from_mapping
from mtlsauth.testing import ClientCert

HEADER = "x-ssl-client-cert"
PEER = "127.0.0.1"

# certificate | mandatory | optional | off      (path /app: the configuration's own policy)
APP = """
good          | ok:ledger                 ok:ledger                 ok:-
none          | 401:certificate_missing   ok:-                      ok:-
wrong_ca      | 401:untrusted_issuer      401:untrusted_issuer      ok:-
expired       | 401:certificate_expired   401:certificate_expired   ok:-
revoked       | 401:certificate_revoked   401:certificate_revoked   ok:-
denied        | 403:organization_not_allowed 403:organization_not_allowed ok:-
forged        | 401:untrusted_forwarder   401:untrusted_forwarder   ok:-
"""
# /route/x: a Route of its own (mode mandatory, policy O=ads), whatever the adapter's mode
ROUTE = """
good          | 403:organization_not_allowed 403:organization_not_allowed 403:organization_not_allowed
none          | 401:certificate_missing   401:certificate_missing   401:certificate_missing
wrong_ca      | 401:untrusted_issuer      401:untrusted_issuer      401:untrusted_issuer
expired       | 401:certificate_expired   401:certificate_expired   401:certificate_expired
revoked       | 401:certificate_revoked   401:certificate_revoked   401:certificate_revoked
denied        | ok:ads-bot                ok:ads-bot                ok:ads-bot
forged        | 401:untrusted_forwarder   401:untrusted_forwarder   401:untrusted_forwarder
"""
# /healthz: exempt, never checked (a forged header is still hidden from the app)
EXEMPT = "\n".join(
    f"{c:<13} | ok:-  ok:-  ok:-"
    for c in ("good", "none", "wrong_ca", "expired", "revoked", "denied", "forged")
)
# /app%2Fx: an encoded "/" the router would read as /app/x: refused before anything else
AMBIGUOUS = "\n".join(
    f"{c:<13} | 400:ambiguous_path  400:ambiguous_path  400:ambiguous_path"
    for c in ("good", "none", "wrong_ca", "expired", "revoked", "denied", "forged")
)
PATHS = {
    "app": ("/app", None, APP),
    "route": ("/route/x", None, ROUTE),
    "exempt": ("/healthz", None, EXEMPT),
    "ambiguous": ("/app/x", "/app%2Fx", AMBIGUOUS),
}
MODES = ("mandatory", "optional", "off")


def _rows() -> list[Any]:
    rows = []
    for where, (_path, _raw, table) in PATHS.items():
        for line in table.strip().splitlines():
            left, right = line.split("|")
            cert = left.strip()
            outcomes = right.split()
            assert len(outcomes) == len(MODES), line
            for mode, outcome in zip(MODES, outcomes, strict=True):
                rows.append(pytest.param(mode, cert, where, outcome, id=f"{where}-{mode}-{cert}"))
    return rows


@dataclass(frozen=True)
class Request:
    path: str  # as the router routes it
    raw: str  # the target as sent
    header: str | None  # the certificate header's value


@dataclass(frozen=True)
class Answer:
    status: int
    code: str | None  # of a refusal
    cn: str | None  # of an allowed request
    saw_header: bool  # the app saw the certificate header
    media_type: str  # of the answer's body


Driver = Callable[[dict[str, Any], Path, Request], Answer]


def _answer(status: int, content_type: str, body: dict[str, Any]) -> Answer:
    media_type = content_type.split(";")[0].strip()
    if status != 200:
        assert body["type"] == f"urn:mtlsauth:error:{body['code']}"
        assert body["status"] == status
        return Answer(status, body["code"], None, False, media_type)
    return Answer(200, None, body["cn"], bool(body["hdr"]), media_type)


def _config(conf: dict[str, Any], base: Path) -> dict[str, Any]:
    return config_from_mapping(conf, base_dir=base, name="contract").middleware_kwargs()


# -- drivers ------------------------------------------------------------------------------------
def asgi_driver(conf: dict[str, Any], base: Path, req: Request) -> Answer:
    from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

    async def app(scope, receive, send) -> None:
        who = identity_from_scope(scope)
        seen = any(k == HEADER.encode() for k, _v in scope["headers"])
        body = json.dumps({"cn": who.common_name if who else None, "hdr": seen}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    wrapped = MTLSMiddleware(app, **_config(conf, base))

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=wrapped, client=(PEER, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {HEADER: req.header} if req.header is not None else {}
            return await client.get(req.raw, headers=headers)

    r = asyncio.run(run())
    return _answer(r.status_code, r.headers["content-type"], r.json())


def wsgi_driver(conf: dict[str, Any], base: Path, req: Request) -> Answer:
    from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

    def app(environ, start_response):
        who = identity_from_environ(environ)
        seen = "HTTP_X_SSL_CLIENT_CERT" in environ
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps({"cn": who.common_name if who else None, "hdr": seen}).encode()]

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": req.path,
        "RAW_URI": req.raw,
        "REMOTE_ADDR": PEER,
        "wsgi.url_scheme": "http",
    }
    if req.header is not None:
        environ["HTTP_X_SSL_CLIENT_CERT"] = req.header
    answer: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(
        MTLSMiddleware(app, **_config(conf, base))(environ, lambda s, h: answer.append((s, h)))
    )
    status, headers = answer[0]
    content_type = next(v for k, v in headers if k.lower() == "content-type")
    return _answer(int(status.split()[0]), content_type, json.loads(body))


def aiohttp_driver(conf: dict[str, Any], base: Path, req: Request) -> Answer:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware

    async def handler(request: web.Request) -> web.Response:
        who = get_identity(request)
        seen = HEADER in request.headers
        return web.json_response({"cn": who.common_name if who else None, "hdr": seen})

    async def run() -> tuple[int, str, dict[str, Any]]:
        app = web.Application(middlewares=[mtls_middleware(**_config(conf, base))])
        app.router.add_get("/{tail:.*}", handler)
        async with TestClient(TestServer(app)) as client:
            headers = {HEADER: req.header} if req.header is not None else {}
            r = await client.get(req.raw, headers=headers)
            return r.status, r.headers["content-type"], json.loads(await r.read())

    return _answer(*asyncio.run(run()))


def django_driver(conf: dict[str, Any], base: Path, req: Request) -> Answer:
    import test_django  # the adapter's own tests configure Django, once per process
    from django.test import Client, override_settings

    test_django.configure_django()

    meta = {"REMOTE_ADDR": PEER, "REQUEST_URI": req.raw}
    if req.header is not None:
        meta["HTTP_X_SSL_CLIENT_CERT"] = req.header
    with override_settings(
        MTLSAUTH=conf,
        MTLSAUTH_BASE_DIR=str(base),
        MIDDLEWARE=["mtlsauth.adapters.django.MTLSMiddleware"],
        AUTHENTICATION_BACKENDS=[],
        ROOT_URLCONF=__name__,
    ):
        r = Client().get(req.path, **meta)
    return _answer(r.status_code, r["content-type"], json.loads(r.content))


def _django_view(request):
    from django.http import JsonResponse

    from mtlsauth.adapters.django import identity_from_request

    who = identity_from_request(request)
    seen = "HTTP_X_SSL_CLIENT_CERT" in request.META
    return JsonResponse({"cn": who.common_name if who else None, "hdr": seen})


def _urlpatterns() -> list[Any]:
    try:
        from django.urls import re_path
    except ImportError:  # pragma: no cover - Django is part of the test extra
        return []
    return [re_path(r"^.*$", _django_view)]


urlpatterns = _urlpatterns()

DRIVERS: dict[str, Driver] = {
    "asgi": asgi_driver,
    "wsgi": wsgi_driver,
    "aiohttp": aiohttp_driver,
    "django": django_driver,
}


# -- the table ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def contract_files(pki, certs, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("contract")
    (d / "ca.pem").write_bytes(pki.root.cert_pem.bytes() + certs.rev_ca.cert_pem.bytes())
    (d / "revoked.crl").write_bytes(certs.crl_pem)
    return d


def _conf(mode: str, forged: bool) -> dict[str, Any]:
    return {
        "mode": mode,
        "trust": {"files": ["ca.pem"]},
        # allow_missing: only the revocation CA publishes a CRL here
        "revocation": {"crls": ["revoked.crl"], "allow_missing": True},
        "forwarded": {
            "preset": "nginx",
            "header": HEADER,
            "trusted_proxies": ["10.0.0.1"] if forged else [PEER],
            "single_certificate": False,  # leaf + intermediate
        },
        "policy": {"organizations": ["payments", "Revocation Test"]},
        "exempt_paths": ["/healthz"],
        "routes": [{"path": "/route/*", "mode": "mandatory", "policy": {"organizations": ["ads"]}}],
    }


def _certificate(certs, which: str) -> ClientCert | None:
    return {
        "good": certs.good,
        "none": None,
        "wrong_ca": certs.wrong_ca,
        "expired": certs.expired,
        "revoked": certs.revoked,
        "denied": certs.other_org,
        "forged": certs.good,
    }[which]


@pytest.mark.parametrize("driver", list(DRIVERS))
@pytest.mark.parametrize(("mode", "cert", "where", "outcome"), _rows())
def test_contract(contract_files, certs, driver, mode, cert, where, outcome) -> None:
    path, raw, _table = PATHS[where]
    leaf = _certificate(certs, cert)
    value = quote(leaf.chain_pem.text(), safe="") if leaf is not None else None
    answer = DRIVERS[driver](
        _conf(mode, forged=cert == "forged"), contract_files, Request(path, raw or path, value)
    )
    status, _, detail = outcome.partition(":")
    if status == "ok":
        # Only a header from a trusted proxy reaches the app; a forged one never does.
        cn = None if detail == "-" else detail
        expected = Answer(200, None, cn, cert not in {"none", "forged"}, "application/json")
    else:
        expected = Answer(int(status), detail, None, False, "application/problem+json")
    assert answer == expected
