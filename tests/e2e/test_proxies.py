"""mtlsauth behind real nginx, Apache httpd, HAProxy and Caddy (Debian packages).

Each proxy ends TLS on 127.0.0.1, asks for a client certificate without insisting on a
trusted one (``optional_no_ca`` and friends, so impostors reach the app), and forwards it in
its native idiom; the app decides through ``Verifier.authenticate``. The spoofing tests send
forged certificate headers through each proxy: none may ever authenticate.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from cryptography.x509.oid import NameOID

from mtlsauth import ForwardedCert, Verifier
from mtlsauth.testing import encode_forwarded

pytestmark = pytest.mark.e2e

PROXY_NAMES = ("nginx", "apache", "haproxy", "caddy")


def _verifier(pki, name: str, *, intermediates: bool) -> Verifier:
    fwd = ForwardedCert.preset(name, trusted_proxies=["127.0.0.1"])
    return Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=fwd,
        intermediates=[pki.intermediate.cert_pem.bytes()] if intermediates else (),
    )


@pytest.mark.parametrize("name", PROXY_NAMES)
@pytest.mark.parametrize(
    ("cert", "status", "code"),
    [
        pytest.param("client_chain", 200, None, id="leaf+intermediate"),
        pytest.param("client_leaf", 200, None, id="leaf only"),
        pytest.param("wrong_cert", 401, "untrusted_issuer", id="wrong CA"),
        pytest.param(None, 401, "certificate_missing", id="no certificate"),
    ],
)
def test_certificate_through_proxy(name, cert, status, code, pki, backend, start_proxy, client):
    proxy = start_proxy(name, backend)
    # Only proxies that forward the client's intermediates can do without intermediates=.
    needs_intermediates = cert == "client_leaf" or not proxy.spec.forwards_chain
    backend.authenticate = _verifier(pki, name, intermediates=needs_intermediates).authenticate
    reply = client(proxy.url + "/", cert=cert)
    assert (reply.status, reply.body["code"]) == (status, code), reply.body
    if status == 200:
        assert reply.body["common_name"] == "alice"
        assert reply.body["source"].startswith("header:")


@pytest.mark.parametrize("name", PROXY_NAMES)
def test_chain_forwarded_without_intermediates_config(name, pki, backend, start_proxy, client):
    proxy = start_proxy(name, backend)
    backend.authenticate = _verifier(pki, name, intermediates=False).authenticate
    reply = client(proxy.url + "/", cert="client_chain")
    if proxy.spec.forwards_chain:
        assert reply.status == 200, reply.body
    else:  # nginx and Caddy forward the leaf only: the app must know the intermediates
        assert reply.body["code"] == "untrusted_issuer", reply.body


# What each proxy REALLY sends when the client presents no certificate (measured, Debian 12:
# nginx 1.22.1, Apache 2.4, HAProxy 2.6.12, Caddy 2.6.2).
NO_CERT = {
    "nginx": {"x-ssl-client-cert": []},  # proxy_set_header drops an empty value
    "apache": {"x-ssl-client-cert": ["(null)"], "x-ssl-client-cert-chain-0": ["(null)"]},
    "haproxy": {"x-ssl-client-cert": [""], "x-ssl-client-chain": [""]},
    "caddy": {"x-client-cert": ["{http.request.tls.client.certificate_der_base64}"]},
}


@pytest.mark.parametrize("name", PROXY_NAMES)
def test_what_proxy_sends_without_certificate(name, pki, backend, start_proxy, client):
    proxy = start_proxy(name, backend)
    backend.authenticate = _verifier(pki, name, intermediates=True).authenticate
    reply = client(proxy.url + "/")
    assert reply.body["code"] == "certificate_missing"
    for header, values in NO_CERT[name].items():
        assert backend.last_header(header) == values


@pytest.mark.parametrize("name", PROXY_NAMES)
def test_exact_wire_formats(name, pki, backend, start_proxy, client):
    """The bytes each proxy forwards equal mtlsauth's encoder output for the same chain."""
    chain = pki.client.chain_der
    proxy = start_proxy(name, backend)
    backend.authenticate = _verifier(pki, name, intermediates=True).authenticate
    assert client(proxy.url + "/", cert="client_chain").status == 200
    compared = 0
    for header, value in encode_forwarded(name, chain):
        if name == "nginx" and header.lower() != "x-ssl-client-cert":
            continue  # nginx forwards only the leaf header
        assert backend.last_header(header) == [value], (name, header)
        compared += 1
    assert compared >= 1


FORGED_NAMES = (
    "{h}",
    "{u}",  # underscore variant: WSGI would fold it into the same environ key
    "{h_lower}",
)


def _forged_headers(name: str, pki) -> list[str]:
    """Every header this proxy's preset reads, forged with alice's genuine (public) chain."""
    out: list[str] = []
    for header, value in encode_forwarded(name, pki.client.chain_der):
        if not value:
            continue
        for pattern in FORGED_NAMES:
            forged = pattern.format(h=header, u=header.replace("-", "_"), h_lower=header.lower())
            out.append(f"{forged}: {value}")
    return out


