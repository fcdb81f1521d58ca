"""This round's fixes attacked again: each test fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtlsauth import TrustStore, server_ssl_context
from mtlsauth._cli._testpki import TestPKI, write_test_pki

# Not a key: only its shape matters (the header, and a body that must not be echoed).
_FAKE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nTUFSS0VSLW5vdC1hLWtleS1tYXJrZXI=\n-----END PRIVATE KEY-----\n"
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return write_test_pki(tmp_path_factory.mktemp("pki"))


def test_pem_text_as_a_path_object_is_refused_without_echoing_it(pki: TestPKI) -> None:
    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    with pytest.raises(ValueError, match="PEM text where a file path belongs") as info:
        server_ssl_context(
            certfile=pki.path("server.pem"), keyfile=Path(_FAKE_KEY), trust_store=trust
        )
    assert "TUFSS0VS" not in str(info.value)
    with pytest.raises(ValueError, match="PEM text where a file path belongs") as info:
        TrustStore.from_pem_file(Path(_FAKE_KEY))
    assert "TUFSS0VS" not in str(info.value)


# -- testing.openssl_rfc2253: attributes OpenSSL prints by name ------------------------------
def test_openssl_rfc2253_names_the_attributes_openssl_names() -> None:
    import datetime
    import shutil
    import subprocess

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from mtlsauth.testing._encode import openssl_rfc2253

    name = x509.Name(
        [
            x509.NameAttribute(x509.ObjectIdentifier("2.5.4.13"), "desc"),  # description
            x509.NameAttribute(x509.ObjectIdentifier("2.5.4.41"), "nm"),  # name
            x509.NameAttribute(x509.ObjectIdentifier("1.3.6.1.4.1.311.60.2.1.1"), "Berlin"),
            x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4"), "unknown"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Zo\u00eb"),
        ]
    )
    expected = (
        "CN=Zo\\C3\\AB,1.2.3.4=#0C07756E6B6E6F776E,jurisdictionL=Berlin,name=nm,description=desc"
    )
    assert openssl_rfc2253(name) == expected
    openssl = shutil.which("openssl")
    if openssl is None:
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    printed = subprocess.run(
        [openssl, "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
        input=cert.public_bytes(serialization.Encoding.PEM),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert printed.strip().removeprefix("subject=").strip() == expected
