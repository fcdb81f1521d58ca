"""Direct-TLS pieces without a server: server_ssl_context, tls_extension, protocol classes."""

from __future__ import annotations

import ssl

import pytest

from mtlsauth._sslcontext import peer_chain, server_ssl_context
from mtlsauth.adapters.uvicorn import MTLSH11Protocol, tls_extension, with_tls_extension


@pytest.fixture(scope="module")
def server_files(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("server")
    cert = pki.root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], eku="server"
    )
    return str(cert.cert_pem.write_to_path(d / "s.pem")), str(
        cert.key_pem.write_to_path(d / "s.key")
    )


@pytest.mark.parametrize(
    ("mode", "verify"), [("mandatory", ssl.CERT_REQUIRED), ("optional", ssl.CERT_OPTIONAL)]
)
def test_server_ssl_context(pki, server_files, mode, verify) -> None:
    ctx = server_ssl_context(
        certfile=server_files[0],
        keyfile=server_files[1],
        trust_store=pki.root.trust_store(),
        mode=mode,
    )
    assert ctx.verify_mode == verify
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert not ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert len(ctx.get_ca_certs()) == 1


def test_server_ssl_context_one_certificate_per_connection(pki, server_files) -> None:
    """No renegotiation (the certificate cannot change mid-connection) and no stateless
    session tickets (a session resumed from one has no chain on Python 3.13) by default."""
    args = {
        "certfile": server_files[0],
        "keyfile": server_files[1],
        "trust_store": pki.root.trust_store(),
    }
    ctx = server_ssl_context(**args)
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.options & ssl.OP_NO_TICKET
    tickets = server_ssl_context(**args, session_tickets=True)
    assert tickets.options & ssl.OP_NO_RENEGOTIATION
    assert not tickets.options & ssl.OP_NO_TICKET
    with pytest.raises(TypeError):
        server_ssl_context(**args, session_tickets="no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        pytest.param({"mode": "off"}, ValueError, id="mode off"),
        pytest.param({"trust_store": "ca.pem"}, TypeError, id="path not TrustStore"),
        pytest.param({"minimum_version": ssl.TLSVersion.TLSv1_1}, ValueError, id="TLS 1.1"),
    ],
)
def test_server_ssl_context_rejects(pki, server_files, kwargs, exc) -> None:
    args = {
        "certfile": server_files[0],
        "keyfile": server_files[1],
        "trust_store": pki.root.trust_store(),
    }
    with pytest.raises(exc):
        server_ssl_context(**{**args, **kwargs})


class FakeSSLObject:
    def __init__(self, leaf: bytes | None, chain: list[bytes] | None = None) -> None:
        self.leaf = leaf
        if chain is not None:
            self.get_unverified_chain = lambda: chain

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        return self.leaf

    def version(self) -> str:
        return "TLSv1.3"


def test_peer_chain_leaf_only_and_chain(certs) -> None:
    assert peer_chain(None) == ()
    assert peer_chain(FakeSSLObject(None)) == ()
    assert peer_chain(FakeSSLObject(certs.good.der)) == (certs.good.der,)
    full = list(certs.good.chain_der)
    assert peer_chain(FakeSSLObject(certs.good.der, full)) == tuple(full)
    # a chain that does not start with the leaf is not believed: fall back to the leaf
    assert peer_chain(FakeSSLObject(certs.good.der, full[1:])) == (certs.good.der,)


def test_tls_extension(certs) -> None:
    assert tls_extension(None) is None
    ext = tls_extension(FakeSSLObject(certs.good.der))
    assert ext is not None
    assert ext["client_cert_chain"] == [certs.good.cert_pem.text()]
    assert ext["client_cert_name"] == certs.good.certificate.subject.rfc4514_string()
    assert ext["client_cert_error"] is None
    assert ext["tls_version"] == 0x0304
    empty = tls_extension(FakeSSLObject(None))
    assert empty is not None
    assert empty["client_cert_chain"] == []
    assert empty["client_cert_name"] is None


def test_protocol_classes() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    assert issubclass(MTLSH11Protocol, H11Protocol)
    made = with_tls_extension(H11Protocol)
    assert made.__name__ == "MTLSH11Protocol"
    assert issubclass(made, H11Protocol)
    with pytest.raises(TypeError):
        with_tls_extension("h11")  # type: ignore[arg-type]


def test_tls_extension_survives_a_leaf_cryptography_cannot_read(certs) -> None:
    # Version v4 (INTEGER 3) raises x509.InvalidVersion, which is not a ValueError: the
    # extension is still built (no name), and the verifier refuses the leaf later.
    der = certs.good.der
    v3 = bytes.fromhex("a003020102")
    assert v3 in der
    v4 = der.replace(v3, bytes.fromhex("a003020103"), 1)
    ext = tls_extension(FakeSSLObject(v4))
    assert ext is not None
    assert ext["client_cert_name"] is None
    assert len(ext["client_cert_chain"]) == 1
    assert tls_extension(FakeSSLObject(b"\x30\x03\x02\x01\x00"))["client_cert_name"] is None


async def test_each_request_gets_its_own_tls_extension(certs) -> None:
    """The extension is read once per connection, but a request that changes it (an app
    that pops the leaf off ``client_cert_chain``, say) must not change what the next
    request on the same keep-alive connection carries."""
    from mtlsauth.adapters.uvicorn import _app_with_tls

    seen: list[list[str]] = []

    async def app(scope, receive, send) -> None:
        tls = scope["extensions"]["tls"]
        seen.append(list(tls["client_cert_chain"]))
        tls["client_cert_chain"].pop(0)
        tls["client_cert_chain"].append("-----BEGIN CERTIFICATE-----forged")
        tls["client_cert_error"] = "changed"

    ext = tls_extension(FakeSSLObject(certs.good.der))
    assert ext is not None
    wrapped = _app_with_tls(app, ext)
    for _ in range(2):
        await wrapped({"type": "http", "extensions": {}}, None, None)  # type: ignore[arg-type]
    assert seen == [[certs.good.cert_pem.text()]] * 2
    assert ext["client_cert_error"] is None
