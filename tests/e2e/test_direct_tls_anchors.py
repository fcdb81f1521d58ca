"""Direct TLS: a completed handshake is never taken for a verification.

``server_ssl_context`` loads every CA certificate of the trust store into the handshake with
``VERIFY_X509_PARTIAL_CHAIN``, intermediates included (clients that send their leaf alone
must still complete it), so an intermediate there is a handshake anchor. The Verifier
anchors only the store's certificates that no other one of it issued, and applies the root's
validity and constraints to a chain through such an intermediate. The handshake therefore
completes for chains the Verifier refuses; each must reach the app as a refusal with the
Verifier's own code, through a real TLS server.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, TCPConnector, web
from cryptography import x509

from mtlsauth import TrustStore, Verifier, server_ssl_context
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware
from mtlsauth.testing import CA

NOW = dt.datetime.now(dt.timezone.utc)
ROOTS: dict[str, tuple[dict[str, Any], str]] = {
    "root expired": (
        {"not_before": NOW - dt.timedelta(days=30), "not_after": NOW - dt.timedelta(days=1)},
        "certificate_expired",
    ),
    "root name constraints": (
        {
            "name_constraints": x509.NameConstraints(
                permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None
            )
        },
        "untrusted_issuer",
    ),
    "root path length 0": ({"path_length": 0}, "chain_too_long"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(ROOTS))
async def test_an_intermediate_in_the_trust_store_anchors_the_handshake_not_the_decision(
    aiohttp_server: Any, tmp_path: Path, case: str
) -> None:
    root_kw, code = ROOTS[case]
    root = CA(organization="anchor root", **root_kw)
    inter = root.intermediate(organization="anchor intermediate")
    client = inter.issue_client_cert(common_name="c", dns_names=["host.evil.example.org"])
    server_ca = CA(organization="server side")
    server = server_ca.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    trust = TrustStore.from_pem(root.cert_pem.bytes() + inter.cert_pem.bytes())
    server_ctx = server_ssl_context(
        certfile=str(server.cert_pem.write_to_path(tmp_path / "server.pem")),
        keyfile=str(server.key_pem.write_to_path(tmp_path / "server.key")),
        trust_store=trust,
    )
    reached: list[bool] = []

    async def whoami(request: web.Request) -> web.Response:
        reached.append(True)
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    app = web.Application(middlewares=[mtls_middleware(verifier=Verifier(trust_store=trust))])
    app.router.add_get("/", whoami)
    srv = await aiohttp_server(app, ssl=server_ctx)
    client_ctx = ssl.create_default_context(
        cafile=str(server_ca.cert_pem.write_to_path(tmp_path / "server-ca.pem"))
    )
    client_ctx.load_cert_chain(
        str(client.chain_pem.write_to_path(tmp_path / "client.pem")),
        str(client.key_pem.write_to_path(tmp_path / "client.key")),
    )
    async with (
        ClientSession(connector=TCPConnector(ssl=client_ctx)) as session,
        session.get(f"https://127.0.0.1:{srv.port}/") as resp,
    ):
        status, body = resp.status, json.loads(await resp.read())
    # The handshake completed (an HTTP answer came back), and the Verifier refused.
    assert (status, body["code"]) == (401, code)
    assert reached == []
