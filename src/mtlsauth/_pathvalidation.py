"""Path validation with cryptography's ClientVerifier, and its errors mapped to stable codes.

Relaxed on purpose, and only this far (enterprise PKIs issue CN-only client certificates
without SAN or key identifiers): the leaf's SubjectAlternativeName and AuthorityKeyIdentifier
may be absent. Everything else of cryptography's web-PKI profile stays enforced: signatures
(SHA-1 refused), validity, CA basicConstraints and pathLen, name constraints, unknown critical
extensions, and the clientAuth EKU when an EKU is present. We add what it does not check:
a leaf keyUsage, when present, must allow signing (as OpenSSL's ``sslclient`` purpose does),
and the leaf key must be strong enough (RSA >= 2048 bits, P-256/384/521, Ed25519/Ed448).

Never ``ExtensionPolicy.permit_all()`` for the leaf: it drops the EKU check and accepts a CA
certificate, even the trust anchor itself, as a client certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mtlsauth._errors import CertificateInvalid

__all__ = ["MIN_RSA_BITS", "check_leaf_key", "validate_path"]

MIN_RSA_BITS = 2048
_STRONG_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def _leaf_key_usage(_policy: object, _cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    # TLS client authentication signs CertificateVerify: RFC 5280 4.2.1.3, RFC 8446 4.4.3.
    if ku is not None and not (ku.digital_signature or ku.key_agreement):
        raise ValueError("keyUsage does not permit digitalSignature")


_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _leaf_key_usage)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


def check_leaf_key(leaf: x509.Certificate) -> None:
    """Refuse weak leaf keys, which cryptography's verifier does not check (issuers only)."""
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateInvalid(
                f"RSA key of {key.key_size} bits is below the {MIN_RSA_BITS}-bit minimum",
                code="weak_key",
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _STRONG_CURVES):
            raise CertificateInvalid(
                f"elliptic curve {key.curve.name} is not allowed", code="weak_key"
            )
        return
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return
    raise CertificateInvalid(f"{type(key).__name__} keys are not allowed", code="weak_key")


def _validity_code(certs: Sequence[x509.Certificate], at: datetime) -> str | None:
    for c in certs:
        if at > c.not_valid_after_utc:
            return "certificate_expired"
        if at < c.not_valid_before_utc:
            return "certificate_not_yet_valid"
    return None


_MESSAGE_CODES = (
    (
        "required EKU not found",
        "invalid_usage",
        "extended key usage does not allow client authentication",
    ),
    (
        "cA must not be asserted",
        "invalid_usage",
        "a CA certificate cannot be used as a client certificate",
    ),
    ("keyUsage does not permit", "invalid_usage", "key usage does not allow digital signatures"),
    ("exceeds max depth", "chain_too_long", "chain is longer than max_depth allows"),
    ("path length constraint", "chain_too_long", "chain violates a CA's path length constraint"),
    (
        "unaccounted-for critical",
        "invalid_usage",
        "certificate carries an unsupported critical extension",
    ),
    ("X509v3", "certificate_malformed", "only X.509 v3 certificates are accepted"),
    (
        "Forbidden signature algorithm",
        "untrusted_issuer",
        "signature algorithm not allowed (e.g. SHA-1)",
    ),
    (
        "directoryName constraint",
        "untrusted_issuer",
        "a CA uses directoryName name constraints, which are not supported",
    ),
    ("name constraint", "untrusted_issuer", "certificate violates a CA's name constraints"),
    ("too weak", "untrusted_issuer", "an issuing CA's key is too weak"),
    ("Forbidden public key", "untrusted_issuer", "an issuing CA's key algorithm is not allowed"),
)


def _map_error(
    message: str, presented: Sequence[x509.Certificate], at: datetime
) -> CertificateInvalid:
    if "not valid at validation time" in message:
        code = _validity_code(presented, at) or "untrusted_issuer"
        return CertificateInvalid(code.replace("_", " "), code=code)
    for needle, code, detail in _MESSAGE_CODES:
        if needle in message:
            return CertificateInvalid(detail, code=code)
    # "all candidates exhausted", a bad signature, an unknown issuer, any other failure.
    return CertificateInvalid("no valid path to a trusted CA", code="untrusted_issuer")


def validate_path(
    store: Store,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    *,
    at: datetime,
    max_depth: int,
    clock_skew_s: float,
) -> list[x509.Certificate]:
    """Return the validated chain (leaf first, ending at the anchor) or raise CertificateInvalid.

    A validity failure is retried once with the clock moved by ``clock_skew_s`` in the
    forgiving direction, so skew only ever costs time on the failure path.
    """
    try:
        return _verify(store, leaf, intermediates, at, max_depth)
    except VerificationError as exc:
        err = _map_error(str(exc), (leaf, *intermediates), at)
    if clock_skew_s and err.code in ("certificate_expired", "certificate_not_yet_valid"):
        from datetime import timedelta

        shift = timedelta(seconds=clock_skew_s)
        retry_at = at - shift if err.code == "certificate_expired" else at + shift
        try:
            return _verify(store, leaf, intermediates, retry_at, max_depth)
        except VerificationError:
            pass
    raise err


def _verify(
    store: Store,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    at: datetime,
    max_depth: int,
) -> list[x509.Certificate]:
    # A verifier's time is frozen when it is built, so build one per validation (~4 us).
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(at)
        .max_chain_depth(max_depth)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        return verifier.verify(leaf, list(intermediates)).chain
    except VerificationError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed on anything the engine throws
        raise VerificationError(f"verifier error: {type(exc).__name__}") from None
