"""Adapter checks that a mutation of the code left passing elsewhere (docs/security.md,
"Security checks mutated, second round")."""

from __future__ import annotations

import asyncio.selector_events
import json
import ssl
import types
from urllib.parse import quote

import pytest

pytest.importorskip("aiohttp")

from aiohttp import web

import mtlsauth.adapters.aiohttp as adapter
from mtlsauth.adapters.aiohttp import mtls_middleware


async def test_aiohttp_hot_path_leaves_a_certificate_header_to_hide(
    aiohttp_client, monkeypatch, certs, fwd_verifier
) -> None:
    # A direct TLS client (not the trusted proxy) whose chain is cached sends a certificate
    # header too: the hot path must not hand the request on with that header in it.
    fake = types.SimpleNamespace(context=types.SimpleNamespace(verify_mode=ssl.CERT_REQUIRED))
    original = asyncio.selector_events._SelectorSocketTransport.get_extra_info

    def extra(self, name, default=None):
        return fake if name == "ssl_object" else original(self, name, default)

    monkeypatch.setattr(asyncio.selector_events._SelectorSocketTransport, "get_extra_info", extra)
    monkeypatch.setattr(adapter, "peer_chain", lambda ssl_object: certs.good.chain_der)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(sorted(k for k in request.headers if "ssl" in k.lower()))

    app = web.Application(middlewares=[mtls_middleware(verifier=fwd_verifier, mode="optional")])
    app.router.add_get("/echo", echo)
    client = await aiohttp_client(app)
    # Another spelling than the one the hot path reads (frameworks fold "_" into "-").
    forged = {"X_SSL_Client_Cert": quote(certs.good.cert_pem.text(), safe="")}
    for _ in range(3):  # the first request fills the cache; the others may hit it
        r = await client.get("/echo", headers=forged)
        assert r.status == 200
        assert json.loads(await r.read()) == []
