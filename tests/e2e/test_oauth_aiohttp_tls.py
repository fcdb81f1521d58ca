"""aiohttp terminating mutual TLS itself: the token binding uses the TLS peer certificate.

A certificate header sent by the client is no certificate here (no proxy is trusted), so a
client without a certificate that sends the bound certificate as a header is refused.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import ClientSession, TCPConnector, web

from mtlsauth import Route, TokenCheck, Verifier, server_ssl_context
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware
from mtlsauth.adapters.aiohttp_oauth import get_token_claims
from mtlsauth.testing import CA

pytestmark = pytest.mark.e2e


async def test_binding_over_real_tls(aiohttp_server, tmp_path: Path) -> None:
    root = CA(organization="oauth tls")
    alice = root.issue_client_cert(common_name="alice", organization="bank")
    twin = root.issue_client_cert(common_name="alice", organization="bank")
    server = root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    server_ctx = server_ssl_context(
        certfile=str(server.cert_pem.write_to_path(tmp_path / "server.pem")),
        keyfile=str(server.key_pem.write_to_path(tmp_path / "server.key")),
        trust_store=root.trust_store(),
        mode="optional",
    )
    verifier = Verifier(trust_store=root.trust_store())
    bound_to = verifier.verify_pem(alice.cert_pem.text()).x5t_s256()
    tokens = {"t-alice": {"sub": "client-1", "cnf": {"x5t#S256": bound_to}}}

    async def accounts(request: web.Request) -> web.Response:
        who, claims = get_identity(request), get_token_claims(request)
        return web.json_response({"cn": who.common_name if who else None, "sub": claims["sub"]})

    check = TokenCheck(lambda token: tokens[token], binding="if_present")
    app = web.Application(
        middlewares=[
            mtls_middleware(verifier=verifier, routes=[Route("/", mode="optional", token=check)])
        ]
    )
    app.router.add_get("/", accounts)
    srv = await aiohttp_server(app, ssl=server_ctx)
    ca_file = str(root.cert_pem.write_to_path(tmp_path / "ca.pem"))

    async def call(cert, headers: dict[str, str]) -> tuple[int, dict]:
        ctx = ssl.create_default_context(cafile=ca_file)
        if cert is not None:
            name = str(id(cert))
            ctx.load_cert_chain(
                str(cert.cert_pem.write_to_path(tmp_path / f"{name}.pem")),
                str(cert.key_pem.write_to_path(tmp_path / f"{name}.key")),
            )
        async with (
            ClientSession(connector=TCPConnector(ssl=ctx)) as session,
            session.get(f"https://127.0.0.1:{srv.port}/", headers=headers) as resp,
        ):
            return resp.status, json.loads(await resp.read())

    bearer = {"Authorization": "Bearer t-alice"}
    assert await call(alice, bearer) == (200, {"cn": "alice", "sub": "client-1"})
    status, body = await call(twin, bearer)
    assert (status, body["code"]) == (401, "token_binding_mismatch")
    status, body = await call(None, bearer)
    assert (status, body["code"]) == (401, "token_binding_mismatch")
    forged = bearer | {"X-SSL-Client-Cert": quote(alice.cert_pem.text(), safe="")}
    status, body = await call(None, forged)
    assert (status, body["code"]) == (401, "token_binding_mismatch")