@pytest.mark.parametrize("name", PROXY_NAMES)
@pytest.mark.parametrize(
    "cert",
    [pytest.param(None, id="no client cert"), pytest.param("wrong_cert", id="impostor cert")],
)
def test_spoofed_header_never_authenticates(name, cert, pki, backend, start_proxy, client):
    proxy = start_proxy(name, backend)
    backend.authenticate = _verifier(pki, name, intermediates=True).authenticate
    reply = client(proxy.url + "/", cert=cert, headers=_forged_headers(name, pki))
    assert reply.status == 401, reply.body
    assert reply.body["common_name"] is None
    expected = "certificate_missing" if cert is None else "untrusted_issuer"
    assert reply.body["code"] == expected


def test_direct_client_cannot_forge_headers(pki, backend, client):
    """Straight to the app from 127.0.0.2 (not a trusted proxy): refused, never believed."""
    backend.authenticate = _verifier(pki, "nginx", intermediates=True).authenticate
    value = encode_forwarded("nginx", pki.client.chain_der)[0][1]
    done = subprocess.run(
        [
            "curl", "-sS", "--max-time", "10", "--interface", "127.0.0.2",
            "-H", f"X-SSL-Client-Cert: {value}", backend.url + "/",
        ],
        capture_output=True, timeout=20, check=False,
    )  # fmt: skip
    if done.returncode == 45:  # cannot bind 127.0.0.2 here
        pytest.skip("127.0.0.2 is not usable as a source address on this machine")
    assert b'"untrusted_forwarder"' in done.stdout, done.stdout


# -- edge-case certificates through each real proxy -------------------------------------------
def _edge_client(pki, kind: str, sans: int = 120):
    if kind == "non-ascii":
        return pki.intermediate.issue_client_cert(
            common_name='Zoë Ünïcødé 日本語 "q", ok',
            organization="Ärger & Söhne, GmbH",
            dns_names=["alice.example"],
        )
    # A large certificate: 120 DNS names (about 7 KB of DER, 9 KB of base64).
    return pki.intermediate.issue_client_cert(
        common_name="big",
        key_type="rsa",
        dns_names=[f"host-{i:03d}.a-rather-long-subdomain-label.example.com" for i in range(sans)],
    )


@pytest.mark.parametrize("kind", ["non-ascii", "large"])
@pytest.mark.parametrize("name", PROXY_NAMES)
def test_edge_certificates_through_proxy(name, kind, pki, backend, start_proxy, tmp_path):
    """A client chain whose leaf has a non-ASCII subject, or is large: what each proxy sends.

    The forwarded bytes equal mtlsauth's encoder output for the same chain (so the decoders'
    strictness matches reality), and the default ``max_size`` admits them.
    """
    edge = _edge_client(pki, kind)
    cert = tmp_path / "chain.pem"
    key = tmp_path / "key.pem"
    cert.write_bytes(edge.chain_pem.bytes())
    key.write_bytes(edge.key_pem.bytes())
    proxy = start_proxy(name, backend)
    backend.authenticate = _verifier(pki, name, intermediates=True).authenticate
    done = subprocess.run(
        [
            "curl", "-sS", "--max-time", "10", "--cacert", pki["root"], "--cert", str(cert),
            "--key", str(key), "-w", "\n%{http_code}", "-H", "Connection: close",
            "--resolve", f"{proxy.url.split('://')[1].split('/')[0]}:127.0.0.1",
            proxy.url + "/",
        ],
        capture_output=True, timeout=20, check=True,
    )  # fmt: skip
    text, _, code = done.stdout.decode().rpartition("\n")
    assert code == "200", text
    expected = edge.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert json.loads(text)["common_name"] == expected
    for header, value in encode_forwarded(name, edge.chain_der):
        got = backend.last_header(header)
        if name == "nginx" and header.lower() != "x-ssl-client-cert":
            continue
        assert got == [value], (name, header)


# What each proxy sends for a 22 KB certificate (400 DNS names), measured: nginx, Apache and
# Caddy forward it whole (30 KB escaped PEM at most, within the default max_size); HAProxy's
# ssl_c_der,base64 overflows its 16 KB buffer (tune.bufsize) and the leaf header arrives
# EMPTY while the chain header still carries the intermediate. That is no "no certificate":
# the client did present one, so it is refused as malformed, never let through as anonymous.
HUGE = {
    "nginx": (200, None),
    "apache": (200, None),
    "caddy": (200, None),
    "haproxy": (401, "certificate_malformed"),
}


@pytest.mark.parametrize("name", PROXY_NAMES)
def test_huge_certificate_through_proxy(name, pki, backend, start_proxy, tmp_path):
    edge = _edge_client(pki, "large", sans=400)
    assert len(edge.chain_der[0]) > 20_000
    cert = tmp_path / "chain.pem"
    key = tmp_path / "key.pem"
    cert.write_bytes(edge.chain_pem.bytes())
    key.write_bytes(edge.key_pem.bytes())
    proxy = start_proxy(name, backend)
    backend.authenticate = _verifier(pki, name, intermediates=True).authenticate
    done = subprocess.run(
        [
            "curl", "-sS", "--max-time", "10", "--cacert", pki["root"], "--cert", str(cert),
            "--key", str(key), "-H", "Connection: close",
            "--resolve", f"{proxy.url.split('://')[1].split('/')[0]}:127.0.0.1",
            proxy.url + "/",
        ],
        capture_output=True, timeout=20, check=True,
    )  # fmt: skip
    body = json.loads(done.stdout)
    assert (body["status"], body["code"]) == HUGE[name], body
    if name == "haproxy":
        assert backend.last_header("x-ssl-client-cert") == [""]
        assert backend.last_header("x-ssl-client-chain") != [""]
