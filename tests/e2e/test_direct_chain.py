"""Direct TLS: what the client's chain looks like to the app, per Python version.

Python 3.13 added ``SSLObject.get_unverified_chain()``, so a server sees the intermediates a
client sends; before, only the leaf. With no ``Verifier(intermediates=...)`` configured, a
client that sends leaf + intermediate is therefore accepted on 3.13+ and refused with
``untrusted_issuer`` before (configure the intermediates there: docs/direct-tls.md).
"""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path

import pytest
from aiohttp import ClientError, ClientSession, TCPConnector, web
from cryptography import x509

from mtlsauth import Verifier, server_ssl_context
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware
from mtlsauth.testing import CA


@pytest.mark.e2e
async def test_client_chain_through_a_real_tls_server(aiohttp_server, tmp_path: Path) -> None:
    root = CA(organization="direct chain")
    inter = root.intermediate()
    client = inter.issue_client_cert(common_name="chained")
    server = root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    server_ctx = server_ssl_context(
        certfile=str(server.cert_pem.write_to_path(tmp_path / "server.pem")),
        keyfile=str(server.key_pem.write_to_path(tmp_path / "server.key")),
        trust_store=root.trust_store(),
        mode="optional",
    )

    async def whoami(request: web.Request) -> web.Response:
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    verifier = Verifier(trust_store=root.trust_store())  # deliberately no intermediates=
    app = web.Application(middlewares=[mtls_middleware(verifier=verifier)])
    app.router.add_get("/", whoami)
    srv = await aiohttp_server(app, ssl=server_ctx)

    client_ctx = ssl.create_default_context(
        cafile=str(root.cert_pem.write_to_path(tmp_path / "ca.pem"))
    )
    client_ctx.load_cert_chain(
        str(client.chain_pem.write_to_path(tmp_path / "client.pem")),  # leaf + intermediate
        str(client.key_pem.write_to_path(tmp_path / "client.key")),
    )
    async with (
        ClientSession(connector=TCPConnector(ssl=client_ctx)) as session,
        session.get(f"https://127.0.0.1:{srv.port}/") as resp,
    ):
        status, body = resp.status, json.loads(await resp.read())
    if sys.version_info >= (3, 13):
        assert (status, body) == (200, {"cn": "chained"})
    else:
        assert (status, body["code"]) == (401, "untrusted_issuer")


@pytest.mark.e2e
# Python 3.10's asyncio leaves the transport of a failed TLS handshake unclosed (its
# ResourceWarning, raised at garbage collection, is not about this code; 3.11 rewrote sslproto).
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function _SSLProtocolTransport.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_a_leaf_issued_by_a_pinned_certificate_is_refused(aiohttp_server, tmp_path) -> None:
    """A pinned certificate is an anchor for itself only: a leaf signed with its key (and
    sent with it) fails the handshake, while the pinned certificate itself is accepted."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from mtlsauth.testing import self_signed_client_cert

    root = CA(organization="pinned direct")
    pinned = self_signed_client_cert(common_name="pinned")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    child = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "child")]))
        .issuer_name(pinned.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(pinned.private_key, hashes.SHA256())
    )
    (tmp_path / "child.pem").write_bytes(child.public_bytes(Encoding.PEM) + pinned.cert_pem.bytes())
    (tmp_path / "child.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    server = root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    server_ctx = server_ssl_context(
        certfile=str(server.cert_pem.write_to_path(tmp_path / "server.pem")),
        keyfile=str(server.key_pem.write_to_path(tmp_path / "server.key")),
        trust_store=root.trust_store(),
        pinned=[pinned.cert_pem.bytes()],
        mode="optional",
    )

    async def whoami(request: web.Request) -> web.Response:
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    verifier = Verifier(trust_store=root.trust_store(), pinned=[pinned.cert_pem.bytes()])
    app = web.Application(middlewares=[mtls_middleware(verifier=verifier)])
    app.router.add_get("/", whoami)
    srv = await aiohttp_server(app, ssl=server_ctx)

    async def get(cert: tuple[Path, Path]) -> object:
        ctx = ssl.create_default_context(
            cafile=str(root.cert_pem.write_to_path(tmp_path / "ca.pem"))
        )
        ctx.load_cert_chain(*cert)
        try:
            async with (
                ClientSession(connector=TCPConnector(ssl=ctx)) as session,
                session.get(f"https://127.0.0.1:{srv.port}/") as resp,
            ):
                return resp.status, json.loads(await resp.read())
        except (ClientError, ssl.SSLError, ConnectionError):
            return "tls_refused"  # no HTTP response: the handshake (or the read after it) failed

    own = (
        pinned.cert_pem.write_to_path(tmp_path / "pinned.pem"),
        pinned.key_pem.write_to_path(tmp_path / "pinned.key"),
    )
    assert await get(own) == (200, {"cn": "pinned"})
    assert await get((tmp_path / "child.pem", tmp_path / "child.key")) == "tls_refused"
