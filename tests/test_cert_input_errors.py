"""Every malformed certificate input is a stable refusal (4xx), never another exception (500).

Certificates are built, then altered byte by byte inside the TBSCertificate and signed again
by the issuing CA, so the damage is not caught by a signature check first: it reaches the
parser, path validation, pin checks and identity building.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _x509_forge import der, resign
from mtlsauth import CRLSet, MTLSAuthError, Policy, TrustStore, Verifier
from mtlsauth.testing import CA, self_signed_client_cert

# More examples for a longer hunt: MTLSAUTH_FUZZ_EXAMPLES=5000 pytest tests/test_cert_input_errors.py
_EXAMPLES = int(os.environ.get("MTLSAUTH_FUZZ_EXAMPLES", "300"))

_FULL_POLICY = Policy(
    common_names={"client"},
    organizations={"payments"},
    dns_names={"*.example.com"},
    emails={"@example.com"},
    deny_fingerprints={"00" * 32},
    deny_serials={1},
)


def _pem(data: bytes) -> bytes:
    import base64

    body = base64.encodebytes(data).replace(b"\n", b"")
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def _bad_version(cert_der: bytes, key: object) -> bytes:
    # [0] EXPLICIT { INTEGER 2 } -> INTEGER 3 ("v4", which does not exist).
    return resign(cert_der, key, (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03"))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


def _refused_with(verifier: Verifier, chain: object) -> str:
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify(chain)
    return info.value.code


def test_unknown_certificate_version_is_malformed_not_500(ca: CA) -> None:
    bad = _bad_version(ca.issue_client_cert().der, ca.private_key)
    verifier = Verifier(trust_store=ca.trust_store())
    assert _refused_with(verifier, bad) == "certificate_malformed"
    assert _refused_with(verifier, _pem(bad)) == "certificate_malformed"


def test_unknown_version_in_an_intermediate_is_malformed(ca: CA) -> None:
    inter = ca.intermediate()
    leaf = inter.issue_client_cert()
    bad_inter = _bad_version(der(inter.certificate), ca.private_key)
    verifier = Verifier(trust_store=ca.trust_store())
    assert _refused_with(verifier, [leaf.der, bad_inter]) == "certificate_malformed"


def test_trust_bundle_with_unknown_version_is_a_value_error(ca: CA) -> None:
    bad_root = _bad_version(der(ca.certificate), ca.private_key)
    with pytest.raises(ValueError, match=r"not a valid X\.509 certificate"):
        TrustStore.from_pem(_pem(bad_root))
    with pytest.raises(ValueError, match="intermediates"):
        Verifier(trust_store=ca.trust_store(), intermediates=[bad_root])
    with pytest.raises(ValueError, match="pinned"):
        Verifier(pinned=[bad_root])


def test_trust_bundle_file_turning_bad_keeps_last_good_and_reports_it(
    ca: CA, tmp_path: Path
) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    verifier = Verifier(trust_store=TrustStore.from_pem_file(path, reload_interval=None))
    leaf = ca.issue_client_cert()
    assert verifier.verify(leaf.der).common_name == "client"
    path.write_bytes(_pem(_bad_version(der(ca.certificate), ca.private_key)) + b"\n# changed\n")
    assert verifier.reload() is False
    health = verifier.health()
    assert health["ok"] is False
    assert "not a valid X.509 certificate" in str(health["errors"])
    assert verifier.verify(leaf.der).common_name == "client"  # the last good anchors


def _crl_with_version(ca: CA, version: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from _x509_forge import assemble, split

    crl_der = x509.load_pem_x509_crl(ca.crl().bytes()).public_bytes(
        __import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.DER
    )
    tbs, alg, _ = split(crl_der)
    assert b"\x02\x01\x01" in tbs
    tbs = tbs.replace(b"\x02\x01\x01", b"\x02\x01" + bytes([version]), 1)
    key = ca.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return assemble(tbs, alg, key.sign(tbs, ec.ECDSA(hashes.SHA256())))


def test_crl_with_unknown_version_is_a_value_error_and_a_failed_reload(
    ca: CA, tmp_path: Path
) -> None:
    bad = _crl_with_version(ca, 5)
    with pytest.raises(ValueError, match="CRL"):
        CRLSet.from_der(bad)
    path = tmp_path / "ca.crl"
    path.write_bytes(ca.crl().bytes())
    crls = CRLSet.from_paths(path, reload_interval=None)
    verifier = Verifier(trust_store=ca.trust_store(), revocation=crls)
    path.write_bytes(bad)
    assert verifier.reload() is False
    health = verifier.health()
    assert health["ok"] is False
    assert "CRL" in str(health["errors"])


# -- identity building and pin checks on odd, validly signed certificates ------------------

_DUP_OID = b"\x06\x03\x55\x1d\x63"  # 2.5.29.99, a stand-in rewritten to a real extension's OID


def _with_placeholder(ca: CA, **kwargs: object) -> bytes:
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.99"), b"\x30\x00")
    return ca.issue_client_cert(extra_extensions=[(ext, False)], **kwargs).der  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "replacements", "code"),
    [
        pytest.param(
            {"dns_names": ["a.example.com"]},
            [(_DUP_OID + b"\x04\x02\x30\x00", b"\x06\x03\x55\x1d\x11\x04\x02\x30\x00")],
            "certificate_malformed",
            id="duplicate SAN",
        ),
        pytest.param(
            {},
            [(_DUP_OID + b"\x04\x02\x30\x00", b"\x06\x03\x55\x1d\x13\x04\x02\x30\x00")],
            "certificate_malformed",
            id="duplicate basicConstraints",
        ),
        pytest.param(
            {"dns_names": ["a.example.com"]},
            [(b"a.example.com", b"\xff.example.com")],
            "certificate_malformed",
            id="SAN dNSName not ASCII",
        ),
        pytest.param(
            {"emails": ["ab@example.com"]},
            [(b"ab@example.com", b"\xc3(@example.com")],
            "certificate_malformed",
            id="SAN rfc822Name bad bytes",
        ),
        pytest.param(
            {"common_name": "AAAA"},
            [(b"AAAA", b"\xff\xfe\xc0\x80")],
            "certificate_malformed",
            id="CN invalid UTF-8",
        ),
        pytest.param(
            {"ip_addresses": ["10.1.2.3"]},
            [(b"\x87\x04\x0a\x01\x02\x03", b"\x87\x04\x0a\x01\x02\x03")],
            "organization_not_allowed",
            id="control: valid IP SAN",
        ),
    ],
)
def test_odd_extensions_and_names_are_refused_as_malformed(
    ca: CA, kwargs: dict[str, object], replacements: list[tuple[bytes, bytes]], code: str
) -> None:
    forged = resign(_with_placeholder(ca, **kwargs), ca.private_key, *replacements)  # type: ignore[arg-type]
    verifier = Verifier(trust_store=ca.trust_store(), policy=_FULL_POLICY, cache_size=0)
    assert _refused_with(verifier, forged) == code


def test_pinned_certificate_with_duplicate_extension_is_malformed_not_500() -> None:
    pin = self_signed_client_cert(extensions=True)
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.99"), b"\x30\x00")
    builder = (
        x509.CertificateBuilder()
        .subject_name(pin.certificate.subject)
        .issuer_name(pin.certificate.issuer)
        .public_key(pin.private_key.public_key())
        .serial_number(5)
        .not_valid_before(pin.certificate.not_valid_before_utc)
        .not_valid_after(pin.certificate.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ext, critical=False)
    )
    from cryptography.hazmat.primitives import hashes

    cert = builder.sign(pin.private_key, hashes.SHA256())  # type: ignore[arg-type]
    forged = resign(der(cert), pin.private_key, (_DUP_OID, b"\x06\x03\x55\x1d\x13"))  # type: ignore[arg-type]
    verifier = Verifier(pinned=[forged])
    assert _refused_with(verifier, forged) == "certificate_malformed"


@pytest.fixture(scope="module")
def fuzz_material() -> tuple[CA, bytes, bytes]:
    ca = CA()
    leaf = ca.issue_client_cert(
        common_name="client",
        organization="payments",
        organizational_unit=["eng"],
        dns_names=["a.example.com"],
        uris=["spiffe://example.com/x"],
        emails=["a@example.com"],
        ip_addresses=["10.1.2.3", "::1"],
    ).der
    pin = self_signed_client_cert(extensions=True)
    return ca, leaf, der(pin.certificate)


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_resigned_mutations_only_raise_mtlsauth_errors(
    fuzz_material: tuple[CA, bytes, bytes], data: st.DataObject
) -> None:
    ca, leaf, _ = fuzz_material
    from _x509_forge import split

    tbs = split(leaf)[0]
    pos = data.draw(st.integers(min_value=4, max_value=len(tbs) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255))
    mutated = tbs[:pos] + bytes([value]) + tbs[pos + 1 :]
    forged = resign(leaf, ca.private_key, (tbs, mutated))  # type: ignore[arg-type]
    verifier = Verifier(trust_store=ca.trust_store(), policy=_FULL_POLICY, cache_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            verifier.verify(forged)
        except MTLSAuthError:
            pass
    # The same bytes as a pin: no path validation, straight to the pin checks and identity.
    try:
        pinned = Verifier(pinned=[forged], policy=_FULL_POLICY, cache_size=0)
    except ValueError:
        return
    try:
        pinned.verify(forged)
    except MTLSAuthError:
        pass


def test_subject_email_attribute_with_bad_bytes_is_malformed(ca: CA) -> None:
    leaf = ca.issue_client_cert(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "client"),
                x509.NameAttribute(NameOID.EMAIL_ADDRESS, "zz@example.com"),
            ]
        )
    ).der
    forged = resign(leaf, ca.private_key, (b"zz@example.com", b"\xff\xfe@example.com"))  # type: ignore[arg-type]
    verifier = Verifier(trust_store=ca.trust_store(), policy=_FULL_POLICY, cache_size=0)
    assert _refused_with(verifier, forged) == "certificate_malformed"


@pytest.fixture(scope="module")
def constrained_material() -> tuple[CA, CA, bytes, bytes, bytes]:
    """A root, an intermediate with name constraints, a SAN-less leaf, the CA's DER, a CRL."""
    import ipaddress

    root = CA()
    inter = root.intermediate(
        name_constraints=x509.NameConstraints(
            permitted_subtrees=[
                x509.DNSName("example.com"),
                x509.RFC822Name("example.com"),
                x509.IPAddress(ipaddress.ip_network("10.0.0.0/8")),
            ],
            excluded_subtrees=[x509.DNSName("bad.example.com")],
        )
    )
    leaf = inter.issue_client_cert(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com"),
                x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.com"),
            ]
        )
    ).der
    crl = x509.load_pem_x509_crl(inter.revoke(inter.issue_client_cert()).bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    return root, inter, leaf, der(inter.certificate), crl.public_bytes(Encoding.DER)


def _mutate(data: st.DataObject, blob: bytes, start: int = 0) -> bytes:
    pos = data.draw(st.integers(min_value=start, max_value=len(blob) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255))
    return blob[:pos] + bytes([value]) + blob[pos + 1 :]


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_constrained_chain_bundles_and_crls(
    constrained_material: tuple[CA, CA, bytes, bytes, bytes], data: st.DataObject
) -> None:
    from _x509_forge import split

    root, inter, leaf, inter_der, crl_der = constrained_material
    which = data.draw(st.sampled_from(["ca", "leaf", "raw", "bundle", "crl"]))
    verifier = Verifier(trust_store=root.trust_store(), policy=_FULL_POLICY, cache_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if which == "ca":  # the intermediate altered and signed again by the root
            tbs = split(inter_der)[0]
            forged = resign(inter_der, root.private_key, (tbs, _mutate(data, tbs, 4)))  # type: ignore[arg-type]
            chain: list[bytes] = [leaf, forged]
        elif which == "leaf":  # the leaf altered and signed again by the intermediate
            tbs = split(leaf)[0]
            forged = resign(leaf, inter.private_key, (tbs, _mutate(data, tbs, 4)))  # type: ignore[arg-type]
            chain = [forged, inter_der]
        elif which == "raw":  # bytes altered, nothing signed again
            chain = [_mutate(data, leaf), inter_der]
        elif which == "bundle":
            try:
                TrustStore.from_pem(_pem(_mutate(data, inter_der)))
            except ValueError:
                pass
            return
        else:
            try:
                CRLSet.from_der(_mutate(data, crl_der))
            except ValueError:
                pass
            return
        try:
            verifier.verify(chain)
        except MTLSAuthError:
            pass


def test_token_binding_with_a_non_ascii_thumbprint_is_no_match(ca: CA) -> None:
    identity = Verifier(trust_store=ca.trust_store()).verify(ca.issue_client_cert().der)
    thumb = identity.x5t_s256()
    assert thumb is not None
    assert identity.matches_token_binding({"x5t#S256": thumb}) is True
    assert identity.matches_token_binding({"x5t#S256": thumb[:-1] + "\u00e9"}) is False
    assert identity.matches_token_binding({"x5t#S256": "\ud800"}) is False


def test_rfc8705_jwks_with_an_unknown_certificate_version_is_a_value_error(ca: CA) -> None:
    import base64

    from mtlsauth import pinned_from_rfc8705

    bad = _bad_version(ca.issue_client_cert().der, ca.private_key)
    metadata = {"jwks": {"keys": [{"kty": "EC", "x5c": [base64.b64encode(bad).decode()]}]}}
    with pytest.raises(ValueError, match="not a base64 DER certificate"):
        pinned_from_rfc8705(metadata)


def test_uvicorn_tls_extension_with_an_unknown_version_names_no_subject(ca: CA) -> None:
    from mtlsauth.adapters.uvicorn import tls_extension

    bad = _bad_version(ca.issue_client_cert().der, ca.private_key)

    class _Peer:
        def getpeercert(self, binary_form: bool = False) -> bytes:
            return bad

        def version(self) -> str:
            return "TLSv1.3"

        def cipher(self) -> tuple[str, str, int]:
            return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    extension = tls_extension(_Peer())
    assert extension is not None
    assert extension["client_cert_name"] is None
    verifier = Verifier(trust_store=ca.trust_store())
    assert _refused_with(verifier, extension["client_cert_chain"]) == "certificate_malformed"


def test_trust_bundle_with_an_unknown_key_algorithm_still_loads(ca: CA) -> None:
    # id-ecPublicKey 1.2.840.10045.2.1 turned into 0.0.840.10045.2.1: a key cryptography
    # cannot load. The bundle still loads (the CA anchors nothing usable) and the good CA works.
    other = CA()
    mangled = resign(
        der(other.certificate),
        other.private_key,  # type: ignore[arg-type]
        (b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01", b"\x06\x07\x00\x86\x48\xce\x3d\x02\x01"),
    )
    store = TrustStore.from_pem(_pem(mangled) + ca.cert_pem.bytes())
    verifier = Verifier(trust_store=store, cache_size=0)
    assert verifier.verify(ca.issue_client_cert().der).common_name == "client"


@pytest.mark.parametrize(
    "text",
    [
        "\ud800",  # a high surrogate: no UTF-8 error handler but surrogatepass encodes it
        "-----BEGIN CERTIFICATE-----\n\udbff\n-----END CERTIFICATE-----\n",
        "\udcc3\udca9",  # what surrogateescape makes of the UTF-8 bytes of "é"
    ],
)
def test_text_with_lone_surrogates_is_malformed_not_500(ca: CA, text: str) -> None:
    """``verify()`` and a TLS chain of text key the input before reading it: a lone
    surrogate made the key raise ``UnicodeEncodeError`` instead of a refusal."""
    from mtlsauth._types import Presented

    verifier = Verifier(trust_store=ca.trust_store())
    for call in (
        lambda: verifier.verify(text),
        lambda: verifier.verify_pem(text),
        lambda: verifier.verify([text, text]),
        lambda: verifier.authenticate(Presented(peer="192.0.2.1", tls_chain=(text,))),
        lambda: verifier.authenticate(Presented(peer="192.0.2.1", tls_chain=(text, text))),
    ):
        with pytest.raises(MTLSAuthError) as refused:
            call()
        assert refused.value.code == "certificate_malformed"


def test_text_keys_apart_from_what_surrogateescape_folds_it_into() -> None:
    from mtlsauth._cache import chain_key

    # Two different strings, one key before: surrogateescape turned both into b"\xc3\xa9".
    assert chain_key(("\udcc3\udca9",), b"t") != chain_key(("é",), b"t")
    assert chain_key(("a", "\udcc3\udca9"), b"t") != chain_key(("a", "é"), b"t")
