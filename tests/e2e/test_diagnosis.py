"""Misconfigurations that used to end in a 401 pointing the wrong way, on real servers.

* uvicorn's proxy headers (on by default for 127.0.0.1) replace the proxy's address with the
  client's from ``X-Forwarded-For``: the log line must say so (the client's answer does
  not: it would learn that the header is believed), and ``--no-proxy-headers``
  (``proxy_headers=False``) must fix it.
* uvicorn ending TLS without ``MTLSH11Protocol``: the client's certificate never reaches the
  app, and the log line must say what is missing.
* aiohttp with an ``SSLContext`` that never asks for a client certificate: the same.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from mtlsauth import ForwardedCert, TrustStore, Verifier
from mtlsauth._cli._demo import build_app
from mtlsauth._cli._testpki import TestPKI, write_test_pki

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return write_test_pki(tmp_path_factory.mktemp("pki"))


def verifier(pki: TestPKI, **kwargs: Any) -> Verifier:
    return Verifier(
        trust_store=TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None),
        intermediates=[pki.path("intermediate.pem")],
        **kwargs,
    )


@contextlib.contextmanager
def uvicorn_server(app: Any, **options: Any) -> Iterator[int]:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_config=None, log_level="critical",
        access_log=False, timeout_graceful_shutdown=1, **options,
    )  # fmt: skip
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def leaf_pem(pki: TestPKI) -> str:
    text = pki.path("client-good.pem").read_text()
    return text.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"


def test_uvicorn_proxy_headers_rewrite_is_named_and_no_proxy_headers_fixes_it(
    pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    fwd = ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"])
    app = build_app(verifier(pki, forwarded=fwd))
    # what nginx sends with `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`
    headers = {
        "X-SSL-Client-Cert": quote(leaf_pem(pki), safe=""),
        "X-Forwarded-For": "198.51.100.7",
    }
    with caplog.at_level(logging.WARNING, logger="mtlsauth"), uvicorn_server(app) as port:
        r = httpx.get(f"http://127.0.0.1:{port}/whoami", headers=headers, timeout=10)
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == "untrusted_forwarder"
    # The address came from X-Forwarded-For, i.e. from the client: the log names it, the
    # answer does not reflect it.
    assert "198.51.100.7" not in body["detail"]
    assert "X-Forwarded-For" not in body["detail"]
    logged = [rec.getMessage() for rec in caplog.records if "mtlsauth refused" in rec.getMessage()]
    assert "last hop of X-Forwarded-For" in logged[0]
    assert "--no-proxy-headers" in logged[0]
    assert "peer=198.51.100.7" in logged[0]

    with uvicorn_server(app, proxy_headers=False) as port:
        r = httpx.get(f"http://127.0.0.1:{port}/whoami", headers=headers, timeout=10)
    assert (r.status_code, r.json()["common_name"]) == (200, "alice")


def _refusal_line(caplog: pytest.LogCaptureFixture) -> str:
    [line] = [m for m in (r.getMessage() for r in caplog.records) if "mtlsauth refused" in m]
    return line


def test_uvicorn_tls_without_the_protocol_class_says_what_is_missing(
    pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(verifier(pki))
    options = {
        "ssl_certfile": str(pki.path("server.pem")),
        "ssl_keyfile": str(pki.path("server.key")),
        "ssl_ca_certs": str(pki.path("ca.pem")),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
    }
    ctx = ssl.create_default_context(cafile=str(pki.path("ca.pem")))
    chain, key = pki.clients["good"]
    ctx.load_cert_chain(str(chain), str(key))
    with (
        caplog.at_level(logging.WARNING, logger="mtlsauth"),
        uvicorn_server(app, **options) as port,
    ):
        r = httpx.get(f"https://127.0.0.1:{port}/whoami", verify=ctx, timeout=10)
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == "certificate_missing"
    assert body["detail"] == "no client certificate was presented"
    line = _refusal_line(caplog)
    assert "server passes no client certificate" in line
    assert "--http mtlsauth.adapters.uvicorn:MTLSH11Protocol" in line


async def test_aiohttp_context_that_never_asks_for_a_certificate_is_named(
    pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from aiohttp import web

    from mtlsauth.adapters.aiohttp import mtls_middleware

    async def whoami(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier(pki))])
    app.router.add_get("/whoami", whoami)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # verify_mode CERT_NONE
    server_ctx.load_cert_chain(str(pki.path("server.pem")), str(pki.path("server.key")))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ctx = ssl.create_default_context(cafile=str(pki.path("ca.pem")))
    chain, key = pki.clients["good"]
    ctx.load_cert_chain(str(chain), str(key))
    try:
        with caplog.at_level(logging.WARNING, logger="mtlsauth"):
            async with httpx.AsyncClient(verify=ctx, timeout=10) as client:
                r = await client.get(f"https://127.0.0.1:{port}/whoami")
    finally:
        await runner.cleanup()
        await asyncio.sleep(0)
    assert r.status_code == 401
    assert r.json()["code"] == "certificate_missing"
    assert r.json()["detail"] == "no client certificate was presented"
    line = _refusal_line(caplog)
    assert "does not ask for a client certificate" in line
    assert "server_ssl_context" in line
