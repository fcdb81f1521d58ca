"""A deny-listed certificate re-encoded by its holder is still denied over real mutual TLS.

The client keeps its key and its CA-issued certificate, and replaces the ECDSA signature's
``s`` with ``n - s``: OpenSSL on both sides accepts the twin, whose SHA-256 differs.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path

import pytest
from aiohttp import ClientSession, TCPConnector, web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth import Policy, Verifier, server_ssl_context
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware
from mtlsauth.testing import CA

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _item(buf: bytes, i: int) -> tuple[int, int]:
    length, j = buf[i + 1], i + 2
    if length & 0x80:
        k = length & 0x7F
        length, j = int.from_bytes(buf[j : j + k], "big"), j + k
    return j, j + length


def _twin(cert: x509.Certificate) -> x509.Certificate:
    der = cert.public_bytes(Encoding.DER)
    start, _ = _item(der, 0)
    alg_end = _item(der, _item(der, start)[1])[1]
    r, s = decode_dss_signature(cert.signature)
    signature = encode_dss_signature(r, _P256_ORDER - s)
    return x509.load_der_x509_certificate(
        _tlv(0x30, der[start:alg_end] + _tlv(0x03, b"\x00" + signature))
    )


@pytest.mark.e2e
async def test_ecdsa_twin_of_a_denied_certificate_is_denied_over_tls(
    aiohttp_server, tmp_path: Path
) -> None:
    root = CA(organization="deny twin")
    denied = root.issue_client_cert(common_name="denied")
    allowed = root.issue_client_cert(common_name="allowed")
    server = root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    twin = _twin(denied.certificate)
    original_fp = hashlib.sha256(denied.der).hexdigest()
    assert hashlib.sha256(twin.public_bytes(Encoding.DER)).hexdigest() != original_fp

    verifier = Verifier(
        trust_store=root.trust_store(), policy=Policy(deny_fingerprints={original_fp})
    )

    async def whoami(request: web.Request) -> web.Response:
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier)])
    app.router.add_get("/", whoami)
    server_ctx = server_ssl_context(
        certfile=str(server.cert_pem.write_to_path(tmp_path / "server.pem")),
        keyfile=str(server.key_pem.write_to_path(tmp_path / "server.key")),
        trust_store=root.trust_store(),
        mode="optional",
    )
    srv = await aiohttp_server(app, ssl=server_ctx)
    ca_file = str(root.cert_pem.write_to_path(tmp_path / "ca.pem"))
    key_file = str(denied.key_pem.write_to_path(tmp_path / "denied.key"))

    async def get(cert_pem: bytes, key: str, name: str) -> tuple[int, dict[str, object]]:
        ctx = ssl.create_default_context(cafile=ca_file)
        path = tmp_path / f"{name}.pem"
        path.write_bytes(cert_pem)
        ctx.load_cert_chain(str(path), key)
        async with (
            ClientSession(connector=TCPConnector(ssl=ctx)) as session,
            session.get(f"https://127.0.0.1:{srv.port}/") as resp,
        ):
            return resp.status, json.loads(await resp.read())

    status, body = await get(
        allowed.cert_pem.bytes(), str(allowed.key_pem.write_to_path(tmp_path / "a.key")), "a"
    )
    assert (status, body["cn"]) == (200, "allowed")
    status, body = await get(denied.cert_pem.bytes(), key_file, "original")
    assert (status, body["code"]) == (403, "certificate_denied")
    status, body = await get(twin.public_bytes(Encoding.PEM), key_file, "twin")
    assert (status, body["code"]) == (403, "certificate_denied")
