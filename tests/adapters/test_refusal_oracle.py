"""A refusal tells the client nothing about the server's configuration.

Pairs of requests that a client can vary at will, and that differ only in something the
server holds (the names in its trust store, the header its proxy sends, how the peer
address was rewritten): each adapter must give both the same answer, byte for byte (status,
the headers a refusal carries, and the problem+json body). Where the difference explains a
misconfiguration, the log line says it, for the operator.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from mtlsauth._config import config_from_mapping
from mtlsauth.testing import CA

HEADER = "x-ssl-client-cert"
PEER = "127.0.0.1"
KEPT = ("content-type", "cache-control", "www-authenticate", "retry-after")

Headers = dict[str, str]
Answer = tuple[int, tuple[tuple[str, str], ...], bytes]


def _answer(status: int, headers: Any, body: bytes) -> Answer:
    kept = tuple(sorted((k.lower(), v) for k, v in headers if k.lower() in KEPT))
    return status, kept, body


def _kwargs(conf: dict[str, Any], base: Path) -> dict[str, Any]:
    return config_from_mapping(conf, base_dir=base, name="oracle").middleware_kwargs()


async def _ok_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def asgi_driver(conf: dict[str, Any], base: Path, headers: Headers) -> Answer:
    from mtlsauth.adapters.asgi import MTLSMiddleware

    wrapped = MTLSMiddleware(_ok_asgi, **_kwargs(conf, base))

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=wrapped, client=(PEER, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/app", headers=headers)

    r = asyncio.run(run())
    return _answer(r.status_code, r.headers.items(), r.content)


def wsgi_driver(conf: dict[str, Any], base: Path, headers: Headers) -> Answer:
    from mtlsauth.adapters.wsgi import MTLSMiddleware

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/app",
        "REMOTE_ADDR": PEER,
        "wsgi.url_scheme": "http",
    }
    for k, v in headers.items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    started: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(
        MTLSMiddleware(app, **_kwargs(conf, base))(
            environ, lambda s, h, exc_info=None: started.append((s, h))
        )
    )
    status, sent = started[0]
    return _answer(int(status.split()[0]), sent, body)


def aiohttp_driver(conf: dict[str, Any], base: Path, headers: Headers) -> Answer:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from mtlsauth.adapters.aiohttp import mtls_middleware

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def run() -> Answer:
        app = web.Application(middlewares=[mtls_middleware(**_kwargs(conf, base))])
        app.router.add_get("/app", handler)
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/app", headers=headers)
            return _answer(r.status, r.headers.items(), await r.read())

    return asyncio.run(run())


def django_driver(conf: dict[str, Any], base: Path, headers: Headers) -> Answer:
    import test_django
    from django.test import Client, override_settings

    test_django.configure_django()
    meta = {"REMOTE_ADDR": PEER}
    for k, v in headers.items():
        meta["HTTP_" + k.upper().replace("-", "_")] = v
    with override_settings(
        MTLSAUTH=conf,
        MTLSAUTH_BASE_DIR=str(base),
        MIDDLEWARE=["mtlsauth.adapters.django.MTLSMiddleware"],
        AUTHENTICATION_BACKENDS=[],
        ROOT_URLCONF="test_contract",
    ):
        r = Client().get("/app", **meta)
    return _answer(r.status_code, r.items(), r.content)


DRIVERS: dict[str, Callable[[dict[str, Any], Path, Headers], Answer]] = {
    "asgi": asgi_driver,
    "wsgi": wsgi_driver,
    "aiohttp": aiohttp_driver,
    "django": django_driver,
}


class _PKI:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.trusted = CA(organization="Example Corp", common_name="Example Root")
        # Same name, another key: what a client makes when it guesses the name right.
        twin = CA(organization="Example Corp", common_name="Example Root")
        stranger = CA(organization="Example Corp", common_name="Guessed Root")
        (base / "ca.pem").write_bytes(self.trusted.cert_pem.bytes())
        self.lookalike = quote(twin.issue_client_cert(common_name="a").cert_pem.text(), safe="")
        self.unknown = quote(stranger.issue_client_cert(common_name="a").cert_pem.text(), safe="")
        self.good = quote(self.trusted.issue_client_cert(common_name="a").cert_pem.text(), safe="")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> _PKI:
    return _PKI(tmp_path_factory.mktemp("oracle"))


def _conf(trusted: list[str], on_untrusted: str = "reject") -> dict[str, Any]:
    return {
        "mode": "mandatory",
        "trust": {"files": ["ca.pem"]},
        "forwarded": {
            "preset": "nginx",
            "header": HEADER,
            "trusted_proxies": trusted,
            "on_untrusted": on_untrusted,
        },
    }


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_a_guessed_trusted_ca_name_gets_the_answer_an_unknown_name_gets(
    pki: _PKI, driver: str
) -> None:
    conf = _conf([PEER])
    guessed = DRIVERS[driver](conf, pki.base, {HEADER: pki.lookalike})
    unknown = DRIVERS[driver](conf, pki.base, {HEADER: pki.unknown})
    assert guessed[0] == 401
    assert json.loads(guessed[2])["code"] == "untrusted_issuer"
    assert guessed == unknown
    assert b"Example Root" not in guessed[2]


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_a_peer_rewritten_from_x_forwarded_for_is_not_told_to_the_client(
    pki: _PKI, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The peer equals the last X-Forwarded-For hop: the server (or a middleware) took the
    # peer from that header. Telling the client so would tell it the header is believed.
    conf = _conf(["10.0.0.1"])
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        rewritten = DRIVERS[driver](
            conf, pki.base, {HEADER: pki.good, "x-forwarded-for": f"198.51.100.7, {PEER}"}
        )
    plain = DRIVERS[driver](conf, pki.base, {HEADER: pki.good})
    assert json.loads(rewritten[2])["code"] == "untrusted_forwarder"
    assert rewritten == plain
    if driver != "django":  # Django's adapter hands the Guard its certificate headers only
        assert any("last hop of X-Forwarded-For" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_an_ignored_certificate_header_is_not_told_to_the_client(
    pki: _PKI, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    conf = _conf(["10.0.0.1"], on_untrusted="ignore")
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        ignored = DRIVERS[driver](conf, pki.base, {HEADER: pki.good})
    none = DRIVERS[driver](conf, pki.base, {})
    assert json.loads(ignored[2])["code"] == "certificate_missing"
    assert ignored == none
    assert any("header was ignored" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_the_header_the_server_reads_is_not_told_to_the_client(
    pki: _PKI, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A client that sends another proxy's certificate header must not learn which header
    # this server believes (the name to forge next).
    conf = _conf([PEER])
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        other = DRIVERS[driver](conf, pki.base, {"x-client-cert": pki.good})
    none = DRIVERS[driver](conf, pki.base, {})
    assert json.loads(other[2])["code"] == "certificate_missing"
    assert other == none
    assert HEADER.encode() not in other[2].lower()
    if driver != "django":  # Django's adapter hands the Guard its certificate headers only
        assert any("forwarded= reads" in r.getMessage() for r in caplog.records)
